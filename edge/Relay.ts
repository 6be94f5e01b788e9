import { EventEmitter } from 'node:events';
import type { PipeTransport, Producer, Router, RouterRtpCodecCapability } from 'mediasoup/types';
import { Problem, UnsupportedMediaError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { MEDIA_CODECS } from '../media/codecs.ts';
import { producerBitrate } from '../media/producerBitrate.ts';
import type { RtcListen, WebRtcSession } from '../media/WebRtcSession.ts';
import type { WorkerPool } from '../media/WorkerPool.ts';
import { internalFetch, RELAY_PATH, RELAY_PING_MS, renditionPath } from '../core/internalApi.ts';
import type { RelayLine, RelayProducer, RelayRequest } from '../media/relayProtocol.ts';

/** A router that sends to viewers whose offers share one payload-type mapping, fed from the relay. */
export interface Fanout {
  router: Router;
  producers: Producer[];
}

export interface RelayEvents {
  closed: [reason: string];
}

export interface RelaySource {
  stream: string;
  /** The upstream node (the stream's origin) and the base URL of its internal API. */
  upstreamNodeId: string;
  upstreamUrl: string;
  /** Whether the stream was private when the relay opened: what the edge goes by while the database is unreachable. */
  private: boolean;
  clusterSecret: string;
  edgeNodeId: string;
}

/**
 * How long an edge waits for the origin to answer a relay request with its `ready` line. Setting
 * up a pipe takes milliseconds; a viewer waiting longer than this is better told 502 to retry.
 */
const RELAY_OPEN_TIMEOUT_MS = 10_000;

/**
 * How long an edge waits for the origin to start a rendition: probing the publish and starting a
 * re-encoding ffmpeg take a second or two; longer, and the viewer is better told 502 to retry.
 */
const RENDITION_TIMEOUT_MS = 15_000;

/** Three missed pings and the origin is taken for gone, even if TCP has not noticed. */
const RELAY_SILENCE_MS = 3 * RELAY_PING_MS;

/** A relay that closed under a request: the client is told to try again (a new relay) at once. */
const relayClosed = (detail: string) => new Problem('service-unavailable', detail, { headers: { 'Retry-After': '1' } });

/**
 * One stream pulled from its origin onto this edge, shared by all of the edge's viewers of it:
 * a router, a PipeTransport connected to the origin's, and a pipe producer per origin producer.
 * It lives as long as the relay request to the origin; it closes when the stream ends upstream,
 * the origin goes silent, or its last viewer has been gone for the linger time.
 */
export class Relay extends EventEmitter<RelayEvents> {
  readonly stream: string;
  readonly upstreamNodeId: string;
  readonly private: boolean;
  readonly router: Router;
  readonly producers: Producer[] = [];
  /** The publisher's rid of each video encoding (simulcast), lowest layer first; empty when it named none. */
  videoRids: string[] = [];
  readonly #abort: AbortController;
  readonly #workers: WorkerPool;
  /**
   * Viewer-facing routers by payload-type mapping. mediasoup sends with its router's payload types
   * while a WHEP viewer expects the ones it offered, and browsers differ (Chrome's Opus is 111,
   * Firefox's 109): one router per mapping, each fed by pipeToRouter from the relay's router. A
   * handful per stream in practice, and they spread viewers over the node's workers.
   */
  readonly #fanouts = new Map<string, Promise<Fanout>>();
  /** The viewers' sessions, each with the kinds of media it receives (audio, video). */
  readonly #viewers = new Map<WebRtcSession, ReadonlySet<string>>();
  readonly #lingerMs: number;
  readonly #logger: Logger;
  readonly #source: RelaySource;
  readonly #pipe: PipeTransport;
  /** The upstream's name for this relay (RelayOffer.relayId). */
  #relayId = '';
  /** The upstream's answer to this relay's rendition request, asked once (rendition()). */
  #rendition: Promise<void> | undefined;
  #linger: NodeJS.Timeout | undefined;
  #silence: NodeJS.Timeout | undefined;
  #closed = false;
  /** Viewers being set up (see hold()). */
  #holds = 0;

  private constructor(source: RelaySource, router: Router, pipe: PipeTransport, abort: AbortController, workers: WorkerPool, lingerMs: number, logger: Logger) {
    super();
    this.#source = source;
    this.#pipe = pipe;
    this.#workers = workers;
    this.stream = source.stream;
    this.upstreamNodeId = source.upstreamNodeId;
    this.private = source.private;
    this.router = router;
    this.#abort = abort;
    this.#lingerMs = lingerMs;
    this.#logger = logger;
  }

  /** Pulls `source.stream` from its origin. Throws a Problem (stream-not-live, bad-gateway) when it cannot. */
  static async open(source: RelaySource, workers: WorkerPool, rtc: RtcListen, lingerMs: number, logger: Logger): Promise<Relay> {
    const log = logger.child({ stream: source.stream, upstream: source.upstreamNodeId });
    const router = await workers.next().createRouter({ mediaCodecs: MEDIA_CODECS, appData: { stream: source.stream } });
    const abort = new AbortController();
    let relay: Relay | undefined;
    try {
      const pipe = await router.createPipeTransport({
        listenInfo: { protocol: 'udp', ip: rtc.listenIp, announcedAddress: rtc.announcedIp, portRange: { min: rtc.minPort, max: rtc.maxPort } },
        enableSrtp: true,
        enableRtx: true,
      });
      relay = new Relay(source, router, pipe, abort, workers, lingerMs, log);
      const openTimer = setTimeout(() => abort.abort(new Error('timeout')), RELAY_OPEN_TIMEOUT_MS);
      let response: globalThis.Response;
      try {
        response = await internalFetch(source.upstreamUrl, RELAY_PATH, source.clusterSecret, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            stream: source.stream,
            edgeNodeId: source.edgeNodeId,
            ip: pipe.tuple.localAddress,
            port: pipe.tuple.localPort,
            srtpParameters: pipe.srtpParameters,
          } satisfies RelayRequest),
          signal: abort.signal,
        });
      } catch (error) {
        throw new Problem('bad-gateway', `origin ${source.upstreamNodeId} unreachable: ${(error as Error).message}`);
      } finally {
        clearTimeout(openTimer);
      }
      if (response.status === 404) throw new Problem('stream-not-live', `stream ${source.stream} is not live on its origin`);
      if (!response.ok || !response.body) throw new Problem('bad-gateway', `origin ${source.upstreamNodeId} answered ${response.status}`);

      const lines = relay.#lines(response.body);
      const first = await lines.next();
      if (first.done || first.value.type !== 'ready') throw new Problem('bad-gateway', 'origin closed the relay before it was ready');
      const offer = first.value;
      relay.#relayId = offer.relayId;
      await pipe.connect({ ip: offer.ip, port: offer.port, srtpParameters: offer.srtpParameters });
      for (const p of offer.producers) {
        relay.producers.push(await pipe.produce({ kind: p.kind, rtpParameters: p.rtpParameters, paused: p.paused }));
        if (p.kind === 'video' && p.rids) relay.videoRids = p.rids;
      }
      void relay.#follow(lines);
      relay.#startLinger();
      // The router closes by itself when its media worker dies: the relay goes with it (its
      // viewers' sessions end, the origin's pipe is released), and the next viewer opens a new one.
      router.observer.once('close', () => relay!.close('media router closed (worker died?)'));
      log.info({ producers: offer.producers.length }, 'relay up');
      return relay;
    } catch (error) {
      abort.abort();
      router.close();
      relay?.close('setup failed');
      throw error;
    }
  }

  get viewers(): number {
    return this.#viewers.size;
  }

  /** The viewers' sessions (a copy). */
  get sessions(): WebRtcSession[] {
    return [...this.#viewers.keys()];
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Asks the upstream to add the stream's Constrained Baseline rendition to this relay (see
   * core/internalApi.ts renditionPath), for a viewer that decodes nothing the stream is sent as.
   * Viewers asking at once share one request; a refusal (UnsupportedMediaError: the publisher
   * cannot make one) stands for the relay's life, so later viewers do not ask again.
   */
  rendition(): Promise<void> {
    this.#rendition ??= this.#requestRendition().catch((error: unknown) => {
      if (!(error instanceof UnsupportedMediaError)) this.#rendition = undefined;
      throw error;
    });
    return this.#rendition;
  }

  async #requestRendition(): Promise<void> {
    const { upstreamUrl, upstreamNodeId, clusterSecret } = this.#source;
    let response: globalThis.Response;
    try {
      response = await internalFetch(upstreamUrl, renditionPath(this.#relayId), clusterSecret, {
        method: 'POST',
        signal: AbortSignal.any([this.#abort.signal, AbortSignal.timeout(RENDITION_TIMEOUT_MS)]),
      });
    } catch (error) {
      throw new Problem('bad-gateway', `origin ${upstreamNodeId} unreachable: ${(error as Error).message}`);
    }
    if (response.status === 422) throw new UnsupportedMediaError(((await response.json().catch(() => ({}))) as { detail?: string }).detail ?? 'the origin cannot make a rendition');
    if (!response.ok) throw new Problem('bad-gateway', `origin ${upstreamNodeId} answered ${response.status} to the rendition request`);
    const p = (await response.json()) as RelayProducer;
    if (this.#closed) return;
    this.producers.push(await this.#pipe.produce({ kind: p.kind, rtpParameters: p.rtpParameters, paused: p.paused }));
    this.#logger.info({ codec: p.rtpParameters.codecs[0]?.mimeType, profileLevelId: p.rtpParameters.codecs[0]?.parameters?.['profile-level-id'] }, 'rendition added');
  }

  /**
   * The router for viewers that receive `codecs` (their own payload types, see
   * sdp.receivableCodecs), with this relay's producers piped into it. Producers whose codec the
   * viewer cannot take are left out.
   */
  async fanoutFor(codecs: RouterRtpCodecCapability[]): Promise<Fanout> {
    if (this.#closed) throw relayClosed(`the relay of ${this.stream} just closed; try again`);
    const key = JSON.stringify(codecs.map((c) => [c.mimeType, c.preferredPayloadType, c.parameters]));
    let fanout = this.#fanouts.get(key);
    if (!fanout) {
      fanout = this.#createFanout(key, codecs);
      this.#fanouts.set(key, fanout);
      fanout.catch(() => this.#fanouts.delete(key));
    }
    return fanout;
  }

  async #createFanout(key: string, codecs: RouterRtpCodecCapability[]): Promise<Fanout> {
    const router = await this.#workers
      .next()
      .createRouter({ mediaCodecs: codecs, appData: { stream: this.stream } })
      .catch((error: unknown) => {
        // The codecs are the viewer's own (its payload types): one mediasoup refuses is the offer's fault.
        throw new UnsupportedMediaError(`the offer's codecs cannot be sent: ${(error as Error).message}`);
      });
    const producers: Producer[] = [];
    for (const producer of this.producers) {
      if (!router.rtpCapabilities.codecs?.some((c) => c.kind === producer.kind)) continue;
      try {
        const { pipeProducer } = await this.router.pipeToRouter({ producerId: producer.id, router, keepId: false });
        if (pipeProducer) producers.push(pipeProducer);
      } catch {
        // The viewer offered no codec this producer's fits (e.g. only H.264 for a VP8 stream).
      }
    }
    if (this.#closed) router.close();
    // A fanout on a worker that died is forgotten; its viewers' sessions close with their transports.
    router.observer.once('close', () => {
      if (!this.#closed) this.#fanouts.delete(key);
    });
    return { router, producers };
  }

  /**
   * Holds the relay open while a viewer's session is being set up (the linger would otherwise
   * close it under a viewer who arrives just as the last one left; found by fuzzing). Returns the
   * release, to call once the viewer is added or has failed.
   */
  hold(): () => void {
    if (this.#closed) throw relayClosed(`the relay of ${this.stream} just closed; try again`);
    this.#holds++;
    clearTimeout(this.#linger);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#holds--;
      this.#lingerIfIdle();
    };
  }

  /** Adds a viewer's session, which receives these kinds of media; the relay stays while it is open. */
  addViewer(session: WebRtcSession, kinds: ReadonlySet<string>): void {
    if (this.#closed) throw relayClosed(`the relay of ${this.stream} just closed; try again`);
    this.#viewers.set(session, kinds);
    clearTimeout(this.#linger);
    session.once('closed', () => {
      this.#viewers.delete(session);
      this.#lingerIfIdle();
    });
  }

  #lingerIfIdle(): void {
    if (this.#viewers.size === 0 && this.#holds === 0 && !this.#closed) this.#startLinger();
  }

  /** Bits per second sent to this relay's viewers: each producer's bitrate times the viewers of its kind. */
  async bitrateOut(): Promise<number> {
    let total = 0;
    for (const producer of this.producers) {
      let receivers = 0;
      for (const kinds of this.#viewers.values()) if (kinds.has(producer.kind)) receivers++;
      if (receivers > 0) total += (await producerBitrate(producer)) * receivers;
    }
    return total;
  }

  close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#linger);
    clearTimeout(this.#silence);
    this.#abort.abort();
    for (const viewer of this.#viewers.keys()) viewer.close(`relay closed: ${reason}`);
    for (const fanout of this.#fanouts.values()) void fanout.then((f) => f.router.close(), () => undefined);
    this.router.close();
    this.#logger.info({ reason }, 'relay closed');
    this.emit('closed', reason);
  }

  #startLinger(): void {
    clearTimeout(this.#linger);
    this.#linger = setTimeout(() => this.close('no viewers'), this.#lingerMs);
  }

  #armSilence(): void {
    clearTimeout(this.#silence);
    this.#silence = setTimeout(() => this.close('origin silent'), RELAY_SILENCE_MS);
  }

  async #follow(lines: AsyncGenerator<RelayLine>): Promise<void> {
    this.#armSilence();
    try {
      for await (const line of lines) {
        this.#armSilence();
        if (line.type === 'end') {
          this.close(`stream ended upstream: ${line.reason}`);
          return;
        }
      }
      this.close('origin closed the relay');
    } catch (error) {
      this.close(`relay connection lost: ${(error as Error).message}`);
    }
  }

  async *#lines(body: ReadableStream<Uint8Array>): AsyncGenerator<RelayLine> {
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (line) yield JSON.parse(line) as RelayLine;
      }
    }
  }
}
