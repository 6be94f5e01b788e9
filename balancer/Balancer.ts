import { join } from 'node:path';
import express, { type Request, type Router } from 'express';
import { z } from 'zod';
import { Problem } from '../core/errors.ts';
import type { Role, RoleContext, RoleLoad } from '../core/Role.ts';
import { bearerToken, secretsEqual, signStreamToken, STREAM_NAME } from '../core/tokens.ts';
import { recordAudit } from '../db/repositories/audit.ts';
import { issueStreamKey, revokeStreamKeys } from '../db/repositories/streamKeys.ts';
import { listNodes, setNodeDraining } from '../db/repositories/nodes.ts';
import { listRelayedStreams } from '../db/repositories/relays.ts';
import { getStream, listStreams } from '../db/repositories/streams.ts';
import { CORS } from '../core/signalling.ts';
import { GeoLocator, pinsForMap } from './GeoLocator.ts';
import { HaproxyController } from './HaproxyController.ts';
import { createPolicy, rank, type NodeSnapshot, type Policy } from './policies.ts';

/**
 * The balancer role: sends each viewer to the nearest edge with room and each publisher to the
 * nearest origin (route API, and 307 redirects on WHEP/WHIP as RFC 9725 asks for load
 * balancing), and serves the admin API (so far: streams and their RTMP keys).
 */

const createStream = z.object({ name: z.string().regex(STREAM_NAME, 'stream names are 1 to 64 letters, digits, "_" or "-"') }).strict();

/** Publish tokens handed out with a new stream last a day; the key does not expire. */
const PUBLISH_TOKEN_TTL_S = 24 * 3600;

/** What the balancer needs: no media. */
export type BalancerContext = Pick<RoleContext, 'config' | 'logger' | 'metrics' | 'db' | 'clusterSecret'>;

/**
 * How old the balancer's copy of the registry may be. Heartbeats come every 2 s; reading the
 * registry at most once a second keeps the database out of the per-request path at any rate.
 */
const SNAPSHOT_TTL_MS = 1000;

/** How many ranked choices the route API returns: the pick and a few to spill to. */
const ROUTE_CHOICES = 10;

export class Balancer implements Role {
  readonly router: Router;
  readonly #ctx: BalancerContext;
  readonly #policy: Policy;
  #geo: GeoLocator | undefined;
  #haproxy: HaproxyController | undefined;
  #snapshot: { at: number; nodes: Promise<NodeSnapshot[]> } | undefined;

  constructor(ctx: BalancerContext) {
    this.#ctx = ctx;
    this.#policy = createPolicy(ctx.config.policy);
    this.router = express.Router();
    this.router.get('/v1/route', async (req, res) => {
      const role = req.query.role === 'origin' ? 'origin' : req.query.role === undefined || req.query.role === 'edge' ? 'edge' : undefined;
      if (!role) throw new Problem(400, 'Invalid Request', 'role must be edge or origin');
      const stream = String(req.query.stream ?? '');
      if (!STREAM_NAME.test(stream)) throw new Problem(400, 'Invalid Stream Name', 'stream names are 1 to 64 letters, digits, "_" or "-"');
      const { client, location, choices } = await this.route(req, stream, role);
      res.json({
        stream,
        role,
        policy: this.#policy.name,
        client: { address: client, location },
        choices: choices.map((c) => ({ node: c.node.id, region: c.node.region, url: c.node.publicUrl, load: Number(c.load.toFixed(3)), distanceKm: c.distanceKm === undefined ? null : Math.round(c.distanceKm) })),
      });
    });
    for (const [kind, role] of [['whep', 'edge'], ['whip', 'origin']] as const) {
      this.router.options(`/${kind}/:stream`, (_req, res) => {
        res.set(CORS).set('Accept-Post', 'application/sdp').status(204).end();
      });
      // 307, never 301/302 (RFC 9725 §4.5): the client repeats the POST, body and all, at the node.
      this.router.post(`/${kind}/:stream`, async (req, res, next) => {
        const stream = String(req.params.stream);
        if (!STREAM_NAME.test(stream)) return next();
        const { choices } = await this.route(req, stream, role, 1);
        const chosen = choices[0];
        if (!chosen) {
          throw new Problem(503, 'No Capacity', `no ${role} can take ${kind === 'whep' ? 'a viewer' : 'a publisher'} right now`, { headers: { 'Retry-After': '5' } });
        }
        // This process is the chosen node (`relaycast all`): serve the request here.
        if (chosen.node.id === ctx.config.nodeId) return next();
        const query = req.originalUrl.includes('?') ? req.originalUrl.slice(req.originalUrl.indexOf('?')) : '';
        res.set(CORS).redirect(307, `${chosen.node.publicUrl}/${kind}/${stream}${query}`);
      });
    }
    const api = express.Router();
    api.use(express.json({ limit: '16kb' }));
    api.use((req, _res, next) => {
      this.#authorizeAdmin(req);
      next();
    });
    api.post('/streams', async (req, res) => {
      const parsed = createStream.safeParse(req.body);
      if (!parsed.success) throw new Problem(400, 'Invalid Request', parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '));
      const { name } = parsed.data;
      const streamKey = await issueStreamKey(ctx.db.knex, name);
      await recordAudit(ctx.db.knex, { actor: 'admin', action: 'stream.create', target: name });
      res.status(201).json({ name, streamKey, ...(await this.#urls(name, streamKey)) });
    });
    api.post('/streams/:name/key', async (req, res) => {
      const name = this.#existingName(req);
      if (!(await getStream(ctx.db.knex, name))) throw new Problem(404, 'Not Found', `no stream named ${name}`);
      const streamKey = await issueStreamKey(ctx.db.knex, name);
      await recordAudit(ctx.db.knex, { actor: 'admin', action: 'stream.key.rotate', target: name });
      res.status(201).json({ name, streamKey, ...(await this.#urls(name, streamKey)) });
    });
    api.delete('/streams/:name/key', async (req, res) => {
      const name = this.#existingName(req);
      const revoked = await revokeStreamKeys(ctx.db.knex, name);
      await recordAudit(ctx.db.knex, { actor: 'admin', action: 'stream.key.revoke', target: name, detail: { revoked } });
      res.status(204).end();
    });
    for (const [action, draining] of [['drain', true], ['undrain', false]] as const) {
      api.post(`/nodes/:id/${action}`, async (req, res) => {
        const id = String(req.params.id);
        if (!(await setNodeDraining(ctx.db.knex, id, draining))) throw new Problem(404, 'Not Found', `no node ${id}`);
        await recordAudit(ctx.db.knex, { actor: 'admin', action: `node.${action}`, target: id });
        this.#snapshot = undefined;
        res.json({ id, draining });
      });
    }
    api.post('/haproxy/reload', async (_req, res) => {
      if (!this.#haproxy) throw new Problem(409, 'No HAProxy', 'this balancer does not run HAProxy (set --haproxy-bin)');
      await this.#haproxy.refresh(true);
      await recordAudit(ctx.db.knex, { actor: 'admin', action: 'haproxy.reload' });
      res.status(204).end();
    });
    this.router.use('/api/v1', api);
  }

  async start(): Promise<void> {
    const { config } = this.#ctx;
    this.#geo = await GeoLocator.open({
      databases: config.geoDatabase?.split(','),
      pins: config.geoPins,
      trustedProxies: config.trustedProxies,
      defaultRegion: config.defaultRegion,
    });
    if (config.haproxyBin) {
      const self = config.httpHost === '0.0.0.0' || config.httpHost === '::' ? '127.0.0.1' : config.httpHost;
      this.#haproxy = await HaproxyController.start({
        bin: config.haproxyBin,
        dir: config.haproxyDir ?? join(config.dataDir, 'haproxy'),
        layout: { nodeId: config.nodeId, bind: config.haproxyBind, balancer: `${self}:${config.httpPort}`, defaultRegion: config.defaultRegion },
        pins: pinsForMap(config.geoPins),
        logger: this.#ctx.logger,
        metrics: this.#ctx.metrics,
        nodes: () => this.#nodes(),
      });
    }
  }

  /** Where a request for `stream` should go: ranked choices for the client of `req`. */
  async route(req: Request, stream: string, role: 'edge' | 'origin', limit = ROUTE_CHOICES) {
    const client = this.#geo!.clientAddress(req.socket.remoteAddress ?? '', req.get('x-forwarded-for'));
    const location = this.#geo!.locate(client);
    const thresholds = { streams: this.#ctx.config.streamThreshold, viewers: this.#ctx.config.viewerThreshold };
    const choices = rank(await this.#nodes(), { stream, role, location }, this.#policy, thresholds, limit);
    return { client, location, choices };
  }

  /** The registry as the policies see it, read at most once per SNAPSHOT_TTL_MS. */
  #nodes(): Promise<NodeSnapshot[]> {
    const now = Date.now();
    if (!this.#snapshot || now - this.#snapshot.at > SNAPSHOT_TTL_MS) {
      const nodes = this.#readSnapshot();
      this.#snapshot = { at: now, nodes };
      nodes.catch(() => {
        if (this.#snapshot?.nodes === nodes) this.#snapshot = undefined;
      });
    }
    return this.#snapshot.nodes;
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
      draining: n.draining,
      streams: streams.get(n.id) ?? new Set(),
      agentPort: n.agentPort,
    }));
  }

  async load(): Promise<RoleLoad> {
    return { viewers: 0, streams: 0, bitrateOut: 0 };
  }

  async close(): Promise<void> {
    await this.#haproxy?.stop();
  }

  #existingName(req: Request): string {
    const name = String(req.params.name);
    if (!STREAM_NAME.test(name)) throw new Problem(400, 'Invalid Stream Name', 'stream names are 1 to 64 letters, digits, "_" or "-"');
    return name;
  }

  #authorizeAdmin(req: Request): void {
    const { adminToken } = this.#ctx.config;
    const token = bearerToken(req.get('authorization'));
    const headers = { 'WWW-Authenticate': 'Bearer realm="relaycast-admin"' };
    if (!adminToken) throw new Problem(401, 'Unauthorized', 'the admin API is off: set RELAYCAST_ADMIN_TOKEN', { headers });
    if (!token || !secretsEqual(token, adminToken)) throw new Problem(401, 'Unauthorized', 'a valid admin token is required', { headers });
  }

  async #urls(name: string, streamKey: string) {
    const { config, clusterSecret } = this.#ctx;
    const host = new URL(config.publicUrl).hostname;
    return {
      rtmpUrl: `rtmp://${host}:${config.rtmpPort || 1935}/live/${streamKey}`,
      whipUrl: `${config.publicUrl}/whip/${name}`,
      whepUrl: `${config.publicUrl}/whep/${name}`,
      publishToken: await signStreamToken(clusterSecret, { stream: name, action: 'publish', ttlSeconds: PUBLISH_TOKEN_TTL_S }),
    };
  }
}
