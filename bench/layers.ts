/**
 * Simulcast layer benchmark (reports, does not pass or fail; issue 16). Chromium publishes three
 * VP8 layers (240x135, 480x270, 960x540 at ≤150/500/1,200 kbit/s) over WHIP to an origin; an edge
 * relays them (bench/layers/rig.ts). Three parts:
 *
 *   profiles  a Chromium viewer in a network namespace plays on each shaped link (clean, 2 % loss,
 *             1000, 500, 250 kbit/s): frames decoded per second, freeze ratio, freezes, the layer
 *             it gets most of the time, the edge's layer switches, NACKs (bench/layers/profiles.ts)
 *   switch    time until that viewer decodes the lowest layer after its link drops to 250 kbit/s,
 *             and the top layer again after the link recovers; each run and the median
 *             (bench/layers/switches.ts)
 *   cpu       edge CPU per viewer of the simulcast stream, its layers by estimate (counter-offer)
 *             and by loss, and of a single-layer one, side by side, libwebrtc viewers on the host,
 *             the ratios, and the estimate's trace events per viewer (bench/layers/cpu.ts)
 *   paths     the layer chosen by estimate (the viewer takes the edge's counter-offer) against by
 *             loss, alternating, on a link cut from 2,000 to 400 kbit/s and back: time below the
 *             top layer, seconds frozen, packets lost, time back on top (bench/layers/paths.ts)
 *
 * profiles, switch and paths need root, `ip netns`, `tc` and `nft`; without them they are skipped, saying
 * why, and cpu runs on loopback. Progress goes to stderr, tables to stdout, every value to --out
 * (JSON) if given.
 *
 *   npm run bench:layers [-- --seconds 30 --runs 3 --viewers 20] [-- --only cpu]   (--help for all)
 */
import { writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { loadavg } from '../kit/cpu.ts';
import { cpuPerViewer, DEFAULT_KINDS, KINDS, type Kind } from './layers/cpu.ts';
import { pathComparison } from './layers/paths.ts';
import { PROFILES, profiles } from './layers/profiles.ts';
import { LayersRig } from './layers/rig.ts';
import { switchTimes } from './layers/switches.ts';
import { integerOption, runCommand } from './lib/options.ts';
import { Progress } from './lib/progress.ts';
import { renderTable } from './lib/report.ts';

const PARTS = ['profiles', 'switch', 'cpu', 'paths'] as const;
type Part = (typeof PARTS)[number];

const USAGE = `npm run bench:layers [-- options]

  --only LIST        parts, comma-separated: ${PARTS.join(',')} (default all)
  --seconds S        play time measured on each shaped link (default 30)
  --settle S         time on each link before that, from the viewer's first frame (default 10)
  --runs N           switch-time runs, and runs of each path in the paths part (default 3)
  --viewers N        libwebrtc viewers added on each stream for the CPU figures (default 20)
  --cpu-seconds S    each CPU window (default 20)
  --cpu-rounds N     rounds of the CPU comparison, kinds in rotating order (default 2)
  --cpu-kinds LIST   viewers measured, comma-separated: ${Object.keys(KINDS).join(',')}
                     (default ${DEFAULT_KINDS.join(',')}; single is the reference)
  --out FILE         write every value there (JSON)
`;

interface Options {
  only: Part[];
  seconds: number;
  settle: number;
  runs: number;
  viewers: number;
  cpuSeconds: number;
  cpuRounds: number;
  cpuKinds: Kind[];
  out: string | undefined;
}

function parseOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      only: { type: 'string' },
      seconds: { type: 'string' },
      settle: { type: 'string' },
      runs: { type: 'string' },
      viewers: { type: 'string' },
      'cpu-seconds': { type: 'string' },
      'cpu-rounds': { type: 'string' },
      'cpu-kinds': { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  const only = (values.only ?? PARTS.join(',')).split(',').map((s) => s.trim()).filter(Boolean);
  for (const part of only) if (!PARTS.includes(part as Part)) throw new Error(`--only: unknown part "${part}" (parts: ${PARTS.join(', ')})`);
  const cpuKinds: string[] = values['cpu-kinds'] === undefined ? DEFAULT_KINDS : values['cpu-kinds'].split(',').map((s) => s.trim()).filter(Boolean);
  for (const kind of cpuKinds) if (!(kind in KINDS)) throw new Error(`--cpu-kinds: unknown kind "${kind}" (kinds: ${Object.keys(KINDS).join(', ')})`);
  if (!cpuKinds.includes('single')) throw new Error('--cpu-kinds: single, the reference, is needed');
  return {
    only: PARTS.filter((p) => only.includes(p)),
    seconds: integerOption('seconds', values.seconds, 30),
    settle: integerOption('settle', values.settle, 10, 0),
    runs: integerOption('runs', values.runs, 3),
    viewers: integerOption('viewers', values.viewers, 20),
    cpuSeconds: integerOption('cpu-seconds', values['cpu-seconds'], 20),
    cpuRounds: integerOption('cpu-rounds', values['cpu-rounds'], 2),
    cpuKinds: [...new Set(cpuKinds as Kind[])],
    out: values.out,
  };
}

async function main(options: Options): Promise<number> {
  const started = new Date();
  const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10, kernel: release(), node: process.version };
  const shaped = options.only.filter((p) => p !== 'cpu');
  const steps =
    (options.only.includes('profiles') ? PROFILES.length : 0) +
    (options.only.includes('switch') ? options.runs : 0) +
    (options.only.includes('cpu') ? options.cpuKinds.length * options.cpuRounds : 0) +
    (options.only.includes('paths') ? 2 * options.runs : 0);
  const progress = new Progress(steps + 1);
  progress.print(
    `relaycast simulcast layer benchmark\n` +
      `machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Linux ${machine.kernel}, Node ${machine.node}\n` +
      `load average at start: ${loadavg()} (other work on the machine shows up in every figure)\n`,
  );
  const report: Record<string, unknown> = { startedAt: started.toISOString(), machine, options };
  const errors: Record<string, string> = {};
  const { rig, skipped } = await LayersRig.start(progress, shaped.length > 0);
  progress.step('layers: rig running');
  try {
    if (skipped) {
      progress.print(`${shaped.join(' and ')}: skipped: ${skipped}\n`);
      report.skipped = { parts: shaped, reason: skipped };
    }
    const run = async (part: Part, measure: () => Promise<{ table: Parameters<typeof renderTable>[0] } & Record<string, unknown>>) => {
      if (!options.only.includes(part) || (skipped && part !== 'cpu')) return;
      try {
        const result = await measure();
        report[part] = result;
        progress.print(`${renderTable(result.table)}\n`);
      } catch (error) {
        errors[part] = (error as Error).stack ?? String(error);
        progress.print(`${part}: FAILED: ${(error as Error).message}\n`);
      }
    };
    await run('profiles', () => profiles(rig, options, progress));
    await run('switch', () => switchTimes(rig, options, progress));
    await run('cpu', () => cpuPerViewer(rig, { viewers: options.viewers, seconds: options.cpuSeconds, rounds: options.cpuRounds, kinds: options.cpuKinds }, progress));
    await run('paths', () => pathComparison(rig, options, progress));
  } finally {
    progress.note('layers: stopping');
    await rig.stop();
  }
  progress.print(`  load average at the end: ${loadavg()}`);
  if (options.out) {
    report.finishedAt = new Date().toISOString();
    report.errors = errors;
    writeFileSync(options.out, `${JSON.stringify(report, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
    process.stdout.write(`results: ${options.out}\n`);
  }
  progress.finish();
  return Object.keys(errors).length > 0 ? 1 : 0;
}

await runCommand(parseOptions, USAGE, main);
