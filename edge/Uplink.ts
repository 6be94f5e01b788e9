import { EventEmitter } from 'node:events';
import type { Consumer, DirectTransport, PipeTransport, Producer, Router } from 'mediasoup/types';
import { Problem, UnsupportedMediaError } from '../core/errors.ts';
import { internalFetch, RELAY_PATH, RELAY_PING_MS, renditionPath, resumePath } from '../core/internalApi.ts';
import type { Logger } from '../core/logger.ts';
import type { RenditionCodec } from '../media/codecs.ts';
import type { RelayLine, RelayOffer, RelayProducer, RelayRequest, RenditionRequest } from '../media/relayProtocol.ts';
import type { RtcListen } from '../media/WebRtcSession.ts';

/** A node to pull a stream from: its origin, or another edge that relays it (a parent). */
export interface UplinkTarget {
  nodeId: string;
  url: string;
  /** The media's path from the origin to this edge through it (km, edge/RelayTree.ts), when known. */
  pathKm?: number;
  /** It is the stream's origin (not a parent edge): its refusal says most (edge/Relay.ts). */
  origin?: boolean;
  /**
   * The origin, with no bounded parent after it in the edge's order: at its limit it may make room
   * for this edge (media/treePaths.ts chooseDemotion) rather than leave it only unbounded paths.
   */
  makeRoom?: boolean;
}

export interface UplinkEvents {
  /** An RTP packet of the `index`th producer (offer order, renditions after). */
  rtp: [index: number, packet: Buffer];
  /** The upstream stopped feeding while the stream goes on: `gone` when its connection dropped or went silent, not when it detached us. */
  lost: [reason: string, gone: boolean];
  /** The stream ended upstream. */
  ended: [reason: string];
  /** The upstream asks to be replaced (it drains; or, with `to`, the origin makes room below that node) and feeds on meanwhile. */
  move: [reason: string, to: UplinkTarget | undefined];
}

/**
 * How long an edge waits for an upstream to answer a relay request with its `ready` line. Setting
 * up a pipe takes milliseconds; an upstream slower than this is passed over for the next.
 */
const OPEN_TIMEOUT_MS = 5000;

/**
 * How long an edge waits for the origin to start a rendition: probing the publish and starting a
 * re-encoding ffmpeg take a second or two; longer, and the viewer is better told 502 to retry.
 */
const RENDITION_TIMEOUT_MS = 15_000;

/** Three missed pings and the upstream is taken for gone, even if TCP has not noticed. */
const SILENCE_MS = 3 * RELAY_PING_MS;

/**
 * One relay request to one upstream: a PipeTransport on the relay's router connected to the
 * upstream's and a pipe producer per producer it offers; once tapped, a consumer of each on a
 * DirectTransport that hands every packet to the Relay (edge/Relay.ts), which sends it on
 * through producers that outlive the uplink. Closing it ends the request.
 */
export class Uplink extends EventEmitter<UplinkEvents> {
  readonly target: UplinkTarget;
  readonly offer: RelayOffer;
  /** The pipe producers, in offer order, renditions after. */
  readonly producers: Producer[] = [];
  /** Once tapped (tap()): a consumer of each producer, whose packets come out as `rtp`. */
  readonly consumers: Consumer[] = [];
  readonly #router: Router;
  readonly #pipe: PipeTransport;
  #tap: DirectTransport | undefined;
  readonly #abort: AbortController;
  readonly #clusterSecret: string;
  readonly #logger: Logger;
  #silence: NodeJS.Timeout | undefined;
  /** Opened paused and not resumed yet (media/relayProtocol.ts RelayRequest.paused). */
  #paused: boolean;
  #closed = false;

  private constructor(router: Router, target: UplinkTarget, offer: RelayOffer, pipe: PipeTransport, paused: boolean, abort: AbortController, clusterSecret: string, logger: Logger) {
    super();
    this.#paused = paused;
    this.#router = router;
    this.target = target;
    this.offer = offer;
    this.#pipe = pipe;
    this.#abort = abort;
    this.#clusterSecret = clusterSecret;
    this.#logger = logger;
  }

  /**
   * Asks `target` for the stream. Throws a Problem: stream-not-live (404), relay-full and
   * relay-order (the upstream refused), bad-gateway (unreachable, or no answer in time).
   */
  static async open(
    router: Router,
    target: UplinkTarget,
    request: Omit<RelayRequest, 'ip' | 'port' | 'srtpParameters'>,
    rtc: RtcListen,
    clusterSecret: string,
    logger: Logger,
  ): Promise<Uplink> {
    const abort = new AbortController();
    const pipe = await router.createPipeTransport({
      listenInfo: { protocol: 'udp', ip: rtc.listenIp, announcedAddress: rtc.announcedIp, portRange: { min: rtc.minPort, max: rtc.maxPort } },
      enableSrtp: true,
      enableRtx: true,
    });
    try {
      const timer = setTimeout(() => abort.abort(new Error('timeout')), OPEN_TIMEOUT_MS);
      let response: globalThis.Response;
      let lines: AsyncGenerator<RelayLine>;
      let first: IteratorResult<RelayLine>;
      try {
        response = await internalFetch(target.url, RELAY_PATH, clusterSecret, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ ...request, ip: pipe.tuple.localAddress, port: pipe.tuple.localPort, srtpParameters: pipe.srtpParameters } satisfies RelayRequest),
          signal: abort.signal,
        });
        if (response.status === 404) throw new Problem('stream-not-live', `stream ${request.stream} is not live on ${target.nodeId}`);
        if (response.status === 409) throw new Problem('relay-order', `${target.nodeId} is below this relay`);
        if (response.status === 503) {
          // The upstream's problem says which room it lacks (relays of the stream, or egress).
          const refusal = (await response.json().catch(() => undefined)) as { detail?: unknown } | undefined;
          throw new Problem('relay-full', typeof refusal?.detail === 'string' ? refusal.detail : `${target.nodeId} feeds as many edges as it may`);
        }
        if (!response.ok || !response.body) throw new Problem('bad-gateway', `${target.nodeId} answered ${response.status}`);
        lines = readLines(response.body);
        first = await lines.next();
      } catch (error) {
        if (error instanceof Problem) throw error;
        throw new Problem('bad-gateway', `${target.nodeId} unreachable: ${(error as Error).message}`);
      } finally {
        clearTimeout(timer);
      }
      if (first.done || first.value.type !== 'ready') throw new Problem('bad-gateway', `${target.nodeId} closed the relay before it was ready`);
      const { type: _ready, ...offer } = first.value;
      const uplink = new Uplink(router, target, offer, pipe, request.paused ?? false, abort, clusterSecret, logger.child({ upstream: target.nodeId }));
      await pipe.connect({ ip: offer.ip, port: offer.port, srtpParameters: offer.srtpParameters });
      for (const p of offer.producers) await uplink.#add(p);
      void uplink.#follow(lines);
      return uplink;
    } catch (error) {
      abort.abort();
      pipe.close();
      throw error;
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Asks the upstream to add the stream's rendition in `codec` (core/internalApi.ts
   * renditionPath); returns its index. UnsupportedMediaError when the stream has none.
   */
  async rendition(codec: RenditionCodec): Promise<number> {
    let response: globalThis.Response;
    try {
      response = await internalFetch(this.target.url, renditionPath(this.offer.relayId), this.#clusterSecret, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ codec } satisfies RenditionRequest),
        signal: AbortSignal.any([this.#abort.signal, AbortSignal.timeout(RENDITION_TIMEOUT_MS)]),
      });
    } catch (error) {
      throw new Problem('bad-gateway', `${this.target.nodeId} unreachable: ${(error as Error).message}`);
    }
    if (response.status === 422) throw new UnsupportedMediaError(((await response.json().catch(() => ({}))) as { detail?: string }).detail ?? 'the origin cannot make a rendition');
    if (!response.ok) throw new Problem('bad-gateway', `${this.target.nodeId} answered ${response.status} to the rendition request`);
    const p = (await response.json()) as RelayProducer;
    if (this.#closed) throw new Problem('service-unavailable', 'the relay moved while the rendition started; try again', { headers: { 'Retry-After': '1' } });
    await this.#add(p);
    return this.producers.length - 1;
  }

  /**
   * Starts an uplink opened paused (resumePath): the upstream's consumers start and ask the
   * publisher for a key frame. An upstream that cannot resume it is taken for lost.
   */
  resume(): void {
    if (!this.#paused || this.#closed) return;
    this.#paused = false;
    const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(OPEN_TIMEOUT_MS)]);
    internalFetch(this.target.url, resumePath(this.offer.relayId), this.#clusterSecret, { method: 'POST', signal }).then(
      (response) => {
        // 404: the relay is gone upstream (its line says why), or the upstream is of a release that never pauses.
        if (!response.ok && response.status !== 404) this.#lose(`${this.target.nodeId} answered ${response.status} to the resume`, false);
      },
      (error: unknown) => this.#lose(`${this.target.nodeId} unreachable to resume: ${(error as Error).message}`),
    );
  }

  /** Asks the upstream for a key frame of every video producer. */
  requestKeyFrame(): void {
    for (const c of this.consumers) if (c.kind === 'video') void c.requestKeyFrame().catch(() => undefined);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#silence);
    this.#abort.abort();
    this.#pipe.close();
    this.#tap?.close();
  }

  /**
   * Hands every packet to the relay (`rtp`), through a consumer of each producer on a
   * DirectTransport: for a relay that must outlive this upstream. A relay fed by the origin uses
   * the pipe producers as they are, and spends no JavaScript per packet (edge/Relay.ts).
   */
  async tap(): Promise<void> {
    if (this.#tap) return;
    this.#tap = await this.#router.createDirectTransport();
    if (this.#closed) this.#tap.close();
    for (const producer of this.producers) await this.#consume(producer);
  }

  async #add(p: RelayProducer): Promise<void> {
    const producer: Producer = await this.#pipe.produce({ kind: p.kind, rtpParameters: p.rtpParameters, paused: p.paused });
    this.producers.push(producer);
    if (this.#tap) await this.#consume(producer);
  }

  async #consume(producer: Producer): Promise<void> {
    // pipe: every encoding (simulcast layer) as it comes; no RTX, as the tap never loses a packet.
    const consumer = await this.#tap!.consume({ producerId: producer.id, rtpCapabilities: this.#router.rtpCapabilities, pipe: true, enableRtx: false });
    const index = this.consumers.length;
    this.consumers.push(consumer);
    consumer.on('rtp', (packet) => this.emit('rtp', index, packet));
  }

  #lose(reason: string, gone = true): void {
    if (this.#closed) return;
    this.close();
    this.#logger.info({ reason }, 'upstream lost');
    this.emit('lost', reason, gone);
  }

  #armSilence(): void {
    clearTimeout(this.#silence);
    this.#silence = setTimeout(() => this.#lose(`${this.target.nodeId} silent`), SILENCE_MS);
  }

  async #follow(lines: AsyncGenerator<RelayLine>): Promise<void> {
    this.#armSilence();
    try {
      for await (const line of lines) {
        this.#armSilence();
        if (line.type === 'end') {
          if (this.#closed) return;
          this.close();
          this.emit('ended', line.reason);
          return;
        }
        if (line.type === 'detach') return this.#lose(`${this.target.nodeId} detached: ${line.reason}`, false);
        if (line.type === 'move') this.emit('move', line.reason, line.to && { nodeId: line.to.nodeId, url: line.to.url, pathKm: line.to.pathKm });
      }
      this.#lose(`${this.target.nodeId} closed the relay`, false);
    } catch (error) {
      this.#lose(`connection to ${this.target.nodeId} lost: ${(error as Error).message}`);
    }
  }
}

async function* readLines(body: ReadableStream<Uint8Array>): AsyncGenerator<RelayLine> {
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
