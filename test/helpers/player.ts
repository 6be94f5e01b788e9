import assert from 'node:assert/strict';
import type { Page } from 'playwright-core';
import type { ScriptPage } from '../../kit/browser.ts';
import { waitFor } from '../../kit/processes.ts';

/** The web player page (/play/{stream}) as a test reads it: window.relaycastPlayer.stats(). */

export interface PageStats {
  state: string;
  stateText: string;
  framesDecoded: number;
  width: number;
  height: number;
  fps: number;
  bitrateKbps: number;
  rttMs: number | null;
  edge: string | null;
  sessions: number;
  reconnects: number;
  lastError: string | null;
  videoWidth: number;
  videoHeight: number;
  videoCodec: string | null;
  mode: 'webrtc' | 'hls' | 'dvr' | null;
  latencyMs: number | null;
  /** Over HLS and in DVR: the program date-time of the picture shown (ISO 8601). */
  playingDate: string | null;
  /** The video's playback position, s. */
  currentTime: number;
}

export function playerStats(page: ScriptPage): Promise<PageStats> {
  return page.evaluate(() => {
    const video = document.querySelector('video')!;
    return { ...(window as any).relaycastPlayer.stats(), videoWidth: video.videoWidth, videoHeight: video.videoHeight, currentTime: video.currentTime };
  });
}

/**
 * Waits (bounded) until the page plays: state playing, frames decoded, a picture; with `after`,
 * in a later session than that one (it reconnected).
 */
export async function playing(page: ScriptPage, what: string, options: { timeoutMs?: number; afterSession?: number } = {}): Promise<PageStats> {
  let last: PageStats | undefined;
  try {
    await waitFor(
      what,
      async () => {
        last = await playerStats(page);
        return (
          last.state === 'playing' &&
          last.framesDecoded > 10 &&
          last.width > 0 &&
          last.videoWidth > 0 &&
          (options.afterSession === undefined || last.sessions > options.afterSession)
        );
      },
      options.timeoutMs ?? 30_000,
      250,
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}; last player stats: ${JSON.stringify(last)}`, { cause: error });
  }
  return last!;
}

/** How long playback is watched to see it move on (bounded: a wait, not a figure). */
const ADVANCE_WATCH_MS = 2000;

/**
 * Waits (bounded) until the page plays over HLS, then checks that playback moves on (the video's
 * position advances and its picture has a size) and that the page shows the mode ("HLS" in its
 * badge and stats). Returns the stats then.
 */
export async function playingOverHls(page: Page, what: string, timeoutMs = 60_000): Promise<PageStats> {
  let last: PageStats | undefined;
  try {
    await waitFor(what, async () => (last = await playerStats(page)).mode === 'hls' && last.state === 'playing' && last.framesDecoded > 10 && last.videoWidth > 0, timeoutMs, 250);
  } catch (error) {
    throw new Error(`${(error as Error).message}; last player stats: ${JSON.stringify(last)}`, { cause: error });
  }
  const before = last!;
  await new Promise((r) => setTimeout(r, ADVANCE_WATCH_MS));
  const after = await playerStats(page);
  const moved = after.currentTime > before.currentTime && after.framesDecoded > before.framesDecoded;
  assert.ok(moved && after.videoWidth > 0 && after.state === 'playing' && after.mode === 'hls', `HLS playback moves on: ${JSON.stringify(before)} → ${JSON.stringify(after)}`);
  assert.match(await page.locator('#mode').innerText(), /^HLS\b/, "the page's mode badge");
  assert.equal(await page.locator('dd[data-stat="mode"]').textContent(), 'HLS', 'the mode in the stats');
  return after;
}
