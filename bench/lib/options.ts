import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { SECTION_IDS, type SectionId } from './report.ts';

/** The suite's options (`npm run bench -- --help`). */
export interface BenchOptions {
  quick: boolean;
  only: SectionId[];
  /** Runs per figure when given; else 3 for media sections and 5 for cheap ones (1 with --quick). */
  runs: number | undefined;
  /** Fan-out steps: viewers on the edge (and on the baseline). */
  viewers: number[];
  /** Measurement window of each media figure, in seconds. */
  seconds: number;
  /** Load-generator processes the fan-out viewers are spread over. */
  generators: number;
  /** The publisher's video bitrate cap. */
  kbps: number;
  /** Another mediasoup installation's package directory: fan-out also on the baseline with that version. */
  mediasoupBaseline: string | undefined;
  /** Fan-out also on Janus's streaming plugin (Debian's `janus`), where it is installed. */
  janus: boolean;
  edges: number;
  regions: number;
  networks: number;
  /** Simulated nodes heartbeating into Postgres. */
  nodes: number;
  outDir: string;
}

export const USAGE = `npm run bench [-- options]
npm run bench:webrtc (--only fanout,ttff,latency), npm run bench:balancer (--only balancer)

  --quick              tiny sizes, one run of each figure (what the smoke test runs; < 1 min)
  --only LIST          sections, comma-separated: ${SECTION_IDS.join(',')}
  --runs N             runs per figure (default: fanout 3, ttff 7, latency 5, tiers 5 latency + 7 first frame, balancer, haproxy and postgres 5)
  --viewers LIST       fan-out steps (default 10,25,50,75,100)
  --seconds S          measurement window of each media figure (default 10)
  --generators N       load-generator processes for the fan-out viewers (default 2)
  --kbps N             publisher video bitrate cap (default 600)
  --mediasoup-baseline DIR
                       fanout: the baseline also on the mediasoup installed in DIR (its package
                       directory, e.g. /work/ms-3.27.1/node_modules/mediasoup, with its worker built
                       by scripts/mediasoup-offline/build-worker.sh VERSION), interleaved with the
                       project's; without it, left out
  --janus              fanout: Janus's streaming plugin beside them (Debian's janus package), fed by the
                       same publisher through the baseline
  --edges N            edges in the balancer snapshot and HAProxy config (balancer, haproxy; default 1000)
  --regions N          regions they are spread over (default 50)
  --networks N         entries of the HAProxy geo map (default 100000)
  --nodes N            simulated nodes heartbeating into Postgres (default 1000)
  --out DIR            where results go (default bench/results)
`;

/** A command-line integer of at least `least`: `--name` given as `text`, or `fallback` when not given. */
export function integerOption(name: string, text: string | undefined, fallback?: number, least = 1): number {
  if (text === undefined && fallback !== undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < least) throw new Error(`--${name} must be an integer ≥ ${least}, got ${text}`);
  return n;
}

export function parseOptions(argv: string[]): BenchOptions | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      runs: { type: 'string' },
      viewers: { type: 'string' },
      seconds: { type: 'string' },
      generators: { type: 'string' },
      kbps: { type: 'string', default: '600' },
      'mediasoup-baseline': { type: 'string' },
      janus: { type: 'boolean', default: false },
      edges: { type: 'string' },
      regions: { type: 'string' },
      networks: { type: 'string' },
      nodes: { type: 'string' },
      out: { type: 'string', default: 'bench/results' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  const quick = values.quick;
  const only = (values.only ?? SECTION_IDS.join(',')).split(',').map((s) => s.trim()).filter(Boolean);
  for (const id of only) if (!SECTION_IDS.includes(id as SectionId)) throw new Error(`--only: unknown section "${id}" (sections: ${SECTION_IDS.join(', ')})`);
  const mediasoupBaseline = values['mediasoup-baseline'] === undefined ? undefined : resolve(values['mediasoup-baseline']);
  if (mediasoupBaseline && !existsSync(join(mediasoupBaseline, 'package.json'))) throw new Error(`--mediasoup-baseline: no mediasoup package in ${mediasoupBaseline}`);
  const viewers = (values.viewers ?? (quick ? '2,4' : '10,25,50,75,100')).split(',').map((v) => integerOption('viewers', v, 0));
  return {
    quick,
    only: SECTION_IDS.filter((id) => only.includes(id)),
    runs: values.runs === undefined ? undefined : integerOption('runs', values.runs, 1),
    viewers: [...new Set(viewers)].sort((a, b) => a - b),
    seconds: integerOption('seconds', values.seconds, quick ? 1 : 10),
    generators: integerOption('generators', values.generators, quick ? 1 : 2),
    kbps: integerOption('kbps', values.kbps, 600, 30),
    mediasoupBaseline,
    janus: values.janus,
    edges: integerOption('edges', values.edges, quick ? 50 : 1000),
    regions: integerOption('regions', values.regions, quick ? 5 : 50),
    networks: integerOption('networks', values.networks, quick ? 1000 : 100_000),
    nodes: integerOption('nodes', values.nodes, quick ? 20 : 1000),
    outDir: values.out,
  };
}

/**
 * A single benchmark's command line: its own `names` (each `--name value`) besides --quick, --out
 * and --help; undefined for --help.
 */
export function parseBenchArgs<K extends string>(argv: string[], names: readonly K[]): { quick: boolean; out: string | undefined; values: Partial<Record<K, string>> } | undefined {
  const own = Object.fromEntries(names.map((name) => [name, { type: 'string' as const }]));
  const { values } = parseArgs({
    args: argv,
    options: { ...own, quick: { type: 'boolean', default: false }, out: { type: 'string' }, help: { type: 'boolean', default: false } },
  });
  if (values.help) return undefined;
  return { quick: values.quick === true, out: values.out as string | undefined, values: values as Partial<Record<K, string>> };
}

/**
 * Where a benchmark's JSON goes when --out is not given: bench/figures/<name>-<date>.json, the
 * figures kept in the tree; with --quick bench/results/<name>-quick-<time>.json (not kept).
 */
export function defaultOut(name: string, quick: boolean): string {
  const now = new Date().toISOString();
  return quick ? `bench/results/${name}-quick-${now.replace(/[:.]/g, '-')}.json` : `bench/figures/${name}-${now.slice(0, 10)}.json`;
}

export function runsFor(options: BenchOptions, kind: 'media' | 'cheap'): number {
  return options.runs ?? (options.quick ? 1 : kind === 'media' ? 3 : 5);
}

/**
 * How long the work registered with onInterrupt() may take after SIGINT or SIGTERM before the
 * benchmark exits anyway: dropping a database takes well under a second.
 */
const INTERRUPT_GRACE_MS = 10_000;
const interruptWork = new Set<() => Promise<unknown>>();

/**
 * Registers work that must be done even when the benchmark is interrupted, which process exit
 * handlers cannot do (they run no asynchronous code): dropping its Postgres database. Processes
 * need none of this: kit/processes.ts, kit/netns.ts and Playwright kill theirs at exit. Returns
 * the function that unregisters it (call it once the work has been done the ordinary way).
 */
export function onInterrupt(work: () => Promise<unknown>): () => void {
  interruptWork.add(work);
  return () => interruptWork.delete(work);
}

/**
 * A benchmark's command line: `parse` the arguments (undefined for --help: the usage, exit 0; a
 * thrown error: its message and the usage, exit 2), then exit with what `main` returns. SIGINT and
 * SIGTERM exit (130) once the onInterrupt() work is done (at most INTERRUPT_GRACE_MS; a second
 * signal exits at once), so that kit/processes.ts's exit handler kills every process started.
 */
export async function runCommand<O>(parse: (argv: string[]) => O | undefined, usage: string, main: (options: O) => Promise<number>): Promise<never> {
  let options: O | undefined;
  try {
    options = parse(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${usage}`);
    process.exit(2);
  }
  if (options === undefined) {
    process.stdout.write(usage);
    process.exit(0);
  }
  let interrupting = false;
  const interrupted = async () => {
    if (interrupting) process.exit(130);
    interrupting = true;
    const work = Promise.allSettled([...interruptWork].map((w) => w()));
    await Promise.race([work, new Promise((resolve) => setTimeout(resolve, INTERRUPT_GRACE_MS))]);
    process.exit(130);
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void interrupted());
  process.exit(await main(options));
}
