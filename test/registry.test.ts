import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { NodeRegistry } from '../app/NodeRegistry.ts';
import { Database } from '../db/Database.ts';
import { listAudit } from '../db/repositories/audit.ts';
import { getNode, reportNodeLost, upsertNode, type NodeInfo } from '../db/repositories/nodes.ts';
import { createRelay, listRelays } from '../db/repositories/relays.ts';
import { getStream, markStreamLive } from '../db/repositories/streams.ts';
import { freePort } from '../kit/postgres.ts';
import { waitFor } from '../kit/processes.ts';
import { BACKENDS } from './helpers/backends.ts';

const logger = pino({ level: 'silent' });
const LOAD = { viewers: 3, streams: 1, bitrateOut: 1_500_000, cpu: 0.25 };
// Short enough to keep the suite quick; the TTL leaves room for two missed beats.
const HEARTBEAT_MS = 100;
const TTL_MS = 500;

function info(id: string, roles = ['edge']): NodeInfo {
  return { id, roles, region: 'eu', lat: 48.8, lon: 2.3, publicUrl: `http://${id}`, announcedIp: '127.0.0.1', version: 'test', capacity: 100, egressCapacity: 1e9, agentPort: null, rtmpUrl: null };
}

function registry(db: Database, id: string, ttlMs = TTL_MS): NodeRegistry {
  return new NodeRegistry({ knex: db.knex, info: info(id), load: () => LOAD, heartbeatMs: HEARTBEAT_MS, ttlMs, logger });
}

/** An HTTP server that answers /healthz as the node `id` would (X-Relaycast-Node). */
async function answering(id: string): Promise<{ url: string; server: Server }> {
  const server = createServer((_req, res) => res.writeHead(200, { 'x-relaycast-node': id }).end('{"status":"ok"}'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

/** A node row with this public URL, last heartbeat `agoMs` ago. */
async function nodeAt(db: Database, id: string, publicUrl: string, agoMs: number): Promise<void> {
  await upsertNode(db.knex, { ...info(id, ['origin']), publicUrl }, LOAD);
  await db.knex('nodes').where({ id }).update({ heartbeat_at: db.knex.raw(`now() - make_interval(secs => ?)`, [agoMs / 1000]) });
}

/** A node that registered and then crashed: a row nobody heartbeats any more. */
async function crashedNode(db: Database, id: string, roles: string[], agoMs = 0): Promise<void> {
  await upsertNode(db.knex, info(id, roles), LOAD);
  if (agoMs) await db.knex('nodes').where({ id }).update({ heartbeat_at: db.knex.raw(`now() - make_interval(secs => ?)`, [agoMs / 1000]) });
}

for (const backend of BACKENDS) {
  describe(`node registry on ${backend.name}`, () => {
    let handle: Awaited<ReturnType<typeof backend.open>>;
    const started: NodeRegistry[] = [];
    beforeEach(async () => {
      handle = await backend.open();
      await handle.db.migrate();
    });
    afterEach(async () => {
      for (const r of started.splice(0)) await r.stop();
      await handle?.close();
    });

    it('registers a node and heartbeats its load', async () => {
      const { db } = handle;
      const a = registry(db, 'edge-a');
      started.push(a);
      await a.start();
      const first = await getNode(db.knex, 'edge-a');
      assert.equal(first?.state, 'up');
      assert.deepEqual(first?.roles, ['edge']);
      assert.equal(first?.viewers, 3);
      assert.equal(first?.bitrateOut, 1_500_000);
      await waitFor('a later heartbeat', async () => (await getNode(db.knex, 'edge-a'))!.heartbeatAt > first!.heartbeatAt, 5000, 50);
      assert.equal(a.databaseUp, true);
    });

    it('declares a silent node dead after the TTL and cleans up its streams and relays', async () => {
      const { db } = handle;
      await crashedNode(db, 'origin-b', ['origin']);
      await markStreamLive(db.knex, { name: 'show', originNodeId: 'origin-b', ingestProtocol: 'whip', codecs: null, publisherSession: 's' });
      const stream = await getStream(db.knex, 'show');
      const a = registry(db, 'edge-a');
      started.push(a);
      await a.start();
      await createRelay(db.knex, { streamId: stream!.id, edgeNodeId: 'edge-a', upstreamNodeId: 'origin-b', treeKey: 1, tier: 0 });

      await waitFor('origin-b declared dead', async () => (await getNode(db.knex, 'origin-b'))?.state === 'dead', 10_000, 50);
      assert.equal((await getNode(db.knex, 'edge-a'))?.state, 'up', 'the live node stays up');
      const after = await getStream(db.knex, 'show');
      assert.equal(after?.state, 'idle');
      assert.equal(after?.originNodeId, null);
      assert.deepEqual(await listRelays(db.knex), []);
      const [entry] = await listAudit(db.knex, { action: 'node.dead' });
      assert.equal(entry?.actor, 'edge-a');
      assert.equal(entry?.target, 'origin-b');
      assert.deepEqual(entry?.detail, { streams: ['show'] });
    });

    it('cleans up each dead node exactly once when several nodes reap at the same time', async () => {
      const { db } = handle;
      for (const id of ['dead-1', 'dead-2', 'dead-3']) await crashedNode(db, id, ['edge'], 60_000);
      await crashedNode(db, 'fresh', ['edge']);
      // On Postgres each reaper has its own connection pool, as separate processes would.
      const extra = backend.name === 'postgres' ? [Database.open({ url: (db.knex.client.config.connection as { connectionString: string }).connectionString })] : [];
      try {
        const reapers = [registry(db, 'x'), registry(extra[0] ?? db, 'y'), registry(db, 'z')];
        const results = await Promise.all(reapers.map((r) => r.reap()));
        assert.deepEqual(results.flat().sort(), ['dead-1', 'dead-2', 'dead-3']);
        assert.equal((await getNode(db.knex, 'fresh'))?.state, 'up');
        assert.equal((await listAudit(db.knex, { action: 'node.dead' })).length, 3);
      } finally {
        for (const d of extra) await d.close();
      }
    });

    // A TTL far away: what these declare dead, the early confirmation did.
    const LONG_TTL_MS = 60_000;

    it('declares a node a peer reported lost dead before its TTL once it is silent and does not answer', async () => {
      const { db } = handle;
      await nodeAt(db, 'origin-b', `http://127.0.0.1:${await freePort()}`, 5 * HEARTBEAT_MS);
      await markStreamLive(db.knex, { name: 'show', originNodeId: 'origin-b', ingestProtocol: 'whip', codecs: null, publisherSession: 's' });
      const a = registry(db, 'edge-a', LONG_TTL_MS);
      assert.deepEqual(await a.confirmReports(), [], 'no report, no early death');
      assert.equal(await reportNodeLost(db.knex, { nodeId: 'origin-b', reporterId: 'edge-a', reason: 'relay connection lost: ECONNRESET' }), true);
      // Reported now, silent since: dead at the next confirmation without waiting for the TTL.
      await waitFor('the report to outlast two heartbeat intervals', async () => (await a.confirmReports()).length === 1, 5000, 50);
      assert.equal((await getNode(db.knex, 'origin-b'))?.state, 'dead');
      assert.equal((await getStream(db.knex, 'show'))?.state, 'idle', "the dead origin's placement is released");
      const [entry] = await listAudit(db.knex, { action: 'node.dead' });
      assert.equal(entry?.target, 'origin-b');
      assert.match(String((entry?.detail as { reason: string }).reason), /reported lost by edge-a \(relay connection lost: ECONNRESET\)/);
      assert.equal(await reportNodeLost(db.knex, { nodeId: 'origin-b', reporterId: 'edge-a', reason: 'again' }), false, 'a dead node takes no report');
    });

    it('never declares dead a reported node that answers its probe, or that heartbeats after the report', async () => {
      const { db } = handle;
      const live = await answering('origin-c');
      try {
        await nodeAt(db, 'origin-c', live.url, 5 * HEARTBEAT_MS);
        await markStreamLive(db.knex, { name: 'show', originNodeId: 'origin-c', ingestProtocol: 'whip', codecs: null, publisherSession: 's' });
        const b = registry(db, 'origin-b', LONG_TTL_MS);
        started.push(b);
        await b.start();
        const a = registry(db, 'edge-a', LONG_TTL_MS);
        // origin-c: silent in the registry (cut off from the database), but it answers.
        await reportNodeLost(db.knex, { nodeId: 'origin-c', reporterId: 'edge-a', reason: 'forged' });
        // origin-b: heartbeats (its registry runs), but unreachable: a report it outlives is moot.
        await reportNodeLost(db.knex, { nodeId: 'origin-b', reporterId: 'edge-a', reason: 'forged' });
        for (let i = 0; i < 5; i++) {
          assert.deepEqual(await a.confirmReports(), []);
          await new Promise((resolve) => setTimeout(resolve, HEARTBEAT_MS));
        }
        assert.equal((await getNode(db.knex, 'origin-c'))?.state, 'up');
        assert.equal((await getNode(db.knex, 'origin-b'))?.state, 'up');
        assert.equal((await getStream(db.knex, 'show'))?.originNodeId, 'origin-c', 'the live origin keeps its stream');
      } finally {
        live.server.close();
      }
    });

    it('marks a stopped node gone and ends its streams', async () => {
      const { db } = handle;
      const a = registry(db, 'origin-a');
      await a.start();
      await markStreamLive(db.knex, { name: 'live', originNodeId: 'origin-a', ingestProtocol: 'rtmp', codecs: null, publisherSession: 's' });
      await a.stop();
      const node = await getNode(db.knex, 'origin-a');
      assert.equal(node?.state, 'gone');
      assert.ok(node?.endedAt);
      assert.equal((await getStream(db.knex, 'live'))?.state, 'idle');
      assert.equal((await listAudit(db.knex, { action: 'node.gone' })).length, 1);
    });

    it('registers again after another node declared it dead', async () => {
      const { db } = handle;
      const a = registry(db, 'edge-a');
      started.push(a);
      await a.start();
      await db.knex('nodes').where({ id: 'edge-a' }).update({ state: 'dead' });
      await waitFor('edge-a up again', async () => (await getNode(db.knex, 'edge-a'))?.state === 'up', 5000, 50);
    });
  });
}
