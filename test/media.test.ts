import assert from 'node:assert/strict';
import { once } from 'node:events';
import pino from 'pino';
import { Metrics } from '../core/metrics.ts';
import { WorkerPool } from '../media/WorkerPool.ts';

const CODECS = [
  { kind: 'audio' as const, mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
  { kind: 'video' as const, mimeType: 'video/VP8', clockRate: 90000 },
  { kind: 'video' as const, mimeType: 'video/H264', clockRate: 90000, parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f' } },
];

describe('mediasoup worker pool', () => {
  let pool: WorkerPool | undefined;
  afterEach(async () => {
    await pool?.close();
    pool = undefined;
  });

  it('starts real workers that create routers', async () => {
    pool = await WorkerPool.create({ count: 2, workerBin: WorkerPool.resolveWorkerBin(process.env.MEDIASOUP_WORKER_BIN), logger: pino({ level: 'silent' }) });
    assert.equal(pool.workers.length, 2);
    const router = await pool.next().createRouter({ mediaCodecs: CODECS });
    const mimeTypes = router.rtpCapabilities.codecs!.map((c) => c.mimeType);
    assert.ok(mimeTypes.includes('audio/opus'));
    assert.ok(mimeTypes.includes('video/VP8'));
    assert.ok(mimeTypes.includes('video/H264'));
    assert.notEqual(pool.next().pid, pool.next().pid, 'round robin across workers');
  });

  it('replaces a worker that dies, and the replacement works', async () => {
    const metrics = new Metrics();
    pool = await WorkerPool.create({ count: 1, workerBin: WorkerPool.resolveWorkerBin(process.env.MEDIASOUP_WORKER_BIN), logger: pino({ level: 'silent' }), metrics });
    const victim = pool.next();
    const replaced = once(pool, 'workerreplaced');
    process.kill(victim.pid, 'SIGKILL');
    const [index, worker] = (await replaced) as [number, typeof victim];
    assert.equal(index, 0);
    assert.notEqual(worker.pid, victim.pid);
    assert.equal(pool.next(), worker);
    const router = await worker.createRouter({ mediaCodecs: CODECS });
    assert.equal(router.closed, false);
    assert.match(await metrics.registry.metrics(), /^relaycast_media_worker_restarts_total 1$/m);
  });
});
