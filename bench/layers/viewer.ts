import type { Page } from 'playwright-core';
import { play, playbackStats, stopViewing, type TestBrowser } from '../../kit/browser.ts';
import { metric } from '../../kit/metrics.ts';

/**
 * A Chromium viewer of the edge (kit/browser.ts play) and what the layer benchmarks read from it:
 * the height of the frames it decodes, which says which layer it gets. The publisher's layers
 * (kit/browser.ts publishSimulcast) are 240x135, 480x270 and 960x540.
 */

export const LOWEST_HEIGHT = 135;
export const TOP_HEIGHT = 540;

/** How often the viewer's stats are read while waiting for a layer: the resolution of the switch times. */
export const HEIGHT_POLL_MS = 250;

/**
 * A new page of `browser` playing `stream` from the edge; throws unless the edge answered 201 (or,
 * with `counterOffer`, 406 with its offer, and took the answer: 204).
 */
export async function openViewer(browser: TestBrowser, edgeUrl: string, stream: string, options: { counterOffer?: boolean } = {}): Promise<Page> {
  const page = await browser.page(edgeUrl);
  const played = await play(page, `${edgeUrl}/whep/${stream}`, undefined, undefined, options);
  const ok = options.counterOffer ? played.status === 406 && played.patchStatus === 204 : played.status === 201;
  if (!ok) {
    await page.close();
    throw new Error(`WHEP play answered ${played.status}${played.patchStatus ? ` (its answer PATCHed: ${played.patchStatus})` : ''}: ${played.body.slice(0, 300)}`);
  }
  return page;
}

/** Ends the viewer's session (DELETE, so the edge does not wait for it to time out) and closes its page. */
export async function closeViewer(page: Page): Promise<void> {
  await stopViewing(page);
  await page.close().catch(() => undefined);
}

/**
 * Milliseconds until the viewer decodes frames whose height passes `wanted`, or undefined when it
 * has not within `timeoutMs` (the caller says "not within …"; nothing here hangs).
 */
export async function waitForHeight(page: Page, wanted: (height: number) => boolean, timeoutMs: number): Promise<number | undefined> {
  const started = performance.now();
  while (performance.now() - started <= timeoutMs) {
    const stats = await playbackStats(page);
    if (stats.framesDecoded > 0 && wanted(stats.frameHeight)) return performance.now() - started;
    await new Promise((resolve) => setTimeout(resolve, HEIGHT_POLL_MS));
  }
  return undefined;
}

/** The edge's count of viewers' layer switches so far: up and down, automatic and pinned, by estimate and by loss. */
export async function layerSwitches(edgeUrl: string): Promise<number> {
  let total = 0;
  for (const direction of ['up', 'down']) {
    for (const mode of ['auto', 'pinned']) {
      for (const control of ['estimate', 'loss']) total += (await metric(edgeUrl, 'relaycast_layer_switches_total', { direction, mode, control })) ?? 0;
    }
  }
  return total;
}
