import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderHaproxy, serverKey, type HaproxyLayout, type RenderedHaproxy } from '../balancer/HaproxyConfig.ts';
import { diffMap, HaproxyCommandError, HaproxyRuntime, parseMap, type MapEntry } from '../balancer/HaproxyRuntime.ts';
import { MapFile } from '../balancer/MapFile.ts';
import type { NodeSnapshot } from '../balancer/policies.ts';
import { FakeEdge, servedBy } from '../kit/FakeEdge.ts';
import { freePort } from '../kit/postgres.ts';
import { spawnTracked, stopProcess, waitFor } from '../kit/processes.ts';

/**
 * HAProxy 2.6's runtime API as the balancer uses it (balancer/HaproxyRuntime.ts), against a real
 * HAProxy running the config the balancer renders, in front of stand-in edges (kit/FakeEdge.ts):
 * dynamic servers in a consistent-hash backend, their deletion, and versioned maps.
 */

const STREAMS = Array.from({ length: 60 }, (_, i) => `stream-${i}`);

function snapshot(edge: FakeEdge, region: string): NodeSnapshot {
  return { id: edge.id, roles: ['edge'], region, lat: 48.8, lon: 2.3, publicUrl: edge.url, capacity: 100, viewers: 0, cpu: 0, draining: false, streams: new Set(), agentPort: edge.agentPort };
}

describe('HAProxy runtime API (HAProxy 2.6)', function () {
  const dir = mkdtempSync(join(tmpdir(), 'relaycast-haproxy-runtime-'));
  const edges: FakeEdge[] = [];
  let layout: HaproxyLayout;
  let port: number;
  let haproxy: ReturnType<typeof spawnTracked> | undefined;
  let runtime: HaproxyRuntime;
  let master: HaproxyRuntime;

  const render = (members: FakeEdge[], held?: ReadonlyMap<string, number>) => renderHaproxy(members.map((e) => snapshot(e, 'eu')), [{ cidr: '10.0.0.0/8', region: 'eu' }], layout, held);
  const write = (rendered: RenderedHaproxy) => {
    writeFileSync(layout.mapPath, rendered.map);
    writeFileSync(join(dir, 'haproxy.cfg'), rendered.cfg);
  };
  /**
   * Which edge serves each stream's signalling (GET /whep/<stream>: hashed by stream), one request
   * at a time, the majority of three asks. hash-balance-factor moves a stream off an edge that
   * still counts a request in flight: HAProxy lets the last one go a moment after its answer, so
   * now and then one stream in 60 was sent past its place on the ring (seen here and in CI).
   */
  const placement = async () => {
    const placed: Record<string, string | null> = {};
    for (const stream of STREAMS) {
      const asks = [await servedBy(port, `/whep/${stream}`), await servedBy(port, `/whep/${stream}`), await servedBy(port, `/whep/${stream}`)];
      placed[stream] = asks.find((node, i) => asks.indexOf(node) !== i) ?? asks[0]!;
    }
    return placed;
  };

  before(async () => {
    for (const id of ['e1', 'e2', 'e3']) edges.push(await FakeEdge.start(id));
    port = await freePort();
    layout = {
      nodeId: 'test',
      bind: `127.0.0.1:${port}`,
      mapPath: join(dir, 'geo.map'),
      runtimeSocket: join(dir, 'runtime.sock'),
      serverStateFile: join(dir, 'server-state'),
      balancer: `127.0.0.1:${await freePort()}`,
      defaultRegion: 'eu',
    };
    write(render(edges.slice(0, 2)));
    haproxy = spawnTracked('haproxy', ['-W', '-S', join(dir, 'master.sock'), '-f', join(dir, 'haproxy.cfg')], { stdio: 'ignore' });
    runtime = new HaproxyRuntime(layout.runtimeSocket);
    master = new HaproxyRuntime(join(dir, 'master.sock'));
    await waitFor('HAProxy serving both edges', async () => new Set(Object.values(await placement())).size === 2, 15_000);
  });

  after(async () => {
    if (haproxy) await stopProcess(haproxy, 5000);
    for (const edge of edges) await edge.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('adds a server to a consistent-hash backend that hashes streams as the same server loaded from the config does', async () => {
    const before = render(edges.slice(0, 2));
    const held = new Map(before.servers.map((s) => [serverKey(s.backend, s.name), s.id]));
    const after = render(edges, held);
    const e3 = after.servers.find((s) => s.name === 'e3')!;
    await runtime.addServer(e3, e3.address);
    // Placed only once it runs: the first few streams asked while it was still coming up went to
    // the others (seen in CI), and would then differ from the placement after the reload.
    await waitFor(
      'e3 running, out of maintenance, with its id',
      async () => (await runtime.serversState('be_eu')).some((s) => s.name === 'e3' && s.id === e3.id && s.opState === 2 && s.adminState === 0),
      10_000,
      50,
    );
    const live = await placement();
    assert.ok(Object.values(live).includes('e3'), 'the added server takes its share of the streams');

    // The same three servers from the config file (after a reload): every stream on the same edge.
    const workers = await master.workers();
    write(after);
    writeFileSync(layout.serverStateFile, await runtime.command('show servers state'));
    await master.command('reload');
    // The master re-executes itself to reload: its CLI refuses connections for a moment.
    await waitFor('the new worker', async () => (await master.workers().catch(() => workers)).some((pid) => !workers.includes(pid)), 15_000);
    await waitFor('the three servers running in the new worker', async () => (await runtime.serversState('be_eu').catch(() => [])).filter((s) => s.opState === 2 && s.adminState === 0).length === 3, 15_000, 50);
    assert.deepEqual(await placement(), live);
  });

  it('deletes a server only once its connections are done', async () => {
    const stream = Object.entries(await placement()).find(([, node]) => node === 'e3')![0];
    const served = edges[2]!.requests;
    const slow = servedBy(port, `/whep/${stream}/slow`);
    await waitFor('the slow request on e3', () => edges[2]!.requests > served, 5000, 20);
    await runtime.stopServer('be_eu', 'e3', true);
    assert.ok(!Object.values(await placement()).includes('e3'), 'a stopped server gets no new request');
    assert.equal(await runtime.deleteServer('be_eu', 'e3'), 'busy');
    assert.equal(await slow, 'e3', 'the request in flight is answered');
    // The slow request's connection went back to HAProxy's idle pool after the server stopped; it
    // holds the server until the edge closes it (Node's keep-alive timeout: 5 s).
    const answered = Date.now();
    await waitFor('e3 deleted', async () => (await runtime.deleteServer('be_eu', 'e3')) !== 'busy', 20_000, 500);
    console.log(`      (deleted ${Date.now() - answered} ms after its last request was answered)`);
    assert.ok(!(await runtime.serversState('be_eu')).some((s) => s.name === 'e3'));
    assert.equal(await runtime.deleteServer('be_eu', 'e3'), 'absent');
    await assert.rejects(runtime.deleteServer('be_nowhere', 'e3'), HaproxyCommandError);
  });

  it('replaces a 100,000-entry map atomically, and edits a few entries in place', async () => {
    const entries = (value: (i: number) => string): MapEntry[] => Array.from({ length: 100_000 }, (_, i) => [`${11 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}.0/24`, value(i)]);
    const get = async (address: string) => /value="([^"]*)"/.exec(await runtime.command(`get map ${layout.mapPath} ${address}`))?.[1];
    const started = performance.now();
    const commands = await runtime.replaceMap(layout.mapPath, entries((i) => `r${i % 50}`));
    console.log(`      (100,000 entries in ${commands} commands, ${Math.round(performance.now() - started)} ms)`);
    assert.equal(await get('11.1.2.3'), `r${(1 * 256 + 2) % 50}`);
    assert.equal(await get('10.1.1.1'), undefined, 'the old entries are gone');

    // A refused entry half-way: nothing of the new version is seen, the map keeps its entries.
    const bad = entries(() => 'x');
    bad[60_000] = ['not-an-address', 'x'];
    await assert.rejects(runtime.replaceMap(layout.mapPath, bad), /not a valid IPv4 or IPv6 address/);
    assert.equal(await get('11.1.2.3'), `r${(1 * 256 + 2) % 50}`);

    // The same from a map file (the geo map's way: its bytes sent a block at a time, a header and a blank line left out).
    const file = join(dir, 'replacement.map');
    writeFileSync(file, `# a header, as GeoMapBuilder writes one →\n${entries((i) => `f${i % 7}`).map(([key, value], i) => `${key} ${value}\n${i === 5 ? '\n' : ''}`).join('')}`);
    const fromFile = await runtime.replaceMap(layout.mapPath, new MapFile(file, statSync(file).size, 100_000));
    const size = statSync(file).size;
    assert.ok(fromFile >= size / 8192 && fromFile <= Math.ceil(size / 8100) + 2, `${fromFile} commands for ${size} bytes: full payloads`);
    assert.equal(await get('11.1.2.3'), `f${(1 * 256 + 2) % 7}`);
    assert.equal(await get('11.0.0.9'), 'f0', 'the first entry, after the header');
    assert.equal(await get('12.134.159.1'), `f${99_999 % 7}`, 'the last entry');

    await runtime.editMap(layout.mapPath, { remove: ['11.1.2.0/24'], set: [['11.1.3.0/24', 'moved']], add: [['10.0.0.0/8', 'eu']] });
    assert.equal(await get('11.1.2.3'), undefined);
    assert.equal(await get('11.1.3.3'), 'moved');
    assert.equal(await get('10.9.9.9'), 'eu');
  });

  it('diffs maps into edits, or says it cannot', () => {
    const from = parseMap('# comment\n10.0.0.0/8 eu\n192.0.2.0/24 us\n\n198.51.100.0/24 ap\n');
    assert.deepEqual(from, [['10.0.0.0/8', 'eu'], ['192.0.2.0/24', 'us'], ['198.51.100.0/24', 'ap']]);
    const to = parseMap('10.0.0.0/8 eu\n192.0.2.0/24 ap\n203.0.113.0/24 us\n');
    assert.deepEqual(diffMap(from, to), { remove: ['198.51.100.0/24'], set: [['192.0.2.0/24', 'ap']], add: [['203.0.113.0/24', 'us']], size: 3 });
    assert.equal(diffMap(from, [...to, ['10.0.0.0/8', 'us']]), undefined, 'a key twice');
    assert.throws(() => parseMap('10.0.0.0/8\n'), TypeError);
  });

  it('cuts a map file into payloads of whole lines, comments and blank lines left out', () => {
    const lines = Array.from({ length: 60_000 }, (_, i) => `${i >> 8}.${i & 255}.0.0/16 region-${i % 13}`);
    const file = join(dir, 'payloads.map');
    // Blocks of 1 MiB: lines cut by a block's end; a last line without its newline.
    writeFileSync(file, `# header\n${lines.slice(0, 10).join('\n')}\n\n  \n# between\n${lines.slice(10).join('\n')}`);
    const payloads: string[] = [];
    // Each is a view of a block the next ones reuse: read before the next is asked for.
    for (const payload of new MapFile(file, statSync(file).size, lines.length).payloads(8192)) payloads.push(payload.toString());
    assert.ok(payloads.every((p) => Buffer.byteLength(p) <= 8192 && !p.startsWith('\n') && !p.endsWith('\n') && !p.includes('\n\n')));
    assert.deepEqual(payloads.join('\n').split('\n'), lines);
    assert.equal(payloads[0], lines.slice(0, 10).join('\n'), 'a comment ends a payload');
    assert.ok(payloads.length < (statSync(file).size / 8192) * 1.1 + 3, `${payloads.length} payloads: full ones`);
  });
});
