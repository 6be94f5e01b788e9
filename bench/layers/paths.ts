import type { Page } from 'playwright-core';
import { playbackStats, type PlaybackStats } from '../../kit/browser.ts';
import { fmt, median, sleep } from '../../kit/stats.ts';
import type { Progress } from '../lib/progress.ts';
import type { Table } from '../lib/report.ts';
import { SIMULCAST_STREAM, type LayersRig } from './rig.ts';
import { closeViewer, HEIGHT_POLL_MS, openViewer, TOP_HEIGHT, waitForHeight } from './viewer.ts';

/**
 * Part 4: the two ways an edge picks a viewer's layer, side by side on the same link, in Chromium
 * (issue 33). "loss": the viewer posts an ordinary offer, and the edge reads its losses
 * (edge/LayerPolicy.ts LayerPolicy). "estimate": the viewer takes the edge's counter-offer, and
 * mediasoup's transport-cc estimate picks the layer under the edge's ceiling (EstimatePolicy).
 * Each run plays both, in alternating order: WIDE_KBIT until the top layer, NARROW_KBIT for
 * HOLD_MS, WIDE_KBIT again until the top layer (bounded), then RECOVER_MS more.
 */

/** The link before and after the cut: carries every layer (top ≤1,200 kbit/s + audio). */
const WIDE_KBIT = 2000;
/** The cut: carries the middle layer (≤500, ~330 kbit/s from Chromium's fake camera) or less, not the top. */
const NARROW_KBIT = 400;
/** Time on the narrow link, from the cut: the switch down and a while on the layer it settles on. */
const HOLD_MS = 20_000;
/** Bounds of the waits for the top layer (before the cut, and after the link is restored). */
const TOP_WAIT_MS = 60_000;
const UP_WAIT_MS = 90_000;
/** After the top layer is back, how long the recovery's freezes are still counted. */
const RECOVER_MS = 5000;

type Path = 'loss' | 'estimate';

export interface PathRun {
  run: number;
  path: Path;
  /** ms from the cut until the viewer decodes a layer below the top; null: not within HOLD_MS. */
  downMs: number | null;
  /** Seconds of frozen picture (Chromium's totalFreezesDuration) over the HOLD_MS on the narrow link. */
  frozenNarrowS: number;
  /** Video packets lost for good (after NACK) over the narrow link. */
  lostNarrow: number;
  /** The height decoded at the end of the narrow link. */
  narrowHeight: number;
  /** ms from the restoring until the top layer again; null: not within UP_WAIT_MS. */
  upMs: number | null;
  /** Seconds frozen from the restoring until RECOVER_MS after the top layer. */
  frozenRecoverS: number;
  note?: string;
}

const delta = (a: PlaybackStats, b: PlaybackStats) => ({ frozen: b.totalFreezesDuration - a.totalFreezesDuration, lost: b.packetsLost - a.packetsLost });

async function onePath(rig: LayersRig, run: number, path: Path): Promise<PathRun> {
  const netns = rig.netns!;
  netns.shape({ rateKbit: WIDE_KBIT });
  const page: Page = await openViewer(rig.viewerBrowser!, rig.edge.url, SIMULCAST_STREAM, { counterOffer: path === 'estimate' });
  const empty = { run, path, downMs: null, frozenNarrowS: 0, lostNarrow: 0, narrowHeight: 0, upMs: null, frozenRecoverS: 0 };
  try {
    if ((await waitForHeight(page, (h) => h === TOP_HEIGHT, TOP_WAIT_MS)) === undefined) return { ...empty, note: `not on the top layer within ${TOP_WAIT_MS / 1000} s at ${WIDE_KBIT} kbit/s` };
    const before = await playbackStats(page);
    netns.shape({ rateKbit: NARROW_KBIT });
    const cut = performance.now();
    const down = await waitForHeight(page, (h) => h < TOP_HEIGHT, HOLD_MS);
    await sleep(Math.max(0, HOLD_MS - (performance.now() - cut)));
    const narrow = await playbackStats(page);
    netns.shape({ rateKbit: WIDE_KBIT });
    const up = await waitForHeight(page, (h) => h === TOP_HEIGHT, UP_WAIT_MS);
    if (up !== undefined) await sleep(RECOVER_MS);
    const after = await playbackStats(page);
    const onNarrow = delta(before, narrow);
    return { run, path, downMs: down ?? null, frozenNarrowS: onNarrow.frozen, lostNarrow: onNarrow.lost, narrowHeight: narrow.frameHeight, upMs: up ?? null, frozenRecoverS: delta(narrow, after).frozen };
  } finally {
    await closeViewer(page);
    netns.shape(undefined);
  }
}

export async function pathComparison(rig: LayersRig, options: { runs: number }, progress: Progress): Promise<{ table: Table; runs: PathRun[] }> {
  const runs: PathRun[] = [];
  for (let run = 1; run <= options.runs; run++) {
    // Alternate which path goes first, so that neither always meets the publisher in the same state.
    const order: Path[] = run % 2 === 1 ? ['loss', 'estimate'] : ['estimate', 'loss'];
    for (const path of order) {
      progress.note(`paths: run ${run} of ${options.runs}, ${path}`);
      const result = await onePath(rig, run, path);
      runs.push(result);
      progress.log(`paths: run ${run}, ${path}: ${result.note ?? `down ${ms(result.downMs)}, frozen ${fmt(result.frozenNarrowS)} s, lost ${result.lostNarrow}, ${result.narrowHeight} lines; up ${ms(result.upMs)}, frozen ${fmt(result.frozenRecoverS)} s`}`);
      progress.step();
    }
  }
  return { table: pathTable(runs), runs };
}

const ms = (x: number | null) => (x === null ? 'not within the bound' : `${fmt(x / 1000)} s`);

function pathTable(runs: PathRun[]): Table {
  const measured = (path: Path) => runs.filter((r) => r.path === path && !r.note);
  const med = (xs: Array<number | null>, unit: (x: number) => string) => {
    const known = xs.filter((x): x is number => x !== null);
    return known.length ? `${unit(median(known))}${known.length < xs.length ? ` (${xs.length - known.length} not within the bound)` : ''}` : 'n/a';
  };
  const seconds = (x: number) => `${fmt(x / 1000)} s`;
  const row = (path: Path, label: string) => {
    const rs = measured(path);
    return [
      label,
      String(rs.length),
      med(rs.map((r) => r.downMs), seconds),
      med(rs.map((r) => r.frozenNarrowS), (x) => `${fmt(x)} s`),
      med(rs.map((r) => r.lostNarrow), (x) => fmt(x, 0)),
      med(rs.map((r) => r.upMs), seconds),
      med(rs.map((r) => r.frozenRecoverS), (x) => `${fmt(x)} s`),
    ];
  };
  const notes = runs.filter((r) => r.note).map((r) => `run ${r.run}, ${r.path}: ${r.note}`);
  return {
    title: `Layer choice by estimate against by loss: ${WIDE_KBIT} → ${NARROW_KBIT} → ${WIDE_KBIT} kbit/s (medians)`,
    head: ['path', 'runs', 'below the top after', `frozen over ${HOLD_MS / 1000} s narrow`, 'packets lost (narrow)', 'top again after', 'frozen while recovering'],
    rows: [row('estimate', 'estimate (counter-offer, transport-cc)'), row('loss', 'loss (ordinary offer)')],
    how: [
      `a new Chromium viewer in the namespace per run and path (the paths alternate which goes first); the link shaped by tbf on the host's side`,
      `below the top: from the cut until it decodes frames under ${TOP_HEIGHT} lines (read every ${HEIGHT_POLL_MS} ms, within the ${HOLD_MS / 1000} s); frozen: Chromium's totalFreezesDuration; lost: packetsLost of the video receiver`,
      `top again: from the restoring until ${TOP_HEIGHT}-line frames (bound ${UP_WAIT_MS / 1000} s); frozen while recovering: from the restoring until ${RECOVER_MS / 1000} s after that`,
      ...notes,
    ],
  };
}
