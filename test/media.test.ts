import assert from 'node:assert/strict';
import { once } from 'node:events';
import pino from 'pino';
import { Metrics } from '../core/metrics.ts';
import { announcedAddresses } from '../core/announcedAddresses.ts';
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

describe('announced media addresses', () => {
  const eth = (address: string, internal = false) => ({ address, netmask: '255.255.255.0', family: 'IPv4' as const, mac: '00:00:00:00:00:00', internal, cidr: null });
  const interfaces = {
    lo: [eth('127.0.0.1', true)],
    eth0: [eth('192.0.2.2'), { ...eth('fd00::2'), family: 'IPv6' as const, scopeid: 0 }],
    veth1: [eth('10.1.2.1')],
  };

  it('with no --announced-ip: every interface IPv4 address, then loopback; relays on loopback', () => {
    assert.deepEqual(announcedAddresses({ listenIp: '0.0.0.0' }, interfaces), { candidates: ['192.0.2.2', '10.1.2.1', '127.0.0.1'], pipe: '127.0.0.1', source: 'interfaces' });
  });

  it('--announced-ip alone wins (a server behind NAT); a listen address names the one address otherwise', () => {
    assert.deepEqual(announcedAddresses({ announcedIp: '203.0.113.7', listenIp: '0.0.0.0' }, interfaces), { candidates: ['203.0.113.7'], pipe: '203.0.113.7', source: 'configured' });
    assert.deepEqual(announcedAddresses({ listenIp: '127.0.0.1' }, interfaces), { candidates: ['127.0.0.1'], pipe: '127.0.0.1', source: 'listen' });
  });
});
