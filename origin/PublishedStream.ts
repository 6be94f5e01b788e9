import { EventEmitter } from 'node:events';
import type { Producer, Router } from 'mediasoup/types';
import { InvalidSdpError, UnsupportedMediaError } from '../core/errors.ts';
import { MEDIA_CODECS, SUPPORTED_CODECS, type RenditionCodec } from '../media/codecs.ts';
import { LayerSizes } from '../media/layerOrder.ts';
import { producersBitrate } from '../media/producerBitrate.ts';
import type { Logger } from '../core/logger.ts';
import type { RelayProducer } from '../media/relayProtocol.ts';
import { consumePipe, openPipe, type PipePeer, type RelayPipe } from '../media/RelayServer.ts';
import { buildAnswer, isSupported, producerParameters, type AcceptedSection, type Offer } from '../media/sdp.ts';
import { WebRtcSession, type RtcListen } from '../media/WebRtcSession.ts';
import type { WorkerPool } from '../media/WorkerPool.ts';
import { ProducerRendition } from './ProducerRendition.ts';
import { ProducerPackagerSource } from './ProducerPackagerSource.ts';
import type { PackagerSource } from '../media/hls/HlsPackager.ts';

export interface PublishedStreamEvents {
  ended: [reason: string];
}

/** Where a stream's media comes from: a WHIP client's WebRTC session, or an RTMP bridge. */
export interface Publisher {
  /** Unique per publish; recorded in the placement row so that only this publish can end it. */
  readonly id: string;
  readonly protocol: 'whip' | 'rtmp';
  once(event: 'closed', listener: (reason: string) => void): unknown;
  close(reason: string): void;
  /**
   * Starts a version of the video in `codec` (see RtmpBridge.rendition), undefined when the stream
   * is sent as that already. A publisher without it (WHIP) gets one made from its video producer
   * (origin/ProducerRendition.ts).
   */
  rendition?(codec: RenditionCodec): Promise<Rendition | undefined>;
  /**
   * What the HLS packagers read, one per variant, best first (see RtmpBridge.packagerSources). A
   * publisher without it (WHIP) is packaged from its producers (origin/ProducerPackagerSource.ts).
   */
  packagerSources?(): PackagerSource[];
}

/** A second version of a stream's video, made on the origin for the viewers that need it. */
export interface Rendition {
  readonly producers: Producer[];
  readonly closed: boolean;
  close(reason: string): void;
}

/** A rendition started once for the relays that ask, and how many carry it. */
interface RenditionEntry {
  starting: Promise<Rendition | undefined>;
  relays: number;
}

/**
 * After a key frame request, how long further requests wait before reaching the publisher. Every
 * edge and viewer that joins asks for a key frame; a publisher asked dozens of times a second
 * would send nothing but key frames. Above 300 ms because libwebrtc publishers (Chrome, the Node client here)
 * ignore a request that comes within 300 ms of their last key frame, and mediasoup only asks
 * again a second later. Measured with the benchmark's time-to-first-frame figure (bench/sections/ttff.ts), median time to first frame on a warm edge:
 * 1000 ms → ~800 ms; 200 ms → ~110 ms but ~1.2 s on a cold edge (the ignored request); 350 ms →
 * ~180 ms warm (2026-12-07). A cold edge's relay asks for no key frame before its first viewer is
 * connected (media/relayProtocol.ts RelayRequest.paused): a request spent earlier held the
 * viewer's own for this delay (cold edge 482 ms before that change).
 */
const KEY_FRAME_REQUEST_DELAY_MS = 350;

/**
 * A stream live on this origin: its router, its publisher and producers, and the pipe transports
 * that feed it to edges. Ending it (publisher gone, kicked, node shutting down) closes all of them.
 */
export class PublishedStream extends EventEmitter<PublishedStreamEvents> {
  readonly name: string;
  readonly router: Router;
  readonly publisher: Publisher;
  readonly producers: Producer[] = [];
  readonly #pipes = new Set<RelayPipe>();
  /** Each simulcast producer's layer order, found from its pictures' sizes (media/layerOrder.ts). */
  readonly #layerSizes = new Map<string, LayerSizes>();
  /** The renditions by codec, while a relay carries them (pipeRendition). */
  readonly #renditions = new Map<RenditionCodec, RenditionEntry>();
  readonly #logger: Logger;
  #ended = false;

  constructor(name: string, router: Router, publisher: Publisher, logger: Logger) {
    super();
    this.name = name;
    this.#logger = logger.child({ stream: name });
    this.router = router;
    this.publisher = publisher;
    publisher.once('closed', (reason) => this.end(`publisher: ${reason}`));
    // The router closes by itself when its media worker dies: the publish ends cleanly (placement
    // released, relays ended) and the publisher may publish again, on a new router.
    router.observer.once('close', () => this.end('media router closed (worker died?)'));
  }

  /**
   * Takes a WHIP offer: one audio and one video section at most, each with a codec the router
   * takes. Returns the stream and the SDP answer; throws UnsupportedMediaError when nothing fits.
   */
  static async publishWebRtc(
    workers: WorkerPool,
    name: string,
    offer: Offer,
    rtc: RtcListen,
    logger: Logger,
  ): Promise<{ stream: PublishedStream; session: WebRtcSession; answer: string }> {
    const router = await workers.next().createRouter({ mediaCodecs: MEDIA_CODECS, appData: { stream: name } });
    let session: WebRtcSession | undefined;
    try {
      const accepted = new Map<string, AcceptedSection>();
      const kinds = new Set<string>();
      for (const section of offer.sections) {
        if (!isSupported(section) || kinds.has(section.kind)) continue;
        if (section.direction !== 'sendonly' && section.direction !== 'sendrecv') continue;
        const rtpParameters = producerParameters(section, router.rtpCapabilities);
        if (!rtpParameters) continue;
        kinds.add(section.kind);
        accepted.set(section.mid, { direction: 'recvonly', rtpParameters });
      }
      if (accepted.size === 0) {
        const offered = [...new Set(offer.sections.flatMap((s) => s.media.rtp?.map((r) => `${s.kind}/${r.codec}`) ?? []))];
        throw new UnsupportedMediaError(
          `nothing in the offer can be published: it sends ${offered.join(', ') || 'no codecs'}; supported are ${SUPPORTED_CODECS}`,
        );
      }
      session = await WebRtcSession.create(router, name, rtc);
      const stream = new PublishedStream(name, router, session, logger);
      await session.connect(offer);
      for (const [mid, { rtpParameters }] of accepted) {
        const kind = offer.sections.find((s) => s.mid === mid)!.kind as 'audio' | 'video';
        const producer = await session.transport
          .produce({
            kind,
            rtpParameters,
            keyFrameRequestDelay: kind === 'video' ? KEY_FRAME_REQUEST_DELAY_MS : undefined,
            appData: { stream: name },
          })
          // mediasoup checks RTP parameters further than parseOffer can: what it refuses is the offer's fault.
          .catch((error: unknown) => {
            throw error instanceof TypeError ? new InvalidSdpError(`media section ${mid}: ${error.message}`) : error;
          });
        stream.producers.push(producer);
        // Simulcast: learn the layers' order from the first frames on, before the first relay asks.
        if ((rtpParameters.encodings?.length ?? 0) > 1) void stream.#layerOrder(producer);
      }
      const answer = buildAnswer(offer, session.local, accepted, String(Date.now()));
      return { stream, session, answer };
    } catch (error) {
      session?.close('setup failed');
      router.close();
      throw error;
    }
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** The codecs published, for the placement row: { audio: 'opus', video: 'H264' }. */
  get codecs(): Record<string, string> {
    return Object.fromEntries(this.producers.map((p) => [p.kind, p.rtpParameters.codecs[0]!.mimeType.split('/')[1]!]));
  }

  /**
   * The producer's layers smallest first, as far as known (until then, as the publisher listed
   * them). A producer made with its layers in order (an RTMP ladder: appData.layersInOrder) is
   * taken as it is.
   */
  #layerOrder(producer: Producer): Promise<number[]> {
    if (producer.appData.layersInOrder === true) return Promise.resolve((producer.rtpParameters.encodings ?? []).map((_, i) => i));
    let sizes = this.#layerSizes.get(producer.id);
    if (!sizes) {
      sizes = new LayerSizes(this.router, producer);
      this.#layerSizes.set(producer.id, sizes);
    }
    return sizes.order();
  }

  /** Pipes the stream to an edge (media/RelayServer.ts): every producer, simulcast layers smallest first, `paused` until the edge resumes it. */
  async openPipe(peer: PipePeer, rtc: RtcListen, paused: boolean): Promise<{ producers: RelayProducer[]; pipe: RelayPipe }> {
    if (this.#ended) throw new Error(`stream ${this.name} has ended`);
    const sources = [];
    for (const producer of this.producers) {
      sources.push({ producer, order: (producer.rtpParameters.encodings?.length ?? 0) > 1 ? await this.#layerOrder(producer) : undefined });
    }
    const opened = await openPipe(this.router, peer, rtc, sources, paused);
    this.#pipes.add(opened.pipe);
    opened.pipe.observer.once('close', () => this.#pipes.delete(opened.pipe));
    return opened;
  }

  /** Bits per second this stream sends to edges: its producers' bitrate times its relays (each pipe carries every producer). */
  async bitrateOut(): Promise<number> {
    if (this.#pipes.size === 0) return 0;
    return (await producersBitrate(this.producers)) * this.#pipes.size;
  }

  /**
   * Adds the stream's rendition in `codec` to a relay's pipe, for an edge whose viewer decodes
   * nothing the stream is sent as. The first relay that asks starts it; every relay after shares
   * it; it stops when the last relay carrying it closes. Throws UnsupportedMediaError when the
   * stream is sent in that codec already, or none can be made of it.
   */
  async pipeRendition(pipe: RelayPipe, codec: RenditionCodec): Promise<RelayProducer> {
    // Twice at most: a rendition that stopped (its last relay gone) while this one waited is started again.
    for (let attempt = 0; attempt < 2; attempt++) {
      if (this.#ended || pipe.closed) throw new Error(`stream ${this.name} or its relay has ended`);
      const entry = this.#renditions.get(codec) ?? this.#newRendition(codec);
      const rendition = await entry.starting;
      if (!rendition) throw new UnsupportedMediaError(`stream ${this.name} is sent as ${codec.toUpperCase()} already`);
      if (rendition.closed) {
        this.#forgetRendition(codec, entry);
        continue;
      }
      const producer = rendition.producers[0]!;
      const consumer = await consumePipe(pipe, producer);
      entry.relays++;
      consumer.observer.once('close', () => {
        if (--entry.relays > 0) return;
        rendition.close('no relay carries it');
        this.#forgetRendition(codec, entry);
      });
      return { id: producer.id, kind: consumer.kind, rtpParameters: consumer.rtpParameters, paused: producer.paused };
    }
    throw new Error(`the ${codec} rendition of ${this.name} stopped while starting`);
  }

  #newRendition(codec: RenditionCodec): RenditionEntry {
    const entry = { starting: this.#startRendition(codec), relays: 0 };
    this.#renditions.set(codec, entry);
    // None to share when it failed or the stream is sent in that codec already: the next relay asks afresh.
    entry.starting.then(
      (rendition) => rendition || this.#forgetRendition(codec, entry),
      () => this.#forgetRendition(codec, entry),
    );
    return entry;
  }

  #forgetRendition(codec: RenditionCodec, entry: RenditionEntry): void {
    if (this.#renditions.get(codec) === entry) this.#renditions.delete(codec);
  }

  /** The publisher's own rendition (RTMP: from its input), or one made from the video producer (WHIP). */
  async #startRendition(codec: RenditionCodec): Promise<Rendition | undefined> {
    if (this.publisher.rendition) return this.publisher.rendition(codec);
    const video = this.producers.find((p) => p.kind === 'video');
    if (!video) throw new UnsupportedMediaError(`stream ${this.name} has no video`);
    // It ends with the publish: its source consumer closes with the router.
    return ProducerRendition.start({ router: this.router, video, codec, logger: this.#logger });
  }

  /**
   * What the stream's HLS packagers read, one per variant, best first: the publisher's own
   * (RTMP: the publish, then its ladder's smaller rungs), or its producers' RTP (WHIP: one
   * variant, a simulcast publish's top layer; see RtmpBridge.packagerSources for why not a
   * variant per layer).
   */
  async packagerSources(): Promise<Array<() => Promise<PackagerSource>>> {
    if (this.#ended) throw new Error(`stream ${this.name} has ended`);
    if (this.publisher.packagerSources) return this.publisher.packagerSources().map((source) => async () => source);
    // It ends with the publish: its consumers close with the router.
    return [() => ProducerPackagerSource.create(this.router, this.producers, this.#logger)];
  }

  end(reason: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.publisher.close(reason);
    for (const pipe of this.#pipes) pipe.close();
    this.router.close();
    this.emit('ended', reason);
  }
}
