import { fmt, median, sleep } from '../../kit/stats.ts';
import type { Progress } from '../lib/progress.ts';
import type { Table } from '../lib/report.ts';
import { SIMULCAST_STREAM, type LayersRig } from './rig.ts';
import { closeViewer, HEIGHT_POLL_MS, LOWEST_HEIGHT, openViewer, TOP_HEIGHT, waitForHeight } from './viewer.ts';

/**
 * Part 2: how long the edge takes to move a viewer down when its link drops, and back up when the
 * link recovers. Each run is a new Chromium viewer in the namespace: it settles on the top layer
 * on a clean link, the link drops to NARROW_KBIT (time until it decodes the lowest layer), stays
 * there HOLD_MS, and is restored (time until it decodes the top layer again).
 */

/**
 * The narrow link: below the middle layer plus audio (~330 + ~40 kbit/s from Chromium's fake
 * camera), above the lowest with room; what test/layers.test.ts uses.
 */
export const NARROW_KBIT = 250;
/** How long the viewer stays on the narrow link after reaching the lowest layer: as in test/layers.test.ts. */
const HOLD_MS = 10_000;
/** Bounds of the waits (reported as "not within …", never a hang): the top layer at the start, the step down, the step up. */
const TOP_WAIT_MS = 60_000;
const DOWN_WAIT_MS = 60_000;
/** Longer than the down wait: the edge tries the next layer up after 6 s clean, and later tries wait up to 30 s. */
const UP_WAIT_MS = 90_000;

export interface SwitchRun {
  run: number;
  /** ms, or null when not within the bound (or not measured: see `note`). */
  downMs: number | null;
  upMs: number | null;
  note?: string;
}

export async function switchTimes(rig: LayersRig, options: { runs: number }, progress: Progress): Promise<{ table: Table; runs: SwitchRun[] }> {
  const netns = rig.netns!;
  const runs: SwitchRun[] = [];
  for (let run = 1; run <= options.runs; run++) {
    progress.note(`switch times: run ${run} of ${options.runs}`);
    netns.shape(undefined);
    const page = await openViewer(rig.viewerBrowser!, rig.edge.url, SIMULCAST_STREAM);
    try {
      if ((await waitForHeight(page, (h) => h === TOP_HEIGHT, TOP_WAIT_MS)) === undefined) {
        runs.push({ run, downMs: null, upMs: null, note: `not on the top layer within ${TOP_WAIT_MS / 1000} s on a clean link` });
        continue;
      }
      netns.shape({ rateKbit: NARROW_KBIT });
      const down = await waitForHeight(page, (h) => h === LOWEST_HEIGHT, DOWN_WAIT_MS);
      if (down !== undefined) await sleep(HOLD_MS);
      netns.shape(undefined);
      const up = await waitForHeight(page, (h) => h === TOP_HEIGHT, UP_WAIT_MS);
      runs.push({ run, downMs: down ?? null, upMs: up ?? null });
      progress.log(`switch times: run ${run}: down ${cell(down ?? null, DOWN_WAIT_MS)}, up ${cell(up ?? null, UP_WAIT_MS)}`);
    } finally {
      await closeViewer(page);
      netns.shape(undefined);
      progress.step();
    }
  }
  return { table: switchTable(runs), runs };
}

const cell = (ms: number | null, boundMs: number) => (ms === null ? `not within ${boundMs / 1000} s` : `${fmt(ms / 1000)} s`);

function switchTable(runs: SwitchRun[]): Table {
  const medianOf = (xs: Array<number | null>) => {
    const measured = xs.filter((x): x is number => x !== null);
    return measured.length ? `${fmt(median(measured) / 1000)} s${measured.length < xs.length ? ` (of ${measured.length})` : ''}` : 'n/a';
  };
  return {
    title: `Layer switch times: clean → ${NARROW_KBIT} kbit/s → clean`,
    head: ['run', `down to ${LOWEST_HEIGHT} lines`, `up to ${TOP_HEIGHT} lines again`],
    rows: [
      ...runs.map((r) => [String(r.run), r.note ?? cell(r.downMs, DOWN_WAIT_MS), r.note ? '' : cell(r.upMs, UP_WAIT_MS)]),
      ['median', medianOf(runs.filter((r) => !r.note).map((r) => r.downMs)), medianOf(runs.filter((r) => !r.note).map((r) => r.upMs))],
    ],
    how: [
      `a new Chromium viewer in the namespace per run, on the top layer (${TOP_HEIGHT} lines) on a clean link; the link is cut to ${NARROW_KBIT} kbit/s (tbf)`,
      `down: from the cut until the viewer decodes ${LOWEST_HEIGHT}-line frames; then ${HOLD_MS / 1000} s more on the narrow link; up: from the link's restoring until it decodes ${TOP_HEIGHT}-line frames`,
      `the viewer's inbound-rtp frameHeight read every ${HEIGHT_POLL_MS} ms; bounds ${DOWN_WAIT_MS / 1000} s down, ${UP_WAIT_MS / 1000} s up`,
    ],
  };
}
