import assert from 'node:assert/strict';

import { createStream, getStream, listStreamViews, markStreamIdle, markStreamLive, updateStream } from '../db/repositories/streams.ts';
import { upsertNode } from '../db/repositories/nodes.ts';
import { createRelay, listParentCandidates, listRelays, relayDepthsBelow } from '../db/repositories/relays.ts';
import { BACKENDS } from './helpers/backends.ts';
import { createTestDatabase } from '../kit/postgres.ts';
import { Database } from '../db/Database.ts';

const TABLES = ['audit', 'hls_viewers', 'nodes', 'recording_garbage', 'recording_segments', 'recordings', 'relays', 'streams', 'tokens'];

async function tables(db: Database): Promise<string[]> {
  const rows: Array<{ table_name: string }> = await db
    .knex('information_schema.tables')
    .select('table_name')
    .where('table_schema', 'public')
    .whereIn('table_name', TABLES)
    .orderBy('table_name');
  return rows.map((r) => r.table_name);
}

for (const backend of BACKENDS) {
  describe(`database on ${backend.name}`, () => {
    let handle: Awaited<ReturnType<typeof backend.open>>;
    beforeEach(async () => {
      handle = await backend.open();
    });
    afterEach(async () => {
      await handle?.close();
    });

    it('migrates up, down and up again', async () => {
      const { db } = handle;
      const all = ['001_initial', '002_agent_port', '003_rtmp_ladder', '004_rtmp_url', '005_node_loss_reports', '006_relay_tiers', '007_hls', '008_recordings', '009_webhooks', '010_egress_capacity', '011_relay_path_km'];
      assert.deepEqual(await db.migrate(), all);
      assert.deepEqual(await tables(db), TABLES);
      assert.deepEqual(await db.migrate(), [], 'a second run applies nothing');
      assert.deepEqual((await db.rollbackAll()).sort(), all);
      assert.deepEqual(await tables(db), []);
      assert.deepEqual(await db.migrate(), all);
      assert.deepEqual(await tables(db), TABLES);
    });

    it('places a live stream on one origin and refuses a second publisher', async () => {
      const { db } = handle;
      await db.migrate();
      const info = { roles: ['origin'], region: 'eu', lat: 0, lon: 0, publicUrl: 'http://o', announcedIp: '127.0.0.1', version: 't', capacity: 10, egressCapacity: 1e9, agentPort: null, rtmpUrl: null };
      const load = { viewers: 0, streams: 0, bitrateOut: 0, cpu: 0 };
      await upsertNode(db.knex, { id: 'o1', ...info }, load);
      await upsertNode(db.knex, { id: 'o2', ...info }, load);
      const placement = { name: 'show', ingestProtocol: 'whip', codecs: { video: 'VP8' } };

      assert.equal(await markStreamLive(db.knex, { ...placement, originNodeId: 'o1', publisherSession: 's1' }), true);
      assert.equal(await markStreamLive(db.knex, { ...placement, originNodeId: 'o2', publisherSession: 's2' }), false);
      const live = await getStream(db.knex, 'show');
      assert.equal(live?.state, 'live');
      assert.equal(live?.originNodeId, 'o1');
      assert.deepEqual(live?.codecs, { video: 'VP8' });

      assert.equal(await markStreamIdle(db.knex, 'show', 's2'), false, 'only the publishing session ends it');
      assert.equal(await markStreamIdle(db.knex, 'show', 's1'), true);
      assert.equal((await getStream(db.knex, 'show'))?.state, 'idle');
      assert.equal(await markStreamLive(db.knex, { ...placement, originNodeId: 'o2', publisherSession: 's3' }), true);
      assert.equal((await getStream(db.knex, 'show'))?.originNodeId, 'o2');
    });

    it('records each relay\'s path length and lists parents with it, their tier, children and egress', async () => {
      const { db } = handle;
      await db.migrate();
      const info = { region: 'eu', lat: 50, lon: 8, announcedIp: '127.0.0.1', version: 't', capacity: 10, egressCapacity: 1e9, agentPort: null, rtmpUrl: null };
      await upsertNode(db.knex, { id: 'o1', roles: ['origin'], publicUrl: 'http://o1', ...info }, { viewers: 0, streams: 1, bitrateOut: 0, cpu: 0 });
      for (const [id, bitrateOut] of [['a', 5_400_000], ['b', 2_700_000], ['c', 0]] as const) {
        await upsertNode(db.knex, { id, roles: ['edge'], publicUrl: `http://${id}`, ...info }, { viewers: 1, streams: 1, bitrateOut, cpu: 0 });
      }
      assert.equal(await markStreamLive(db.knex, { name: 'show', ingestProtocol: 'whip', codecs: { video: 'VP8' }, originNodeId: 'o1', publisherSession: 's1' }), true);
      const streamId = (await getStream(db.knex, 'show'))!.id;
      await createRelay(db.knex, { streamId, edgeNodeId: 'a', upstreamNodeId: 'o1', treeKey: 1, tier: 0, pathKm: 410.5 });
      await createRelay(db.knex, { streamId, edgeNodeId: 'b', upstreamNodeId: 'a', treeKey: 2, tier: 1, pathKm: 1234.25 });
      await createRelay(db.knex, { streamId, edgeNodeId: 'c', upstreamNodeId: 'a', treeKey: 3, tier: 1 });
      const parents = (await listParentCandidates(db.knex, streamId)).sort((x, y) => x.treeKey - y.treeKey);
      assert.deepEqual(
        parents.map(({ edgeNodeId, tier, children, pathKm, bitrateOut, egressCapacity }) => ({ edgeNodeId, tier, children, pathKm, bitrateOut, egressCapacity })),
        [
          { edgeNodeId: 'a', tier: 0, children: 2, pathKm: 410.5, bitrateOut: 5_400_000, egressCapacity: 1e9 },
          { edgeNodeId: 'b', tier: 1, children: 0, pathKm: 1234.25, bitrateOut: 2_700_000, egressCapacity: 1e9 },
          { edgeNodeId: 'c', tier: 1, children: 0, pathKm: Infinity, bitrateOut: 0, egressCapacity: 1e9 },
        ],
        'a relay written without a path length lists as unknown (Infinity): never a bounded parent',
      );
      assert.deepEqual((await listRelays(db.knex)).map((r) => r.pathKm), [410.5, 1234.25, null]);
      // The tiers below each relay, what an origin weighs before it moves one (media/treePaths.ts).
      assert.deepEqual(Object.fromEntries(await relayDepthsBelow(db.knex, 'show')), { a: 1, b: 0, c: 0 });
      // A re-attach writes the new path over the old.
      await createRelay(db.knex, { streamId, edgeNodeId: 'b', upstreamNodeId: 'o1', treeKey: 2, tier: 0, pathKm: 410 });
      assert.equal((await listRelays(db.knex, { edgeNodeId: 'b' }))[0]!.pathKm, 410);
      await createRelay(db.knex, { streamId, edgeNodeId: 'a', upstreamNodeId: 'c', treeKey: 4, tier: 2 });
      await createRelay(db.knex, { streamId, edgeNodeId: 'c', upstreamNodeId: 'b', treeKey: 3, tier: 1 });
      assert.deepEqual(Object.fromEntries(await relayDepthsBelow(db.knex, 'show')), { a: 0, b: 2, c: 1 }, 'b → c → a');
    });

    it('keeps a stream\'s RTMP ladder: heights, off (empty), or the node\'s (null)', async () => {
      const { db } = handle;
      await db.migrate();
      assert.equal(await createStream(db.knex, { name: 'laddered', private: false, rtmpLadder: [720, 360, 180] }), true);
      assert.equal(await createStream(db.knex, { name: 'plain', private: false }), true);
      assert.deepEqual((await getStream(db.knex, 'laddered'))?.rtmpLadder, [720, 360, 180]);
      assert.equal((await getStream(db.knex, 'plain'))?.rtmpLadder, null);
      assert.equal(await updateStream(db.knex, 'plain', { rtmpLadder: [] }), true);
      assert.deepEqual((await getStream(db.knex, 'plain'))?.rtmpLadder, []);
      assert.equal(await updateStream(db.knex, 'laddered', { private: true }), true, 'other settings leave the ladder alone');
      assert.deepEqual((await listStreamViews(db.knex, { name: 'laddered' }))[0]?.rtmpLadder, [720, 360, 180]);
      assert.equal(await updateStream(db.knex, 'laddered', { rtmpLadder: null }), true);
      assert.equal((await getStream(db.knex, 'laddered'))?.rtmpLadder, null);
      assert.equal(await updateStream(db.knex, 'nope', { rtmpLadder: [] }), false);
      assert.equal(await updateStream(db.knex, 'nope', {}), false);
      assert.equal(await updateStream(db.knex, 'plain', {}), true);
    });
  });
}

describe('migrations on Postgres from several nodes at once', () => {
  it('lets concurrent first runs take turns, and repairs a lock table they broke', async () => {
    const testDb = await createTestDatabase();
    const dbs = [0, 1, 2, 3].map(() => Database.open({ url: testDb.url }));
    try {
      const results = await Promise.all(dbs.map((db) => db.migrate()));
      assert.deepEqual(results.flat().sort(), ['001_initial', '002_agent_port', '003_rtmp_ladder', '004_rtmp_url', '005_node_loss_reports', '006_relay_tiers', '007_hls', '008_recordings', '009_webhooks', '010_egress_capacity', '011_relay_path_km'], 'each migration ran once');
      // The state knex's own lock ends up in after racing first runs: two rows, one locked.
      await dbs[0]!.knex('knex_migrations_lock').insert({ is_locked: 1 });
      assert.deepEqual(await dbs[1]!.migrate(), []);
      assert.equal((await dbs[0]!.knex('knex_migrations_lock').count('* as n'))[0]!.n, '1');
    } finally {
      for (const db of dbs) await db.close();
      await testDb.drop();
    }
  });
});
