import { EventEmitter } from 'node:events';
import type { DirectTransport, Producer, Router, RouterRtpCodecCapability } from 'mediasoup/types';
import { Problem, UnsupportedMediaError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { MEDIA_CODECS, type RenditionCodec } from '../media/codecs.ts';
import { producerBitrate, producersBitrate } from '../media/producerBitrate.ts';
import { consumePipe, openPipe, type RelayRelease, type RelayUpstream } from '../media/RelayServer.ts';
import type { RtcListen, WebRtcSession } from '../media/WebRtcSession.ts';
import type { WorkerPool } from '../media/WorkerPool.ts';
import { RelayFeed, type UplinkRoutes } from './RelayFeed.ts';
import { childKey } from '../media/treePaths.ts';
import { UPSTREAMS_PER_ROUND } from './RelayTree.ts';
import { Uplink, type UplinkTarget } from './Uplink.ts';

/** A router that sends to viewers whose offers share one payload-type mapping, fed from the relay. */
export interface Fanout {
  router: Router;
  producers: Producer[];
}

export interface RelayEvents {
  closed: [reason: string];
  /** The relay pulls from another upstream now (its parent died or drained); its viewers stayed. */
  attached: [upstream: string];
}

export interface RelaySource {
  stream: string;
  /** Whether the stream was private when the relay opened: what the edge goes by while the database is unreachable. */
  private: boolean;
  clusterSecret: string;
  edgeNodeId: string;
  /**
   * Where to pull the stream from, best first (edge/RelayTree.ts): `lost` is the upstream just
   * lost; `treeKey` is set when this relay feeds other edges. Throws stream-not-live when the
   * stream is not live.
   */
  upstreams: (request: { lost?: string; treeKey?: number }) => Promise<UplinkTarget[]>;
  /** An upstream did not answer, or its connection dropped: it may be gone (the registry checks). */
  unreachable: (nodeId: string, reason: string) => void;
  /**
   * Set in a tiered cluster (the edge has --origin-max-relays): where this edge is and the URL
   * other nodes reach it at, told to upstreams (media/relayProtocol.ts RelayRequest.position); a
   * relay fed by the origin is then movable (edge/RelayFeed.ts), as the origin may ask it to move.
   */
  tiered?: { position: { lat: number; lon: number }; publicUrl: string };
}

/**
 * How long a relay whose upstream went away keeps looking for another before it gives up and
 * ends its viewers' sessions (they rejoin through the balancer). A parent found takes a few
 * round trips; 2.5 s keeps a viewer's picture frozen for less than the player's stall watch
 * would take to start over anyway.
 */
const REATTACH_WINDOW_MS = 2500;

/** Pause between rounds of asking upstreams (another relay may be re-attaching at that moment). */
const REATTACH_RETRY_MS = 200;

/**
 * A draining parent asks its children to move and feeds them until they do or it shuts down
 * (--drain-timeout-ms, 20 s by default). A child with nowhere else to go (the origin full, no
 * other parent) asks again every second for that long, then waits for the parent to let go.
 */
const MOVE_RETRY_MS = 1000;
const MOVE_ROUNDS = 30;

/** RTCP payload-specific feedback (PLI, FIR): a viewer asks for a key frame. */
const RTCP_PSFB = 206;

/** A relay that closed under a request: the client is told to try again (a new relay) at once. */
const relayClosed = (detail: string) => new Problem('service-unavailable', detail, { headers: { 'Retry-After': '1' } });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Why no upstream took the relay: each one's refusal (the origin's too, if asked), and whether one carried another publish. */
interface AttachFailure {
  failures: Problem[];
  originFailure?: Problem;
  republished: boolean;
}

/**
 * One stream on this edge, shared by all of the edge's viewers of it and by the edges it feeds
 * (relay tiers). Its producers and what feeds them are a RelayFeed (edge/RelayFeed.ts): fed by a
 * parent edge, they outlive any one upstream, so when that parent dies or drains the relay
 * attaches to another (or the origin) and asks for a key frame, and viewers and child edges keep
 * their sessions. That forwarding costs the edge's process about 3 % of a core per stream
 * (`bench --only tiers`, 600 kbit/s), which is why relays fed by the origin go without it. A relay
 * closes when the stream ends upstream, no upstream takes it within REATTACH_WINDOW_MS, or its
 * last viewer and child edge have been gone for the linger time.
 */
export class Relay extends EventEmitter<RelayEvents> {
  readonly stream: string;
  readonly private: boolean;
  readonly router: Router;
  /** The node it pulls from now; kept while it looks for another. */
  upstreamNodeId = '';
  /** Its place in the stream's tree (edge/RelayTree.ts). */
  treeKey = 0;
  /** The nodes the media comes through, origin first, this edge last. */
  path: string[] = [];
  /** That path's length (great-circle hops summed, km), as the upstream's order worked it out; undefined when unknown. */
  pathKm: number | undefined;
  readonly #feed: RelayFeed;
  readonly #workers: WorkerPool;
  readonly #rtc: RtcListen;
  /**
   * Viewer-facing routers by payload-type mapping. mediasoup sends with its router's payload types
   * while a WHEP viewer expects the ones it offered, and browsers differ (Chrome's Opus is 111,
   * Firefox's 109): one router per mapping, each fed by pipeToRouter from the relay's router. A
   * handful per stream in practice, and they spread viewers over the node's workers.
   */
  readonly #fanouts = new Map<string, Promise<Fanout>>();
  /** The viewers' sessions, each with the kinds of media it receives (audio, video). */
  readonly #viewers = new Map<WebRtcSession, ReadonlySet<string>>();
  /** Pipes to the edges this relay feeds. */
  readonly #children = new Set<{ close(): void }>();
  readonly #releaseListeners = new Set<(release: RelayRelease) => void>();
  readonly #lingerMs: number;
  readonly #logger: Logger;
  readonly #source: RelaySource;
  #uplink: Uplink | undefined;
  /** Uplinks taken so far: a later one is asked for a key frame at once. */
  #uplinks = 0;
  /**
   * A viewer has connected here, or a child edge has resumed its pipe: media is wanted, and every
   * uplink runs. Until then an uplink is opened paused (media/relayProtocol.ts RelayRequest.paused),
   * so that the key frame the upstream asks for reaches a viewer who can take it.
   */
  #wanted = false;
  /** A move to another upstream is under way (#move). */
  #moving = false;
  /** The upstream change under way, if any (#oneAtATime). */
  #changing: Promise<void> = Promise.resolve();
  /** Renditions asked for, by codec (see rendition()). */
  readonly #renditions = new Map<RenditionCodec, Promise<void>>();
  #linger: NodeJS.Timeout | undefined;
  #closed = false;
  /** Viewers being set up (see hold()). */
  #holds = 0;

  private constructor(source: RelaySource, router: Router, input: DirectTransport, workers: WorkerPool, rtc: RtcListen, lingerMs: number, logger: Logger) {
    super();
    this.#source = source;
    this.#feed = new RelayFeed(input, source.tiered !== undefined);
    this.#workers = workers;
    this.#rtc = rtc;
    this.stream = source.stream;
    this.private = source.private;
    this.router = router;
    this.#lingerMs = lingerMs;
    this.#logger = logger;
  }

  /** Pulls `source.stream` from the first upstream that takes it. Throws a Problem (stream-not-live, bad-gateway) when none does. */
  static async open(source: RelaySource, workers: WorkerPool, rtc: RtcListen, lingerMs: number, logger: Logger): Promise<Relay> {
    const log = logger.child({ stream: source.stream });
    const router = await workers.next().createRouter({ mediaCodecs: MEDIA_CODECS, appData: { stream: source.stream } });
    let relay: Relay | undefined;
    try {
      const input = await router.createDirectTransport();
      relay = new Relay(source, router, input, workers, rtc, lingerMs, log);
      const failed = await relay.#attach(await source.upstreams({}));
      if (failed) {
        // The origin's answer says most (it may be asked after parents, edge/RelayTree.ts): not
        // live there (404), or unreachable (502). When it is full and no parent took the relay
        // either (one between upstreams), the viewer retries.
        const first = failed.originFailure ?? failed.failures[0];
        if (first && first.problem !== 'relay-full') throw first;
        throw new Problem('service-unavailable', `no upstream took the relay of ${source.stream}: ${failed.failures.map((f) => f.message).join('; ')}`, {
          headers: { 'Retry-After': '1' },
        });
      }
      // A viewer's key frame request reaches the relay's producers as RTCP out of the input: pass it up.
      input.on('rtcp', (packet) => {
        if (packet[1] === RTCP_PSFB) relay!.#uplink?.requestKeyFrame();
      });
      relay.#startLinger();
      // The router closes by itself when its media worker dies: the relay goes with it (its
      // viewers' sessions end, the upstream's pipe is released), and the next viewer opens a new one.
      router.observer.once('close', () => relay!.close('media router closed (worker died?)'));
      log.info({ producers: relay.producers.length, upstream: relay.upstreamNodeId, treeKey: relay.treeKey }, 'relay up');
      return relay;
    } catch (error) {
      relay?.close('setup failed');
      router.close();
      throw error;
    }
  }

  /** The node feeding this relay now (origin or parent edge), if attached: an edge's HLS requests for the stream go there too. */
  get upstreamTarget(): UplinkTarget | undefined {
    return this.#closed ? undefined : this.#uplink?.target;
  }

  get viewers(): number {
    return this.#viewers.size;
  }

  /** The stream's producers on the relay's router (edge/RelayFeed.ts). */
  get producers(): Producer[] {
    return this.#feed.producers;
  }

  /** The publisher's rid of each video encoding (simulcast), lowest layer first; empty when it named none. */
  get videoRids(): string[] {
    return this.#feed.videoRids;
  }

  /** Edges between this relay and the origin (0: fed by the origin). */
  get tier(): number {
    return Math.max(0, this.path.length - 2);
  }

  /** Edges this relay feeds. */
  get children(): number {
    return this.#children.size;
  }

  /** The viewers' sessions (a copy). */
  get sessions(): WebRtcSession[] {
    return [...this.#viewers.keys()];
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The relay as an upstream for other edges (media/RelayServer.ts); undefined while it has none itself. */
  upstream(): RelayUpstream | undefined {
    if (this.#closed || !this.#uplink) return undefined;
    return {
      treeKey: this.treeKey,
      path: this.path,
      publisherSession: this.#feed.publisherSession,
      openPipe: async (peer, rtc, paused) => {
        if (this.#closed) throw relayClosed(`the relay of ${this.stream} just closed`);
        const opened = await openPipe(this.router, peer, rtc, this.producers.map((producer) => ({ producer })), paused);
        if (!paused) this.#want();
        const child = opened.pipe;
        this.#children.add(child);
        clearTimeout(this.#linger);
        child.observer.once('close', () => {
          this.#children.delete(child);
          this.#lingerIfIdle();
        });
        return opened;
      },
      bitrate: () => producersBitrate(this.producers),
      pipeRendition: async (pipe, codec) => {
        await this.rendition(codec);
        const producer = this.#feed.rendition(codec)!;
        const consumer = await consumePipe(pipe, producer);
        return { id: producer.id, kind: consumer.kind, rtpParameters: consumer.rtpParameters, paused: producer.paused };
      },
      onRelease: (listener) => {
        this.#releaseListeners.add(listener);
        return () => this.#releaseListeners.delete(listener);
      },
      resumed: () => this.#want(),
    };
  }

  /**
   * Asks the edges this relay feeds to move to another upstream (this edge drains); it feeds them
   * until they do or it closes, and keeps its own upstream and viewers.
   */
  moveChildren(reason: string): void {
    for (const listener of this.#releaseListeners) listener({ type: 'move', reason });
  }

  /**
   * Asks the upstream to add the stream's rendition in `codec` to this relay (see
   * core/internalApi.ts renditionPath), for a viewer that decodes nothing the stream is sent as.
   * Viewers asking at once share one request; a refusal (UnsupportedMediaError: none can be made)
   * stands for the relay's life, so later viewers do not ask again.
   */
  rendition(codec: RenditionCodec): Promise<void> {
    let asked = this.#renditions.get(codec);
    if (!asked) {
      asked = this.#requestRendition(codec).catch((error: unknown) => {
        if (!(error instanceof UnsupportedMediaError)) this.#renditions.delete(codec);
        throw error;
      });
      this.#renditions.set(codec, asked);
    }
    return asked;
  }

  async #requestRendition(codec: RenditionCodec): Promise<void> {
    const uplink = this.#uplink;
    if (!uplink) throw relayClosed(`the relay of ${this.stream} is changing upstream; try again`);
    const index = await uplink.rendition(codec);
    if (this.#closed || uplink.closed) throw relayClosed(`the relay of ${this.stream} moved while the rendition started; try again`);
    const producer = await this.#feed.addRendition(uplink, index, codec);
    const sent = producer.rtpParameters.codecs[0];
    this.#logger.info({ codec: sent?.mimeType, profileLevelId: sent?.parameters?.['profile-level-id'] }, 'rendition added');
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
    if (session.connected) this.#want();
    else session.once('connected', () => this.#want());
    session.once('closed', () => {
      this.#viewers.delete(session);
      this.#lingerIfIdle();
    });
  }

  /** Bits per second sent to this relay's viewers and child edges: each producer's bitrate times its receivers. */
  async bitrateOut(): Promise<number> {
    let total = 0;
    for (const producer of this.producers) {
      let receivers = this.#children.size;
      for (const kinds of this.#viewers.values()) if (kinds.has(producer.kind)) receivers++;
      if (receivers > 0) total += (await producerBitrate(producer)) * receivers;
    }
    return total;
  }

  /**
   * Closes the relay, its viewers' sessions and its pipes. The edges it feeds are told `end` when
   * the stream itself ended (they end too), `detach` otherwise (they attach elsewhere).
   */
  close(reason: string, release: 'end' | 'detach' = 'detach'): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#linger);
    this.#release({ type: release, reason });
    this.#uplink?.close();
    for (const viewer of this.#viewers.keys()) viewer.close(`relay closed: ${reason}`);
    for (const fanout of this.#fanouts.values()) void fanout.then((f) => f.router.close(), () => undefined);
    this.router.close();
    this.#logger.info({ reason }, 'relay closed');
    this.emit('closed', reason);
  }

  #release(release: RelayRelease & { type: 'end' | 'detach' }): void {
    const listeners = [...this.#releaseListeners];
    this.#releaseListeners.clear();
    for (const listener of listeners) listener(release);
  }

  /** Media is wanted here from now on: the uplink, if paused, starts (see #wanted). */
  #want(): void {
    if (this.#wanted || this.#closed) return;
    this.#wanted = true;
    this.#uplink?.resume();
  }

  #lingerIfIdle(): void {
    if (this.#viewers.size === 0 && this.#children.size === 0 && this.#holds === 0 && !this.#closed) this.#startLinger();
  }

  #startLinger(): void {
    clearTimeout(this.#linger);
    this.#linger = setTimeout(() => this.close('no viewers'), this.#lingerMs);
  }

  // --- upstreams ---

  /**
   * Asks `targets` in order and takes the first that carries this stream's publish; returns the
   * refusals when none did, and whether one carried another publish (the stream was published
   * again). The first upstream ever also makes the relay's producers.
   */
  async #attach(targets: UplinkTarget[]): Promise<AttachFailure | undefined> {
    const failures: Problem[] = [];
    let originFailure: Problem | undefined;
    let republished = false;
    const feeds = this.#children.size > 0;
    for (const target of targets.slice(0, UPSTREAMS_PER_ROUND)) {
      if (this.#closed) return { failures, originFailure, republished };
      let uplink: Uplink;
      try {
        const request = {
          stream: this.stream,
          edgeNodeId: this.#source.edgeNodeId,
          paused: !this.#wanted,
          ...this.#source.tiered,
          ...(target.makeRoom && this.#source.tiered ? { makeRoom: true } : {}),
          ...(feeds ? { treeKey: this.treeKey } : {}),
        };
        uplink = await Uplink.open(this.router, target, request, this.#rtc, this.#source.clusterSecret, this.#logger);
      } catch (error) {
        if (!(error instanceof Problem)) throw error;
        if (error.problem === 'bad-gateway') this.#source.unreachable(target.nodeId, error.message);
        this.#logger.debug({ upstream: target.nodeId, problem: error.type, detail: error.message }, 'upstream refused');
        failures.push(error);
        if (target.origin) originFailure = error;
        continue;
      }
      const first = this.#feed.publisherSession === '';
      const routes = await this.#feed.routesFor(uplink);
      if (!routes) {
        uplink.close();
        republished ||= uplink.offer.publisherSession !== this.#feed.publisherSession;
        failures.push(new Problem('bad-gateway', `${target.nodeId} carries another publish of ${this.stream}, or lacks its rendition`));
        continue;
      }
      if (this.#closed || uplink.closed) {
        uplink.close();
        // The producers came from it: this relay cannot go on to another.
        if (first) return { failures: [...failures, new Problem('bad-gateway', `${target.nodeId} went away while the relay opened`)], originFailure, republished };
        continue;
      }
      if (!feeds && this.#children.size > 0 && uplink.offer.treeKey >= this.treeKey) {
        // A child attached while this relay moved (it feeds now): it keeps its key, so this parent cannot take it.
        uplink.close();
        failures.push(new Problem('relay-order', `${target.nodeId} is below this relay`));
        continue;
      }
      this.#install(uplink, routes, feeds || this.#children.size > 0);
      return undefined;
    }
    return { failures, originFailure, republished };
  }

  #install(uplink: Uplink, routes: UplinkRoutes, fed: boolean): void {
    const first = ++this.#uplinks === 1;
    this.#feed.switchTo(uplink, routes);
    this.#uplink = uplink;
    this.upstreamNodeId = uplink.target.nodeId;
    this.path = [...uplink.offer.path, this.#source.edgeNodeId];
    this.pathKm = uplink.target.pathKm;
    if (!fed) this.treeKey = uplink.offer.childTreeKey ?? childKey(uplink.offer.treeKey);
    uplink.once('ended', (reason) => this.close(`stream ended upstream: ${reason}`, 'end'));
    uplink.once('lost', (reason, gone) => {
      if (gone) this.#source.unreachable(uplink.target.nodeId, reason);
      void this.#reattach(uplink, reason);
    });
    uplink.on('move', (reason, to) => void this.#move(uplink, reason, to));
    // A viewer connected while it was being opened paused.
    if (this.#wanted) uplink.resume();
    // The picture restarts at the next key frame from this upstream.
    if (!first) uplink.requestKeyFrame();
  }

  /**
   * Runs `change` once any upstream change under way has ended. A move (the parent drains) and a
   * re-attach (the parent let go) overlap when the parent lets go mid-move: run at once, both
   * would take an upstream, or the re-attach would give up on a relay the move had just attached.
   */
  #oneAtATime<T>(change: () => Promise<T>): Promise<T> {
    const run = this.#changing.then(change);
    this.#changing = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /**
   * The upstream drains, or (with `to`) the origin makes room for a relay nearer it and asks this
   * one to move below it: attach to another (to `to` only) before letting the upstream go (make
   * before break), so the viewers see at most a key frame's wait. A `to` whose relay is not up yet
   * answers 404 and is asked again next round; one that never takes it leaves this relay where it is.
   */
  async #move(from: Uplink, reason: string, to?: UplinkTarget): Promise<void> {
    if (this.#moving) return;
    this.#moving = true;
    try {
      for (let round = 0; round < MOVE_ROUNDS; round++) {
        if (round > 0) await sleep(MOVE_RETRY_MS);
        const moved = await this.#oneAtATime(async () => {
          // The upstream let go meanwhile (#reattach takes over), or the relay closed.
          if (this.#uplink !== from || this.#closed) return true;
          const feeds = this.#children.size > 0;
          const targets = to ? [to] : await this.#source.upstreams({ lost: from.target.nodeId, treeKey: feeds ? this.treeKey : undefined }).catch(() => []);
          if (this.#uplink !== from || targets.length === 0 || (await this.#attach(targets))) return this.#uplink !== from;
          from.close();
          this.#logger.info({ upstream: this.upstreamNodeId, from: from.target.nodeId, reason }, 'moved to another upstream');
          this.emit('attached', this.upstreamNodeId);
          return true;
        }).catch((error: unknown) => {
          // A worker refusing a pipe, say: the parent still feeds, so try again next round.
          this.#logger.warn({ err: error }, 'could not move to another upstream');
          return false;
        });
        if (moved) return;
      }
    } finally {
      this.#moving = false;
    }
  }

  /**
   * The upstream went away while the stream goes on: find another within REATTACH_WINDOW_MS. An
   * origin that went away takes the stream with it (the publisher must publish again): the relay
   * and the edges below it end, and their viewers rejoin once the stream is live again.
   */
  async #reattach(lost: Uplink, reason: string): Promise<void> {
    if (this.#closed || this.#uplink !== lost) return;
    this.#uplink = undefined;
    if (lost.offer.path.length === 1) return this.close(`origin lost: ${reason}`, 'end');
    this.#logger.info({ reason, upstream: lost.target.nodeId }, 're-attaching');
    const deadline = Date.now() + REATTACH_WINDOW_MS;
    for (let round = 0; Date.now() < deadline; round++) {
      if (round > 0) await sleep(REATTACH_RETRY_MS);
      const done = await this.#oneAtATime(async () => {
        // A move under way when the upstream let go may have attached meanwhile.
        if (this.#uplink || this.#closed) return true;
        let failed: AttachFailure | undefined;
        try {
          const targets = await this.#source.upstreams({ lost: lost.target.nodeId, treeKey: this.#children.size > 0 ? this.treeKey : undefined });
          failed = await this.#attach(targets);
          if (!failed) {
            this.#logger.info({ upstream: this.upstreamNodeId, treeKey: this.treeKey, after: reason }, 're-attached');
            this.emit('attached', this.upstreamNodeId);
            return true;
          }
        } catch (error) {
          // The stream is not live any more: end as the origin would have.
          if (error instanceof Problem && error.problem === 'stream-not-live') {
            this.close(`stream ended while re-attaching: ${error.message}`, 'end');
            return true;
          }
          this.#logger.warn({ err: error }, 'could not list upstreams'); // the database, perhaps: next round
        }
        if (failed?.republished) {
          this.close(`the stream was published again: ${reason}`, 'end');
          return true;
        }
        return false;
      });
      if (done) return;
    }
    this.close(`no upstream took the relay after: ${reason}`);
  }
}
