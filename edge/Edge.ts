import express, { type Router } from 'express';
import type { Consumer, Producer } from 'mediasoup/types';
import { isDatabaseUnavailable, Problem, UnsupportedMediaError } from '../core/errors.ts';
import type { Role, RoleContext, RoleLoad } from '../core/Role.ts';
import type { Database } from '../db/Database.ts';
import type { MediaContext } from '../media/WorkerPool.ts';
import { RENDITION_CODECS, RENDITION_RTP_CODECS } from '../media/codecs.ts';
import { signallingRouter } from '../media/signalling.ts';
import { authorizeStream, type StreamClaims } from '../core/tokens.ts';
import { getNode, reportNodeLost } from '../db/repositories/nodes.ts';
import { createRelay, deleteRelay, listParentCandidates, recordRelayViewers } from '../db/repositories/relays.ts';
import { getStream, recordHlsViewers, type StreamRecord } from '../db/repositories/streams.ts';
import {
  answerParameters,
  buildAnswer,
  buildCounterOffer,
  consumerCapabilities,
  describeCodec,
  isSupported,
  offeredCodecs,
  offersTransportCc,
  receivableCodecs,
  TRANSPORT_CC_URI,
  type AcceptedSection,
  type Offer,
} from '../media/sdp.ts';
import { RelayServer } from '../media/RelayServer.ts';
import { WebRtcSession } from '../media/WebRtcSession.ts';
import { LayerSelector } from './LayerSelector.ts';
import { Relay } from './Relay.ts';
import { orderUpstreams } from './RelayTree.ts';
import type { UplinkTarget } from './Uplink.ts';
import { Viewer } from './Viewer.ts';
import { HlsCache } from './HlsCache.ts';
import { HlsProxy } from './HlsProxy.ts';
import { recordingPlaybackRouter } from './RecordingPlayback.ts';
import { LocalRecordingStore } from '../media/record/RecordingStore.ts';
import { S3RecordingStore } from '../media/record/S3RecordingStore.ts';

/**
 * How long a draining edge waits before ending its viewers' sessions, so that they are not sent
 * straight back: the balancer's registry snapshot lives 1 s and HAProxy's agent-check runs every
 * second.
 */
const DRAIN_NOTICE_MS = 2000;

/**
 * Gap between two viewers sent away by a draining edge: 50 rejoins a second, so that a thousand
 * viewers spread over 20 s instead of arriving at the other edges (and the balancer) at once.
 */
const VIEWER_MOVE_GAP_MS = 20;

/**
 * How long an edge keeps a stream's origin for its HLS requests (a stream without a relay here):
 * a cache miss is a few a second per stream, each would otherwise cost two queries.
 */
const HLS_ORIGIN_TTL_MS = 2000;

/**
 * How long an HLS request takes a stream's privacy as last read: an LL-HLS viewer makes three
 * requests a second, a hundred of them would ask Postgres 300 times a second. A stream made
 * private stops playing over HLS without a token within a second.
 */
const HLS_PRIVACY_MAX_AGE_MS = 1000;
const PRIVACY_KNOWN_MAX = 10_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What an edge needs: the database and the media workers. */
export type EdgeContext = RoleContext & MediaContext & { db: Database };

/** The work under way for `key` in `inFlight`, or `start`ed and kept there until it settles. */
function shared<T>(inFlight: Map<string, Promise<T>>, key: string, start: () => Promise<T>): Promise<T> {
  let work = inFlight.get(key);
  if (!work) {
    work = start().finally(() => inFlight.delete(key));
    inFlight.set(key, work);
  }
  return work;
}

/**
 * The edge role: WHEP viewers. The first viewer of a stream makes the edge pull it from its origin,
 * or from another edge that relays it (relay tiers, edge/RelayTree.ts): one Relay per stream,
 * shared by all its viewers here and by the edges it feeds in turn. Each viewer gets a WebRTC
 * transport and a consumer per track on the relay's router.
 */
export class Edge implements Role {
  readonly router: Router;
  readonly #ctx: EdgeContext;
  readonly #relays = new Map<string, Relay>();
  /** The viewer counts last written to the relays' rows, as JSON. */
  #recordedViewers: string | undefined;
  /** The HLS viewer counts last written, as JSON. */
  #recordedHlsViewers: string | undefined;
  /** Relays being opened, so that viewers arriving together share one. */
  readonly #opening = new Map<string, Promise<Relay>>();
  /**
   * Privacy lookups in flight, by stream, so that viewers arriving together share one query: a
   * join storm of 200 asked Postgres 200 times for the same row, and query building and parsing
   * (knex, pg) were the largest cost on the edge's JavaScript thread after mediasoup's own
   * (a CPU profile of the edge in test/load.test.ts). Each join still reads the row afresh unless
   * a read is already under way, so a stream made private applies to the next join.
   */
  readonly #privacyLookups = new Map<string, Promise<boolean>>();
  /** What each stream's last privacy lookup said, and when: HLS requests (a few a second per viewer) take it for HLS_PRIVACY_MAX_AGE_MS. */
  readonly #privacyKnown = new Map<string, { isPrivate: boolean; at: number }>();
  /** The viewers here, by session id. */
  readonly #viewers = new Map<string, Viewer>();
  /** Relay rows being deleted, awaited at shutdown so none is cut off by the database closing. */
  readonly #deleting = new Set<Promise<void>>();
  readonly #hls: HlsProxy;
  /** Streams' origins as HLS last found them (HLS_ORIGIN_TTL_MS). */
  readonly #hlsOrigins = new Map<string, { target: Promise<UplinkTarget>; until: number }>();

  constructor(ctx: EdgeContext) {
    this.#ctx = ctx;
    this.router = express.Router();
    this.router.use(
      new RelayServer({
        nodeId: ctx.config.nodeId,
        clusterSecret: ctx.clusterSecret,
        rtc: ctx.rtc,
        maxRelaysPerStream: ctx.config.edgeMaxChildren,
        egress: { capacity: ctx.config.egressCapacity, sending: ctx.egressSent },
        metrics: ctx.metrics,
        edgeLost: (nodeId, reason) => this.#reportLost(nodeId, reason),
        upstream: (name) => this.#relays.get(name)?.upstream(),
        logger: ctx.logger,
      }).router,
    );
    this.#hls = new HlsProxy({
      cache: new HlsCache(ctx.config.hlsCacheBytes),
      upstream: (stream) => this.#hlsUpstream(stream),
      authorize: (stream, token) => this.#authorize(stream, token, HLS_PRIVACY_MAX_AGE_MS),
      clientAddress: (req) => ctx.config.trustedProxies.clientAddress(req.socket.remoteAddress ?? '', req.get('x-forwarded-for')),
      admission: ctx.admission,
      clusterSecret: ctx.clusterSecret,
      metrics: ctx.metrics,
    });
    this.router.use(this.#hls.router);
    this.router.use(
      recordingPlaybackRouter({
        db: ctx.db.knex,
        clusterSecret: ctx.clusterSecret,
        store: new LocalRecordingStore(ctx.config.recordDir),
        s3: ctx.config.recordS3 ? new S3RecordingStore({ url: ctx.config.recordS3, endpoint: ctx.config.recordS3Endpoint, region: ctx.config.recordS3Region }) : undefined,
        logger: ctx.logger,
      }),
    );
    this.router.use(
      signallingRouter(
        { authorize: (stream, token) => this.#authorize(stream, token), accept: (stream, offer, options) => this.#play(stream, offer, options.counterOffer) },
        {
          kind: 'whep',
          publicUrl: ctx.config.publicUrl,
          iceServers: ctx.config.iceServers,
          logger: ctx.logger,
          admission: ctx.admission,
          extensions: Viewer.extensions((session) => {
            const viewer = this.#viewers.get(session.id);
            if (!viewer) throw new Problem('not-found', 'no such session (it may have ended)');
            return viewer;
          }),
        },
      ),
    );
  }

  /** WebRTC viewers (of the relays here) and HLS viewers. */
  get viewers(): number {
    let n = 0;
    for (const relay of this.#relays.values()) n += relay.viewers;
    for (const hls of this.#hls.viewers().values()) n += hls;
    return n;
  }

  async load(): Promise<RoleLoad> {
    let bitrateOut = 0;
    for (const relay of this.#relays.values()) bitrateOut += await relay.bitrateOut();
    this.#ctx.metrics.relays.set({ direction: 'in' }, this.#relays.size);
    // One sample per simulcast viewer per heartbeat: the distribution over time of what links carry.
    for (const viewer of this.#viewers.values()) {
      const downlink = viewer.layers?.downlink;
      if (downlink) this.#ctx.metrics.viewerDownlink.observe(downlink);
    }
    this.#recordViewers();
    const hls = [...this.#hls.viewers()].map(([stream, viewers]) => ({ stream, viewers }));
    this.#recordHlsViewers(hls);
    this.#ctx.metrics.hlsViewers.set(hls.reduce((sum, h) => sum + h.viewers, 0));
    this.#ctx.metrics.hlsCacheBytes.set(this.#hls.cache.bytes);
    return { viewers: this.viewers, streams: this.#relays.size, bitrateOut };
  }

  /** Writes each relay's viewer count when one changed (the admin API shows them). */
  #recordViewers(): void {
    const counts = [...this.#relays.values()].map((relay) => ({ stream: relay.stream, viewers: relay.viewers }));
    const key = JSON.stringify(counts);
    if (key === this.#recordedViewers) return;
    this.#recordedViewers = key;
    recordRelayViewers(this.#ctx.db.knex, this.#ctx.config.nodeId, counts).catch(() => {
      this.#recordedViewers = undefined; // written again at the next heartbeat
    });
  }

  /** Writes the HLS viewers by stream when they changed (the admin API shows them). */
  #recordHlsViewers(counts: Array<{ stream: string; viewers: number }>): void {
    const key = JSON.stringify(counts);
    if (key === this.#recordedHlsViewers) return;
    this.#recordedHlsViewers = key;
    recordHlsViewers(this.#ctx.db.knex, this.#ctx.config.nodeId, counts).catch(() => {
      this.#recordedHlsViewers = undefined; // written again at the next heartbeat
    });
  }

  /** After this node was declared dead and came back: record its relays again. */
  async revive(): Promise<void> {
    const { db, config } = this.#ctx;
    for (const relay of this.#relays.values()) {
      const row = await getStream(db.knex, relay.stream);
      if (!row || row.state !== 'live') {
        relay.close('stream no longer live');
        continue;
      }
      await createRelay(db.knex, { streamId: row.id, edgeNodeId: config.nodeId, upstreamNodeId: relay.upstreamNodeId, treeKey: relay.treeKey, tier: relay.tier, pathKm: relay.pathKm });
    }
  }

  /**
   * Moves the viewers to other edges: once the balancer and HAProxy have seen this node drain,
   * their sessions are ended a few at a time, and their players rejoin through the balancer.
   */
  async drain(deadline: number): Promise<void> {
    // The edges fed from here move at once, to another upstream that takes them before this one lets go.
    for (const relay of this.#relays.values()) relay.moveChildren('parent edge draining');
    const sessions = [...this.#relays.values()].flatMap((relay) => relay.sessions);
    if (sessions.length === 0) return;
    this.#ctx.logger.info({ viewers: sessions.length }, 'moving viewers to other edges');
    await sleep(Math.min(DRAIN_NOTICE_MS, Math.max(0, deadline - Date.now())));
    const gap = Math.min(VIEWER_MOVE_GAP_MS, Math.max(0, deadline - Date.now()) / sessions.length);
    for (const session of sessions) {
      session.close('edge draining: rejoin another edge');
      await sleep(gap);
    }
  }

  async close(): Promise<void> {
    for (const relay of this.#relays.values()) relay.close('edge shutting down');
    await Promise.all(this.#deleting);
  }

  /**
   * Streams are public to play unless marked private; a private one needs a play token. The
   * database says which (an operator may change it at any time); while it is unreachable, a
   * relay here still knows what its stream was when it opened, so viewers of a warm edge can join.
   */
  async #authorize(stream: string, token: string | undefined, maxAgeMs = 0): Promise<StreamClaims | null> {
    const relay = this.#relays.get(stream);
    const known = this.#privacyKnown.get(stream);
    let isPrivate: boolean;
    if (known && known.at > Date.now() - maxAgeMs) {
      isPrivate = known.isPrivate;
    } else {
      try {
        isPrivate = await shared(this.#privacyLookups, stream, async () => (await getStream(this.#ctx.db.knex, stream))?.private ?? false);
        // Names nobody streams under must not grow it without bound.
        if (this.#privacyKnown.size >= PRIVACY_KNOWN_MAX) this.#privacyKnown.clear();
        this.#privacyKnown.set(stream, { isPrivate, at: Date.now() });
      } catch (error) {
        if (!relay || !isDatabaseUnavailable(error)) throw error;
        isPrivate = relay.private;
      }
    }
    if (!token && !isPrivate) return null;
    return authorizeStream(token, { secret: this.#ctx.clusterSecret, stream, action: 'play' });
  }

  async #play(name: string, offer: Offer, counterOffer: boolean) {
    const relay = await this.#relayFor(name);
    let release: (() => void) | undefined;
    try {
      release = relay.hold();
      return await this.#join(relay, name, offer, counterOffer);
      // A relay that closed under the viewer (the stream ended upstream, a worker died) throws a
      // 503 with Retry-After: the player tries again and gets a new relay.
    } finally {
      release?.();
    }
  }

  /**
   * A viewer joins the relay: a session on the fan-out router that takes its codecs, a consumer per
   * kind. `counterOffer`: the client takes a counter-offer (media/signalling.ts); one is made when
   * it offered transport-cc, so that its consumers write the extensions at mediasoup's ids and the
   * edge estimates its link (answering its offer, they could not).
   */
  async #join(relay: Relay, name: string, offer: Offer, counterOffer: boolean, renditionAsked = false): Promise<{ session: WebRtcSession; answer: string } | { session: WebRtcSession; counterOffer: string }> {
    const sections = offer.sections.filter(isSupported).filter((s) => s.direction === 'recvonly' || s.direction === 'sendrecv');
    const streamCodecs = relay.producers.map((p) => p.rtpParameters.codecs[0]!);
    const fanout = await relay.fanoutFor(sections.flatMap((s) => receivableCodecs(s, streamCodecs)));
    const offering = counterOffer && sections.some((s) => offersTransportCc(s));
    const routerExtensions = offering ? fanout.router.rtpCapabilities.headerExtensions : undefined;
    // mediasoup estimates the link toward viewers with transport-cc at its id (a counter-offer's,
    // or an offer that happens to use it); toward the others the edge alone picks the layer.
    const transportCcId = fanout.router.rtpCapabilities.headerExtensions?.find((e) => e.kind === 'video' && e.uri === TRANSPORT_CC_URI)?.preferredId;
    const bwe = offering || sections.some((s) => offersTransportCc(s, { atId: transportCcId }));
    const session = await WebRtcSession.create(fanout.router, name, this.#ctx.rtc, { bwe });
    try {
      const accepted = new Map<string, AcceptedSection>();
      const consumers: Consumer[] = [];
      const kinds = new Set<string>();
      for (const section of sections) {
        if (kinds.has(section.kind)) continue;
        const producer = fanout.producers.find((p) => p.kind === section.kind);
        const rtpCapabilities = consumerCapabilities(section, streamCodecs, routerExtensions);
        if (!producer || !fanout.router.canConsume({ producerId: producer.id, rtpCapabilities })) continue;
        // NACK without RTX. mediasoup drops a viewer's generic NACK feedback unless RTX is enabled
        // (ortc.getConsumerRtpParameters), and its RTX would use the router's payload type, which
        // the viewer did not offer. With RTX enabled and no RTX codec in the capabilities, the
        // consumer keeps NACK and resends a lost packet as it was (same SSRC and payload type),
        // which every WebRTC receiver takes: a lossy link is repaired end to end.
        const consumer = await session.transport.consume({ producerId: producer.id, rtpCapabilities, mid: section.mid, enableRtx: true });
        kinds.add(section.kind);
        consumers.push(consumer);
        accepted.set(section.mid, { direction: 'sendonly', rtpParameters: answerParameters(section, consumer.rtpParameters), msid: { stream: name, track: consumer.id } });
      }
      // A viewer that asked for a kind the stream has but cannot decode it is told so: an
      // audio-only session would play a black picture with no word why.
      const missing = relay.producers.filter((p) => !kinds.has(p.kind) && sections.some((s) => s.kind === p.kind));
      const renditions = RENDITION_CODECS.filter((codec) => sections.some((s) => receivableCodecs(s, [RENDITION_RTP_CODECS[codec]]).length > 0));
      if (missing.some((p) => p.kind === 'video') && renditions.length > 0 && !renditionAsked) {
        // Perhaps the origin can make a version this viewer decodes: ask for each it takes, in
        // order, until one is made, then try again.
        session.close('waiting for a rendition');
        for (const codec of renditions) {
          const added = await relay.rendition(codec).then(
            () => true,
            (error: unknown) => {
              if (error instanceof UnsupportedMediaError) return false;
              throw error;
            },
          );
          if (added) return await this.#join(relay, name, offer, counterOffer, true);
        }
      }
      if (accepted.size === 0 || missing.length > 0) {
        const cannot = (accepted.size === 0 ? relay.producers : missing).map((p) => describeCodec(p.rtpParameters.codecs[0]!));
        throw new UnsupportedMediaError(`the offer cannot receive ${cannot.join(' or ')}, which stream ${name} carries`, {
          streamCodecs: streamCodecs.map(describeCodec),
          offeredCodecs: [...new Set(sections.flatMap(offeredCodecs))],
        });
      }
      const description = offering ? buildCounterOffer(offer, session.local, accepted, String(Date.now())) : undefined;
      if (description) session.offer(description.mids);
      else await session.connect(offer);
      // The picture starts at the next key frame: ask for one as soon as media can flow.
      session.once('connected', () => {
        for (const c of consumers) if (c.kind === 'video') void c.requestKeyFrame().catch(() => undefined);
      });
      relay.addViewer(session, kinds);
      this.#addViewer(session, relay, offer, consumers, fanout.producers);
      if (description) return { session, counterOffer: description.sdp };
      return { session, answer: buildAnswer(offer, session.local, accepted, String(Date.now())) };
    } catch (error) {
      session.close('setup failed');
      throw error;
    }
  }

  /** Keeps the viewer's layer selection and WHEP extensions while its session lasts. */
  #addViewer(session: WebRtcSession, relay: Relay, offer: Offer, consumers: Consumer[], producers: Producer[]): void {
    const { logger, metrics } = this.#ctx;
    const video = consumers.find((c) => c.kind === 'video');
    const producer = producers.find((p) => p.id === video?.producerId);
    const layers = video?.type === 'simulcast' ? new LayerSelector(video, session.transport, logger.child({ stream: relay.stream, session: session.id }), producer) : undefined;
    const mediaIndex = video ? offer.sections.findIndex((s) => s.mid === video.rtpParameters.mid) : -1;
    const viewer = new Viewer({
      session,
      relay,
      layers,
      estimated: consumers.some((c) => c.rtpParameters.codecs.some((codec) => codec.rtcpFeedback?.some((fb) => fb.type === 'transport-cc'))),
      video: producer,
      mediaId: mediaIndex >= 0 ? String(mediaIndex) : undefined,
    });
    this.#viewers.set(session.id, viewer);
    const layerOf = (l: { spatialLayer: number } | undefined) => (l ? String(l.spatialLayer) : 'none');
    // The estimate's trace events that move an estimated viewer's layers, counted: their rate is
    // part of what such a viewer costs.
    if (layers?.estimated) {
      session.transport.on('trace', (trace) => {
        if (trace.type === 'bwe') metrics.bweTraces.inc();
      });
    }
    if (layers) {
      metrics.viewerLayers.inc({ layer: layerOf(layers.layers) });
      layers.on('change', (now, before) => {
        metrics.viewerLayers.dec({ layer: layerOf(before) });
        metrics.viewerLayers.inc({ layer: layerOf(now) });
        if (now && before && now.spatialLayer !== before.spatialLayer) {
          metrics.layerSwitches.inc({ direction: now.spatialLayer > before.spatialLayer ? 'up' : 'down', mode: layers.mode, control: layers.estimated ? 'estimate' : 'loss' });
        }
      });
    }
    session.once('closed', () => {
      this.#viewers.delete(session.id);
      if (layers) metrics.viewerLayers.dec({ layer: layerOf(layers.layers) });
    });
  }

  async #relayFor(stream: string): Promise<Relay> {
    const existing = this.#relays.get(stream);
    if (existing && !existing.closed) return existing;
    return shared(this.#opening, stream, () => this.#openRelay(stream));
  }

  async #openRelay(name: string): Promise<Relay> {
    const { db, config, logger } = this.#ctx;
    const row = await this.#liveStream(name);
    // The first round uses the row just read; a re-attach reads it again (the stream may have moved).
    let known: StreamRecord | undefined = row;
    // Throws 404 (not live upstream) or 502 (no upstream answered) as a Problem.
    const relay = await Relay.open(
      {
        stream: name,
        private: row.private,
        clusterSecret: this.#ctx.clusterSecret,
        edgeNodeId: config.nodeId,
        upstreams: async (request) => {
          const current = known ?? (await this.#liveStream(name));
          known = undefined;
          return this.#upstreams(current, request);
        },
        unreachable: (nodeId, reason) => this.#reportLost(nodeId, reason),
        ...(config.originMaxRelays === undefined ? {} : { tiered: { position: { lat: config.lat, lon: config.lon }, publicUrl: config.publicUrl } }),
      },
      this.#ctx.workers,
      this.#ctx.rtc,
      config.relayLingerMs,
      logger,
    );
    this.#relays.set(name, relay);
    // The placement table records each relay's upstream and tree key, again after a re-attach.
    const record = () =>
      createRelay(db.knex, { streamId: row.id, edgeNodeId: config.nodeId, upstreamNodeId: relay.upstreamNodeId, treeKey: relay.treeKey, tier: relay.tier, pathKm: relay.pathKm });
    const recorded = await record().catch((error) => {
      logger.warn({ err: error, stream: name }, 'could not record the relay');
      return undefined;
    });
    relay.on('attached', () => void record().catch((error) => logger.warn({ err: error, stream: name }, 'could not record the re-attached relay')));
    relay.once('closed', () => {
      if (this.#relays.get(name) === relay) this.#relays.delete(name);
      if (!recorded) return;
      const deletion = deleteRelay(db.knex, recorded)
        .catch((error) => logger.warn({ err: error, stream: name }, 'could not delete the relay row'))
        .finally(() => this.#deleting.delete(deletion));
      this.#deleting.add(deletion);
    });
    return relay;
  }

  /** Tells the registry that a peer's connection dropped: it declares the peer dead early if it is (app/NodeRegistry.ts). */
  #reportLost(nodeId: string, reason: string): void {
    const { db, config, logger } = this.#ctx;
    reportNodeLost(db.knex, { nodeId, reporterId: config.nodeId, reason }).catch((error) => logger.warn({ err: error, nodeId }, 'could not report a lost node'));
  }

  /** The stream's row if it is live on an origin; stream-not-live (404) otherwise. */
  async #liveStream(name: string): Promise<StreamRecord> {
    const row = await getStream(this.#ctx.db.knex, name);
    if (!row || row.state !== 'live' || !row.originNodeId) throw new Problem('stream-not-live', `stream ${name} is not live`);
    return row;
  }

  /**
   * Where this edge asks for a stream's HLS files: the node its relay of the stream pulls from
   * (HLS follows the relay tree), else the stream's origin.
   */
  #hlsUpstream(stream: string): Promise<UplinkTarget> {
    const fed = this.#relays.get(stream)?.upstreamTarget;
    if (fed) return Promise.resolve(fed);
    const known = this.#hlsOrigins.get(stream);
    if (known && known.until > Date.now()) return known.target;
    const target = (async () => {
      const row = await this.#liveStream(stream);
      const origin = await getNode(this.#ctx.db.knex, row.originNodeId!);
      if (!origin || origin.state !== 'up') throw new Problem('stream-not-live', `stream ${stream} has no live origin`);
      return { nodeId: origin.id, url: origin.publicUrl };
    })();
    this.#hlsOrigins.set(stream, { target, until: Date.now() + HLS_ORIGIN_TTL_MS });
    target.catch(() => this.#hlsOrigins.delete(stream));
    for (const [name, entry] of this.#hlsOrigins) if (entry.until <= Date.now()) this.#hlsOrigins.delete(name);
    return target;
  }

  /** Where this edge may pull the stream of `row` from, best first (edge/RelayTree.ts). */
  async #upstreams(row: StreamRecord, request: { lost?: string; treeKey?: number }): Promise<UplinkTarget[]> {
    const { db, config } = this.#ctx;
    const origin = await getNode(db.knex, row.originNodeId!);
    if (!origin || origin.state !== 'up') throw new Problem('stream-not-live', `stream ${row.name} has no live origin`);
    return orderUpstreams({
      origin: { nodeId: origin.id, url: origin.publicUrl, lat: origin.lat, lon: origin.lon },
      parents: await listParentCandidates(db.knex, row.id),
      self: { id: config.nodeId, region: config.region, lat: config.lat, lon: config.lon },
      maxChildren: config.edgeMaxChildren,
      originMaxRelays: config.originMaxRelays,
      ...request,
    });
  }
}
