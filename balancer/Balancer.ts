import express, { type Request, type Router } from 'express';
import { z } from 'zod';
import { Problem } from '../core/errors.ts';
import type { Role, RoleContext, RoleLoad } from '../core/Role.ts';
import { bearerToken, secretsEqual, signStreamToken, STREAM_NAME } from '../core/tokens.ts';
import { recordAudit } from '../db/repositories/audit.ts';
import { issueStreamKey, revokeStreamKeys } from '../db/repositories/streamKeys.ts';
import { getStream } from '../db/repositories/streams.ts';

/**
 * The balancer role. So far it serves the first piece of the admin API: creating a stream with
 * its RTMP key and tokens, rotating and revoking the key. Edge selection, HAProxy and the rest of
 * the API come with the balancer and API issues.
 */

const createStream = z.object({ name: z.string().regex(STREAM_NAME, 'stream names are 1 to 64 letters, digits, "_" or "-"') }).strict();

/** Publish tokens handed out with a new stream last a day; the key does not expire. */
const PUBLISH_TOKEN_TTL_S = 24 * 3600;

/** What the balancer needs: no media. */
export type BalancerContext = Pick<RoleContext, 'config' | 'logger' | 'metrics' | 'db' | 'clusterSecret'>;

export class Balancer implements Role {
  readonly router: Router;
  readonly #ctx: BalancerContext;

  constructor(ctx: BalancerContext) {
    this.#ctx = ctx;
    this.router = express.Router();
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
    this.router.use('/api/v1', api);
  }

  async load(): Promise<RoleLoad> {
    return { viewers: 0, streams: 0, bitrateOut: 0 };
  }

  async close(): Promise<void> {}

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
