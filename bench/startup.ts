/**
 * Start-up benchmark (reports, does not pass or fail): how long each role takes to come up, and
 * the memory it holds once up. Each configuration is started --runs times, as a user starts it
 * (`node bin/relaycast.js <roles>`, one mediasoup worker), and for each start:
 *
 *   HTTP up      from spawn to GET /healthz answering 200 (the HTTP server listens)
 *   ready        from spawn to GET /readyz answering 200 (database migrated, node registered)
 *   CPU to ready user + system CPU time the node process used until then: the work start-up takes,
 *                which other load on the machine changes far less than it changes the times
 *   node RSS     VmRSS of the node process once ready, and again after IDLE_MS with nothing to do
 *   workers RSS  summed VmRSS of its mediasoup-worker child processes once ready, and their count
 *
 * Configurations: balancer, origin, edge and all, each on a fresh database of its own on the
 * Postgres server DATABASE_URL names (default the local one), so that the database's own
 * start-up does not dominate; and all on PGlite (what `npm start` runs) in a fresh data dir, so
 * that figure includes creating the embedded database. Starts are interleaved (run 1 of every
 * configuration, then run 2, ...) so that other work on the machine spreads over all of them.
 * One start of `all` before the measured ones warms the page cache (and an older tree's tsx cache).
 *
 * Progress goes to stderr, the table to stdout, every run's values to --out (JSON) if given.
 *
 *   npm run bench:startup [-- --runs 5] [-- --out startup.json] [-- --only balancer,all-pglite]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { commOf, cpuSeconds, isMediaWorker, isRunning, loadavg, processTree, rssKb } from '../kit/cpu.ts';
import { createTestDatabase, freePort } from '../kit/postgres.ts';
import { stopProcess } from '../kit/processes.ts';
import { spawnRelaycast } from '../kit/relaycast.ts';
import { max, median, min, sleep, spread } from '../kit/stats.ts';
import { runCommand } from './lib/options.ts';
import { Progress } from './lib/progress.ts';
import { renderTable, type Table } from './lib/report.ts';

/** This tree; --tree names another checkout to measure (an older commit, side by side). */
const HERE = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');

/** At least 16 characters are required; 32 as a real deployment would have. */
const CLUSTER_SECRET = 'bench-startup-secret-0123456789ab';

/** How long a start may take to be ready before it counts as failed. A wait, not a figure (PGlite took > 45 s once on a busy 2-core machine). */
const READY_TIMEOUT_MS = 120_000;
/** How often /healthz and /readyz are polled while starting: the resolution of the two times. */
const POLL_MS = 20;
/** One poll's longest wait for an answer (a process busy starting may be slow to answer). */
const REQUEST_TIMEOUT_MS = 2000;
/** Idle time after ready before memory is read again (heartbeats, lazy allocations, GC). */
const IDLE_MS = 5000;
/** SIGTERM, then SIGKILL after this: what Kubernetes gives, and what the tests give. */
const STOP_GRACE_MS = 20_000;
/** How long the mediasoup workers may outlive their node process before they are killed. */
const WORKER_EXIT_MS = 5000;
/**
 * Media ports: each start gets RTC_PORT_SPAN ports of its own from RTC_PORT_BASE up, below Linux's
 * ephemeral range (32768–60999, where the HTTP and RTMP ports come from) and above the tests'
 * 20000–29999, so that a test suite running meanwhile does not compete for them.
 */
const RTC_PORT_BASE = 30_000;
const RTC_PORT_SPAN = 100;
const RTC_PORT_SLOTS = 27;

interface Configuration {
  id: string;
  roles: string[];
  database: 'postgres' | 'pglite';
}

const CONFIGURATIONS: Configuration[] = [
  { id: 'balancer', roles: ['balancer'], database: 'postgres' },
  { id: 'origin', roles: ['origin'], database: 'postgres' },
  { id: 'edge', roles: ['edge'], database: 'postgres' },
  { id: 'all', roles: ['all'], database: 'postgres' },
  { id: 'all-pglite', roles: ['all'], database: 'pglite' },
];

const USAGE = `npm run bench:startup [-- options]

  --runs N      starts of each configuration (default 5)
  --out FILE    write every run's values and the medians there (JSON)
  --only LIST   configurations, comma-separated: ${CONFIGURATIONS.map((c) => c.id).join(',')}
  --no-warmup   no unmeasured start first (the first measured start then fills the caches)
  --tree DIR    measure the relaycast of another checkout (an older commit in a git worktree,
                its dependencies installed), side by side with this one's figures
`;

interface Options {
  /** The checkout whose bin/relaycast.js is started. */
  tree: string;
  runs: number;
  out: string | undefined;
  only: Configuration[];
  warmup: boolean;
}

function parseOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: 'string', default: '5' },
      out: { type: 'string' },
      only: { type: 'string' },
      'no-warmup': { type: 'boolean', default: false },
      tree: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be an integer ≥ 1, got ${values.runs}`);
  const ids = (values.only ?? CONFIGURATIONS.map((c) => c.id).join(',')).split(',').map((s) => s.trim()).filter(Boolean);
  for (const id of ids) if (!CONFIGURATIONS.some((c) => c.id === id)) throw new Error(`--only: unknown configuration "${id}"`);
  return { tree: values.tree ? resolve(values.tree) : HERE, runs, out: values.out, only: CONFIGURATIONS.filter((c) => ids.includes(c.id)), warmup: !values['no-warmup'] };
}

/** Memory of a process tree at one moment, from /proc (kB as the kernel gives it). */
interface Memory {
  nodeRssKb: number;
  workersRssKb: number;
  workers: number;
  /** Any other descendants (none expected), by name: so that one appearing does not go unseen. */
  others: Array<{ comm: string; rssKb: number }>;
}

interface Run {
  config: string;
  run: number;
  /** Spawn → /healthz 200 and → /readyz 200, ms. */
  healthzMs: number;
  readyMs: number;
  /** CPU time (user + system) of the node process itself until /readyz answered, ms (10 ms ticks). */
  cpuMsToReady: number;
  /** Spawn → the "http listening" and "relaycast ready" log lines' own timestamps, ms (no polling in them). */
  logHttpMs: number | null;
  logReadyMs: number | null;
  atReady: Memory;
  afterIdle: Memory;
  /** SIGTERM → exit, ms; and whether SIGKILL was needed (or workers had to be killed). */
  stopMs: number;
  killed: boolean;
  load: string;
}

interface Failure {
  config: string;
  run: number;
  error: string;
}

// ---------------------------------------------------------------------------------------------
// /proc

/** The process's children, grandchildren and so on. */
const descendants = (pid: number) => processTree([pid]).filter((p) => p !== pid);

function workerPids(pid: number): number[] {
  return descendants(pid).filter(isMediaWorker);
}

function memory(pid: number): Memory {
  const m: Memory = { nodeRssKb: rssKb(pid), workersRssKb: 0, workers: 0, others: [] };
  for (const child of descendants(pid)) {
    if (isMediaWorker(child)) {
      m.workers++;
      m.workersRssKb += rssKb(child);
    } else {
      m.others.push({ comm: commOf(child), rssKb: rssKb(child) });
    }
  }
  return m;
}


// ---------------------------------------------------------------------------------------------
// What one start needs: ports, a database, a data dir

// ---------------------------------------------------------------------------------------------
// One start

let starts = 0;

async function measure(tree: string, config: Configuration, run: number): Promise<Run> {
  const index = starts++;
  const httpPort = await freePort();
  const rtmpPort = await freePort();
  const rtcMin = RTC_PORT_BASE + (index % RTC_PORT_SLOTS) * RTC_PORT_SPAN;
  const dataDir = mkdtempSync(join(tmpdir(), 'relaycast-startup-'));
  const db = config.database === 'postgres' ? await createTestDatabase() : undefined;
  const url = `http://127.0.0.1:${httpPort}`;
  const args = [
    ...config.roles,
    ...['--http-port', String(httpPort), '--http-host', '127.0.0.1', '--rtmp-port', String(rtmpPort)],
    ...['--rtc-listen-ip', '127.0.0.1', '--rtc-min-port', String(rtcMin), '--rtc-max-port', String(rtcMin + RTC_PORT_SPAN - 1)],
    ...['--workers', '1', '--data-dir', dataDir, '--cluster-secret', CLUSTER_SECRET],
    ...['--node-id', `startup-${process.pid}-${index}`, '--log-level', 'info'],
  ];
  const load = loadavg();
  const spawnedAt = Date.now();
  const t0 = performance.now();
  const child = spawnRelaycast(join(tree, 'bin', 'relaycast.js'), args, db ? { DATABASE_URL: db.url } : {});
  let output = '';
  const logged: Record<string, number> = {};
  let partial = '';
  child.stdout!.on('data', (d: Buffer) => {
    output += d;
    if (output.length > 200_000) output = output.slice(-100_000);
    const lines = (partial + d).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      try {
        const { msg, time } = JSON.parse(line) as { msg?: string; time?: number };
        if (msg && typeof time === 'number' && !(msg in logged)) logged[msg] = time - spawnedAt;
      } catch {
        // not a JSON line
      }
    }
  });
  child.stderr!.on('data', (d: Buffer) => (output += d));

  const pid = child.pid!;
  let workers: number[] = [];
  let stop: { ms: number; killed: boolean } | undefined;
  const stopIt = async () => {
    workers = [...new Set([...workers, ...workerPids(pid)])];
    const t = performance.now();
    let killed = false;
    await stopProcess(child, STOP_GRACE_MS);
    if (child.signalCode === 'SIGKILL') killed = true;
    const ms = performance.now() - t;
    // The workers end when their node process does; any that do not are killed (ours too).
    const deadline = Date.now() + WORKER_EXIT_MS;
    while (workers.some(isRunning) && Date.now() < deadline) await sleep(50);
    for (const w of workers.filter(isRunning)) {
      killed = true;
      process.kill(w, 'SIGKILL');
    }
    return { ms, killed };
  };

  try {
    let healthzMs: number | undefined;
    let readyMs: number | undefined;
    const get = async (path: string) => (await fetch(`${url}${path}`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }).catch(() => undefined))?.status;
    while (readyMs === undefined) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited (${child.exitCode ?? child.signalCode}) before ready:\n${output.slice(-3000)}`);
      if (performance.now() - t0 > READY_TIMEOUT_MS) throw new Error(`not ready after ${READY_TIMEOUT_MS} ms:\n${output.slice(-3000)}`);
      if (healthzMs === undefined && (await get('/healthz')) === 200) healthzMs = performance.now() - t0;
      if (healthzMs !== undefined && (await get('/readyz')) === 200) readyMs = performance.now() - t0;
      else await sleep(POLL_MS);
    }
    const cpuMsToReady = cpuSeconds([pid], false) * 1000;
    const atReady = memory(pid);
    workers = workerPids(pid);
    await sleep(IDLE_MS);
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited (${child.exitCode ?? child.signalCode}) while idle:\n${output.slice(-3000)}`);
    const afterIdle = memory(pid);
    stop = await stopIt();
    return {
      config: config.id,
      run,
      healthzMs: healthzMs!,
      readyMs,
      cpuMsToReady,
      logHttpMs: logged['http listening'] ?? null,
      logReadyMs: logged['relaycast ready'] ?? null,
      atReady,
      afterIdle,
      stopMs: stop.ms,
      killed: stop.killed,
      load,
    };
  } finally {
    if (!stop) await stopIt();
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// The benchmark

const MiB = (kb: number) => kb / 1024;

function summary(runs: Run[]) {
  const of = (f: (r: Run) => number) => {
    const xs = runs.map(f);
    return { median: median(xs), min: min(xs), max: max(xs) };
  };
  return {
    runs: runs.length,
    healthzMs: of((r) => r.healthzMs),
    readyMs: of((r) => r.readyMs),
    cpuMsToReady: of((r) => r.cpuMsToReady),
    nodeRssMiBAtReady: of((r) => MiB(r.atReady.nodeRssKb)),
    nodeRssMiBAfterIdle: of((r) => MiB(r.afterIdle.nodeRssKb)),
    workersRssMiBAtReady: of((r) => MiB(r.atReady.workersRssKb)),
    workersRssMiBAfterIdle: of((r) => MiB(r.afterIdle.workersRssKb)),
    workers: of((r) => r.atReady.workers),
    stopMs: of((r) => r.stopMs),
  };
}

function git(tree: string): string {
  try {
    return execFileSync('git', ['-C', tree, 'describe', '--always', '--dirty'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

async function main(options: Options): Promise<number> {
  const started = new Date();
  const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10, kernel: release(), node: process.version };
  const progress = new Progress(options.only.length * options.runs + (options.warmup ? 1 : 0));
  progress.print(
    `relaycast start-up benchmark: ${options.tree} at ${git(options.tree)}\n` +
      `machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Linux ${machine.kernel}, Node ${machine.node}\n` +
      `load average at start: ${loadavg()} (other work on the machine shows up in every figure)\n`,
  );
  const runs: Run[] = [];
  const failures: Failure[] = [];
  if (options.warmup) {
    progress.note('warm-up: all on Postgres (not counted)');
    try {
      await measure(options.tree, CONFIGURATIONS.find((c) => c.id === 'all')!, 0);
    } catch (error) {
      progress.log(`warm-up failed: ${(error as Error).message}`);
    }
    progress.step();
  }
  for (let run = 1; run <= options.runs; run++) {
    for (const config of options.only) {
      progress.note(`${config.id}: run ${run} of ${options.runs}`);
      try {
        const r = await measure(options.tree, config, run);
        runs.push(r);
        progress.log(`${config.id} #${run}: ready ${Math.round(r.readyMs)} ms (CPU ${Math.round(r.cpuMsToReady)} ms), node ${MiB(r.atReady.nodeRssKb).toFixed(1)} MiB, ${r.atReady.workers} worker(s) ${MiB(r.atReady.workersRssKb).toFixed(1)} MiB`);
      } catch (error) {
        failures.push({ config: config.id, run, error: (error as Error).message });
        progress.log(`${config.id} #${run}: FAILED: ${(error as Error).message}`);
      }
      progress.step();
    }
  }

  const table: Table = {
    title: `Start-up per configuration: median (min–max) of ${options.runs} start(s)`,
    head: ['configuration', 'database', 'HTTP up ms', 'ready ms', 'CPU ms to ready', 'node RSS MiB', `node RSS +${IDLE_MS / 1000} s`, 'workers RSS MiB', `workers +${IDLE_MS / 1000} s`, 'workers', 'stop ms'],
    rows: options.only.map((config) => {
      const mine = runs.filter((r) => r.config === config.id);
      const cell = (f: (r: Run) => number, digits = 1) => spread(mine.map(f), digits);
      return [
        config.id,
        config.database === 'postgres' ? 'Postgres' : 'PGlite',
        cell((r) => r.healthzMs, 0),
        cell((r) => r.readyMs, 0),
        cell((r) => r.cpuMsToReady, 0),
        cell((r) => MiB(r.atReady.nodeRssKb)),
        cell((r) => MiB(r.afterIdle.nodeRssKb)),
        cell((r) => MiB(r.atReady.workersRssKb)),
        cell((r) => MiB(r.afterIdle.workersRssKb)),
        cell((r) => r.atReady.workers, 0),
        cell((r) => r.stopMs, 0),
      ];
    }),
    how: [
      `node bin/relaycast.js <roles> --workers 1 --log-level info; times from spawn, /healthz and /readyz polled every ${POLL_MS} ms`,
      'CPU to ready: user + system time of the node process, all its threads (so above the wall time at times), not its workers; /proc/<pid>/stat at ready',
      'Postgres: a fresh database per start (migrations included in ready); PGlite: a fresh data dir per start (creating it included)',
      `RSS: VmRSS from /proc once /readyz answered and again after ${IDLE_MS / 1000} s idle; workers = mediasoup-worker descendants, RSS summed`,
      'stop: SIGTERM to exit of the node process',
    ],
  };
  const others = [...new Set(runs.flatMap((r) => [...r.atReady.others, ...r.afterIdle.others].map((o) => o.comm)))];
  const killed = runs.filter((r) => r.killed).length;
  progress.print(
    `\n${renderTable(table)}\n` +
      (others.length ? `  other child processes seen: ${others.join(', ')}\n` : '') +
      (killed ? `  ${killed} start(s) needed SIGKILL to stop\n` : '') +
      (failures.length ? `  ${failures.length} start(s) FAILED: ${failures.map((f) => `${f.config} #${f.run}`).join(', ')}\n` : '') +
      `  load average at the starts: ${[...new Set(runs.map((r) => r.load))].slice(0, 8).join(' | ')}; at the end: ${loadavg()}\n`,
  );
  if (options.out) {
    const report = {
      startedAt: started.toISOString(),
      finishedAt: new Date().toISOString(),
      tree: { root: options.tree, git: git(options.tree) },
      machine,
      options: { runs: options.runs, only: options.only.map((c) => c.id), warmup: options.warmup, idleMs: IDLE_MS, pollMs: POLL_MS },
      configurations: Object.fromEntries(
        options.only.map((c) => [c.id, { roles: c.roles, database: c.database, ...summary(runs.filter((r) => r.config === c.id)) }]),
      ),
      runs,
      failures,
      loadAverage: { end: loadavg() },
    };
    writeFileSync(options.out, `${JSON.stringify(report, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
    process.stdout.write(`results: ${options.out}\n`);
  }
  progress.finish();
  return failures.length > 0 ? 1 : 0;
}

await runCommand(parseOptions, USAGE, main);
