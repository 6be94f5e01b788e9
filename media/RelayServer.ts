import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { Consumer, PipeTransport, Producer, Router as MediaRouter, SrtpParameters } from 'mediasoup/types';
import { z } from 'zod';
import { Problem } from '../core/errors.ts';
import { authorizeInternal, RELAY_PATH, RELAY_PING_MS, renditionPath, resumePath } from '../core/internalApi.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import { STREAM_NAME } from '../core/tokens.ts';
import { RENDITION_CODECS, type RenditionCodec } from './codecs.ts';
import type { RelayLine, RelayMoveTarget, RelayProducer, RelayRequest, RenditionRequest } from './relayProtocol.ts';
import { chooseDemotion, childKey, demotionKey, type Demotion, type OriginFedRelay } from './treePaths.ts';
import type { RtcListen } from './WebRtcSession.ts';

/**
 * What a relay's pipe keeps beside its transport: its consumers, and whether they wait for the
 * edge's first viewer (relayProtocol.ts RelayRequest.paused).
 */
export type RelayPipeData = { consumers: Consumer[]; paused: boolean };

/** A pipe to one edge: a PipeTransport with its consumers (openPipe, consumePipe, resumePipe). */
export type RelayPipe = PipeTransport<RelayPipeData>;

/** The asking edge's side of a pipe. */
export interface PipePeer {
  ip: string;
  port: number;
  srtpParameters?: SrtpParameters;
}

/**
 * What an upstream tells its relays: the stream is over (`end`), it stops feeding them (`detach`),
 * or they should find another upstream while it goes on feeding them (`move`).
 */
export type RelayRelease = { type: 'end' | 'detach' | 'move'; reason: string };

/** A relay this node feeds, as the origin weighs it for a demotion (chooseDemotion). */
interface FedRelay extends OriginFedRelay {
  /** Asks it to move below `to` (a `move` line). */
  move(to: RelayMoveTarget, reason: string): void;
}

/**
 * How long an origin waits for a relay it asked to move below a newcomer (it asks that node once a
 * second, edge/Relay.ts MOVE_RETRY_MS, until the newcomer's relay is up and takes it) before it
 * may make room again for that stream: meanwhile it feeds one relay over its limit, and only one.
 */
const DEMOTION_WAIT_MS = 10_000;

/** A stream this node can feed to edges: a stream published here (origin) or relayed here (edge). */
export interface RelayUpstream {
  /** Its place in the stream's relay tree: 0 on the origin, larger on every edge below. */
  readonly treeKey: number;
  /** The nodes the media comes through, origin first, this node last. */
  readonly path: readonly string[];
  readonly publisherSession: string;
  /** Opens a pipe to the asking edge, its consumers `paused` until the edge resumes it, and lists the producers it carries. */
  openPipe(peer: PipePeer, rtc: RtcListen, paused: boolean): Promise<{ producers: RelayProducer[]; pipe: RelayPipe }>;
  /** Bits/s one more pipe of the stream carries (every producer, every layer). */
  bitrate(): Promise<number>;
  /** Adds the stream's rendition in `codec` to a pipe (UnsupportedMediaError when there is none). */
  pipeRendition(pipe: RelayPipe, codec: RenditionCodec): Promise<RelayProducer>;
  /** An edge resumed its pipe (it has a viewer): a relay resumes its own upstream in turn. */
  resumed(): void;
  /** Calls `listener` with a `move`, and once with an `end` or `detach`; returns the unsubscribe. */
  onRelease(listener: (release: RelayRelease) => void): () => void;
}

const relayRequest: z.ZodType<RelayRequest> = z.object({
  stream: z.string().regex(STREAM_NAME),
  edgeNodeId: z.string().min(1).max(64),
  ip: z.string().min(1),
  port: z.number().int().min(1).max(65535),
  srtpParameters: z
    .object({
      // The suite both ends' PipeTransports use (mediasoup's default with enableSrtp): another
      // would fail in the worker's connect, a 500 rather than this 400.
      cryptoSuite: z.literal('AEAD_AES_256_GCM'),
      keyBase64: z.string().max(200),
    })
    .optional(),
  treeKey: z.number().int().min(0).optional(),
  paused: z.boolean().optional(),
  position: z.object({ lat: z.number().min(-90).max(90), lon: z.number().min(-180).max(180) }).optional(),
  publicUrl: z.url({ protocol: /^https?$/ }).max(500).optional(),
  makeRoom: z.boolean().optional(),
});

const renditionRequest: z.ZodType<RenditionRequest> = z.object({ codec: z.enum(RENDITION_CODECS).default('h264') });

export interface RelayServerOptions {
  nodeId: string;
  clusterSecret: string;
  rtc: RtcListen;
  /** Edges this node feeds each stream to at most (undefined: no limit). */
  maxRelaysPerStream: number | undefined;
  /**
   * What this node's network sends at most (--egress-capacity), and what it sends now (viewers and
   * relays of every role, app/ClusterNode.ts): a relay that would pass the capacity is refused.
   */
  egress: { capacity: number; sending: () => Promise<number> };
  /** relaycast_relays{direction="out"} counts the relays open here (with another role's, in `relaycast all`). */
  metrics: Metrics;
  /** An edge's relay connection dropped without an `end` or `detach` from here (it may be gone). */
  edgeLost?: (edgeNodeId: string, reason: string) => void;
  /** The stream if this node can feed it now. */
  upstream: (stream: string) => RelayUpstream | undefined;
  /**
   * Where this node is, on an origin with maxRelaysPerStream: at the limit it makes room for an
   * edge that says where it is by asking a relay it feeds to move below that edge
   * (chooseDemotion). Undefined (an edge as parent): it refuses at the limit.
   */
  position?: { lat: number; lon: number };
  /**
   * With `position`: the tiers below each relay of a stream (by edge node id, from the placement
   * table), so that a move keeps the trees within media/treePaths.ts DEMOTED_MAX_TIER. Rejecting:
   * the origin makes no room (refuses, as without position).
   */
  depthsBelow?: (stream: string) => Promise<Map<string, number>>;
  logger: Logger;
}

/**
 * The upstream side of the internal relay API (media/relayProtocol.ts), the same on an origin and
 * on an edge that feeds other edges: it checks the request (cluster secret, schema, the tree order) and
 * its room (relays per stream, egress capacity), opens the pipe, and keeps the answer open with pings until
 * the stream ends, the upstream detaches its relays, or the edge hangs up.
 */
export class RelayServer {
  readonly router: Router;
  readonly #options: RelayServerOptions;
  /** Open relays by their id (the pipe's), for the requests an edge makes about one (renditions). */
  readonly #relays = new Map<string, { upstream: RelayUpstream; pipe: RelayPipe }>();
  /** Open relays per stream, for the limit. */
  readonly #perStream = new Map<string, number>();
  /** Per stream, the relays fed here whose edges said where they are (for demotions), by pipe id. */
  readonly #fed = new Map<string, Map<string, FedRelay>>();
  /** Per stream, the relay asked to move below a newcomer, until it does or DEMOTION_WAIT_MS passes. */
  readonly #demoting = new Map<string, { nodeId: string; timer: NodeJS.Timeout }>();

  constructor(options: RelayServerOptions) {
    this.#options = options;
    this.router = express.Router();
    // A stream or relay not here passes to the next router: `relaycast all` has an origin's and an edge's.
    this.router.post(RELAY_PATH, express.json({ limit: '16kb' }), (req, res, next) => this.#relay(req, res, next));
    this.router.post(renditionPath(':relayId'), express.json({ limit: '1kb' }), async (req, res, next) => {
      authorizeInternal(req, options.clusterSecret);
      const relay = this.#relays.get(String(req.params.relayId));
      if (!relay) return next();
      const parsed = renditionRequest.safeParse(req.body ?? {});
      if (!parsed.success) throw new Problem('invalid-request', parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
      res.json(await relay.upstream.pipeRendition(relay.pipe, parsed.data.codec));
    });
    this.router.post(resumePath(':relayId'), async (req, res, next) => {
      authorizeInternal(req, options.clusterSecret);
      const relay = this.#relays.get(String(req.params.relayId));
      if (!relay) return next();
      await resumePipe(relay.pipe);
      relay.upstream.resumed();
      res.status(204).end();
    });
  }

  /** Edges this node feeds `stream` to now. */
  relaysOf(stream: string): number {
    return this.#perStream.get(stream) ?? 0;
  }

  async #relay(req: Request, res: Response, next: NextFunction): Promise<void> {
    const { clusterSecret, maxRelaysPerStream, nodeId, rtc } = this.#options;
    authorizeInternal(req, clusterSecret);
    const parsed = relayRequest.safeParse(req.body);
    if (!parsed.success) throw new Problem('invalid-request', parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
    const { stream: name, edgeNodeId, treeKey, paused = false, position, publicUrl, makeRoom = false, ...peer } = parsed.data;
    const upstream = this.#options.upstream(name);
    if (!upstream) return next();
    // path[0] is the origin, which may be the asking node itself in `relaycast all`.
    if (upstream.path.slice(1).includes(edgeNodeId)) throw new Problem('relay-order', `${edgeNodeId} is upstream of ${nodeId} for ${name}`);
    if (treeKey !== undefined && treeKey <= upstream.treeKey) {
      throw new Problem('relay-order', `a relay with tree key ${treeKey} cannot attach below one with ${upstream.treeKey}`);
    }
    let demotion: Demotion<FedRelay> | undefined;
    if (maxRelaysPerStream !== undefined && this.relaysOf(name) >= maxRelaysPerStream) {
      // A relay that feeds others keeps its key, so no newcomer key can go above one it feeds.
      if (this.relaysOf(name) === maxRelaysPerStream && treeKey === undefined && makeRoom) demotion = await this.#roomFor(name, position, publicUrl);
      const count = this.relaysOf(name);
      if (!demotion && count >= maxRelaysPerStream) {
        this.#options.metrics.relayRefusals.inc({ reason: 'limit' });
        throw new Problem('relay-full', `${nodeId} feeds ${name} to ${count} edges, its most`);
      }
    }
    // Counted before anything else is awaited: edges re-attaching at the same moment (their parent
    // died) would otherwise all read the count below the limit, and all be fed.
    this.#perStream.set(name, this.relaysOf(name) + 1);
    let pipe: RelayPipe;
    let producers: RelayProducer[];
    try {
      // Two edges asking at the same moment both see the egress before either pipe: the capacity can
      // be passed by one stream's bitrate per request in flight, and the next heartbeat shows it.
      const [sending, bitrate] = await Promise.all([this.#options.egress.sending(), upstream.bitrate()]);
      if (sending + bitrate > this.#options.egress.capacity) {
        this.#options.metrics.relayRefusals.inc({ reason: 'egress' });
        throw new Problem('relay-full', `${nodeId} sends ${mbits(sending)} of its ${mbits(this.#options.egress.capacity)} egress capacity; ${name} needs ${mbits(bitrate)} more`);
      }
      ({ pipe, producers } = await upstream.openPipe(peer, rtc, paused));
    } catch (error) {
      this.#release(name);
      if (demotion) this.#demotionOver(name);
      throw error;
    }
    this.#relays.set(pipe.id, { upstream, pipe });
    this.#options.metrics.relays.inc({ direction: 'out' });
    const log = this.#options.logger.child({ stream: name, edge: edgeNodeId });
    log.info('relay opened');
    // The key the asking relay takes: set here, so that this node knows the keys of the relays it feeds.
    const key = treeKey ?? (demotion ? demotionKey(demotion.relay.treeKey) : childKey(upstream.treeKey));
    res.status(200).type('application/x-ndjson').set('Cache-Control', 'no-store');
    const line = (l: RelayLine) => `${JSON.stringify(l)}\n`;
    res.write(
      line({
        type: 'ready',
        relayId: pipe.id,
        ip: pipe.tuple.localAddress,
        port: pipe.tuple.localPort,
        srtpParameters: pipe.srtpParameters,
        producers,
        treeKey: upstream.treeKey,
        path: [...upstream.path],
        publisherSession: upstream.publisherSession,
        ...(treeKey === undefined ? { childTreeKey: key } : {}),
      }),
    );
    if (position && publicUrl) {
      const fed = this.#fed.get(name) ?? new Map<string, FedRelay>();
      this.#fed.set(name, fed);
      fed.set(pipe.id, { nodeId: edgeNodeId, ...position, treeKey: key, move: (to, reason) => res.write(line({ type: 'move', reason, to })) });
    }
    if (demotion && publicUrl) {
      const demoted = demotion.relay;
      this.#options.metrics.relayDemotions.inc();
      log.info({ demoted: demoted.nodeId, pathKm: Math.round(demotion.pathKm) }, 'made room: asked a relay to move below this one');
      demoted.move({ nodeId: edgeNodeId, url: publicUrl, pathKm: demotion.pathKm }, `${nodeId} feeds ${name} to its most edges; ${edgeNodeId} lies on the way`);
    }
    const ping = setInterval(() => res.write(line({ type: 'ping' })), RELAY_PING_MS);
    const unsubscribe = upstream.onRelease((release) => (release.type === 'move' ? res.write(line(release)) : res.end(line(release))));
    res.once('close', () => {
      // Also an edge letting its relay go after the linger: a report about a live node is checked and dropped.
      if (!res.writableEnded) this.#options.edgeLost?.(edgeNodeId, `relay connection from ${edgeNodeId} dropped`);
      clearInterval(ping);
      unsubscribe();
      pipe.close();
      this.#relays.delete(pipe.id);
      this.#options.metrics.relays.dec({ direction: 'out' });
      this.#release(name);
      const fed = this.#fed.get(name);
      fed?.delete(pipe.id);
      if (fed?.size === 0) this.#fed.delete(name);
      if (this.#demoting.get(name)?.nodeId === edgeNodeId) this.#demotionOver(name);
      log.info('relay closed');
    });
  }

  /**
   * At the limit for `stream`: the relay to move below the asking edge at `position`, if this node
   * is an origin that makes room (options.position), the edge said where it is and how to reach
   * it, no other relay of the stream is on its way down, and one would stay bounded below it.
   */
  async #roomFor(stream: string, position: { lat: number; lon: number } | undefined, publicUrl: string | undefined): Promise<Demotion<FedRelay> | undefined> {
    const origin = this.#options.position;
    const fed = this.#fed.get(stream);
    if (!origin || !position || !publicUrl || !fed || this.#demoting.has(stream)) return undefined;
    const depths = await this.#options.depthsBelow?.(stream).catch((error: unknown) => {
      this.#options.logger.warn({ err: error, stream }, 'could not read the relay tree: no room made');
      return null;
    });
    if (depths === null) return undefined;
    // Counted again after the await: another request may have taken the room, or a relay left.
    if (this.relaysOf(stream) !== this.#options.maxRelaysPerStream || this.#demoting.has(stream)) return undefined;
    const demotion = chooseDemotion(origin, position, [...fed.values()].map((r) => ({ ...r, depthBelow: depths?.get(r.nodeId) ?? 0 })));
    // Taken at once (before the caller's next await), so that no other request makes room meanwhile.
    if (demotion) this.#demoting.set(stream, { nodeId: demotion.relay.nodeId, timer: setTimeout(() => this.#demoting.delete(stream), DEMOTION_WAIT_MS).unref() });
    return demotion;
  }

  /** The relay asked to move below a newcomer for `stream` moved (its relay here closed), or never will: room may be made again. */
  #demotionOver(stream: string): void {
    clearTimeout(this.#demoting.get(stream)?.timer);
    this.#demoting.delete(stream);
  }

  #release(stream: string): void {
    const count = (this.#perStream.get(stream) ?? 1) - 1;
    if (count > 0) this.#perStream.set(stream, count);
    else this.#perStream.delete(stream);
  }
}

const mbits = (bitsPerSecond: number) => `${(bitsPerSecond / 1e6).toFixed(1)} Mbit/s`;

/** A producer to send through a pipe, with its simulcast layers' order and names when it has several. */
export interface PipeSource {
  producer: Producer;
  /** The producer's encodings smallest first (indexes into its encodings); default: as listed. */
  order?: number[];
}

/**
 * A PipeTransport on `router`, connected to the asking edge's, with a pipe consumer of each source,
 * `paused` until resumePipe: SRTP because relays may cross networks we do not own, RTX so that
 * lost packets are resent.
 */
export async function openPipe(router: MediaRouter, peer: PipePeer, rtc: RtcListen, sources: PipeSource[], paused: boolean): Promise<{ producers: RelayProducer[]; pipe: RelayPipe }> {
  const pipe = await router.createPipeTransport<RelayPipeData>({
    listenInfo: { protocol: 'udp', ip: rtc.listenIp, announcedAddress: rtc.announcedIp, portRange: { min: rtc.minPort, max: rtc.maxPort } },
    enableSrtp: true,
    enableRtx: true,
    appData: { consumers: [], paused },
  });
  try {
    // Consumers before the connection: a consumer asks for a key frame when its transport
    // connects (or at once on a connected one) unless it is paused by then.
    const producers: RelayProducer[] = [];
    for (const { producer, order } of sources) {
      const consumer = await consumePipe(pipe, producer);
      const encodings = consumer.rtpParameters.encodings ?? [];
      if (encodings.length < 2) {
        producers.push({ id: producer.id, kind: consumer.kind, rtpParameters: consumer.rtpParameters, paused: producer.paused });
        continue;
      }
      // Simulcast: the pipe's encodings (one SSRC each) listed lowest first, so that the edge's
      // consumers take them in the right order whatever order the publisher used.
      const layers = order ?? encodings.map((_, i) => i);
      const rids = layers.map((i) => producer.rtpParameters.encodings?.[i]?.rid ?? (producer.appData.rids as string[] | undefined)?.[i] ?? '');
      producers.push({ id: producer.id, kind: consumer.kind, rtpParameters: { ...consumer.rtpParameters, encodings: layers.map((i) => encodings[i]!) }, paused: producer.paused, rids });
    }
    await pipe.connect({ ip: peer.ip, port: peer.port, srtpParameters: peer.srtpParameters });
    return { producers, pipe };
  } catch (error) {
    pipe.close();
    throw error;
  }
}

/**
 * A consumer of `producer` on the pipe, paused while the pipe is (a PipeTransport makes its
 * consumers running: on a pipe not yet connected, pausing it at once keeps its key frame request).
 */
export async function consumePipe(pipe: RelayPipe, producer: Producer): Promise<Consumer> {
  const consumer = await pipe.consume({ producerId: producer.id });
  if (pipe.appData.paused) await consumer.pause();
  pipe.appData.consumers.push(consumer);
  consumer.observer.once('close', () => pipe.appData.consumers.splice(pipe.appData.consumers.indexOf(consumer), 1));
  // The pipe was resumed while this consumer was being made.
  if (consumer.paused && !pipe.appData.paused) await consumer.resume();
  return consumer;
}

/** Starts a paused pipe's consumers: each asks its producer for a key frame as it starts. */
export async function resumePipe(pipe: RelayPipe): Promise<void> {
  if (!pipe.appData.paused) return;
  pipe.appData.paused = false;
  await Promise.all(
    pipe.appData.consumers.map((consumer) =>
      consumer.resume().catch((error: unknown) => {
        if (!consumer.closed) throw error; // closed meanwhile: nothing to resume
      }),
    ),
  );
}
