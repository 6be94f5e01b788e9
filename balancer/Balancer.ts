import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import express, { type Request, type Router } from 'express';
import { z } from 'zod';
import type { CertificateWatcher } from '../core/CertificateWatcher.ts';
import { Problem } from '../core/errors.ts';
import type { Role, RoleContext, RoleLoad } from '../core/Role.ts';
import type { Database } from '../db/Database.ts';
import { STREAM_NAME, authorizeStream, bearerToken, streamName } from '../core/tokens.ts';
import { listNodes } from '../db/repositories/nodes.ts';
import { listRelayedStreams } from '../db/repositories/relays.ts';
import { getStream, listStreams } from '../db/repositories/streams.ts';
import { latestRecording, recordedBytesByStream, recordingLive } from '../db/repositories/recordings.ts';
import { AdminAuth } from './AdminAuth.ts';
import { adminOperations } from './adminApi.ts';
import { operationsRouter } from './apiOperations.ts';
import { CORS } from '../core/http.ts';
import { RECORDING_ID, RECORDINGS_PUBLIC_PATH, recordingUrls } from '../core/recordings.ts';
import { GeoLocator } from './GeoLocator.ts';
import { HaproxyController } from './HaproxyController.ts';
import { webPagesRouter } from './webPages.ts';
import { planCapacity, type RegionCapacity } from './capacity.ts';
import { NodeLossChecker } from './NodeLossChecker.ts';
import { createPolicy, type NodeSnapshot, type Policy } from './policies.ts';
import { RouteIndex } from './RouteIndex.ts';
import { WebhookDispatcher } from './WebhookDispatcher.ts';

/**
 * The balancer role: sends each viewer to the nearest edge with room and each publisher to the
 * nearest origin (route API, and 307 redirects on WHEP/WHIP as RFC 9725 asks for load
 * balancing), and serves the admin API (balancer/adminApi.ts), the web player and the dashboard.
 */

/** What the balancer needs: no media. */
export type BalancerContext = RoleContext & { db: Database };

/**
 * How old the balancer's copy of the registry may be. Heartbeats come every 2 s; reading the
 * registry at most once a second keeps the database out of the per-request path at any rate.
 */
const SNAPSHOT_TTL_MS = 1000;

/** An edge's capacity when a region has none up to measure: a node's default (one worker). */
const DEFAULT_EDGE_CAPACITY = 500;

/** How many ranked choices the route API returns: the pick and a few to spill to. */
const ROUTE_CHOICES = 10;

/**
 * How far back the web player's DVR window reaches (`GET /v1/dvr`): two hours, enough to catch up
 * on most of a show from its start. Not the whole recording: a DVR player reloads its EVENT
 * playlist every target duration for as long as it watches, and the playlist grows with the
 * window (two hours of 2 s segments: 3,600 of them, some 300 KB). Well under the day a
 * playlist may hold (edge/RecordingPlayback.ts MAX_RANGE_SEGMENTS, `422 range-too-long` past it):
 * the window's start is fixed once (an EVENT playlist only grows), so a viewer may stay in it for
 * some 22 hours more before the playlist reaches that limit.
 */
const DVR_WINDOW_MS = 2 * 60 * 60 * 1000;

/** A node id as nodes are allowed to be named (core/config.ts nodeId). */
const NODE_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/**
 * What a client may add to the route API and to the balancer's WHEP/WHIP: the role it wants, and
 * the node it just lost (`lost`), which the balancer checks before it chooses (NodeLossChecker).
 */
const routeQuery = z.object({
  role: z.enum(['edge', 'origin'], { error: 'role must be edge or origin' }).default('edge'),
  lost: z.string().regex(NODE_ID, 'lost must be a node id: letters, digits and . _ : - only, at most 64').optional(),
});

/** The query of a route request, or a 400 problem naming what is wrong with it. */
function parseRouteQuery(query: unknown): z.infer<typeof routeQuery> {
  const parsed = routeQuery.safeParse(query);
  if (!parsed.success) throw new Problem('invalid-request', parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
  return parsed.data;
}

export class Balancer implements Role {
  readonly router: Router;
  readonly #ctx: BalancerContext;
  readonly #policy: Policy;
  readonly #auth: AdminAuth;
  readonly #losses: NodeLossChecker;
  #geo: GeoLocator | undefined;
  #haproxy: HaproxyController | undefined;
  #snapshot: { at: number; index: Promise<RouteIndex> } | undefined;
  readonly #webhooks: WebhookDispatcher;
  /** rtmp://host:port/live of this balancer's HAProxy, when it takes RTMP (--haproxy-rtmp-port). */
  readonly #rtmpThroughHaproxy: string | undefined;

  constructor(ctx: BalancerContext) {
    this.#ctx = ctx;
    const { config } = ctx;
    // Publishers reach HAProxy where clients reach the balancer (its public URL names HAProxy's host).
    this.#rtmpThroughHaproxy = config.haproxyBin && config.haproxyRtmpPort > 0 ? `rtmp://${new URL(config.publicUrl).hostname}:${config.haproxyRtmpPort}/live` : undefined;
    this.#policy = createPolicy(ctx.config.policy);
    this.#losses = new NodeLossChecker({
      knex: ctx.db.knex,
      heartbeatMs: ctx.config.heartbeatMs,
      actor: ctx.config.nodeId,
      logger: ctx.logger,
      metrics: ctx.metrics,
      onDead: () => {
        this.#snapshot = undefined;
      },
    });
    this.#webhooks = new WebhookDispatcher({
      db: ctx.db.knex,
      nodeId: config.nodeId,
      client: ctx.webhookClient,
      timeoutMs: config.webhookTimeoutMs,
      giveUpMs: config.webhookGiveUpS * 1000,
      viewerThresholds: config.webhookViewerThresholds,
      viewersPeriodS: config.webhookViewersPeriodS,
      logger: ctx.logger,
      metrics: ctx.metrics,
    });
    this.router = express.Router();
    this.router.get('/v1/route', async (req, res) => {
      const stream = streamName(req.query.stream);
      const { role, lost } = parseRouteQuery({ role: req.query.role, lost: req.query.lost });
      const { client, location, choices } = await this.route(req, stream, role, ROUTE_CHOICES, lost);
      // Players embedded in other sites ask the route API, then POST to the edge with their token.
      res.set(CORS).json({
        stream,
        role,
        policy: this.#policy.name,
        client: { address: client, location },
        choices: choices.map((c) => ({ node: c.node.id, region: c.node.region, url: this.nodeUrl(c.node), ...(role === 'origin' ? { rtmpUrl: c.node.rtmpUrl ?? null } : {}), load: Number(c.load.toFixed(3)), distanceKm: c.distanceKm === undefined ? null : Math.round(c.distanceKm) })),
      });
    });
    // The DVR window of a live stream that is recorded: where the web player plays it behind live.
    this.router.options('/v1/dvr', (_req, res) => {
      res.set(CORS).status(204).end();
    });
    this.router.get('/v1/dvr', async (req, res) => {
      // Every answer, a problem too, is readable by a player embedded in another site; none is cached (it names now).
      res.set(CORS).set('Cache-Control', 'no-store');
      res.json(await this.dvrWindow(streamName(req.query.stream), typeof req.query.token === 'string' ? req.query.token : bearerToken(req.get('authorization'))));
    });
    for (const [kind, role] of [['whep', 'edge'], ['whip', 'origin']] as const) {
      this.router.options(`/${kind}/:stream`, (_req, res) => {
        res.set(CORS).set('Accept-Post', 'application/sdp').status(204).end();
      });
      // 307, never 301/302 (RFC 9725 §4.5): the client repeats the POST, body and all, at the node.
      this.router.post(`/${kind}/:stream`, async (req, res, next) => {
        const stream = String(req.params.stream);
        if (!STREAM_NAME.test(stream)) return next();
        const { lost } = parseRouteQuery({ lost: req.query.lost });
        const { choices } = await this.route(req, stream, role, 1, lost);
        const chosen = choices[0];
        if (!chosen) {
          throw new Problem('no-capacity', `no ${role} can take ${kind === 'whep' ? 'a viewer' : 'a publisher'} right now`, { headers: { 'Retry-After': '5' } });
        }
        // This process is the chosen node (`relaycast all`): serve the request here.
        if (chosen.node.id === ctx.config.nodeId) return next();
        // The rest of the query goes along (a token, say); the hint was for the balancer.
        const params = new URLSearchParams(req.originalUrl.includes('?') ? req.originalUrl.slice(req.originalUrl.indexOf('?') + 1) : '');
        params.delete('lost');
        const query = params.size > 0 ? `?${params}` : '';
        res.set(CORS).redirect(307, `${this.nodeUrl(chosen.node)}/${kind}/${stream}${query}`);
      });
    }
    // HLS players (and CDNs) start at a stream's playlist here and are sent to the nearest edge,
    // where the playlist's relative URIs then resolve: 307, so that the client asks the edge itself.
    this.router.get('/hls/:stream/:file', async (req, res, next) => {
      const stream = String(req.params.stream);
      if (!STREAM_NAME.test(stream)) return next();
      const { lost } = parseRouteQuery({ lost: req.query.lost });
      const { choices } = await this.route(req, stream, 'edge', 1, lost);
      const chosen = choices[0];
      if (!chosen) throw new Problem('no-capacity', 'no edge can take a viewer right now', { headers: { 'Retry-After': '5' } });
      if (chosen.node.id === ctx.config.nodeId) return next();
      const params = new URLSearchParams(req.originalUrl.includes('?') ? req.originalUrl.slice(req.originalUrl.indexOf('?') + 1) : '');
      params.delete('lost');
      const query = params.size > 0 ? `?${params}` : '';
      // Not cacheable: the edge depends on who asks, and from where.
      res.set(CORS).set('Cache-Control', 'no-store').redirect(307, `${this.nodeUrl(chosen.node)}/hls/${stream}/${encodeURIComponent(String(req.params.file))}${query}`);
    });
    // Recordings play back from an edge too (edge/RecordingPlayback.ts): the nearest, as for HLS.
    // The recording's id stands for the stream in the choice (stream-affinity keeps one on one edge).
    this.router.get(`${RECORDINGS_PUBLIC_PATH}/:id/*rest`, async (req, res, next) => {
      const id = String(req.params.id);
      if (!RECORDING_ID.test(id)) return next();
      const { choices } = await this.route(req, id, 'edge', 1);
      const chosen = choices[0];
      if (!chosen) throw new Problem('no-capacity', 'no edge can take a viewer right now', { headers: { 'Retry-After': '5' } });
      if (chosen.node.id === ctx.config.nodeId) return next();
      res.set(CORS).set('Cache-Control', 'no-store').redirect(307, `${this.nodeUrl(chosen.node)}${req.originalUrl}`);
    });
    this.#auth = new AdminAuth(ctx.db.knex);
    const operations = adminOperations({
      db: ctx.db.knex,
      config: ctx.config,
      clusterSecret: ctx.clusterSecret,
      logger: ctx.logger,
      reloadHaproxy: ctx.config.haproxyBin ? () => this.#haproxy!.refresh(true) : undefined,
      nodesChanged: () => {
        this.#snapshot = undefined;
      },
      tokensChanged: () => this.#auth.forget(),
      capacity: () => this.capacity(),
      rtmpIngest: async (req, stream) => {
        // One address for the publish, whichever origin takes it now or after this one fails.
        if (this.#rtmpThroughHaproxy) return this.#rtmpThroughHaproxy;
        const { choices } = await this.route(req, stream, 'origin');
        return choices.find((c) => c.node.rtmpUrl)?.node.rtmpUrl ?? undefined;
      },
    });
    const api = operationsRouter(operations, (req, scope) => this.#auth.authorize(req.get('authorization'), scope));
    this.router.use('/api/v1', api);
    this.router.use(webPagesRouter());
  }

  /**
   * The DVR window of `stream` (`GET /v1/dvr`): its live recording (the latest, while it is being
   * recorded) from the later of its start and DVR_WINDOW_MS ago, and the balancer's URL of that
   * range's playlist (EVENT: it grows while the recording goes on; the 307 to an edge is the
   * balancer's, as for any recording). A private stream needs a `playback` token (401/403 without
   * one), which the playlist URL then carries; 404 `not-found` when nothing is being recorded.
   */
  async dvrWindow(stream: string, token: string | undefined, now = Date.now()) {
    const { db, config, clusterSecret } = this.#ctx;
    const isPrivate = (await getStream(db.knex, stream))?.private ?? false;
    if (isPrivate) await authorizeStream(token, { secret: clusterSecret, stream, action: 'playback' });
    const recording = await latestRecording(db.knex, stream);
    if (!recording || !recordingLive(recording, now)) throw new Problem('not-found', `${stream} is not being recorded`);
    const from = new Date(Math.max(recording.startedAt.getTime(), now - DVR_WINDOW_MS));
    const query = new URLSearchParams({ from: from.toISOString(), ...(isPrivate && token ? { token } : {}) });
    return {
      stream,
      recording: { id: recording.id, startedAt: recording.startedAt.toISOString() },
      from: from.toISOString(),
      playlistUrl: `${recordingUrls(config.publicUrl, recording.id).playlistUrl}?${query}`,
    };
  }

  /** Stores the first admin token (see AdminAuth.bootstrap), printing a made-up one once. */
  async databaseReady(): Promise<void> {
    this.#webhooks.start();
    const made = await this.#auth.bootstrap(this.#ctx.config.adminToken, this.#ctx.logger);
    if (made) {
      // On the terminal only: the log is shipped and kept, and must never hold a secret.
      process.stderr.write(
        `\n  Relaycast admin token (shown once; keep it, or set RELAYCAST_ADMIN_TOKEN):\n\n    ${made}\n\n` +
          `  Dashboard: ${this.#ctx.config.publicUrl}/dashboard   API: ${this.#ctx.config.publicUrl}/api/v1/openapi.json\n\n`,
      );
    }
  }

  async start(): Promise<void> {
    const { config } = this.#ctx;
    this.#geo = await GeoLocator.open({
      databases: config.geoDatabase,
      pins: config.geoPins,
      trustedProxies: config.trustedProxies,
      defaultRegion: config.defaultRegion,
    });
    if (config.haproxyBin) {
      const self = config.httpHost === '0.0.0.0' || config.httpHost === '::' ? '127.0.0.1' : config.httpHost;
      const dir = config.haproxyDir ?? join(config.dataDir, 'haproxy');
      const tlsCrt = this.#ctx.certificates ? this.#haproxyCertificate(dir, this.#ctx.certificates) : undefined;
      this.#haproxy = await HaproxyController.start({
        bin: config.haproxyBin,
        dir,
        layout: {
          nodeId: config.nodeId,
          bind: config.haproxyBind,
          balancer: `${self}:${config.httpPort}`,
          defaultRegion: config.defaultRegion,
          caFile: config.haproxyCaFile,
          pinSessions: config.nodeUrls === 'balancer',
          ...(tlsCrt ? { tlsCrt, balancerTls: true } : {}),
          // The RTMP frontend listens on HTTP's address.
          ...(config.haproxyRtmpPort > 0 ? { rtmpBind: `${config.haproxyBind.slice(0, config.haproxyBind.lastIndexOf(':'))}:${config.haproxyRtmpPort}` } : {}),
        },
        pins: config.geoPins,
        logger: this.#ctx.logger,
        metrics: this.#ctx.metrics,
        nodes: () => this.#nodes(),
        geoMap: config.haproxyGeoMap === 'full' ? { databases: config.geoDatabase } : undefined,
      });
    }
  }

  /**
   * The URL clients are given for a node: its public URL, or with --node-urls balancer the path of
   * this balancer's HAProxy that pins it (/n/{node}), so that browsers need the balancer's
   * certificate only.
   */
  nodeUrl(node: Pick<NodeSnapshot, 'id' | 'publicUrl'>): string {
    return this.#ctx.config.nodeUrls === 'balancer' ? `${this.#ctx.config.publicUrl}/n/${node.id}` : node.publicUrl;
  }

  /**
   * HAProxy terminates TLS with the balancer's own certificate and key, which it takes as one PEM
   * file (written beside its config, readable by this user only). Renewals reach it through the
   * runtime API (HaproxyController.updateCertificate), from the process's one watcher (which the
   * node's HTTPS port starts and stops).
   */
  #haproxyCertificate(dir: string, watcher: CertificateWatcher): string {
    const path = join(dir, 'tls.pem');
    const pem = () => `${watcher.current.cert.toString().trim()}\n${watcher.current.key.toString().trim()}\n`;
    mkdirSync(dir, { recursive: true });
    writeFileSync(path, pem(), { mode: 0o600 });
    watcher.on('reloaded', () => void this.#haproxy?.updateCertificate(pem()).catch(() => undefined));
    return path;
  }

  /**
   * Where a request for `stream` should go: ranked choices for the client of `req`. `lost`: the
   * node the client just lost, checked first (NodeLossChecker); nodes that did not answer such a
   * check lately are left out.
   */
  async route(req: Request, stream: string, role: 'edge' | 'origin', limit = ROUTE_CHOICES, lost?: string) {
    const client = this.#geo!.clientAddress(req.socket.remoteAddress ?? '', req.get('x-forwarded-for'));
    const location = this.#geo!.locate(client);
    let index = await this.#index();
    const named = lost === undefined || lost === this.#ctx.config.nodeId ? undefined : index.nodes.find((n) => n.id === lost);
    if (named) {
      await this.#losses.check(named);
      index = await this.#index();
    }
    const unreachable = this.#losses.unreachable();
    const ranked = index.rank({ stream, role, location }, limit + unreachable.size);
    const choices = (unreachable.size === 0 ? ranked : ranked.filter((c) => !unreachable.has(c.node.id))).slice(0, limit);
    return { client, location, choices };
  }

  /** The registry as the policies see it, read at most once per SNAPSHOT_TTL_MS, with its route index. */
  #index(): Promise<RouteIndex> {
    const now = Date.now();
    if (!this.#snapshot || now - this.#snapshot.at > SNAPSHOT_TTL_MS) {
      const thresholds = { streams: this.#ctx.config.streamThreshold, viewers: this.#ctx.config.viewerThreshold };
      const previous = this.#snapshot?.index.catch(() => undefined);
      const index = this.#readSnapshot().then(async (nodes) => new RouteIndex(nodes, this.#policy, thresholds, await previous));
      this.#snapshot = { at: now, index };
      index.catch(() => {
        if (this.#snapshot?.index === index) this.#snapshot = undefined;
      });
    }
    return this.#snapshot.index;
  }

  async #nodes(): Promise<NodeSnapshot[]> {
    return [...(await this.#index()).nodes];
  }

  async #readSnapshot(): Promise<NodeSnapshot[]> {
    const { knex } = this.#ctx.db;
    const [nodes, relayed, live] = await Promise.all([listNodes(knex, { state: 'up' }), listRelayedStreams(knex), listStreams(knex, { state: 'live' })]);
    const streams = new Map<string, Set<string>>();
    const add = (node: string, stream: string) => streams.set(node, (streams.get(node) ?? new Set()).add(stream));
    for (const r of relayed) add(r.nodeId, r.stream);
    for (const s of live) if (s.originNodeId) add(s.originNodeId, s.name);
    return nodes.map((n) => ({
      id: n.id,
      roles: n.roles,
      region: n.region,
      lat: n.lat,
      lon: n.lon,
      publicUrl: n.publicUrl,
      capacity: n.capacity,
      viewers: n.viewers,
      cpu: n.cpu,
      bitrateOut: n.bitrateOut,
      egressCapacity: n.egressCapacity,
      draining: n.draining,
      streams: streams.get(n.id) ?? new Set(),
      agentPort: n.agentPort,
      rtmpUrl: n.rtmpUrl,
      announcedIp: n.announcedIp,
    }));
  }

  /** Edges wanted per region (balancer/capacity.ts); every region an edge was ever seen in is listed. */
  async capacity(): Promise<RegionCapacity[]> {
    const { config, db } = this.#ctx;
    const edges = await listNodes(db.knex, { role: 'edge' });
    return planCapacity(
      edges.filter((e) => e.state === 'up'),
      { targetUtilisation: config.targetUtilisation, slackViewers: config.slackViewers, minEdges: config.minEdgesPerRegion, defaultCapacity: DEFAULT_EDGE_CAPACITY },
      edges.map((e) => e.region),
    );
  }

  /** Called at every heartbeat and /metrics scrape: the capacity and recording-storage gauges are refreshed here. */
  async load(): Promise<RoleLoad> {
    const { metrics, logger } = this.#ctx;
    try {
      const plan = await this.capacity();
      for (const gauge of [metrics.regionEdges, metrics.regionDesiredEdges, metrics.regionUtilisation]) gauge.reset();
      for (const r of plan) {
        metrics.regionEdges.set({ region: r.region }, r.edges);
        metrics.regionDesiredEdges.set({ region: r.region }, r.desiredEdges);
        metrics.regionUtilisation.set({ region: r.region }, r.utilisation);
      }
      metrics.recordingStoreBytes.reset();
      for (const r of await recordedBytesByStream(this.#ctx.db.knex)) metrics.recordingStoreBytes.set({ stream: r.stream }, r.bytes);
    } catch (error) {
      // Stale gauges are better than none; the heartbeat itself reports the database.
      logger.debug({ err: error }, 'capacity plan or recording sums failed');
    }
    return { viewers: 0, streams: 0, bitrateOut: 0 };
  }

  async close(): Promise<void> {
    await this.#webhooks.stop();
    await this.#haproxy?.stop();
  }
}
