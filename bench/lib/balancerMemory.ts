import { readFileSync } from 'node:fs';
import knexFactory from 'knex';
import { upsertNode } from '../../db/repositories/nodes.ts';
import { commOf, loadavg, processTree } from '../../kit/cpu.ts';
import { createTestDatabase, freePort } from '../../kit/postgres.ts';
import { startRelaycast } from '../../kit/relaycast.ts';
import { sleep } from '../../kit/stats.ts';

/**
 * A real balancer's memory while it builds the full geo map (bench:geomap --balancer): `relaycast
 * balancer` (the compiled tree: `npm run build` first) with HAProxy and `--haproxy-geo-map full`,
 * on a fresh Postgres database, then edges registered in N regions (placed as bench:balancer
 * places them, heartbeating), and /proc read every SAMPLE_MS until the map is in HAProxy and again
 * at rest. Reported in MiB:
 *
 *   node peak    VmHWM of the balancer's node process (the kernel's own high-water mark)
 *   helper peak  the largest summed VmRSS of its other descendants but HAProxy (the map process)
 *   tree peak    the largest sample of node + helpers (what a container's limit must allow; HAProxy apart)
 *   rest         VmRSS of the node process (and helpers, none expected) REST_MS after the map is in
 *   HAProxy      VmRSS of HAProxy's processes at rest (the map's 1.4 million entries live there)
 */

/** How often memory is sampled: the resolution of the sampled peaks. */
const SAMPLE_MS = 100;
/** How long after the map is in HAProxy the resting memory is read (the map process has ended by then). */
const REST_MS = 30_000;
/** How long the map may take to reach HAProxy: a wait, not a figure (a loaded 2-core machine took 95 s). */
const MAP_TIMEOUT_MS = 300_000;
/** Edges per region: a region's place is its edges' (bench:geomap builds with 10; the map depends on where, not how many). */
const EDGES_PER_REGION = 3;
/** Heartbeats keep the edges alive (the balancer's TTL is 10 s). */
const HEARTBEAT_MS = 2000;
const CLUSTER_SECRET = 'bench-geomap-memory-0123456789abcdef';

export interface BalancerMemory {
  regions: number;
  readyMs: number;
  /** Registration of the last edge → the full map built (log line), and in HAProxy (runtime API). */
  builtMs: number;
  appliedMs: number;
  nodePeakMiB: number;
  helperPeakMiB: number;
  treePeakMiB: number;
  nodeRestMiB: number;
  helperRestMiB: number;
  haproxyMiB: number;
  load: string;
}

function statusKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    return Number(new RegExp(`^${field}:\\s*(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** The balancer's node process, its helpers (every other descendant but HAProxy's), and HAProxy, in kB now. */
function sample(pid: number): { node: number; helpers: number; haproxy: number } {
  const out = { node: statusKb(pid, 'VmRSS'), helpers: 0, haproxy: 0 };
  for (const p of processTree([pid])) {
    if (p === pid) continue;
    if (commOf(p).startsWith('haproxy')) out.haproxy += statusKb(p, 'VmRSS');
    else out.helpers += statusKb(p, 'VmRSS');
  }
  return out;
}

export async function measureBalancerMemory(regions: number, haproxyBin: string): Promise<BalancerMemory> {
  const db = await createTestDatabase();
  const knex = knexFactory({ client: 'pg', connection: db.url, pool: { min: 0, max: 2 } });
  let heartbeat: NodeJS.Timeout | undefined;
  let sampler: NodeJS.Timeout | undefined;
  const started = performance.now();
  const balancer = await startRelaycast({
    roles: ['balancer'],
    databaseUrl: db.url,
    args: ['--node-id', 'balancer', '--cluster-secret', CLUSTER_SECRET, '--haproxy-bin', haproxyBin, '--haproxy-bind', `127.0.0.1:${await freePort()}`, '--haproxy-geo-map', 'full', '--log-level', 'info'],
  }).catch(async (error: unknown) => {
    await knex.destroy();
    await db.drop();
    throw error;
  });
  try {
    const readyMs = performance.now() - started;
    const pid = balancer.child.pid!;
    const peaks = { helpers: 0, tree: 0 };
    sampler = setInterval(() => {
      const now = sample(pid);
      peaks.helpers = Math.max(peaks.helpers, now.helpers);
      peaks.tree = Math.max(peaks.tree, now.node + now.helpers);
    }, SAMPLE_MS);
    // bench:balancer's placement (a repeatable sequence), each region's edges within half a degree.
    let seed = 42;
    const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
    for (let r = 0; r < regions; r++) {
      const centre = { lat: rnd() * 140 - 70, lon: rnd() * 360 - 180 };
      for (let e = 0; e < EDGES_PER_REGION; e++) {
        const i = r * EDGES_PER_REGION + e;
        await upsertNode(
          knex,
          // Loopback addresses where nothing listens: HAProxy's checks fail at once, no load.
          { id: `edge-${i}`, roles: ['edge'], region: `region-${r}`, lat: centre.lat + rnd() - 0.5, lon: centre.lon + rnd() - 0.5, publicUrl: `http://127.1.${i >> 8}.${i & 255}:1`, announcedIp: '127.0.0.1', version: 'bench', capacity: 100, egressCapacity: 1e9, agentPort: null, rtmpUrl: null },
          { viewers: 0, streams: 0, bitrateOut: 0, cpu: 0 },
        );
      }
    }
    const registered = performance.now();
    heartbeat = setInterval(() => void knex('nodes').whereNot({ id: 'balancer' }).update({ heartbeat_at: knex.fn.now() }).catch(() => undefined), HEARTBEAT_MS);
    // The map for all the regions: the last "built" line names them (earlier builds may be for fewer).
    const until = async (done: () => boolean, what: string) => {
      const deadline = performance.now() + MAP_TIMEOUT_MS;
      while (!done()) {
        if (performance.now() > deadline) throw new Error(`${what} not within ${MAP_TIMEOUT_MS} ms:\n${balancer.output().slice(-3000)}`);
        await sleep(SAMPLE_MS);
      }
      return performance.now() - registered;
    };
    const lines = () => balancer.output().split('\n');
    const builtAt = lines().length;
    const builtMs = await until(() => lines().slice(builtAt).some((l) => l.includes('geo map built') && l.includes(`"regions":${regions}`)), 'the full map');
    const appliedFrom = lines().length - [...lines()].reverse().findIndex((l) => l.includes('geo map built')) - 1;
    const appliedMs = await until(() => lines().slice(appliedFrom).some((l) => l.includes('haproxy map changed through the runtime API')), 'the map in HAProxy');
    await sleep(REST_MS);
    const rest = sample(pid);
    const load = loadavg();
    const mib = (kb: number) => Math.round(kb / 1024);
    return {
      regions,
      readyMs,
      builtMs,
      appliedMs,
      nodePeakMiB: mib(statusKb(pid, 'VmHWM')),
      helperPeakMiB: mib(peaks.helpers),
      treePeakMiB: mib(peaks.tree),
      nodeRestMiB: mib(rest.node),
      helperRestMiB: mib(rest.helpers),
      haproxyMiB: mib(rest.haproxy),
      load,
    };
  } finally {
    clearInterval(sampler);
    clearInterval(heartbeat);
    await balancer.stop();
    await knex.destroy();
    await db.drop();
  }
}
