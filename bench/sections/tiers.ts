import knexFactory from 'knex';
import { signStreamToken } from '../../core/tokens.ts';
import { CpuWindow, loadavg } from '../../kit/cpu.ts';
import { metric } from '../../kit/metrics.ts';
import { createTestDatabase, type TestDatabase } from '../../kit/postgres.ts';
import { startChild, waitFor, type Child } from '../../kit/processes.ts';
import { startRelaycast, type RelaycastProcess } from '../../kit/relaycast.ts';
import { fmt, median, sleep, spread } from '../../kit/stats.ts';
import { playClient, WRTC_CLIENT, type ClientLine } from '../../kit/wrtc.ts';
import { onInterrupt, type BenchOptions } from '../lib/options.ts';
import type { Progress } from '../lib/progress.ts';
import type { SectionResult } from '../lib/report.ts';
import { RELAY_LINGER_MS, SECRET } from './rig.ts';

/**
 * Relay tiers (issue 18): what each hop of a relay chain adds, on real processes. An origin that
 * feeds one edge per stream (--origin-max-relays 1) and edges that feed one child each
 * (--edge-max-children 1), so that edges opened one after another chain: edge 0 ← origin,
 * edge 1 ← edge 0, edge 2 ← edge 1 (tier 0, 1, 2). The chain each run formed is read back from
 * the relays table and printed.
 *
 * Latency: one publisher (capture time stamped in the pixels, as the latency section's) and
 * viewers on each of the three edges at the same time; each path's capture → decoded frame
 * median, and per run the difference between a tier and the one above it.
 * Time to first frame: a cold edge whose parent is warm (edge 1 while edge 0 plays) against a
 * cold edge pulling from the origin (edge 0 when no edge holds the stream).
 */

const TIERS = 3;
/** Viewers per edge in the latency runs: their jitter buffers settle differently, pooling evens that out. */
const LATENCY_VIEWERS = 3;

interface Chain {
  /** Per edge (index = tier it should be at): the node it pulls from, as the relays table says. */
  upstreams: string[];
}

/** The section's processes: an origin, three edges, on a fresh database. */
class TierRig {
  readonly db: TestDatabase;
  readonly origin: RelaycastProcess;
  readonly edges: RelaycastProcess[];

  private constructor(db: TestDatabase, origin: RelaycastProcess, edges: RelaycastProcess[]) {
    this.db = db;
    this.origin = origin;
    this.edges = edges;
  }

  static async start(progress: Progress): Promise<TierRig> {
    progress.note('tiers: starting a Postgres database, an origin (--origin-max-relays 1) and three edges (--edge-max-children 1)');
    const db = await createTestDatabase();
    const forget = onInterrupt(() => db.drop());
    const env = { RELAYCAST_CLUSTER_SECRET: SECRET };
    const common = ['--rtc-listen-ip', '127.0.0.1', '--relay-linger-ms', String(RELAY_LINGER_MS), '--log-level', 'warn', '--post-rate-limit', '0'];
    const started = await Promise.allSettled([
      startRelaycast({ roles: ['origin'], databaseUrl: db.url, env, args: ['--node-id', 'bench-tier-origin', '--origin-max-relays', '1', ...common] }),
      ...Array.from({ length: TIERS }, (_, k) =>
        startRelaycast({ roles: ['edge'], databaseUrl: db.url, env, args: ['--node-id', `bench-tier-edge-${k}`, '--edge-max-children', '1', ...common] }),
      ),
    ]);
    const failure = started.find((s) => s.status === 'rejected');
    if (failure) {
      for (const s of started) if (s.status === 'fulfilled') await s.value.stop();
      await db.drop();
      forget();
      throw (failure as PromiseRejectedResult).reason;
    }
    const [origin, ...edges] = started.map((s) => (s as PromiseFulfilledResult<RelaycastProcess>).value) as [RelaycastProcess, ...RelaycastProcess[]];
    const rig = new TierRig(db, origin, edges);
    rig.#forget = forget;
    return rig;
  }

  #forget: () => void = () => undefined;

  whep(tier: number, stream: string): string {
    return `${this.edges[tier]!.url}/whep/${stream}`;
  }

  /** Each edge's upstream of `stream` now, from the relays table ('none' where it holds no relay). */
  async chain(stream: string): Promise<Chain> {
    const knex = knexFactory({ client: 'pg', connection: this.db.url, pool: { min: 0, max: 1 } });
    try {
      const rows: Array<{ edge_node_id: string; upstream_node_id: string }> = await knex('relays')
        .join('streams', 'streams.id', 'relays.stream_id')
        .where('streams.name', stream)
        .select('relays.edge_node_id', 'relays.upstream_node_id');
      const upstream = new Map(rows.map((r) => [r.edge_node_id, r.upstream_node_id]));
      return { upstreams: this.edges.map((_, k) => upstream.get(`bench-tier-edge-${k}`) ?? 'none') };
    } finally {
      await knex.destroy();
    }
  }

  /** Waits until no edge holds a relay (the last viewers left and the linger ran out). */
  async relaysGone(): Promise<void> {
    for (const edge of this.edges) await waitFor('the relays to close', async () => (await metric(edge.url, 'relaycast_relays', { direction: 'in' })) === 0, 15_000, 100);
  }

  async stop(): Promise<void> {
    for (const edge of this.edges) await edge.stop();
    await this.origin.stop();
    await this.db.drop();
    this.#forget();
  }
}

/** The chain as expected: edge k pulls from edge k−1, edge 0 from the origin. */
const EXPECTED = Array.from({ length: TIERS }, (_, k) => (k === 0 ? 'bench-tier-origin' : `bench-tier-edge-${k - 1}`));
const chainText = (c: Chain) => c.upstreams.map((u, k) => `edge-${k} ← ${u.replace('bench-tier-', '')}`).join(', ');
const chained = (c: Chain) => c.upstreams.every((u, k) => u === EXPECTED[k]);

function publisher(rig: TierRig, stream: string, token: string, kbps: number): Child {
  return startChild(WRTC_CLIENT, ['publish', '--target', `${rig.origin.url}/whip/${stream}`, '--token', token, '--kbps', String(kbps), '--seconds', '3600']);
}

async function stopPublisher(p: Child): Promise<void> {
  p.send('stop');
  await Promise.race([p.exited, sleep(5000)]);
  await p.stop();
}

interface LatencyRun {
  /** Per tier: the median capture → decoded frame delay over the window (ms), and the frames. */
  medianMs: number[];
  frames: number[];
  /** Per tier: the edge's own process (its JavaScript, not its media worker) over the window, in cores. */
  edgeJsCores: number[];
  chain: Chain;
  load: string;
}

async function latencyRun(rig: TierRig, options: BenchOptions, run: number, seconds: number): Promise<LatencyRun> {
  const stream = `tiers-latency-${run}`;
  const p = publisher(rig, stream, await signStreamToken(SECRET, { stream, action: 'publish', ttlSeconds: 3600 }), options.kbps);
  const anchors: Child[] = [];
  const viewers: Child[] = [];
  try {
    await p.next('ready', 40_000);
    // The chain first: one receive-only viewer per edge, one edge after the other, so that each
    // relay opens once the one above it is in place.
    for (let k = 0; k < TIERS; k++) {
      const anchor = startChild(WRTC_CLIENT, ['view', '--url', rig.whep(k, stream), '--receive-only', '--video-only']);
      anchors.push(anchor);
      await anchor.next('ready', 30_000);
      await anchor.ask('add 1 1', 'added', 60_000);
    }
    // Then the measured viewers on every tier at once, so that no tier's sessions are older than another's.
    const perEdge = options.quick ? 1 : LATENCY_VIEWERS;
    for (let k = 0; k < TIERS; k++) viewers.push(startChild(WRTC_CLIENT, ['view', '--url', rig.whep(k, stream), '--stamp', '--video-only']));
    await Promise.all(viewers.map((v) => v.next('ready', 30_000)));
    await Promise.all(viewers.map((v) => v.ask(`add ${perEdge} ${perEdge}`, 'added', 60_000)));
    const chain = await rig.chain(stream);
    // Let the publisher's bitrate ramp up and the receivers settle.
    await sleep(options.quick ? 1000 : 8000);
    await Promise.all(viewers.map((v) => v.ask('latency warmup', 'latency')));
    const cpu = rig.edges.map((e) => new CpuWindow([e.child.pid!], { children: false }));
    for (const c of cpu) c.start();
    await sleep(seconds * 1000);
    const edgeJsCores = cpu.map((c) => c.read());
    const replies = (await Promise.all(viewers.map((v) => v.ask('latency window', 'latency')))) as unknown as Array<{ samples: Array<[number, number]> }>;
    return { medianMs: replies.map((r) => median(r.samples.map(([, d]) => d))), frames: replies.map((r) => r.samples.length), edgeJsCores, chain, load: loadavg() };
  } finally {
    const all = [...viewers, ...anchors];
    await Promise.all(all.map((v) => v.ask('stop', 'stopped', 30_000).catch(() => undefined)));
    await Promise.all(all.map((v) => v.stop()));
    await stopPublisher(p);
  }
}

const firstFrame = (lines: ClientLine[]) =>
  (lines.find((l) => l.event === 'stats') as unknown as { viewers: Array<{ firstFrameMs: number | null }> } | undefined)?.viewers[0]?.firstFrameMs ?? null;

interface TtffRun {
  fromOrigin: number | null;
  warmParent: number | null;
  chain: Chain;
  load: string;
}

/** A cold edge 0 pulls from the origin; while it plays, a cold edge 1 pulls from edge 0. */
async function ttffRun(rig: TierRig, stream: string): Promise<TtffRun> {
  await rig.relaysGone();
  const first = playClient(rig.whep(0, stream), { seconds: 5 });
  await first.next('first-frame').catch(() => undefined);
  const second = playClient(rig.whep(1, stream), { seconds: 2 });
  await second.next('first-frame').catch(() => undefined);
  const chain = await rig.chain(stream);
  const [a, b] = [firstFrame(await first.done), firstFrame(await second.done)];
  return { fromOrigin: a, warmParent: b, chain, load: loadavg() };
}

export const tiersRuns = (options: BenchOptions) => ({ latency: options.runs ?? (options.quick ? 1 : 5), ttff: options.runs ?? (options.quick ? 1 : 7) });

export async function tiers(options: BenchOptions, progress: Progress): Promise<SectionResult> {
  const runs = tiersRuns(options);
  const seconds = options.quick ? options.seconds : Math.max(options.seconds, 15);
  const rig = await TierRig.start(progress);
  const latencyRuns: LatencyRun[] = [];
  const ttffRuns: TtffRun[] = [];
  const failures: string[] = [];
  try {
    for (let run = 0; run < runs.latency; run++) {
      progress.note(`tiers: latency run ${run + 1}/${runs.latency}, viewers on tiers 0, 1, 2 for ${seconds} s`);
      // A client process can die under load (libwebrtc has crashed on this machine): the run is
      // left out and said so, not the section.
      await latencyRun(rig, options, run, seconds).then(
        (r) => latencyRuns.push(r),
        (error: Error) => failures.push(`latency run ${run + 1}: ${error.message}`),
      );
      await rig.relaysGone();
      progress.step();
    }
    const stream = 'tiers-ttff';
    const p = publisher(rig, stream, await signStreamToken(SECRET, { stream, action: 'publish', ttlSeconds: 3600 }), options.kbps);
    try {
      await p.next('ready', 40_000);
      await sleep(options.quick ? 0 : 3000);
      for (let run = 0; run < runs.ttff; run++) {
        progress.note(`tiers: time to first frame run ${run + 1}/${runs.ttff}`);
        ttffRuns.push(await ttffRun(rig, stream));
        progress.step();
      }
    } finally {
      await stopPublisher(p);
    }
  } finally {
    await rig.stop();
  }

  const good = latencyRuns.filter((r) => chained(r.chain));
  const tierMs = (k: number) => good.map((r) => r.medianMs[k]!).filter(Number.isFinite);
  const hopMs = (k: number) => good.map((r) => r.medianMs[k]! - r.medianMs[k - 1]!).filter(Number.isFinite);
  const jsCores = (k: number) => good.map((r) => r.edgeJsCores[k]! * 100).filter(Number.isFinite);
  const ttffChained = (r: TtffRun) => r.chain.upstreams[0] === EXPECTED[0] && r.chain.upstreams[1] === EXPECTED[1];
  const ttffGood = ttffRuns.filter(ttffChained);
  const fromOrigin = ttffGood.map((r) => r.fromOrigin).filter((x): x is number => x !== null);
  const warmParent = ttffGood.map((r) => r.warmParent).filter((x): x is number => x !== null);
  const frames = latencyRuns.reduce((s, r) => s + r.frames.reduce((a, b) => a + b, 0), 0);
  const notChained = [...latencyRuns.filter((r) => !chained(r.chain)), ...ttffRuns.filter((r) => !ttffChained(r))].map((r) => chainText(r.chain));

  return {
    id: 'tiers',
    title: 'Relay tiers',
    tables: [
      {
        title: `Latency per tier, capture → decoded frame, ms (${good.length} of ${runs.latency} run${runs.latency > 1 ? 's' : ''} chained, ${seconds} s each, ${frames} frames)`,
        head: ['path', 'median', 'runs'],
        rows: [
          ['tier 0: origin → edge 0 → viewer', fmt(median(tierMs(0)), 1), spread(tierMs(0), 1)],
          ['tier 1: origin → edge 0 → edge 1 → viewer', fmt(median(tierMs(1)), 1), spread(tierMs(1), 1)],
          ['tier 2: … → edge 1 → edge 2 → viewer', fmt(median(tierMs(2)), 1), spread(tierMs(2), 1)],
          ['added by the hop edge 0 → edge 1 (tier 1 − tier 0)', fmt(median(hopMs(1)), 1), spread(hopMs(1), 1)],
          ['added by the hop edge 1 → edge 2 (tier 2 − tier 1)', fmt(median(hopMs(2)), 1), spread(hopMs(2), 1)],
          ['edge process CPU (its JavaScript), % of a core: edge 0 (fed by the origin)', fmt(median(jsCores(0)), 1), spread(jsCores(0), 1)],
          ['… edge 1 (fed by edge 0: every packet through JavaScript)', fmt(median(jsCores(1)), 1), spread(jsCores(1), 1)],
          ['… edge 2 (fed by edge 1)', fmt(median(jsCores(2)), 1), spread(jsCores(2), 1)],
        ],
        how: [
          'an origin with --origin-max-relays 1 and three edges with --edge-max-children 1 (separate processes, one mediasoup worker each, a fresh Postgres database); a receive-only viewer joins edge 0, then 1, then 2, so that the relays chain; the chain is read back from the relays table, and runs that did not chain are left out',
          `per run: one publisher (capture time in the pixels, as in the latency section) and ${options.quick ? 'a viewer' : `${LATENCY_VIEWERS} viewers`} per edge, joining all tiers at once once the chain stands; each tier's median delay over the window; a hop's figure is the difference between two tiers in the same run, then the median over runs`,
          'every process shares the machine and its clock; the viewers\' jitter buffers settle differently in each session, hence the runs',
          'CPU: each edge\'s own process over the window (/proc), not its mediasoup worker; a relay fed by the origin uses the pipe\'s producers as they are, one fed by another edge hands every packet through a DirectTransport to producers that outlive the upstream (edge/Relay.ts)',
          ...(failures.length ? [`runs that failed: ${failures.join('; ')}`] : []),
        ],
      },
      {
        title: `Time to first frame on a cold edge, WHEP POST → first decoded frame (${ttffGood.length} of ${runs.ttff} run${runs.ttff > 1 ? 's' : ''})`,
        head: ['viewer', 'median ms', 'runs'],
        rows: [
          ['cold edge pulling from the origin (tier 0)', fmt(median(fromOrigin), 0), spread(fromOrigin, 0)],
          ['cold edge whose parent edge is warm (tier 1)', fmt(median(warmParent), 0), spread(warmParent, 0)],
          ['warm parent − origin', fmt(median(warmParent) - median(fromOrigin), 0), ''],
        ],
        how: [
          'per run, once no edge holds the stream: a libwebrtc viewer on edge 0 (its relay from the origin), and as soon as it has its first frame, one on edge 1: the origin feeds edge 0 already, so edge 1 is refused by the origin (relay-full) and pulls from edge 0',
          'both include the edge looking the stream up in Postgres and the key frame the publisher is asked for; the second also the origin\'s refusal and the parent lookup',
          ...(notChained.length ? [`runs left out, not chained as set up (latency and time to first frame): ${notChained.join('; ')}`] : []),
        ],
      },
    ],
    data: {
      runs,
      seconds,
      latency: latencyRuns,
      ttff: ttffRuns,
      failures,
      median: { tierMs: [0, 1, 2].map((k) => median(tierMs(k))), hopMs: [1, 2].map((k) => median(hopMs(k))), edgeJsPercent: [0, 1, 2].map((k) => median(jsCores(k))), ttffFromOriginMs: median(fromOrigin), ttffWarmParentMs: median(warmParent) },
    },
    panels: [
      {
        kind: 'bars',
        title: 'Relay tiers: latency capture → decoded frame (ms)',
        unit: 'ms',
        bars: [0, 1, 2].map((k) => ({ label: `tier ${k}`, value: median(tierMs(k)), series: 'relaycast' })),
      },
      {
        kind: 'bars',
        title: 'Relay tiers: time to first frame, cold edge (ms)',
        unit: 'ms',
        bars: [
          { label: 'from the origin', value: median(fromOrigin), series: 'relaycast' },
          { label: 'from a warm parent', value: median(warmParent), series: 'relaycast' },
        ],
      },
    ],
    headline: [
      { figure: 'latency added per relay tier', value: `edge → edge ${fmt(median(hopMs(1)), 1)} ms, then ${fmt(median(hopMs(2)), 1)} ms (tiers 0/1/2: ${[0, 1, 2].map((k) => fmt(median(tierMs(k)), 1)).join(' / ')} ms)` },
      { figure: 'time to first frame, cold edge: warm parent / origin', value: `${fmt(median(warmParent), 0)} / ${fmt(median(fromOrigin), 0)} ms` },
    ],
    load: [...latencyRuns, ...ttffRuns].map((r) => r.load),
  };
}
