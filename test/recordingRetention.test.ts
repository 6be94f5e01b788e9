import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Metrics } from '../core/metrics.ts';
import { Database } from '../db/Database.ts';
import { createStream } from '../db/repositories/streams.ts';
import { listRecordings, openRecording, recordingSegments, writeSegment } from '../db/repositories/recordings.ts';
import { LocalRecordingStore } from '../media/record/RecordingStore.ts';
import type { HlsPackaging } from '../origin/HlsPackaging.ts';
import { Recordings } from '../origin/Recordings.ts';
import { createTestDatabase, type TestDatabase } from '../kit/postgres.ts';

/**
 * Retention on a real Postgres with real files: recordings of three streams, each with segments
 * ten days old and one day old, files in a local store. One sweep (the origins' minute job) must
 * delete the old segments of streams kept a week (the default, and a stream's own 7), keep those
 * of a stream kept forever (0), delete the files of what went and of nothing else, drop a
 * recording left empty, and move a recording's start to its first segment left.
 */

describe('recording retention (origin/Recordings.ts sweep, db/repositories/recordings.ts)', () => {
  let testDb: TestDatabase;
  let db: Database;
  let dir: string;
  let store: LocalRecordingStore;
  const DAY = 24 * 3600 * 1000;

  before(async () => {
    testDb = await createTestDatabase();
    db = Database.open({ url: testDb.url });
    await db.migrate();
    dir = mkdtempSync(join(tmpdir(), 'relaycast-retention-'));
    store = new LocalRecordingStore(dir);
  });

  after(async () => {
    await db?.close();
    await testDb?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A recording of `stream` with one run: segments starting `ages` days ago, 2 s each, files written. */
  const record = async (stream: string, ages: number[], run: string) => {
    const startedAt = new Date(Date.now() - Math.max(...ages) * DAY);
    const { recording } = await openRecording(db.knex, { stream, startedAt, resumeGapMs: 0 });
    const initKey = `${recording.id}/${run}/init.mp4`;
    await store.writeFile(initKey, Buffer.from('init'));
    for (const [msn, age] of ages.entries()) {
      const key = `${recording.id}/${run}/${msn}.m4s`;
      const file = await store.append(key);
      await file.append(Buffer.alloc(100, msn));
      await file.close();
      const segment = { recordingId: recording.id, run, msn, startedAt: new Date(Date.now() - age * DAY), duration: 2, bytes: 100, complete: true, store: 'local', nodeId: 'origin-1', key, initKey, codecs: 'avc1.64001f,mp4a.40.2' };
      await writeSegment(db.knex, segment, { duration: 2, bytes: 100 });
    }
    return recording.id;
  };

  /** One sweep of origin-1 (retention 7 days by default), as its minute job runs it. */
  const sweep = async () => {
    const recordings = new Recordings({
      db: db.knex,
      nodeId: 'origin-1',
      store,
      hls: {} as HlsPackaging, // the sweep packages nothing
      recordByDefault: false,
      retentionDays: 7,
      logger: pino({ level: 'silent' }),
      metrics: new Metrics(),
    });
    try {
      await recordings.sweep();
    } finally {
      await recordings.close();
    }
  };

  it('deletes what is past its stream\'s retention (files too) and nothing else', async () => {
    await createStream(db.knex, { name: 'kept-forever', private: false, recordingRetentionDays: 0 });
    await createStream(db.knex, { name: 'kept-a-week', private: false, recordingRetentionDays: 7 });
    // 'default' has no row of its own settings: --recording-retention-days (7 here).
    const mixed = await record('kept-a-week', [10, 10, 1], 'aaaaaaaa');
    const old = await record('default', [10, 9], 'bbbbbbbb');
    const forever = await record('kept-forever', [400, 10], 'cccccccc');
    await sweep();
    // kept-a-week: its one-day-old segment and its init segment stay; the recording starts there.
    const left = await recordingSegments(db.knex, mixed);
    assert.deepEqual(left.map((s) => s.msn), [2]);
    assert.ok(existsSync(join(dir, mixed, 'aaaaaaaa', '2.m4s')) && existsSync(join(dir, mixed, 'aaaaaaaa', 'init.mp4')));
    assert.ok(!existsSync(join(dir, mixed, 'aaaaaaaa', '0.m4s')) && !existsSync(join(dir, mixed, 'aaaaaaaa', '1.m4s')));
    const [mixedRow] = await listRecordings(db.knex, { stream: 'kept-a-week', limit: 10 });
    assert.equal(mixedRow!.startedAt.getTime(), left[0]!.startedAt.getTime());
    assert.equal(mixedRow!.duration, 2);
    assert.equal(mixedRow!.bytes, 100);
    // default: all of it was past a week: the recording and every file (init too) went.
    assert.deepEqual(await listRecordings(db.knex, { stream: 'default', limit: 10 }), []);
    assert.ok(!existsSync(join(dir, old, 'bbbbbbbb', 'init.mp4')) && !existsSync(join(dir, old, 'bbbbbbbb', '0.m4s')));
    // kept-forever: untouched.
    assert.equal((await recordingSegments(db.knex, forever)).length, 2);
    assert.ok(existsSync(join(dir, forever, 'cccccccc', '0.m4s')));
    assert.equal((await db.knex('recording_garbage').count({ n: '*' }))[0]!.n, '0', 'the garbage of this node was emptied');
  });

  it('takes the garbage a node left that is long gone (a pod replaced on a shared volume), not that of a live one', async () => {
    await db.knex('nodes').insert([
      { id: 'origin-old', roles: ['origin'], region: 'default', lat: 0, lon: 0, public_url: 'http://127.0.0.1:1', announced_ip: '127.0.0.1', version: 'x', capacity: 1, state: 'dead', heartbeat_at: new Date(Date.now() - 2 * DAY) },
      { id: 'origin-2', roles: ['origin'], region: 'default', lat: 0, lon: 0, public_url: 'http://127.0.0.1:2', announced_ip: '127.0.0.1', version: 'x', capacity: 1, state: 'up' },
    ]);
    for (const key of ['orphan/aaaaaaaa/0.m4s', 'theirs/aaaaaaaa/0.m4s']) await store.writeFile(key, Buffer.from('x'));
    await db.knex('recording_garbage').insert([
      { store: 'local', node_id: 'origin-old', key: 'orphan/aaaaaaaa/0.m4s' },
      { store: 'local', node_id: 'origin-2', key: 'theirs/aaaaaaaa/0.m4s' },
    ]);
    await sweep();
    assert.ok(!existsSync(join(dir, 'orphan/aaaaaaaa/0.m4s')), 'the gone node\'s file was deleted');
    assert.ok(existsSync(join(dir, 'theirs/aaaaaaaa/0.m4s')), 'a live node\'s file is its own to delete');
    assert.deepEqual((await db.knex('recording_garbage').select('node_id')).map((r) => r.node_id), ['origin-2']);
  });
});
