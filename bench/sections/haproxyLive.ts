import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { MapPin } from '../../balancer/HaproxyConfig.ts';
import { HaproxyController } from '../../balancer/HaproxyController.ts';
import { diffMap, HaproxyRuntime, MAP_EDIT_LIMIT, parseMap, type MapEntry } from '../../balancer/HaproxyRuntime.ts';
import type { NodeSnapshot } from '../../balancer/policies.ts';
import { createLogger } from '../../core/logger.ts';
import { Metrics } from '../../core/metrics.ts';
import { loadavg } from '../../kit/cpu.ts';
import { FakeEdge, servedBy } from '../../kit/FakeEdge.ts';
import { freePort } from '../../kit/postgres.ts';
import { waitFor } from '../../kit/processes.ts';
import { fmt, median, spread } from '../../kit/stats.ts';
import { runsFor, type BenchOptions } from '../lib/options.ts';
import type { Progress } from '../lib/progress.ts';
import type { SectionResult } from '../lib/report.ts';

/**
 * HAProxy kept live (balancer/HaproxyController.ts) with N edges and a geo map of M networks: how
 * long an edge's registration takes to bring it its first request through HAProxy when it joins a
 * region (runtime API: add server, no reload) and when it opens a new region (a new backend: a
 * checked reload), the runtime commands alone, the map replaced or edited at run time, and the
 * reload path's own steps at the same size. The N edges are unreachable addresses (their checks
 * fail at once: no load from them); the measured edges are stand-ins (kit/FakeEdge.ts).
 */

const BIN = process.env.HAPROXY_BIN ?? 'haproxy';
/** How often a client asks while waiting for the new edge's first request. */
const POLL_MS = 10;
/** How long any one wait may take: a reload at 10,000 edges takes seconds, not this. */
const WAIT_MS = 60_000;

function fleet(options: BenchOptions, runs: number) {
  // A repeatable pseudo-random sequence, so that runs compare.
  let seed = 7;
  const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
  const regions = Array.from({ length: options.regions }, (_, i) => ({ name: `region-${i}`, lat: rnd() * 140 - 70, lon: rnd() * 360 - 180 }));
  const nodes: NodeSnapshot[] = Array.from({ length: options.edges }, (_, i) => {
    const r = regions[i % regions.length]!;
    // Loopback addresses on port 1, where nothing listens: health and agent checks are refused at once.
    return edgeAt(`edge-${i}`, r.name, r.lat + rnd() - 0.5, r.lon + rnd() - 0.5, `http://127.${1 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}:1`, 1);
  });
  const pins: MapPin[] = Array.from({ length: options.networks }, (_, i) => ({ cidr: `${11 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}.0/24`, region: regions[i % regions.length]!.name }));
  // The regions the measured edges open, one per run, each with a client address pinned to it
  // (left out of the map until the region has an edge).
  for (let run = 0; run < runs; run++) pins.push({ cidr: `127.0.1.${10 + run}/32`, region: `new-${run}` });
  return { nodes, pins };
}

function edgeAt(id: string, region: string, lat: number, lon: number, publicUrl: string, agentPort: number): NodeSnapshot {
  return { id, roles: ['edge'], region, lat, lon, publicUrl, capacity: 1000, viewers: 0, cpu: 0, draining: false, streams: new Set(), agentPort };
}

/** Polls through HAProxy (from `source`, streams in turn) until `edge` has answered a request. */
async function firstRequest(port: number, edge: FakeEdge, source?: string): Promise<number> {
  let i = 0;
  await waitFor(`a request on ${edge.id}`, async () => {
    await servedBy(port, `/whep/stream-${i++ % 16}`, { source, method: 'OPTIONS' });
    return edge.firstRequestAt !== undefined;
  }, WAIT_MS, POLL_MS);
  return edge.firstRequestAt!;
}

export async function haproxyLive(options: BenchOptions, progress: Progress): Promise<SectionResult> {
  const runs = runsFor(options, 'cheap');
  const { nodes, pins } = fleet(options, runs);
  const metrics = new Metrics();
  const reloads = async () => (await metrics.haproxyReloads.get()).values[0]?.value ?? 0;
  const dir = mkdtempSync(join(tmpdir(), 'relaycast-bench-haproxy-live-'));
  const live = join(dir, 'live');
  const started: FakeEdge[] = [];
  const load: string[] = [];
  const f = {
    joinFirst: [] as number[],
    joinFromRead: [] as number[],
    joinInHaproxy: [] as number[],
    joinReloads: [] as number[],
    leaveGone: [] as number[],
    addServer: [] as number[],
    delServer: [] as number[],
    mapReplace: [] as number[],
    mapEdit: [] as number[],
    regionFirst: [] as number[],
    check: [] as number[],
    reloadRefresh: [] as number[],
    reloadWorker: [] as number[],
  };
  let mapEntries = 0;
  let controller: HaproxyController | undefined;
  try {
    const port = await freePort();
    // When the controller last read the registry: the start of the refresh that saw a new edge.
    const reads: number[] = [];
    progress.note(`haproxy: starting HAProxy with ${nodes.length} edges and ${options.networks.toLocaleString('en')} map entries`);
    controller = await HaproxyController.start({
      bin: BIN,
      dir: live,
      layout: { nodeId: 'bench', bind: `127.0.0.1:${port}`, balancer: `127.0.0.1:${await freePort()}`, defaultRegion: 'region-0' },
      pins,
      logger: createLogger('silent'),
      metrics,
      nodes: async () => {
        reads.push(performance.now());
        return [...nodes];
      },
    });
    const runtime = new HaproxyRuntime(join(live, 'runtime.sock'));
    const master = new HaproxyRuntime(join(live, 'master.sock'));
    const inBackend = async (backend: string, name: string) => (await runtime.serversState(backend)).some((s) => s.name === name && s.opState === 2);
    // Clients from 127.0.0.1 (in no map entry) go to the default region, region-0: once its
    // unreachable edges are down, a joining edge is the one that answers.
    await waitFor('region-0 edges marked down', async () => (await runtime.serversState('be_region-0')).every((s) => s.opState === 0), WAIT_MS, 200);

    for (let run = 0; run < runs; run++) {
      progress.note(`haproxy: run ${run + 1}/${runs}: an edge joins and leaves a region (runtime API)`);
      const joiner = await FakeEdge.start(`joiner-${run}`);
      started.push(joiner);
      const reloadsBefore = await reloads();
      const registered = performance.now();
      nodes.push(edgeAt(joiner.id, 'region-0', 0, 0, joiner.url, joiner.agentPort));
      const upInHaproxy = waitFor('the joiner in HAProxy', () => inBackend('be_region-0', joiner.id), WAIT_MS, POLL_MS).then(() => performance.now());
      const first = await firstRequest(port, joiner);
      f.joinInHaproxy.push((await upInHaproxy) - registered);
      f.joinFirst.push(first - registered);
      f.joinFromRead.push(first - reads.find((at) => at >= registered)!);
      f.joinReloads.push((await reloads()) - reloadsBefore);
      const left = performance.now();
      nodes.splice(nodes.findIndex((n) => n.id === joiner.id), 1);
      await waitFor('the joiner deleted', async () => !(await runtime.serversState('be_region-0')).some((s) => s.name === joiner.id), WAIT_MS, POLL_MS);
      f.leaveGone.push(performance.now() - left);

      // The runtime commands alone, on a scratch server the controller does not know.
      const scratch = { backend: 'be_region-1', name: `scratch-${run}`, address: joiner.url.slice('http://'.length), agentPort: joiner.agentPort, backup: false, id: 100_000 + run };
      let t = performance.now();
      await runtime.addServer(scratch, scratch.address);
      f.addServer.push(performance.now() - t);
      t = performance.now();
      await runtime.stopServer(scratch.backend, scratch.name, true);
      if ((await runtime.deleteServer(scratch.backend, scratch.name)) !== 'deleted') throw new Error('the scratch server was not deleted at once');
      f.delServer.push(performance.now() - t);

      progress.note(`haproxy: run ${run + 1}/${runs}: the geo map at run time`);
      const entries = parseMap(readFileSync(join(live, 'geo.map'), 'utf8'));
      mapEntries = entries.length;
      const mapPath = join(live, 'geo.map');
      t = performance.now();
      await runtime.replaceMap(mapPath, entries);
      f.mapReplace.push(performance.now() - t);
      // Entries spread over the map (an edit finds its entry by walking the map).
      const every = Math.max(1, Math.floor(entries.length / MAP_EDIT_LIMIT));
      const edited: MapEntry[] = entries.map(([key, value], i) => [key, i % every === 0 && i / every < MAP_EDIT_LIMIT ? `${value}-moved` : value]);
      t = performance.now();
      await runtime.editMap(mapPath, diffMap(entries, edited)!);
      f.mapEdit.push(performance.now() - t);
      await runtime.editMap(mapPath, diffMap(edited, entries)!);

      progress.note(`haproxy: run ${run + 1}/${runs}: an edge opens a new region (checked reload)`);
      const opener = await FakeEdge.start(`opener-${run}`);
      started.push(opener);
      const opened = performance.now();
      nodes.push(edgeAt(opener.id, `new-${run}`, 0, 0, opener.url, opener.agentPort));
      f.regionFirst.push((await firstRequest(port, opener, `127.0.1.${10 + run}`)) - opened);
      nodes.splice(nodes.findIndex((n) => n.id === opener.id), 1);
      // Its edge leaves: deleted from the region's backend, which stays (no reload) until the next
      // one, here the reload path's steps at this size, on their own.
      const gone = async () => !(await runtime.serversState().catch(() => [{ backend: `be_new-${run}`, name: opener.id }])).some((s) => s.backend === `be_new-${run}` && s.name === opener.id);
      await waitFor('the region\'s edge deleted', gone, WAIT_MS, 100);
      t = performance.now();
      await promisify(execFile)(BIN, ['-c', '-q', '-f', join(live, 'haproxy.cfg')]);
      f.check.push(performance.now() - t);
      const before = await master.workers();
      t = performance.now();
      await controller.refresh(true);
      f.reloadRefresh.push(performance.now() - t);
      await waitFor('the new worker', async () => (await master.workers().catch(() => before)).some((pid) => !before.includes(pid)), WAIT_MS, 20);
      f.reloadWorker.push(performance.now() - t);
      load.push(loadavg());
      progress.step();
    }
  } finally {
    await controller?.stop();
    for (const edge of started) await edge.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const n = options.edges.toLocaleString('en');
  const m = mapEntries.toLocaleString('en');
  const row = (label: string, xs: number[]) => [label, fmt(median(xs), 0), spread(xs, 0)];
  return {
    id: 'haproxy',
    title: 'HAProxy kept live',
    tables: [
      {
        title: `HAProxy kept live: ${n} edges in ${options.regions} regions, a geo map of ${m} entries (median of ${runs})`,
        head: ['step', 'median ms', 'runs ms'],
        rows: [
          row('edge joins a region: registration → its first request (runtime API)', f.joinFirst),
          row('… of which from the refresh that read it', f.joinFromRead),
          row('… registration → UP in HAProxy (show servers state)', f.joinInHaproxy),
          row('edge leaves: out of the registry → deleted from HAProxy', f.leaveGone),
          row('add server + enable health/agent/server + health up', f.addServer),
          row('disable agent/health + maint + del server', f.delServer),
          row(`map: all ${m} entries replaced atomically (prepare/add/commit)`, f.mapReplace),
          row(`map: ${MAP_EDIT_LIMIT} entries edited in place (set map)`, f.mapEdit),
          row('edge opens a new region: registration → its first request (reload)', f.regionFirst),
          row('reload path: haproxy -c (validate)', f.check),
          row('reload path: refresh(true) (render, validate, install, reload command)', f.reloadRefresh),
          row('reload path: … until the new worker runs', f.reloadWorker),
        ],
        how: [
          `registration = the edge appears in the registry snapshot the controller reads every 1 s (the balancer's own snapshot cache, up to 1 s more, is not in these figures); first request = the stand-in edge answers an OPTIONS /whep/<stream> sent through HAProxy every ${POLL_MS} ms`,
          `reloads during the joins: ${f.joinReloads.reduce((a, b) => a + b, 0)} (the runtime path reloads nothing)`,
          'a new region is a new backend, a shape change: the controller checks the config with haproxy -c and reloads (master CLI); the client is pinned to that region. A region whose last edge leaves keeps its backend until the next reload (no reload of its own)',
          `the map figures run on the live HAProxy through HaproxyRuntime (replaceMap, editMap), as the controller's updateMap does (payloads of at most 8 KiB; ${MAP_EDIT_LIMIT} changes or fewer are edited in place)`,
        ],
      },
    ],
    data: { runs, edges: options.edges, regions: options.regions, mapEntries, figuresMs: f },
    panels: [
      {
        kind: 'bars',
        title: `An edge joining, ${n} edges`,
        unit: 'ms',
        bars: [
          { label: 'runtime: first request', value: median(f.joinFirst), series: 'runtime API' },
          { label: 'new region: first request', value: median(f.regionFirst), series: 'reload' },
          { label: `map ${m} replace`, value: median(f.mapReplace), series: 'runtime API' },
          { label: 'reload: new worker', value: median(f.reloadWorker), series: 'reload' },
        ],
      },
    ],
    headline: [
      { figure: `HAProxy, ${n} edges: registration → first request`, value: `joining a region ${fmt(median(f.joinFirst), 0)} ms (runtime API, no reload); opening a region ${fmt(median(f.regionFirst), 0)} ms (reload)` },
      { figure: `HAProxy, ${m}-entry map at run time`, value: `replaced atomically in ${fmt(median(f.mapReplace), 0)} ms; a reload's new worker after ${fmt(median(f.reloadWorker), 0)} ms` },
    ],
    load,
  };
}
