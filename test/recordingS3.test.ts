import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { Database } from '../db/Database.ts';
import { issueStreamKey } from '../db/repositories/streamKeys.ts';
import { createStream } from '../db/repositories/streams.ts';
import { metric } from '../kit/metrics.ts';
import { createTestDatabase, freePort, type TestDatabase } from '../kit/postgres.ts';
import { spawnTracked, stopProcess, waitFor } from '../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../kit/relaycast.ts';

/**
 * Recordings in S3-compatible storage, against s3rver (an S3 look-alike from npm, run as a
 * process of its own with its data on disk, path-style addressing, AWS signatures checked): no
 * S3 service runs on these machines, and moto is not in the package indexes this machine reaches.
 * An origin records an RTMP publish (x264 defaults) with `--record-s3`; its segments land in the
 * bucket and leave its disk. The store then goes away for OUTAGE_MS (the s3rver process stopped)
 * while the publish goes on: the segments wait on the origin's disk (the backlog metric grows, the
 * failures count), and once s3rver is back they are uploaded, in order, none missing. An edge with
 * a recordings directory of its own (so nothing comes from the origin's disk) exports the whole
 * recording from S3, and ffprobe reads it.
 */

const SECRET = 'recording-s3-secret-0123456789abc';
const BUCKET = 'recordings';
/** s3rver's own credentials: it checks the signature of every request against them. */
const CREDENTIALS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
/**
 * How long the store is away. The issue asks for a minute; the uploader's retries grow from 1 s
 * (1, 2, 4, 8 s…, capped at 60 s), so 12 s already sees several failed passes and the backoff
 * growing, at a fifth of a minute of the suite's time; a longer outage runs the same code.
 */
const OUTAGE_MS = 12_000;
const common = ['--rtc-listen-ip', '127.0.0.1', '--heartbeat-ms', '500', '--node-ttl-ms', '3000'];

describe('recording to S3-compatible storage (s3rver): uploads, a store away for a while, the backlog caught up', function () {
  this.timeout(240_000);
  let testDb: TestDatabase;
  let db: Database;
  let work: string;
  let s3Port: number;
  let s3rver: ChildProcess | undefined;
  let origin: RelaycastProcess;
  let edge: RelaycastProcess;
  let publisher: ChildProcess | undefined;
  let client: S3Client;

  /** s3rver as a process of its own, on its port and data directory (kept across restarts). */
  const startS3 = async () => {
    const script = `const S3rver = require('s3rver'); new S3rver({ port: ${s3Port}, address: '127.0.0.1', silent: true, directory: ${JSON.stringify(join(work, 's3'))}, configureBuckets: [{ name: '${BUCKET}' }] }).run().then(() => console.log('s3rver ready'));`;
    const child = spawnTracked(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    await waitFor(`s3rver on ${s3Port}`, () => out.includes('s3rver ready') || child.exitCode !== null, 20_000, 50);
    assert.equal(child.exitCode, null, out);
    s3rver = child;
  };
  const objects = async () => {
    const listed = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'rc/' }));
    return (listed.Contents ?? []).map((o) => o.Key!);
  };
  const rows = async () => db.knex('recording_segments').orderBy(['run', 'msn']);
  const localFiles = (dir: string) => (existsSync(dir) ? (readdirSync(dir, { recursive: true }) as string[]) : []).filter((f) => f.endsWith('.m4s'));

  before(async () => {
    testDb = await createTestDatabase();
    db = Database.open({ url: testDb.url });
    work = mkdtempSync(join(tmpdir(), 'relaycast-s3-test-'));
    s3Port = await freePort();
    await startS3();
    client = new S3Client({ region: 'us-east-1', endpoint: `http://127.0.0.1:${s3Port}`, forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    const s3 = ['--record-s3', `s3://${BUCKET}/rc`, '--record-s3-endpoint', `http://127.0.0.1:${s3Port}`];
    origin = await startRelaycast({
      roles: ['origin'],
      databaseUrl: testDb.url,
      env: { RELAYCAST_CLUSTER_SECRET: SECRET, ...CREDENTIALS },
      args: ['--node-id', 'origin-1', '--record-dir', join(work, 'origin'), ...s3, ...common],
    });
    edge = await startRelaycast({
      roles: ['edge'],
      databaseUrl: testDb.url,
      env: { RELAYCAST_CLUSTER_SECRET: SECRET, ...CREDENTIALS },
      args: ['--node-id', 'edge-1', '--record-dir', join(work, 'edge'), ...s3, ...common],
    });
  });

  after(async () => {
    if (publisher) await stopProcess(publisher, 5000);
    await origin?.stop();
    await edge?.stop();
    if (s3rver) await stopProcess(s3rver, 5000);
    client?.destroy();
    await db?.close();
    await testDb?.drop();
    rmSync(work, { recursive: true, force: true });
  });

  it('uploads each segment once complete, keeps them on disk while the store is away, and catches up after; the edge exports the recording from S3', async () => {
    await createStream(db.knex, { name: 'rec-s3', private: false, record: true });
    const key = await issueStreamKey(db.knex, 'rec-s3');
    publisher = spawnTracked(
      'ffmpeg',
      [
        ...['-hide_banner', '-loglevel', 'error', '-nostdin', '-re'],
        ...['-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'],
        ...['-c:v', 'libx264', '-g', '60', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-t', '300', '-f', 'flv', `rtmp://127.0.0.1:${origin.rtmpPort}/live/${key}`],
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    await waitFor('three segments in S3, gone from the origin\'s disk', async () => (await rows()).filter((r) => r.store === 's3').length >= 3, 60_000, 250);
    const uploaded = await objects();
    const inS3 = (await rows()).filter((r) => r.store === 's3');
    assert.ok(inS3.every((r) => uploaded.includes(`rc/${r.key}`) && uploaded.includes(`rc/${r.init_key}`)), `every segment marked s3 is in the bucket: ${uploaded.join(', ')}`);
    // (A segment's local file goes just after its row says s3.)
    await waitFor('uploaded segments gone from the origin\'s disk', () => inS3.every((r) => !localFiles(join(work, 'origin')).includes(r.key)), 10_000, 100);

    // The store goes away; the publish and the recording go on.
    await stopProcess(s3rver!, 5000);
    s3rver = undefined;
    const awayAt = Date.now();
    await waitFor('a failed upload counted', async () => ((await metric(origin.url, 'relaycast_recording_failures_total', { where: 'upload' })) ?? 0) > 0, 30_000, 250);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, OUTAGE_MS - (Date.now() - awayAt))));
    const backlog = (await metric(origin.url, 'relaycast_recording_upload_backlog')) ?? 0;
    const waiting = (await rows()).filter((r) => r.store === 'local' && r.complete).length;
    console.log(`      store away ${Date.now() - awayAt} ms: ${waiting} complete segments waiting on the origin's disk (backlog metric ${backlog})`);
    assert.ok(waiting >= 3, `${waiting} segments waiting`);
    assert.ok(backlog > 0, `the backlog metric says ${backlog}`);

    await startS3();
    const backAt = Date.now();
    await stopProcess(publisher, 5000);
    publisher = undefined;
    await waitFor('the recording closed and every segment in S3', async () => {
      const all = await rows();
      const recording = await db.knex('recordings').first();
      return recording?.closed_at !== null && all.length > 0 && all.every((r) => r.store === 's3');
    }, 90_000, 500);
    console.log(`      backlog uploaded ${Date.now() - backAt} ms after the store came back`);
    const all = await rows();
    const msns = all.map((r) => Number(r.msn));
    assert.deepEqual(msns, msns.map((_, i) => msns[0]! + i), 'one run, no segment missing');
    assert.equal((await metric(origin.url, 'relaycast_recording_upload_backlog')) ?? 0, 0);
    assert.deepEqual(localFiles(join(work, 'origin')), [], 'nothing left on the origin\'s disk');
    const uploaded2 = await objects();
    assert.ok(all.every((r) => uploaded2.includes(`rc/${r.key}`)));

    const recording = await db.knex('recordings').first();
    const res = await fetch(`${edge.url}/recordings/${recording.id}/export.mp4`);
    assert.equal(res.status, 200, await res.clone().text());
    const path = join(work, 'export.mp4');
    writeFileSync(path, Buffer.from(await res.arrayBuffer()));
    const probe = spawnSync('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', path], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(probe.stderr.trim(), '', 'ffprobe found errors in the export');
    const duration = Number(probe.stdout.trim());
    console.log(`      export from S3 through the edge: ${duration.toFixed(2)} s (index: ${Number(recording.duration).toFixed(2)} s)`);
    assert.ok(Math.abs(duration - Number(recording.duration)) < 0.5, `export ${duration} s, index ${recording.duration} s`);
    assert.deepEqual(localFiles(join(work, 'edge')), [], 'the edge read nothing from a disk of its own');
  });
});
