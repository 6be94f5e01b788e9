import assert from 'node:assert/strict';
import { Database } from '../../db/Database.ts';
import { createTestDatabase, type TestDatabase } from '../../kit/postgres.ts';
import { startRelaycast, type RelaycastProcess } from '../../kit/relaycast.ts';

/**
 * The two-process cluster the RTMP and interop tests run: an origin that is also the balancer
 * (admin API, route API, player pages) and an edge, on a Postgres database of their own, with short
 * heartbeats and a one-second relay linger.
 */
export interface OriginEdge {
  testDb: TestDatabase;
  db: Database;
  origin: RelaycastProcess;
  edge: RelaycastProcess;
  /** POSTs /api/v1/streams on the origin (with `settings`, e.g. rtmpLadder): the new stream's key and URLs. */
  createStream(name: string, settings?: Record<string, unknown>): Promise<{ streamKey: string; rtmpUrl: string }>;
  stop(): Promise<void>;
}

/** `args` go to both processes, after the common ones (the last of a repeated flag wins); `originArgs` to the origin alone. */
export async function startOriginEdge(options: { secret: string; admin: string; args?: string[]; originArgs?: string[] }): Promise<OriginEdge> {
  const testDb = await createTestDatabase();
  const db = Database.open({ url: testDb.url });
  const env = { RELAYCAST_CLUSTER_SECRET: options.secret, RELAYCAST_ADMIN_TOKEN: options.admin };
  const common = ['--rtc-listen-ip', '127.0.0.1', '--heartbeat-ms', '500', '--node-ttl-ms', '3000', '--relay-linger-ms', '1000', ...(options.args ?? [])];
  const [origin, edge] = await Promise.all([
    startRelaycast({ roles: ['origin', 'balancer'], databaseUrl: testDb.url, env, args: ['--node-id', 'origin-1', ...common, ...(options.originArgs ?? [])] }),
    startRelaycast({ roles: ['edge'], databaseUrl: testDb.url, env, args: ['--node-id', 'edge-1', ...common] }),
  ]);
  return {
    testDb,
    db,
    origin,
    edge,
    async createStream(name, settings = {}) {
      const res = await fetch(`${origin.url}/api/v1/streams`, {
        method: 'POST',
        headers: { authorization: `Bearer ${options.admin}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name, ...settings }),
      });
      assert.equal(res.status, 201, await res.clone().text());
      return (await res.json()) as { streamKey: string; rtmpUrl: string };
    },
    async stop() {
      await edge.stop();
      await origin.stop();
      await db.close();
      await testDb.drop();
    },
  };
}
