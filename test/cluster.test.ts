import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Database } from '../db/Database.ts';
import { listAudit } from '../db/repositories/audit.ts';
import { getNode } from '../db/repositories/nodes.ts';
import { getStream, markStreamLive } from '../db/repositories/streams.ts';
import { createTestDatabase, PrivatePostgres, type TestDatabase } from '../kit/postgres.ts';
import { waitFor } from '../kit/processes.ts';
import { startRelaycast } from '../kit/relaycast.ts';

/** Whole relaycast processes, started as a user starts them, on PGlite and on real Postgres. */

describe('relaycast all on the embedded database (npm start)', () => {
  it('serves /healthz, and /metrics that promtool accepts, then exits 0 on SIGTERM', async () => {
    const node = await startRelaycast({ roles: ['all'] });
    try {
      const health = await fetch(`${node.url}/healthz`);
      assert.equal(health.status, 200);
      const body = (await health.json()) as Record<string, unknown>;
      assert.deepEqual(body.roles, ['origin', 'edge', 'balancer']);
      assert.equal(body.database, 'up');
      assert.equal(body.mediaWorkers, 1);

      const metrics = await fetch(`${node.url}/metrics`);
      assert.equal(metrics.status, 200);
      const text = await metrics.text();
      assert.match(text, /^relaycast_media_workers\{node="[^"]+"\} 1$/m);
      assert.match(text, /^relaycast_heartbeats_total\{[^}]*outcome="ok"[^}]*\} [1-9]/m);
      const file = join(mkdtempSync(join(tmpdir(), 'relaycast-metrics-')), 'metrics.txt');
      writeFileSync(file, text);
      const check = spawnSync('sh', ['-c', `promtool check metrics < ${file}`], { encoding: 'utf8' });
      assert.equal(check.status, 0, `promtool check metrics failed:\n${check.stdout}${check.stderr}`);

      const missing = await fetch(`${node.url}/no-such-thing`);
      assert.equal(missing.status, 404);
      assert.equal(missing.headers.get('content-type'), 'application/problem+json; charset=utf-8');
      assert.equal(((await missing.json()) as { status: number }).status, 404);
    } finally {
      assert.equal(await node.stop(), 0);
    }
  });
});

describe('two nodes on a real Postgres', () => {
  let testDb: TestDatabase;
  let db: Database;
  before(async () => {
    testDb = await createTestDatabase();
    db = Database.open({ url: testDb.url });
  });
  after(async () => {
    await db?.close();
    await testDb?.drop();
  });

  it('registers both; when one is killed the other declares it dead and cleans up after it', async () => {
    const ttl = ['--heartbeat-ms', '300', '--node-ttl-ms', '1500'];
    const origin = await startRelaycast({ roles: ['origin'], databaseUrl: testDb.url, args: ['--node-id', 'origin-1', '--region', 'eu', ...ttl] });
    const edge = await startRelaycast({ roles: ['edge'], databaseUrl: testDb.url, args: ['--node-id', 'edge-1', '--region', 'us', ...ttl] });
    try {
      assert.equal((await getNode(db.knex, 'origin-1'))?.state, 'up');
      const edgeRow = await getNode(db.knex, 'edge-1');
      assert.equal(edgeRow?.state, 'up');
      assert.equal(edgeRow?.region, 'us');
      assert.equal(edgeRow?.publicUrl, `http://127.0.0.1:${edge.port}`);
      await markStreamLive(db.knex, { name: 'show', originNodeId: 'origin-1', ingestProtocol: 'whip', codecs: null, publisherSession: 's' });

      await origin.kill();
      await waitFor('edge-1 to declare origin-1 dead', async () => (await getNode(db.knex, 'origin-1'))?.state === 'dead', 20_000);
      assert.equal((await getStream(db.knex, 'show'))?.state, 'idle');
      const [entry] = await listAudit(db.knex, { action: 'node.dead', target: 'origin-1' });
      assert.equal(entry?.actor, 'edge-1');

      assert.equal(await edge.stop(), 0, 'SIGTERM exits 0');
      assert.equal((await getNode(db.knex, 'edge-1'))?.state, 'gone');
    } finally {
      await origin.kill();
      await edge.kill();
    }
  });
});

describe('a node through a Postgres outage', () => {
  let pg: PrivatePostgres;
  before(async () => {
    pg = await PrivatePostgres.create();
  });
  after(() => pg?.destroy());

  it('stays up while Postgres is stopped and heartbeats again once it is back', async () => {
    const node = await startRelaycast({ roles: ['edge'], databaseUrl: pg.url, args: ['--node-id', 'edge-1', '--heartbeat-ms', '300', '--node-ttl-ms', '3000'] });
    try {
      pg.stop();
      await waitFor('/readyz to report the database down', async () => (await fetch(`${node.url}/readyz`)).status === 503, 20_000);
      const health = await fetch(`${node.url}/healthz`);
      assert.equal(health.status, 200, 'liveness holds through the outage');
      assert.equal(((await health.json()) as { database: string }).database, 'down');

      const restarted = Date.now();
      pg.start();
      await waitFor('/readyz to report ready again', async () => (await fetch(`${node.url}/readyz`)).status === 200, 30_000);
      assert.equal(node.child.exitCode, null, 'the process never exited');
      const db = Database.open({ url: pg.url });
      try {
        const row = await getNode(db.knex, 'edge-1');
        assert.equal(row?.state, 'up');
        assert.ok(row!.heartbeatAt.getTime() >= restarted, `a heartbeat after the outage (${row!.heartbeatAt.toISOString()})`);
      } finally {
        await db.close();
      }
      assert.match(node.output(), /registry heartbeat failed; retrying/);
      assert.match(node.output(), /database reachable again/);
      assert.equal(await node.stop(), 0);
    } finally {
      await node.kill();
    }
  });
});
