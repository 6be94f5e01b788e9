import { loadavg } from '../../kit/cpu.ts';
import { fmt, max, median, min, spread } from '../../kit/stats.ts';
import { playClient, type ClientLine } from '../../kit/wrtc.ts';
import type { BenchOptions } from '../lib/options.ts';
import type { Progress } from '../lib/progress.ts';
import type { SectionResult } from '../lib/report.ts';
import { RELAY_LINGER_MS, type MediaRig } from './rig.ts';

/**
 * Time to first frame: from a viewer's WHEP POST to its first decoded frame (kit/clients/wrtc.ts,
 * libwebrtc with a video sink). Cold: the edge holds no relay and pulls the stream from the origin
 * for this viewer. Warm: a second viewer while the first still plays (the relay is in place). The
 * baseline (a router that always holds the producer) is warm by construction: a reference.
 */

const firstFrame = (lines: ClientLine[]) =>
  (lines.find((l) => l.event === 'stats') as unknown as { viewers: Array<{ firstFrameMs: number | null }> } | undefined)?.viewers[0]?.firstFrameMs ?? null;

/** Cheap and noisy: more runs than the other media figures. */
export const ttffRuns = (options: BenchOptions) => options.runs ?? (options.quick ? 1 : 7);

export async function ttff(rig: MediaRig, options: BenchOptions, progress: Progress): Promise<SectionResult> {
  const runs = ttffRuns(options);
  const cold: number[] = [];
  const warm: number[] = [];
  const base: number[] = [];
  const load: string[] = [];
  let failures = 0;
  for (let run = 0; run < runs; run++) {
    progress.note(`ttff run ${run + 1}/${runs}`);
    await rig.relayGone();
    const first = playClient(rig.edgeWhep, { seconds: 4 });
    await first.next('first-frame').catch(() => undefined);
    const second = playClient(rig.edgeWhep, { seconds: 2 });
    const reference = playClient(rig.baselineWhep, { seconds: 2 });
    const [a, b, c] = [firstFrame(await first.done), firstFrame(await second.done), firstFrame(await reference.done)];
    if (a === null || b === null || c === null) failures++;
    if (a !== null) cold.push(a);
    if (b !== null) warm.push(b);
    if (c !== null) base.push(c);
    load.push(loadavg());
    progress.step();
  }
  const range = (xs: number[]) => (xs.length ? `${fmt(min(xs), 0)}–${fmt(max(xs), 0)}` : 'n/a');
  return {
    id: 'ttff',
    title: 'Time to first frame',
    tables: [
      {
        title: `Time to first frame, WHEP POST → first decoded frame (median of ${runs} run${runs > 1 ? 's' : ''})`,
        head: ['viewer', 'median ms', 'min–max ms'],
        rows: [
          ['cold edge (relay pulled on demand)', fmt(median(cold), 0), range(cold)],
          ['warm edge (relay in place)', fmt(median(warm), 0), range(warm)],
          ['baseline, plain mediasoup (reference)', fmt(median(base), 0), range(base)],
          ['cold / warm', fmt(median(cold) / median(warm), 2), ''],
        ],
        how: [
          'a libwebrtc viewer process (kit/clients/wrtc.ts) times its POST to its first frame out of the decoder (video sink)',
          `cold: after the previous relay closed (linger ${RELAY_LINGER_MS} ms), the edge looks the stream up in Postgres, asks the origin for a relay and connects the pipe; warm: a second viewer while the first plays`,
          'the first frame waits for a key frame: the publisher is asked for one (at most every 350 ms) when a viewer connects',
          ...(failures ? [`${failures} run(s) had a viewer without a frame; their other figures are kept`] : []),
        ],
      },
    ],
    data: { runs, coldMs: cold, warmMs: warm, baselineMs: base, median: { cold: median(cold), warm: median(warm), baseline: median(base) }, spread: { cold: spread(cold, 0), warm: spread(warm, 0) } },
    panels: [
      {
        kind: 'bars',
        title: 'Time to first frame (median)',
        unit: 'ms',
        bars: [
          { label: 'cold edge', value: median(cold), series: 'relaycast' },
          { label: 'warm edge', value: median(warm), series: 'relaycast' },
          { label: 'baseline', value: median(base), series: 'baseline' },
        ],
      },
    ],
    headline: [{ figure: 'time to first frame, cold / warm edge', value: `${fmt(median(cold), 0)} / ${fmt(median(warm), 0)} ms (baseline ${fmt(median(base), 0)} ms)` }],
    load,
  };
}
