import type { DirectTransport, Producer } from 'mediasoup/types';
import type { RenditionCodec } from '../media/codecs.ts';
import type { Uplink } from './Uplink.ts';

/** Where an uplink's producer goes: the relay's producer and its SSRCs by the uplink's. */
interface Route {
  producer: Producer;
  ssrcs: Map<number, number>;
}

/** Per outgoing SSRC: the sequence numbers stay continuous when the relay changes upstream. */
interface SequenceState {
  uplink: number;
  offset: number;
  last: number;
}

/** How a relay takes an uplink: the producers it connects, by the uplink's producer index. */
export type UplinkRoutes = Route[];

/**
 * A relay's producers and what feeds them (edge/Relay.ts). Fed by the origin, they are the
 * uplink's pipe producers as they come: the relay ends with the origin anyway, and no packet
 * passes through JavaScript (unless the relay is movable, see the constructor). Fed by a parent edge, they live on a DirectTransport of the relay's
 * router and outlive any one uplink: the current uplink's tap hands every packet here, and it
 * goes on with the relay's SSRC for that encoding and a sequence number that carries on from the
 * last one sent, so that viewers and child edges see one continuous stream across upstreams.
 */
export class RelayFeed {
  readonly producers: Producer[] = [];
  /** The publisher's rid of each video encoding (simulcast), lowest layer first; empty when it named none. */
  videoRids: string[] = [];
  /** The publish it carries ('' until the first uplink): later uplinks must carry the same one. */
  publisherSession = '';
  readonly #input: DirectTransport;
  /** Fed by the origin: the producers are its pipe's. */
  #direct = false;
  readonly #movable: boolean;
  /** The uplink whose packets go on, and its number (a new one restarts the sequence mapping). */
  #current: Uplink | undefined;
  #generation = 0;
  #routes: UplinkRoutes = [];
  readonly #sequences = new Map<number, SequenceState>();
  /** Index in `producers` of each rendition, once added. */
  readonly #renditions = new Map<RenditionCodec, number>();

  /**
   * `movable`: a relay fed by the origin feeds its own producers too (tapped), as one fed by a
   * parent does, so that it can move below a parent later (the origin making room for a relay
   * nearer it, media/treePaths.ts chooseDemotion); it costs what a parent-fed relay costs.
   */
  constructor(input: DirectTransport, movable = false) {
    this.#input = input;
    this.#movable = movable;
  }

  rendition(codec: RenditionCodec): Producer | undefined {
    const index = this.#renditions.get(codec);
    return index === undefined ? undefined : this.producers[index];
  }

  /**
   * How `uplink` would feed the producers. The first uplink makes them: from the origin, its pipe
   * producers; from an edge, producers of its own with the parameters of the uplink's tap. A
   * later one is matched by kind, codec and layers; undefined when it carries another publish or
   * lacks one of the producers (a rendition it could not add).
   */
  async routesFor(uplink: Uplink): Promise<UplinkRoutes | undefined> {
    if (this.publisherSession === '') return this.#produce(uplink);
    if (uplink.offer.publisherSession !== this.publisherSession) return undefined;
    await uplink.tap();
    const routes: UplinkRoutes = [];
    const matched = new Set<Producer>();
    const match = (index: number) => {
      const consumer = uplink.consumers[index]!;
      const producer = this.producers.find((p) => !matched.has(p) && sameShape(p.rtpParameters, consumer.rtpParameters));
      if (!producer) return;
      matched.add(producer);
      routes[index] = { producer, ssrcs: ssrcMap(consumer.rtpParameters.encodings, producer.rtpParameters.encodings) };
    };
    uplink.consumers.forEach((_, i) => match(i));
    for (const [codec, index] of this.#renditions) {
      if (matched.has(this.producers[index]!)) continue;
      const added = await uplink.rendition(codec).catch(() => undefined);
      if (added !== undefined) match(added);
    }
    return matched.size === this.producers.length ? routes : undefined;
  }

  /** Feeds the producers from `uplink` from now on (packets of the one before are dropped). */
  switchTo(uplink: Uplink, routes: UplinkRoutes): void {
    const generation = ++this.#generation;
    this.#current = uplink;
    this.#routes = routes;
    uplink.on('rtp', (index, packet) => {
      // A replaced upstream may still deliver a few packets before it is closed (a move).
      if (this.#current === uplink) this.#forward(generation, routes[index], packet);
    });
  }

  /** Adds the rendition in `codec` the uplink just added (its index there) as a producer. */
  async addRendition(uplink: Uplink, index: number, codec: RenditionCodec): Promise<Producer> {
    if (this.#direct) {
      this.#renditions.set(codec, this.producers.push(uplink.producers[index]!) - 1);
      return uplink.producers[index]!;
    }
    const consumer = uplink.consumers[index]!;
    const producer = await this.#input.produce({ kind: consumer.kind, rtpParameters: consumer.rtpParameters });
    this.#renditions.set(codec, this.producers.push(producer) - 1);
    if (this.#current === uplink) this.#routes[index] = { producer, ssrcs: ssrcMap(consumer.rtpParameters.encodings, producer.rtpParameters.encodings) };
    return producer;
  }

  async #produce(uplink: Uplink): Promise<UplinkRoutes> {
    this.publisherSession = uplink.offer.publisherSession;
    const video = uplink.offer.producers.find((p) => p.kind === 'video' && p.rids);
    if (video?.rids) this.videoRids = video.rids;
    if (uplink.offer.path.length === 1 && !this.#movable) {
      this.#direct = true;
      this.producers.push(...uplink.producers);
      return [];
    }
    await uplink.tap();
    const routes: UplinkRoutes = [];
    for (const [i, consumer] of uplink.consumers.entries()) {
      const offered = uplink.offer.producers[i]!;
      const producer = await this.#input.produce({ kind: consumer.kind, rtpParameters: consumer.rtpParameters, paused: offered.paused, appData: { rids: offered.rids } });
      this.producers.push(producer);
      routes[i] = { producer, ssrcs: ssrcMap(consumer.rtpParameters.encodings, producer.rtpParameters.encodings) };
    }
    return routes;
  }

  /** Sends a packet from the current upstream on through the relay's producer, as one continuous stream. */
  #forward(generation: number, route: Route | undefined, packet: Buffer): void {
    if (!route || packet.length < 12) return;
    const ssrc = route.ssrcs.get(packet.readUInt32BE(8));
    if (ssrc === undefined) return;
    const seq = packet.readUInt16BE(2);
    let state = this.#sequences.get(ssrc);
    if (!state) {
      state = { uplink: generation, offset: 0, last: seq };
      this.#sequences.set(ssrc, state);
    } else if (state.uplink !== generation) {
      // A new upstream numbers its packets its own way: carry on from the last one sent.
      state.uplink = generation;
      state.offset = (state.last + 1 - seq) & 0xffff;
    }
    const out = (seq + state.offset) & 0xffff;
    if (((out - state.last) & 0xffff) < 0x8000) state.last = out;
    packet.writeUInt32BE(ssrc, 8);
    packet.writeUInt16BE(out, 2);
    route.producer.send(packet);
  }
}

/** The relay's SSRC for each of an upstream's, encoding by encoding (simulcast layers in the same order). */
function ssrcMap(from: Array<{ ssrc?: number }> | undefined, to: Array<{ ssrc?: number }> | undefined): Map<number, number> {
  const map = new Map<number, number>();
  (from ?? []).forEach((e, i) => {
    const ssrc = to?.[i]?.ssrc;
    if (e.ssrc !== undefined && ssrc !== undefined) map.set(e.ssrc, ssrc);
  });
  return map;
}

/** Whether two producers carry the same media: kind, codec (with its H.264 profile) and layer count. */
function sameShape(a: Producer['rtpParameters'], b: Producer['rtpParameters']): boolean {
  const ca = a.codecs[0];
  const cb = b.codecs[0];
  return (
    ca?.mimeType === cb?.mimeType &&
    ca?.parameters?.['profile-level-id'] === cb?.parameters?.['profile-level-id'] &&
    (a.encodings?.length ?? 0) === (b.encodings?.length ?? 0)
  );
}
