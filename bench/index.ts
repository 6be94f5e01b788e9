/**
 * The benchmark suite (`npm run bench`): it reports figures, it does not pass or fail.
 *
 *   fanout    viewer streams per core on one edge worker at < 0.1 % loss, CPU per viewer, and the
 *             same load on a plain-mediasoup baseline in the same run (the ratio)
 *   ttff      time to first frame on a cold edge and a warm one
 *   latency   latency publisher → viewer through origin + edge and through the baseline, measured
 *             on timestamps carried in the video frames; the difference is what the hop adds
 *   tiers     relay tiers: latency each edge → edge hop adds (tiers 0, 1, 2), time to first frame
 *             on a cold edge whose parent is warm vs one pulling from the origin
 *   balancer  route decisions per second per policy; HAProxy render + validate + reload
 *   haproxy   HAProxy kept live: an edge's registration → first request through the runtime API
 *             (no reload) and through a reload (new region); map replaced and edited at run time
 *   postgres  heartbeat writes per second; placement lookups under the cluster's heartbeats
 *
 * Progress goes to stderr, tables to stdout; results to bench/results/bench-<time>.json and .svg.
 *
 *   npm run bench [-- --quick] [-- --only fanout,ttff] [-- --runs N]   (--help for all options)
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import * as mediasoup from 'mediasoup';
import { loadavg } from '../kit/cpu.ts';
import { parseOptions, runCommand, runsFor, USAGE, type BenchOptions } from './lib/options.ts';
import { Progress } from './lib/progress.ts';
import { renderTable, type SectionId, type SectionResult } from './lib/report.ts';
import { renderSvg } from './lib/svg.ts';
import { balancer } from './sections/balancer.ts';
import { fanout, fanoutSystemCount } from './sections/fanout.ts';
import { haproxyLive } from './sections/haproxyLive.ts';
import { latency, latencyRuns } from './sections/latency.ts';
import { postgres } from './sections/postgres.ts';
import { MediaRig } from './sections/rig.ts';
import { tiers, tiersRuns } from './sections/tiers.ts';
import { ttff, ttffRuns } from './sections/ttff.ts';

function machine() {
  const tool = (cmd: string, args: string[]) => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0]!.trim();
    } catch {
      return 'not found';
    }
  };
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    node: process.version,
    mediasoup: mediasoup.version,
    haproxy: tool(process.env.HAPROXY_BIN ?? 'haproxy', ['-v']),
  };
}

const MEDIA: SectionId[] = ['fanout', 'ttff', 'latency'];

/** Progress steps: each section's measurements, plus one as it finishes (and one for the media rig). */
function plannedSteps(options: BenchOptions): number {
  const steps: Record<SectionId, number> = {
    fanout: runsFor(options, 'media') * fanoutSystemCount(options) * options.viewers.length,
    ttff: ttffRuns(options).whip + ttffRuns(options).rtmp,
    latency: latencyRuns(options),
    tiers: tiersRuns(options).latency + tiersRuns(options).ttff,
    balancer: runsFor(options, 'cheap') * 2,
    haproxy: runsFor(options, 'cheap'),
    postgres: runsFor(options, 'cheap') * 3,
  };
  return options.only.reduce((sum, id) => sum + steps[id] + 1, options.only.some((id) => MEDIA.includes(id)) ? 1 : 0);
}

async function run(options: BenchOptions): Promise<number> {
  const started = new Date();
  const info = machine();
  const progress = new Progress(plannedSteps(options));
  progress.print(
    `relaycast benchmarks${options.quick ? ' (--quick: tiny sizes, one run; not figures to quote)' : ''}\n` +
      `machine: ${info.cpu}, ${info.cores} cores, ${info.memoryGiB} GiB, Linux ${info.kernel}, Node ${info.node}, mediasoup ${info.mediasoup}\n` +
      `load average at start: ${loadavg()} (other work on the machine shows up in every figure)\n`,
  );
  const results: SectionResult[] = [];
  const errors: Record<string, string> = {};
  const durations: Record<string, number> = {};
  let sectionStart = performance.now();
  const done = (result: SectionResult) => {
    results.push(result);
    durations[result.id] = Math.round((performance.now() - sectionStart) / 100) / 10;
    sectionStart = performance.now();
    progress.print(
      `${result.tables.map(renderTable).join('\n\n')}\n  load average during the section: ${[...new Set(result.load)].slice(0, 6).join(' | ') || loadavg()}; it took ${durations[result.id]} s\n`,
    );
    progress.step();
  };
  const failed = (id: SectionId, error: unknown) => {
    sectionStart = performance.now();
    errors[id] = (error as Error).stack ?? String(error);
    progress.print(`${id}: FAILED: ${(error as Error).message}\n`);
    progress.step();
  };

  const media = options.only.filter((s) => MEDIA.includes(s));
  if (media.length > 0) {
    let rig: MediaRig | undefined;
    try {
      rig = await MediaRig.start(options, progress);
      durations.rig = Math.round((performance.now() - sectionStart) / 100) / 10;
      sectionStart = performance.now();
      progress.step('media rig running');
      for (const id of media) {
        try {
          done(id === 'fanout' ? await fanout(rig, options, progress) : id === 'ttff' ? await ttff(rig, options, progress) : await latency(rig, options, progress));
        } catch (error) {
          failed(id, error);
        }
      }
    } catch (error) {
      for (const id of media) if (!(id in errors) && !results.some((r) => r.id === id)) failed(id, error);
    } finally {
      progress.note('media: stopping');
      await rig?.stop().catch((error) => progress.log(`media: stopping: ${(error as Error).message}`));
    }
  }
  for (const id of options.only.filter((s) => !MEDIA.includes(s))) {
    sectionStart = performance.now();
    try {
      done(
        id === 'tiers'
          ? await tiers(options, progress)
          : id === 'balancer'
            ? await balancer(options, progress)
            : id === 'haproxy'
              ? await haproxyLive(options, progress)
              : await postgres(options, progress),
      );
    } catch (error) {
      failed(id, error);
    }
  }

  const headline = results.flatMap((r) => r.headline);
  if (headline.length > 0) {
    const width = Math.max(...headline.map((h) => h.figure.length));
    progress.print(`Summary\n${headline.map((h) => `  ${h.figure.padEnd(width)}  ${h.value}`).join('\n')}\n`);
  }

  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const dir = resolve(options.outDir);
  mkdirSync(dir, { recursive: true });
  const jsonPath = join(dir, `bench-${stamp}.json`);
  const svgPath = join(dir, `bench-${stamp}.svg`);
  const report = {
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    machine: info,
    loadAverage: { start: results[0]?.load[0] ?? null, end: loadavg() },
    options,
    durationsSeconds: durations,
    sections: Object.fromEntries(results.map((r) => [r.id, { title: r.title, headline: r.headline, tables: r.tables, load: r.load, data: r.data }])),
    errors,
  };
  writeFileSync(jsonPath, `${JSON.stringify(report, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
  writeFileSync(
    svgPath,
    renderSvg(
      `Relaycast benchmarks — ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC${options.quick ? ' (quick)' : ''}`,
      `${info.cpu}, ${info.cores} cores · Node ${info.node} · mediasoup ${info.mediasoup} · load ${loadavg()}`,
      results.flatMap((r) => r.panels),
    ),
  );
  progress.finish();
  process.stdout.write(`results: ${jsonPath}\n         ${svgPath}\n`);
  return Object.keys(errors).length > 0 ? 1 : 0;
}

await runCommand(parseOptions, USAGE, run);
