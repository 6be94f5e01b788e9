import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderHaproxy, type MapPin } from '../../balancer/HaproxyConfig.ts';
import { HaproxyController } from '../../balancer/HaproxyController.ts';
import { createPolicy, POLICY_NAMES, rank, type NodeSnapshot, type PolicyName } from '../../balancer/policies.ts';
import { RouteIndex } from '../../balancer/RouteIndex.ts';
import { createLogger } from '../../core/logger.ts';
import { Metrics } from '../../core/metrics.ts';
import { loadavg } from '../../kit/cpu.ts';
import { freePort } from '../../kit/postgres.ts';
import { fmt, median, sleep, spread } from '../../kit/stats.ts';
import { runsFor, type BenchOptions } from '../lib/options.ts';
import type { Progress } from '../lib/progress.ts';
import type { SectionResult } from '../lib/report.ts';

/**
 * The balancer, in this process: route decisions per second for each policy over a registry
 * snapshot of N edges, and HAProxy for those edges — render, `haproxy -c`, and a real hitless
 * reload of a running HAProxy (master-worker) through the product's HaproxyController.
 */

function snapshot(options: Pick<BenchOptions, 'edges' | 'regions' | 'networks'>) {
  // A repeatable pseudo-random sequence, so that runs compare.
  let seed = 42;
  const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
  const regions = Array.from({ length: options.regions }, (_, i) => ({ name: `region-${i}`, lat: rnd() * 140 - 70, lon: rnd() * 360 - 180 }));
  const nodes: NodeSnapshot[] = Array.from({ length: options.edges }, (_, i) => {
    const r = regions[i % regions.length]!;
    return {
      id: `edge-${i}`,
      roles: ['edge'],
      region: r.name,
      lat: r.lat + rnd() - 0.5,
      lon: r.lon + rnd() - 0.5,
      // Loopback addresses: the running HAProxy's health and agent checks get refused at once.
      publicUrl: `http://127.${1 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}:8080`,
      capacity: 1000,
      viewers: Math.floor(rnd() * 900),
      cpu: rnd() * 0.5,
      draining: rnd() < 0.02,
      streams: new Set(Array.from({ length: 5 }, () => `stream-${Math.floor(rnd() * 200)}`)),
      agentPort: 9090,
    };
  });
  const clients = Array.from({ length: 1000 }, () => ({ lat: rnd() * 140 - 70, lon: rnd() * 360 - 180 }));
  const pins: MapPin[] = Array.from({ length: options.networks }, (_, i) => ({
    cidr: `${11 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}.0/24`,
    region: regions[i % regions.length]!.name,
  }));
  return { nodes, clients, pins, rnd };
}

/** One command on an HAProxy CLI socket (half-closed after it, as HaproxyController does). */
async function cli(path: string, command: string): Promise<string> {
  const socket = createConnection(path);
  let reply = '';
  socket.on('data', (d) => (reply += d));
  socket.setTimeout(5000, () => socket.destroy());
  await once(socket, 'connect');
  socket.end(`${command}\n`);
  await once(socket, 'close');
  return reply;
}

/** The current workers' pids, from the master CLI's `show proc`. */
async function workers(masterSocket: string): Promise<string[]> {
  const text = await cli(masterSocket, 'show proc').catch(() => '');
  const section = text.split('# workers')[1]?.split('#')[0] ?? '';
  return [...section.matchAll(/^(\d+)\s+worker/gm)].map((m) => m[1]!);
}

const perPolicy = () => Object.fromEntries(POLICY_NAMES.map((p) => [p, [] as number[]])) as Record<PolicyName, number[]>;

/** Calls `decide(n)` for n = 0, 1, … for `seconds`, in batches of 20 between clock reads; calls per second. */
function ratePerSecond(seconds: number, decide: (n: number) => unknown): number {
  let n = 0;
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  while (performance.now() < deadline) for (let i = 0; i < 20; i++, n++) decide(n);
  return n / ((performance.now() - t0) / 1000);
}

export async function balancer(options: BenchOptions, progress: Progress): Promise<SectionResult> {
  const runs = runsFor(options, 'cheap');
  const seconds = options.quick ? 0.2 : 1;
  const { nodes, clients, pins, rnd } = snapshot(options);
  const thresholds = { streams: 0.8, viewers: 0.95 };
  const load: string[] = [];

  // Route decisions as the route API and the 307 make them (the pick and two to spill to): rank()
  // over the whole snapshot, and the route index built once per snapshot, side by side, at the
  // configured size and at ten times the edges in twice the regions.
  const sizes = [
    { edges: options.edges, regions: options.regions },
    { edges: options.edges * 10, regions: options.regions * 2 },
  ];
  const decisions = sizes.map((size) => ({ ...size, rank: perPolicy(), index: perPolicy(), fresh: perPolicy(), buildMs: [] as number[], coldUs: [] as number[] }));
  for (let run = 0; run < runs; run++) {
    progress.note(`balancer: route decisions, run ${run + 1}/${runs}`);
    for (const d of decisions) {
      const world = d.edges === nodes.length ? { nodes, clients } : snapshot({ ...d, networks: 0 });
      for (const name of POLICY_NAMES) {
        const policy = createPolicy(name, rnd);
        const t0 = performance.now();
        const cold = new RouteIndex(world.nodes, policy, thresholds);
        cold.rank({ stream: 'stream-0', role: 'edge', location: world.clients[0]! }, 3);
        d.buildMs.push(performance.now() - t0);
        // The first decision for each client position orders the regions for it: timed apart.
        const t1 = performance.now();
        for (let i = 1; i < world.clients.length; i++) cold.rank({ stream: 'stream-0', role: 'edge', location: world.clients[i]! }, 3);
        d.coldUs.push(((performance.now() - t1) * 1000) / (world.clients.length - 1));
        // The next snapshot's index, as the balancer builds it a second later: region orders carried over.
        const index = new RouteIndex(world.nodes, policy, thresholds, cold);
        d.rank[name].push(ratePerSecond(seconds / 2, (n) => rank(world.nodes, { stream: `stream-${n % 200}`, role: 'edge', location: world.clients[n % world.clients.length]! }, policy, thresholds, 3)));
        d.index[name].push(ratePerSecond(seconds, (n) => index.rank({ stream: `stream-${n % 200}`, role: 'edge', location: world.clients[n % world.clients.length]! }, 3)));
        // Every decision for a stream the index has not answered for yet in this snapshot.
        d.fresh[name].push(ratePerSecond(seconds / 2, (n) => index.rank({ stream: `fresh-${run}-${n}`, role: 'edge', location: world.clients[n % world.clients.length]! }, 3)));
      }
    }
    load.push(loadavg());
    progress.step();
  }

  // HAProxy: render and check alone, then the product's whole refresh against a running HAProxy.
  const dir = mkdtempSync(join(tmpdir(), 'relaycast-bench-haproxy-'));
  const renderMs: number[] = [];
  const checkMs: number[] = [];
  const refreshMs: number[] = [];
  const reloadedMs: number[] = [];
  let cfgBytes = 0;
  let mapBytes = 0;
  let controller: HaproxyController | undefined;
  try {
    const layout = { nodeId: 'bench', bind: `127.0.0.1:${await freePort()}`, balancer: `127.0.0.1:${await freePort()}`, defaultRegion: 'region-0' };
    const scratch = join(dir, 'scratch');
    progress.note(`balancer: starting HAProxy with ${nodes.length} edges`);
    controller = await HaproxyController.start({
      bin: process.env.HAPROXY_BIN ?? 'haproxy',
      dir: join(dir, 'live'),
      layout,
      pins,
      logger: createLogger('silent'),
      metrics: new Metrics(),
      nodes: async () => nodes,
    });
    const master = join(dir, 'live', 'master.sock');
    for (let run = 0; run < runs; run++) {
      progress.note(`balancer: HAProxy render, check and reload, run ${run + 1}/${runs}`);
      const t0 = performance.now();
      const { cfg, map } = renderHaproxy(nodes, pins, { ...layout, mapPath: join(scratch, 'geo.map'), runtimeSocket: join(scratch, 'rt.sock'), serverStateFile: join(scratch, 'state') });
      renderMs.push(performance.now() - t0);
      cfgBytes = cfg.length;
      mapBytes = map.length;
      mkdirSync(scratch, { recursive: true });
      writeFileSync(join(scratch, 'geo.map'), map);
      writeFileSync(join(scratch, 'haproxy.cfg'), cfg);
      const t1 = performance.now();
      execFileSync(process.env.HAPROXY_BIN ?? 'haproxy', ['-c', '-q', '-f', join(scratch, 'haproxy.cfg')]);
      checkMs.push(performance.now() - t1);

      const before = new Set(await workers(master));
      const t2 = performance.now();
      await controller.refresh(true);
      refreshMs.push(performance.now() - t2);
      // Reloaded: the master lists a worker that was not there before (the new config is serving).
      const deadline = Date.now() + 30_000;
      for (;;) {
        const now = await workers(master);
        if (now.some((pid) => !before.has(pid))) break;
        if (Date.now() > deadline) throw new Error('HAProxy did not start a new worker within 30 s of the reload');
        await sleep(20);
      }
      reloadedMs.push(performance.now() - t2);
      load.push(loadavg());
      progress.step();
    }
  } finally {
    await controller?.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const n = nodes.length.toLocaleString('en');
  return {
    id: 'balancer',
    title: 'Balancer',
    tables: [
      {
        title: `Route decisions per second, one core (median of ${runs} runs)`,
        head: ['edges', 'policy', 'rank()', 'index', 'index ÷ rank()', 'index, new stream'],
        rows: decisions.flatMap((d) =>
          POLICY_NAMES.map((p) => [
            d.edges.toLocaleString('en'),
            p,
            fmt(median(d.rank[p]), 0),
            fmt(median(d.index[p]), 0),
            `${(median(d.index[p]) / median(d.rank[p])).toFixed(1)}×`,
            fmt(median(d.fresh[p]), 0),
          ]),
        ),
        how: [
          'a decision = the pick and two spill-over edges for one client position and stream, as the route API and the 307 redirect ask for them',
          `rank() orders every node of the snapshot at each decision; the index (balancer/RouteIndex.ts) is built once per snapshot (${decisions.map((d) => `${fmt(median(d.buildMs), 1)} ms at ${d.edges.toLocaleString('en')} edges`).join(', ')}; the balancer builds one a second) and gives the same answer`,
          'index: a deterministic policy\'s answer for a stream in a region is kept for the snapshot; "new stream" asks for a stream not asked for before in it, every time (the policy orders the region\'s eligible edges)',
          `index figures: each client position seen before (region orders carry over from one snapshot to the next while no node moves); a position's first decision costs ${decisions.map((d) => `${fmt(median(d.coldUs), 0)} µs at ${d.edges.toLocaleString('en')} edges`).join(', ')} (the regions ordered by distance to their nearest node)`,
          `${decisions.map((d) => `${d.edges.toLocaleString('en')} edges in ${d.regions} regions`).join(', ')}; 1,000 client positions spread over the globe, 200 streams; 2 % of edges draining`,
        ],
      },
      {
        title: `HAProxy for ${n} edges, ${options.regions} regions, a geo map of ${options.networks.toLocaleString('en')} networks (median of ${runs})`,
        head: ['step', 'median ms', 'runs ms'],
        rows: [
          ['render haproxy.cfg + geo map', fmt(median(renderMs), 0), spread(renderMs, 0)],
          ['haproxy -c (validate)', fmt(median(checkMs), 0), spread(checkMs, 0)],
          ['refresh: render, validate, install, reload command', fmt(median(refreshMs), 0), spread(refreshMs, 0)],
          ['… until the new worker runs', fmt(median(reloadedMs), 0), spread(reloadedMs, 0)],
        ],
        how: [
          `config ${(cfgBytes / 1024).toFixed(0)} KiB, map ${(mapBytes / 1024).toFixed(0)} KiB; each edge is a server (agent-check) in its region and a backup in the nearest one`,
          'refresh = HaproxyController.refresh(true) against HAProxy 2.6 running in master-worker mode on 127.0.0.1 (renders twice, haproxy -c on a candidate, atomic renames, saves server state, `reload` on the master CLI)',
          'new worker running: polled (20 ms) with `show proc` on the master CLI until a worker pid that was not there before is listed',
        ],
      },
    ],
    data: { runs, seconds, edges: nodes.length, regions: options.regions, networks: options.networks, decisions, haproxy: { renderMs, checkMs, refreshMs, reloadedMs, cfgBytes, mapBytes } },
    panels: [
      {
        kind: 'bars',
        title: `Route decisions/s (${n} edges)`,
        unit: 'decisions/s',
        bars: POLICY_NAMES.flatMap((p) => [
          { label: p, value: median(decisions[0]!.rank[p]), series: 'rank()' },
          { label: p, value: median(decisions[0]!.index[p]), series: 'index' },
        ]),
      },
      {
        kind: 'bars',
        title: `HAProxy, ${n} edges`,
        unit: 'ms',
        bars: [
          { label: 'render', value: median(renderMs) },
          { label: 'haproxy -c', value: median(checkMs) },
          { label: 'refresh', value: median(refreshMs), series: 'reload' },
          { label: 'new worker', value: median(reloadedMs), series: 'reload' },
        ],
      },
    ],
    headline: [
      ...decisions.map((d) => ({
        figure: `route decisions/s, index (rank()), ${d.edges.toLocaleString('en')} edges`,
        value: POLICY_NAMES.map((p) => `${p} ${fmt(median(d.index[p]), 0)} (${fmt(median(d.rank[p]), 0)})`).join(', '),
      })),
      { figure: `HAProxy for ${n} edges: render + check + reload`, value: `${fmt(median(renderMs), 0)} + ${fmt(median(checkMs), 0)} ms; refresh ${fmt(median(refreshMs), 0)} ms, new worker after ${fmt(median(reloadedMs), 0)} ms` },
    ],
    load,
  };
}
