import { playbackStats, type PlaybackStats } from '../../kit/browser.ts';
import type { LinkProfile } from '../../kit/netns.ts';
import { fmt, sleep } from '../../kit/stats.ts';
import type { Progress } from '../lib/progress.ts';
import type { Table } from '../lib/report.ts';
import { SIMULCAST_STREAM, type LayersRig } from './rig.ts';
import { closeViewer, layerSwitches, openViewer, waitForHeight } from './viewer.ts';

/**
 * Part 1: a Chromium viewer in the namespace plays the three-layer stream on each shaped link in
 * turn, a new viewer for each (it joins on that link), and what it gets is read from its own stats.
 */

export const PROFILES: Array<{ name: string; link: LinkProfile | undefined }> = [
  { name: 'clean', link: undefined },
  { name: '2 % loss', link: { lossPercent: 2 } },
  { name: '1000 kbit/s', link: { rateKbit: 1000 } },
  { name: '500 kbit/s', link: { rateKbit: 500 } },
  { name: '250 kbit/s', link: { rateKbit: 250 } },
];

/** How long a viewer may take to its first frame on a link. A wait, not a figure. */
const FIRST_FRAME_MS = 60_000;
/** How often the decoded height is sampled during the window: "the layer most of the time" is the commonest sample. */
const SAMPLE_MS = 500;

export interface ProfileResult {
  profile: string;
  /** Undefined when the viewer decoded no frame within FIRST_FRAME_MS. */
  seconds?: number;
  framesPerSecond?: number;
  freezeRatio?: number;
  freezes?: number;
  /** Share of the samples at each decoded height. */
  heights?: Record<string, number>;
  switches?: number;
  nacks?: number;
  packetsLost?: number;
}

export async function profiles(rig: LayersRig, options: { seconds: number; settle: number }, progress: Progress): Promise<{ table: Table; results: ProfileResult[] }> {
  const results: ProfileResult[] = [];
  for (const { name, link } of PROFILES) {
    progress.note(`profiles: ${name}`);
    rig.netns!.shape(link);
    const page = await openViewer(rig.viewerBrowser!, rig.edge.url, SIMULCAST_STREAM);
    try {
      if ((await waitForHeight(page, () => true, FIRST_FRAME_MS)) === undefined) {
        results.push({ profile: name });
        progress.log(`profiles: ${name}: no frame within ${FIRST_FRAME_MS / 1000} s`);
        continue;
      }
      await sleep(options.settle * 1000);
      const switches0 = await layerSwitches(rig.edge.url);
      const first = await playbackStats(page);
      const t0 = performance.now();
      const samples: number[] = [];
      while (performance.now() - t0 < options.seconds * 1000) {
        await sleep(SAMPLE_MS);
        samples.push((await playbackStats(page)).frameHeight);
      }
      const last = await playbackStats(page);
      const seconds = (performance.now() - t0) / 1000;
      const delta = (key: keyof PlaybackStats) => (last[key] as number) - (first[key] as number);
      const heights: Record<string, number> = {};
      for (const h of samples) heights[h] = (heights[h] ?? 0) + 1 / samples.length;
      results.push({
        profile: name,
        seconds,
        framesPerSecond: delta('framesDecoded') / seconds,
        freezeRatio: delta('totalFreezesDuration') / seconds,
        freezes: delta('freezeCount'),
        heights,
        switches: (await layerSwitches(rig.edge.url)) - switches0,
        nacks: delta('nackCount'),
        packetsLost: delta('packetsLost'),
      });
    } finally {
      await closeViewer(page);
      rig.netns!.shape(undefined);
      progress.step();
    }
  }
  return { table: profileTable(results, options), results };
}

/** "540 (93 %)": the commonest height and its share of the window; others after it when they held ≥ 5 %. */
function layerCell(heights: Record<string, number>): string {
  const byShare = Object.entries(heights).sort((a, b) => b[1] - a[1]);
  const [top, ...rest] = byShare.map(([h, share]) => `${h === '0' ? 'none' : h} (${Math.round(share * 100)} %)`);
  const others = rest.filter((_, i) => byShare[i + 1]![1] >= 0.05);
  return [top, ...others].join(', ');
}

function profileTable(results: ProfileResult[], options: { seconds: number; settle: number }): Table {
  return {
    title: 'Simulcast layers on shaped links: one Chromium viewer, three layers (135/270/540 lines at ≤150/500/1,200 kbit/s)',
    head: ['link', 'frames/s', 'freeze ratio', 'freezes', 'layer (height) most of the time', 'layer switches', 'NACKs', 'lost'],
    rows: results.map((r) =>
      r.seconds === undefined
        ? [r.profile, `no frame within ${FIRST_FRAME_MS / 1000} s`, '', '', '', '', '', '']
        : [r.profile, fmt(r.framesPerSecond!), `${fmt(r.freezeRatio! * 100)} %`, String(r.freezes), layerCell(r.heights!), String(r.switches), String(r.nacks), String(r.packetsLost)],
    ),
    how: [
      `a new viewer (Chromium in the network namespace) per link, joined on it; ${options.settle} s after its first frame, ${options.seconds} s measured`,
      'links: what the host sends into the namespace, tbf for the rate (300 ms of queue), nftables for random loss (no netem in this kernel: no added delay)',
      'frames/s, freezes, NACKs, lost (packets lost for good): the viewer\'s inbound-rtp; freeze ratio: totalFreezesDuration / window (Chromium counts a freeze when a frame is late by max(3 × the mean gap, mean + 150 ms))',
      `layer: the decoded frame height sampled every ${SAMPLE_MS} ms, commonest first (others ≥ 5 % after it); layer switches: the edge's relaycast_layer_switches_total over the window`,
    ],
  };
}
