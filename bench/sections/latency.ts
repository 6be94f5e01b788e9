import { loadavg } from '../../kit/cpu.ts';
import { startChild } from '../../kit/processes.ts';
import { fmt, median, percentile, sleep, spread } from '../../kit/stats.ts';
import { WRTC_CLIENT } from '../../kit/wrtc.ts';
import type { BenchOptions } from '../lib/options.ts';
import type { Progress } from '../lib/progress.ts';
import type { SectionResult } from '../lib/report.ts';
import type { MediaRig } from './rig.ts';

/**
 * Added latency origin → edge, measured on the media itself. A publisher writes each frame's
 * capture time (wall clock, 0.1 ms units) into the frame's pixels; a viewer reads it back from its
 * decoded frames. Two identical publisher processes run at the same time, one into Relaycast
 * (publisher → origin → PipeTransport → edge → viewer) and one into the baseline (publisher → one
 * mediasoup router → viewer), each with its viewer; every process runs on this machine and reads
 * the same clock. The difference between the two paths is what the origin → edge hop adds.
 * (Separate publishers, not one publishing twice: libwebrtc would encode for one target before
 * the other, and on a busy machine that order shows up as latency.)
 */
type Sample = [stamp: number, delayMs: number];

interface Counters {
  framesDecoded: number;
  totalProcessingDelay: number;
  jitterBufferDelay: number;
  jitterBufferEmittedCount: number;
  totalDecodeTime: number;
}

interface LatencyReply {
  samples: Sample[];
  unreadable: number;
  counters: Counters;
}

interface PathFigures {
  /** Capture → decoded frame in the viewer's sink (ms). */
  median: number;
  p95: number;
  /** libwebrtc's jitterBufferDelay / jitterBufferEmittedCount (ms), for the JSON only: this build's figure can exceed the whole capture → frame delay, so it is not a measured wait. */
  jitterBufferStat: number;
  frames: number;
}

function figures(window: LatencyReply, before: LatencyReply): PathFigures {
  const delays = window.samples.map(([, d]) => d);
  const d = (k: keyof Counters) => window.counters[k] - before.counters[k];
  return {
    median: median(delays),
    p95: percentile(delays, 95),
    jitterBufferStat: d('jitterBufferEmittedCount') > 0 ? (1000 * d('jitterBufferDelay')) / d('jitterBufferEmittedCount') : NaN,
    frames: delays.length,
  };
}

interface Run {
  relaycast: PathFigures;
  baseline: PathFigures;
  publishedKbps: number[];
  unreadable: number;
  load: string;
}

/** Each run is a new pair of sessions whose receivers settle differently: more runs than the other media figures. */
export const latencyRuns = (options: BenchOptions) => options.runs ?? (options.quick ? 1 : 5);

const LATENCY_VIEWERS = 3;

const range = (xs: number[]) => (xs.length ? `${fmt(Math.min(...xs), 1)} – ${fmt(Math.max(...xs), 1)}` : 'n/a');

export async function latency(rig: MediaRig, options: BenchOptions, progress: Progress): Promise<SectionResult> {
  const runs = latencyRuns(options);
  const seconds = options.quick ? options.seconds : Math.max(options.seconds, 15);
  const perRun: Run[] = [];
  for (let run = 0; run < runs; run++) {
    progress.note(`latency run ${run + 1}/${runs}: a publisher and a viewer on each path for ${seconds} s`);
    const stream = `latency-${run}`;
    const token = await rig.publishToken(stream);
    // The baseline path is one router: publisher and viewers on the same router of one worker.
    const targets = [`${rig.origin.url}/whip/${stream}`, `${rig.baseline.url}/whip/${stream}?single`];
    const publishers = targets.map((url) => startChild(WRTC_CLIENT, ['publish', '--target', url, '--token', token, '--kbps', String(options.kbps), '--seconds', '3600']));
    // Video only: no audio section, so no A/V synchronisation delays the video in the receiver.
    const viewers = [rig.edge.url, rig.baseline.url].map((base) => startChild(WRTC_CLIENT, ['view', '--url', `${base}/whep/${stream}`, '--stamp', '--video-only']));
    try {
      await Promise.all(publishers.map((p) => p.next('ready', 40_000)));
      await Promise.all(viewers.map((v) => v.next('ready', 30_000)));
      // Several viewers per path: each receiver's jitter buffer settles on its own, their pooled
      // frames average that out.
      const perPath = options.quick ? 1 : LATENCY_VIEWERS;
      await Promise.all(viewers.map((v) => v.ask(`add ${perPath} ${perPath}`, 'added', 60_000)));
      // Let the publishers' bitrate ramp up and the receivers settle.
      await sleep(options.quick ? 1000 : 8000);
      const [edge0, base0] = (await Promise.all(viewers.map((v) => v.ask('latency warmup', 'latency')))) as unknown as LatencyReply[];
      const sent0 = await Promise.all(publishers.map((p) => p.ask('stats', 'stats')));
      await sleep(seconds * 1000);
      const [edge, base] = (await Promise.all(viewers.map((v) => v.ask('latency window', 'latency')))) as unknown as LatencyReply[];
      const sent1 = await Promise.all(publishers.map((p) => p.ask('stats', 'stats')));
      const kbps = sent1.map((s, i) => {
        const [a, b] = [(sent0[i]!.targets as Array<{ bytesSent: number; at: number }>)[0]!, (s.targets as Array<{ bytesSent: number; at: number }>)[0]!];
        return ((b.bytesSent - a.bytesSent) * 8) / Math.max(1, b.at - a.at);
      });
      perRun.push({
        relaycast: figures(edge!, edge0!),
        baseline: figures(base!, base0!),
        publishedKbps: kbps,
        unreadable: edge!.unreadable + base!.unreadable,
        load: loadavg(),
      });
    } finally {
      await Promise.all(viewers.map((v) => v.ask('stop', 'stopped', 30_000).catch(() => undefined)));
      await Promise.all(viewers.map((v) => v.stop()));
      for (const p of publishers) p.send('stop');
      await Promise.all(publishers.map((p) => Promise.race([p.exited, sleep(5000)]).then(() => p.stop())));
    }
    progress.step();
  }
  const m = (f: (r: Run) => number) => median(perRun.map(f).filter(Number.isFinite));
  const addedPerRun = perRun.map((r) => r.relaycast.median - r.baseline.median);
  const added = median(addedPerRun);
  const frames = perRun.reduce((s, r) => s + r.relaycast.frames + r.baseline.frames, 0);
  const path = (label: string, f: (r: Run) => PathFigures) => [
    label,
    fmt(m((r) => f(r).median), 1),
    range(perRun.map((r) => f(r).median)),
    fmt(m((r) => f(r).p95), 1),
  ];
  return {
    id: 'latency',
    title: 'Latency',
    tables: [
      {
        title: `Latency publisher → viewer, capture → decoded frame, ms (${runs} run${runs > 1 ? 's' : ''} of ${seconds} s, ${frames} frames; ${fmt(m((r) => r.publishedKbps[0]!), 0)} and ${fmt(m((r) => r.publishedKbps[1]!), 0)} kbit/s published)`,
        head: ['path', 'median', 'runs min–max', 'p95'],
        rows: [
          path('relaycast: origin → edge → viewer', (r) => r.relaycast),
          path('baseline: one mediasoup router → viewer', (r) => r.baseline),
          ['added by origin → edge (relaycast − baseline)', fmt(added, 1), range(addedPerRun), ''],
        ],
        how: [
          'each publisher stamps every frame with its capture time in 40 black/white 16 px blocks (32-bit time in 0.1 ms + a check byte); each viewer reads it back from the decoded picture against the same clock (one machine)',
          `per run: a new publisher process and ${options.quick ? 'a viewer' : `${LATENCY_VIEWERS} viewers`} on each path, at the same time; the median delay of their frames over the window per path; added = relaycast − baseline per run, then the median over runs`,
          'both paths include the publisher\'s encoder and pacer and the viewer\'s decoder and its adaptive jitter buffer, which settles differently in each session: hence several runs and the range',
          `frames whose stamp did not read back: ${perRun.reduce((s, r) => s + r.unreadable, 0)}`,
        ],
      },
    ],
    data: { runs, seconds, perRun, addedPerRunMs: addedPerRun, median: { addedMs: added, relaycastMs: m((r) => r.relaycast.median), baselineMs: m((r) => r.baseline.median) } },
    panels: [
      {
        kind: 'bars',
        title: 'Latency capture → decoded frame (ms)',
        unit: 'ms',
        bars: [
          { label: 'baseline (1 hop)', value: m((r) => r.baseline.median), series: 'baseline' },
          { label: 'relaycast (origin+edge)', value: m((r) => r.relaycast.median), series: 'relaycast' },
          { label: 'added by the hop', value: added, series: 'added' },
        ],
      },
    ],
    headline: [
      {
        figure: 'latency added by origin → edge',
        value: `${fmt(added, 1)} ms, runs ${spread(addedPerRun, 1)} (capture → frame: relaycast ${fmt(m((r) => r.relaycast.median), 1)}, baseline ${fmt(m((r) => r.baseline.median), 1)} ms)`,
      },
    ],
    load: perRun.map((r) => r.load),
  };
}
