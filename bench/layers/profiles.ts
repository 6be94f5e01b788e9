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
/** How often the decoded height is sampled during the window (the frames decoded since the last sample count at its height). */
const SAMPLE_MS = 500;

export interface ProfileResult {
  profile: string;
  /** Undefined when the viewer decoded no frame within FIRST_FRAME_MS. */
  seconds?: number;
  framesPerSecond?: number;
  freezeRatio?: number;
  freezes?: number;
  /** Share of the window's decoded frames at each height: the playing time on each layer (frozen time is in freezeRatio). */
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
      // Frames decoded at each height: those decoded since the last sample count at this sample's.
      const frames: Record<string, number> = {};
      let last = first;
      while (performance.now() - t0 < options.seconds * 1000) {
        await sleep(SAMPLE_MS);
        const now = await playbackStats(page);
        frames[now.frameHeight] = (frames[now.frameHeight] ?? 0) + now.framesDecoded - last.framesDecoded;
        last = now;
      }
      const seconds = (performance.now() - t0) / 1000;
      const delta = (key: keyof PlaybackStats) => (last[key] as number) - (first[key] as number);
      const decoded = delta('framesDecoded');
      const heights = Object.fromEntries(Object.entries(frames).filter(([, n]) => n > 0).map(([h, n]) => [h, n / decoded]));
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

/** "540 (93 %)": the height most frames had and its share; others after it when they had ≥ 5 %. */
function layerCell(heights: Record<string, number>): string {
  const byShare = Object.entries(heights).sort((a, b) => b[1] - a[1]);
  if (byShare.length === 0) return 'no frames';
  return byShare
    .filter(([, share], i) => i === 0 || share >= 0.05)
    .map(([h, share]) => `${h} (${Math.round(share * 100)} %)`)
    .join(', ');
}

function profileTable(results: ProfileResult[], options: { seconds: number; settle: number }): Table {
  return {
    title: 'Simulcast layers on shaped links: one Chromium viewer, three layers (135/270/540 lines at ≤150/500/1,200 kbit/s)',
    head: ['link', 'frames/s', 'freeze ratio', 'freezes', 'layer (height) most of the playing time', 'layer switches', 'NACKs', 'lost'],
    rows: results.map((r) =>
      r.seconds === undefined
        ? [r.profile, `no frame within ${FIRST_FRAME_MS / 1000} s`, '', '', '', '', '', '']
        : [r.profile, fmt(r.framesPerSecond!), `${fmt(r.freezeRatio! * 100)} %`, String(r.freezes), layerCell(r.heights!), String(r.switches), String(r.nacks), String(r.packetsLost)],
    ),
    how: [
      `a new viewer (Chromium in the network namespace) per link, joined on it; ${options.settle} s after its first frame, ${options.seconds} s measured`,
      'links: what the host sends into the namespace, tbf for the rate (300 ms of queue), nftables for random loss (no netem in this kernel: no added delay)',
      'frames/s, freezes, NACKs, lost (packets lost for good): the viewer\'s inbound-rtp; freeze ratio: totalFreezesDuration / window (Chromium counts a freeze when a frame is late by max(3 × the mean gap, mean + 150 ms))',
      `layer: the share of the frames decoded in the window at each height (frameHeight read every ${SAMPLE_MS} ms), largest first, others ≥ 5 % after it; frozen time is the freeze ratio's`,
      'layer switches: the edge\'s relaycast_layer_switches_total over the window (this viewer is the edge\'s only one)',
    ],
  };
}
