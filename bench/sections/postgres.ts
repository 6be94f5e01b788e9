import { Database } from '../../db/Database.ts';
import { getNode, heartbeatNode, upsertNode, type NodeLoad } from '../../db/repositories/nodes.ts';
import { getStream, markStreamLive } from '../../db/repositories/streams.ts';
import { CpuWindow, loadavg } from '../../kit/cpu.ts';
import { createTestDatabase } from '../../kit/postgres.ts';
import { fmt, median, percentile, sleep } from '../../kit/stats.ts';
import { runsFor, type BenchOptions } from '../lib/options.ts';
import type { Progress } from '../lib/progress.ts';
import type { SectionResult } from '../lib/report.ts';

/**
 * Postgres as the cluster uses it, on a fresh database of its own: heartbeat writes
 * (heartbeatNode, the UPDATE … RETURNING every node runs every 2 s) from many simulated nodes,
 * and placement lookups (getStream + getNode: what an edge reads to open a relay) while the
 * cluster's heartbeats run. The repositories and the knex pool settings are the product's.
 */

const HEARTBEAT_MS = 2000;
/** Concurrent callers on one pool: the product's pool holds 10 connections. */
const CONCURRENCY = 10;

interface Phase {
  heartbeatsPerSecond: number;
  heartbeatP50: number;
  heartbeatP99: number;
  lookupsPerSecond: number;
  lookupP50: number;
  lookupP99: number;
  benchCores: number;
  postgresCores: number;
  load: string;
}

function load(i: number): NodeLoad {
  return { viewers: (i * 7) % 1000, streams: i % 20, bitrateOut: i * 1000, cpu: (i % 100) / 100 };
}

export async function postgres(options: BenchOptions, progress: Progress): Promise<SectionResult> {
  const runs = runsFor(options, 'cheap');
  const seconds = options.quick ? 1 : 3;
  const nodes = options.nodes;
  const origins = Math.max(1, Math.round(nodes / 10));
  const streams = Math.max(1, Math.round(nodes / 2));
  progress.note(`postgres: a fresh database, ${nodes} nodes, ${streams} live streams`);
  const testDb = await createTestDatabase();
  // Two pools, as two sets of processes would have: the nodes heartbeating, and the readers.
  const writers = Database.open({ url: testDb.url });
  const readers = Database.open({ url: testDb.url });
  const phases: Record<'heartbeats' | 'lookups' | 'lookupsUnderHeartbeats', Phase[]> = { heartbeats: [], lookups: [], lookupsUnderHeartbeats: [] };
  let version: string;
  try {
    await writers.migrate();
    version = String(((await writers.knex.raw('show server_version')) as { rows: Array<{ server_version: string }> }).rows[0]?.server_version);
    const ids = Array.from({ length: nodes }, (_, i) => `node-${String(i).padStart(5, '0')}`);
    for (let i = 0; i < nodes; i += 50) {
      await Promise.all(
        ids.slice(i, i + 50).map((id, j) =>
          upsertNode(
            writers.knex,
            { id, roles: i + j < origins ? ['origin'] : ['edge'], region: `region-${(i + j) % 50}`, lat: 0, lon: 0, publicUrl: `http://10.0.0.1:${8000 + ((i + j) % 1000)}`, announcedIp: '10.0.0.1', version: 'bench', capacity: 1000, egressCapacity: 1e9, agentPort: null, rtmpUrl: null },
            load(i + j),
          ),
        ),
      );
    }
    for (let s = 0; s < streams; s += 50) {
      await Promise.all(
        Array.from({ length: Math.min(50, streams - s) }, (_, j) =>
          markStreamLive(writers.knex, { name: `stream-${s + j}`, originNodeId: ids[(s + j) % origins]!, ingestProtocol: 'whip', codecs: { audio: 'opus', video: 'VP8' }, publisherSession: `p-${s + j}` }),
        ),
      );
    }
    const backends = async () =>
      ((await readers.knex.raw('select pid from pg_stat_activity where datname = current_database()')) as { rows: Array<{ pid: number }> }).rows.map((r) => r.pid);

    /** Closed loop: `concurrency` callers each run `op` back to back until the deadline. */
    const closedLoop = async (op: (i: number) => Promise<unknown>, until: number, latencies: number[]) => {
      let n = 0;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (performance.now() < until) {
            const t = performance.now();
            await op(n++);
            latencies.push(performance.now() - t);
          }
        }),
      );
    };
    /** Open loop: heartbeats at the cluster's rate (every node every HEARTBEAT_MS), whatever the answers take. */
    const openLoop = async (until: number, latencies: number[]) => {
      const perSecond = (nodes * 1000) / HEARTBEAT_MS;
      const pending: Array<Promise<void>> = [];
      const t0 = performance.now();
      let sent = 0;
      while (performance.now() < until) {
        const due = Math.floor(((performance.now() - t0) / 1000) * perSecond);
        for (; sent < due; sent++) {
          const t = performance.now();
          const i = sent;
          pending.push(heartbeatNode(writers.knex, ids[i % nodes]!, load(i)).then(() => void latencies.push(performance.now() - t)));
        }
        await sleep(5);
      }
      await Promise.all(pending);
    };
    const lookup = async (i: number) => {
      const stream = await getStream(readers.knex, `stream-${(i * 7919) % streams}`);
      if (stream?.originNodeId) await getNode(readers.knex, stream.originNodeId);
    };
    // Warm both pools up to their full size.
    await closedLoop(lookup, performance.now() + 200, []);
    await closedLoop((i) => heartbeatNode(writers.knex, ids[i % nodes]!, load(i)), performance.now() + 200, []);

    const measure = async (name: keyof typeof phases, work: (until: number, hb: number[], lk: number[]) => Promise<unknown>) => {
      const hb: number[] = [];
      const lk: number[] = [];
      const bench = new CpuWindow([process.pid]);
      const pg = new CpuWindow(await backends());
      bench.start();
      pg.start();
      const t0 = performance.now();
      await work(t0 + seconds * 1000, hb, lk);
      const elapsed = (performance.now() - t0) / 1000;
      phases[name].push({
        heartbeatsPerSecond: hb.length / elapsed,
        heartbeatP50: percentile(hb, 50),
        heartbeatP99: percentile(hb, 99),
        lookupsPerSecond: lk.length / elapsed,
        lookupP50: percentile(lk, 50),
        lookupP99: percentile(lk, 99),
        benchCores: bench.read(),
        postgresCores: pg.read(),
        load: loadavg(),
      });
      progress.step();
    };
    for (let run = 0; run < runs; run++) {
      progress.note(`postgres run ${run + 1}/${runs}: heartbeat writes, closed loop`);
      await measure('heartbeats', (until, hb) => closedLoop((i) => heartbeatNode(writers.knex, ids[(i * 31) % nodes]!, load(i)), until, hb));
      progress.note(`postgres run ${run + 1}/${runs}: placement lookups alone`);
      await measure('lookups', (until, _hb, lk) => closedLoop(lookup, until, lk));
      progress.note(`postgres run ${run + 1}/${runs}: placement lookups while ${nodes} nodes heartbeat`);
      await measure('lookupsUnderHeartbeats', (until, hb, lk) => Promise.all([openLoop(until, hb), closedLoop(lookup, until, lk)]));
    }
  } finally {
    await writers.close().catch(() => undefined);
    await readers.close().catch(() => undefined);
    await testDb.drop();
  }
  const m = (name: keyof typeof phases, f: (p: Phase) => number) => median(phases[name].map(f));
  const row = (label: string, name: keyof typeof phases, hb: boolean, lk: boolean) => [
    label,
    hb ? fmt(m(name, (p) => p.heartbeatsPerSecond), 0) : '',
    hb ? `${fmt(m(name, (p) => p.heartbeatP50), 2)} / ${fmt(m(name, (p) => p.heartbeatP99), 2)}` : '',
    lk ? fmt(m(name, (p) => p.lookupsPerSecond), 0) : '',
    lk ? `${fmt(m(name, (p) => p.lookupP50), 2)} / ${fmt(m(name, (p) => p.lookupP99), 2)}` : '',
    `${fmt(m(name, (p) => p.postgresCores) * 100, 0)}%`,
    `${fmt(m(name, (p) => p.benchCores) * 100, 0)}%`,
  ];
  const offered = (nodes * 1000) / HEARTBEAT_MS;
  return {
    id: 'postgres',
    title: 'Postgres',
    tables: [
      {
        title: `Postgres ${version}: ${nodes.toLocaleString('en')} nodes, ${streams.toLocaleString('en')} live streams (median of ${runs} runs of ${seconds} s)`,
        head: ['workload', 'heartbeats/s', 'p50 / p99 ms', 'lookups/s', 'p50 / p99 ms', 'postgres CPU', 'bench CPU'],
        rows: [
          row(`heartbeat writes, ${CONCURRENCY} at a time, back to back`, 'heartbeats', true, false),
          row(`placement lookups, ${CONCURRENCY} at a time, back to back`, 'lookups', false, true),
          row(`lookups while ${nodes} nodes heartbeat every ${HEARTBEAT_MS / 1000} s (${fmt(offered, 0)}/s offered)`, 'lookupsUnderHeartbeats', true, true),
        ],
        how: [
          'heartbeat = db/repositories/nodes.ts heartbeatNode (UPDATE nodes … RETURNING draining) on the product\'s knex pool (10 connections), from this process',
          'placement lookup = getStream(name) then getNode(origin), what an edge reads before it opens a relay; on a second pool of 10',
          'CPU: postgres = the database\'s backend processes (pg_stat_activity pids, /proc), bench = this Node process, which drives both pools (its JS is part of every figure)',
        ],
      },
    ],
    data: { runs, seconds, nodes, streams, origins, version, heartbeatMs: HEARTBEAT_MS, concurrency: CONCURRENCY, phases },
    panels: [
      {
        kind: 'bars',
        title: `Postgres (${nodes} nodes)`,
        unit: 'operations/s',
        bars: [
          { label: 'heartbeats max', value: m('heartbeats', (p) => p.heartbeatsPerSecond), series: 'heartbeats' },
          { label: 'lookups alone', value: m('lookups', (p) => p.lookupsPerSecond), series: 'lookups' },
          { label: 'lookups + heartbeats', value: m('lookupsUnderHeartbeats', (p) => p.lookupsPerSecond), series: 'lookups' },
        ],
      },
    ],
    headline: [
      { figure: 'Postgres heartbeat writes/s (10 connections)', value: `${fmt(m('heartbeats', (p) => p.heartbeatsPerSecond), 0)} (p99 ${fmt(m('heartbeats', (p) => p.heartbeatP99), 1)} ms)` },
      {
        figure: `Postgres placement lookups/s under ${fmt(offered, 0)} heartbeats/s`,
        value: `${fmt(m('lookupsUnderHeartbeats', (p) => p.lookupsPerSecond), 0)} (p99 ${fmt(m('lookupsUnderHeartbeats', (p) => p.lookupP99), 1)} ms; alone ${fmt(m('lookups', (p) => p.lookupsPerSecond), 0)})`,
      },
    ],
    load: Object.values(phases).flatMap((ps) => ps.map((p) => p.load)),
  };
}
