import assert from 'node:assert/strict';
import type { Counter } from 'prom-client';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { parseServerIds, RTMP_BACKEND } from '../balancer/HaproxyConfig.ts';
import { HaproxyController } from '../balancer/HaproxyController.ts';
import { HaproxyRuntime } from '../balancer/HaproxyRuntime.ts';
import type { NodeSnapshot } from '../balancer/policies.ts';
import { parseGeoPins } from '../core/geoPins.ts';
import { createLogger } from '../core/logger.ts';
import { Metrics } from '../core/metrics.ts';
import { FakeEdge } from '../kit/FakeEdge.ts';
import { freePort } from '../kit/postgres.ts';
import { waitFor } from '../kit/processes.ts';

/**
 * HaproxyController in this process, with a real HAProxy in front of stand-in edges
 * (kit/FakeEdge.ts) and a registry that is an array: what goes through the runtime API, what
 * reloads, what is on disk. (test/haproxy.test.ts runs the same through real Relaycast processes.)
 */

describe('HaproxyController (runtime API or reload)', function () {
  const dir = mkdtempSync(join(tmpdir(), 'relaycast-haproxy-controller-'));
  const edges = new Map<string, FakeEdge>();
  const registry: NodeSnapshot[] = [];
  let metrics = new Metrics();
  let controller: HaproxyController | undefined;
  let runtime: HaproxyRuntime;
  let port: number;
  let balancerPort: number;

  const join_ = async (id: string, region: string, lat: number, lon: number) => {
    const edge = await FakeEdge.start(id);
    edges.set(id, edge);
    registry.push({ id, roles: ['edge'], region, lat, lon, publicUrl: edge.url, capacity: 100, viewers: 0, cpu: 0, draining: false, streams: new Set(), agentPort: edge.agentPort });
  };
  const leave = (id: string) => registry.splice(registry.findIndex((n) => n.id === id), 1);
  const count = async (counter: Counter<string>, kind?: string) =>
    (await counter.get()).values.filter((v) => kind === undefined || v.labels.kind === kind).reduce((sum, v) => sum + v.value, 0);
  const start = async () => {
    metrics = new Metrics();
    controller = await HaproxyController.start({
      bin: 'haproxy',
      dir,
      layout: { nodeId: 'test', bind: `127.0.0.1:${port}`, balancer: `127.0.0.1:${balancerPort}`, defaultRegion: 'eu' },
      // 42:-42, mid-Atlantic: nearer us-east's edges than eu's until an edge far west joins eu.
      pins: parseGeoPins('10.0.0.0/8=eu,192.0.2.0/24=42:-42'),
      logger: createLogger('silent'),
      metrics,
      nodes: async () => [...registry],
    });
  };
  /** The servers HAProxy runs (backend/name → id), as parseServerIds reads the config on disk. */
  /** The region backends' servers (be_balancer and the pinned backends have one fixed server each). */
  const running = async () => new Map((await runtime.serversState()).filter((s) => !['be_balancer', 'be_pinned', 'be_pinned_tls'].includes(s.backend)).map((s) => [`${s.backend}/${s.name}`, s.id]));
  const onDisk = () => new Map([...parseServerIds(readFileSync(join(dir, 'haproxy.cfg'), 'utf8'))].filter(([key]) => !key.startsWith('be_balancer/')));
  /** After a reload: until the workers that ran before are gone (the runtime socket is the new worker's). */
  const reloaded = async (workers: number[]) => {
    const master = new HaproxyRuntime(join(dir, 'master.sock'));
    await waitFor('the new worker alone', async () => !(await master.workers()).some((pid) => workers.includes(pid)), 15_000, 50);
  };
  const workers = () => new HaproxyRuntime(join(dir, 'master.sock')).workers();
  const mapValue = async (address: string) => /value="([^"]*)"/.exec(await runtime.command(`get map ${join(dir, 'geo.map')} ${address}`))?.[1];

  before(async () => {
    port = await freePort();
    balancerPort = await freePort();
    await join_('e1', 'eu', 48.8, 2.3);
    await join_('u1', 'us', 38.9, -77);
    await start();
    runtime = new HaproxyRuntime(join(dir, 'runtime.sock'));
  });

  after(async () => {
    await controller?.stop();
    for (const edge of edges.values()) await edge.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('adds and deletes servers and edits the map through the runtime API, and writes the same to disk', async () => {
    assert.equal(await mapValue('192.0.2.1'), 'us');
    await join_('e2', 'eu', 45, -50);
    await controller!.refresh();
    assert.equal(await count(metrics.haproxyReloads), 0, 'no reload');
    assert.equal(await count(metrics.haproxyRuntimeChanges, 'add-server'), 2, 'e2 in eu, and as a backup in us');
    assert.equal(await mapValue('192.0.2.1'), 'eu', 'the map entry follows eu\'s centre west');
    assert.equal(await count(metrics.haproxyRuntimeChanges, 'map-edit'), 1);
    assert.deepEqual(await running(), onDisk(), 'HAProxy runs what the config on disk says, ids included');
    assert.match(readFileSync(join(dir, 'geo.map'), 'utf8'), /^192\.0\.2\.0\/24 eu$/m, 'the map on disk too');

    leave('e2');
    await controller!.refresh();
    assert.equal(await count(metrics.haproxyReloads), 0, 'no reload');
    assert.equal(await count(metrics.haproxyRuntimeChanges, 'del-server'), 2);
    assert.equal(await mapValue('192.0.2.1'), 'us');
    assert.deepEqual(await running(), onDisk());
  });

  it('reloads when a region appears, and when an operator asks', async () => {
    // The controller's own timer may apply a change before refresh() does: workers read first.
    let before = await workers();
    await join_('a1', 'ap', 35.7, 139.7);
    await controller!.refresh();
    assert.equal(await count(metrics.haproxyReloads), 1, 'a new backend: a reload');
    await reloaded(before);
    assert.ok((await running()).has('be_ap/a1'));
    before = await workers();
    await controller!.refresh(true);
    assert.equal(await count(metrics.haproxyReloads), 2);
    await reloaded(before);
    assert.ok(isDeepStrictEqual(await running(), onDisk()));
  });

  it('falls back to a checked reload when a runtime change fails', async () => {
    // u1 deleted behind the controller's back: stopping it through the runtime API fails.
    await runtime.stopServer('be_us', 'u1', true);
    assert.equal(await runtime.deleteServer('be_us', 'u1'), 'deleted');
    const reloads = await count(metrics.haproxyReloads);
    const before = await workers();
    await join_('u2', 'us', 40.7, -74);
    leave('u1');
    await controller!.refresh();
    assert.equal(await count(metrics.haproxyRuntimeFailures), 1);
    assert.equal(await count(metrics.haproxyReloads), reloads + 1, 'reloaded instead');
    await reloaded(before);
    assert.ok((await running()).has('be_us/u2'));
    assert.deepEqual(await running(), onDisk());
  });

  it('keeps every server\'s id (its place on the hash ring) across a restart', async () => {
    const before = await running();
    await controller!.stop();
    controller = undefined;
    await start();
    assert.deepEqual(await running(), before);
  });
});

describe('HaproxyController: origins behind the RTMP frontend (runtime API, no reload)', function () {
  const dir = mkdtempSync(join(tmpdir(), 'relaycast-haproxy-rtmp-'));
  const registry: NodeSnapshot[] = [];
  /** Stand-in RTMP ports: they accept connections, which is all HAProxy's checks ask. */
  const listeners: Server[] = [];
  const metrics = new Metrics();
  let controller: HaproxyController | undefined;
  let runtime: HaproxyRuntime;

  const origin = async (id: string) => {
    const server = createServer((socket) => socket.destroy()).listen(0, '127.0.0.1');
    await once(server, 'listening');
    listeners.push(server);
    const rtmpUrl = `rtmp://127.0.0.1:${(server.address() as AddressInfo).port}/live`;
    registry.push({ id, roles: ['origin'], region: 'eu', lat: 48.8, lon: 2.3, publicUrl: 'http://127.0.0.1:1', capacity: 100, viewers: 0, cpu: 0, draining: false, streams: new Set(), rtmpUrl });
  };
  const count = async (counter: Counter<string>, kind?: string) =>
    (await counter.get()).values.filter((v) => kind === undefined || v.labels.kind === kind).reduce((sum, v) => sum + v.value, 0);
  const servers = async () => new Map((await runtime.serversState(RTMP_BACKEND)).map((s) => [s.name, s]));
  const onDisk = () => [...parseServerIds(readFileSync(join(dir, 'haproxy.cfg'), 'utf8')).keys()].filter((key) => key.startsWith(`${RTMP_BACKEND}/`));

  before(async () => {
    await origin('o1');
    controller = await HaproxyController.start({
      bin: 'haproxy',
      dir,
      layout: { nodeId: 'test', bind: `127.0.0.1:${await freePort()}`, balancer: `127.0.0.1:${await freePort()}`, defaultRegion: 'eu', rtmpBind: `127.0.0.1:${await freePort()}` },
      pins: [],
      logger: createLogger('silent'),
      metrics,
      nodes: async () => [...registry],
    });
    runtime = new HaproxyRuntime(join(dir, 'runtime.sock'));
  });
  after(async () => {
    await controller?.stop();
    for (const server of listeners) server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('adds an origin, drains it (weight 0) and undrains it, and deletes one that left, with no reload', async () => {
    await waitFor('o1 UP', async () => (await servers()).get('o1')?.opState === 2, 5000, 100);
    await origin('o2');
    await controller!.refresh();
    assert.equal(await count(metrics.haproxyRuntimeChanges, 'add-server'), 1);
    assert.deepEqual([...(await servers()).keys()], ['o1', 'o2']);

    registry[1]!.draining = true;
    await controller!.refresh();
    assert.equal((await servers()).get('o2')?.weight, 0, 'a draining origin gets no new publishers');
    assert.match(readFileSync(join(dir, 'haproxy.cfg'), 'utf8'), /server o2 \S+ id 2 .* weight 0\n/, 'and the config on disk says so');
    registry[1]!.draining = false;
    await controller!.refresh();
    assert.equal((await servers()).get('o2')?.weight, 100);

    registry.splice(0, 1);
    await controller!.refresh();
    assert.equal(await count(metrics.haproxyRuntimeChanges, 'del-server'), 1);
    assert.deepEqual([...(await servers()).keys()], ['o2']);
    assert.deepEqual(onDisk(), [`${RTMP_BACKEND}/o2`]);
    assert.equal(await count(metrics.haproxyReloads), 0, 'no reload');
  });
});
