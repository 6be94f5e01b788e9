import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { stamp } from '../../kit/clients/stamp.ts';

/**
 * hls.js in a Chromium page, as the player runs it, instrumented for bench/hls.ts: the time from
 * loadSource() to the first frame presented (requestVideoFrameCallback), and for every presented
 * frame the capture time its pixels carry (kit/clients/stamp.ts) against the page's wall clock at
 * the frame's expected display time: capture → display.
 *
 * The page code is plain JavaScript in strings, not functions passed to page.evaluate(): tsx wraps
 * named functions in a __name() helper the page does not have. The stamp reader is checked against
 * stamp.ts here (checkPageReader) before a run relies on it.
 */

export const HLS_JS = fileURLToPath(new URL('../../node_modules/hls.js/dist/hls.min.js', import.meta.url));

/**
 * Reads a stamp from the RGBA pixels of the top of a frame `width` wide: the layout of stamp.ts
 * (two rows of 20 square blocks, 32 bits of 0.1 ms units then a check byte), each block's centre
 * 3 × 3 pixels averaged, luma from RGB (BT.601), black or white at 128. Undefined if the check
 * byte does not match.
 */
const READER = `
function readStampRgba(rgba, width) {
  var COLUMNS = 20, BITS = 40;
  var block = width / COLUMNS, value = 0, check = 0;
  for (var bit = 0; bit < BITS; bit++) {
    var cx = Math.floor((bit % COLUMNS) * block + block / 2);
    var cy = Math.floor(Math.floor(bit / COLUMNS) * block + block / 2);
    var sum = 0;
    for (var dy = -1; dy <= 1; dy++) for (var dx = -1; dx <= 1; dx++) {
      var i = ((cy + dy) * width + cx + dx) * 4;
      sum += 0.299 * rgba[i] + 0.587 * rgba[i + 1] + 0.114 * rgba[i + 2];
    }
    var on = sum / 9 > 128 ? 1 : 0;
    if (bit < 32) value = ((value << 1) | on) >>> 0; else check = (check << 1) | on;
  }
  var expected = ((value & 0xff) ^ ((value >>> 8) & 0xff) ^ ((value >>> 16) & 0xff) ^ ((value >>> 24) & 0xff) ^ 0x5a) & 0xff;
  return expected === check ? value : undefined;
}
`;

/**
 * window.hlsBench.start(url, config): an hls.js player of `url` in a muted <video>; .take():
 * the samples since the last take. The wall clock is read as stamp.ts reads it (the monotonic
 * clock offset to Date.now() at its tick-overs, the largest of 60), so that the page and the
 * publisher agree to well under a millisecond.
 */
const PAGE = `${READER}
(function () {
  var best = -Infinity;
  for (var i = 0; i < 60; i++) {
    var first = Date.now(), now = first;
    while (now === first) now = Date.now();
    best = Math.max(best, now - performance.now());
  }
  var wallOffset = best;
  var state = { firstFrameMs: undefined, frames: 0, samples: [], unreadable: 0, errors: [], fatal: undefined, waiting: 0, latencies: [], rates: [] };
  window.hlsBench = {
    start: function (url, config) {
      var video = document.createElement('video');
      video.muted = true; video.autoplay = true; video.playsInline = true;
      document.body.appendChild(video);
      var canvas = document.createElement('canvas');
      var ctx = canvas.getContext('2d', { willReadFrequently: true });
      video.addEventListener('waiting', function () { state.waiting++; });
      var hls = new Hls(config);
      window.hls = hls;
      hls.on(Hls.Events.ERROR, function (_e, data) {
        if (state.errors.length < 20) state.errors.push(data.details + (data.fatal ? ' (fatal)' : ''));
        if (data.fatal) state.fatal = data.details;
      });
      var onFrame = function (now, meta) {
        if (state.firstFrameMs === undefined) state.firstFrameMs = now - state.t0;
        state.frames++;
        var width = video.videoWidth, height = Math.min(video.videoHeight, Math.ceil(width / 10) + 2);
        if (width > 0) {
          if (canvas.width !== width) { canvas.width = width; canvas.height = height; }
          ctx.drawImage(video, 0, 0, width, height, 0, 0, width, height);
          var value = readStampRgba(ctx.getImageData(0, 0, width, height).data, width);
          var shown = Math.floor((wallOffset + meta.expectedDisplayTime) * 10) >>> 0;
          var delay = value === undefined ? NaN : ((shown - value) | 0) / 10;
          if (value === undefined || !(Math.abs(delay) < 30000)) state.unreadable++;
          else state.samples.push(delay);
        }
        video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
      setInterval(function () {
        if (hls.latency > 0) state.latencies.push(hls.latency);
        state.rates.push(video.playbackRate);
      }, 500);
      state.t0 = performance.now();
      hls.loadSource(url);
      hls.attachMedia(video);
      video.play().catch(function () {});
    },
    take: function () {
      var out = { firstFrameMs: state.firstFrameMs, frames: state.frames, samples: state.samples, unreadable: state.unreadable, errors: state.errors, fatal: state.fatal, waiting: state.waiting, latencies: state.latencies, rates: state.rates };
      state.samples = []; state.unreadable = 0; state.latencies = []; state.rates = [];
      return out;
    }
  };
})();
`;

/** What a player page measured since the last take (see PAGE). */
export interface PlayerTake {
  /** loadSource() → first frame presented (rVFC's `now`), ms; undefined before the first frame. */
  firstFrameMs: number | undefined;
  /** Frames presented since the start. */
  frames: number;
  /** Capture → expected display time of each frame presented since the last take, ms. */
  samples: number[];
  unreadable: number;
  /** hls.js errors (details; "(fatal)" for a fatal one), the first 20. */
  errors: string[];
  fatal: string | undefined;
  /** 'waiting' events of the video element since the start (stalls). */
  waiting: number;
  /** hls.js's own latency estimate (s) and the playback rate, every 0.5 s since the last take. */
  latencies: number[];
  rates: number[];
}

/** Loads hls.js and the instrumented player into `page` (a page of any node: HLS answers carry CORS) and starts playing `url`. */
export async function startPlayer(page: Page, url: string, config: Record<string, unknown>): Promise<void> {
  await page.addScriptTag({ path: HLS_JS });
  await page.addScriptTag({ content: PAGE });
  await page.evaluate(({ url, config }: { url: string; config: Record<string, unknown> }) => (window as any).hlsBench.start(url, config), { url, config });
}

export async function takePlayer(page: Page): Promise<PlayerTake> {
  return page.evaluate(() => (window as any).hlsBench.take() as PlayerTake);
}

/** Polls the page until its first frame was presented (every 50 ms, at most `timeoutMs`); throws with what hls.js said otherwise. */
export async function firstFrame(page: Page, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const t = await takePlayer(page);
    if (t.firstFrameMs !== undefined) return Math.round(t.firstFrameMs);
    if (t.fatal || Date.now() > deadline) throw new Error(`no frame within ${timeoutMs} ms; hls.js errors: ${t.errors.join(', ') || 'none'}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Checks the page's stamp reader against stamp.ts: a stamped luma plane turned into RGBA (video
 * range to full range, as the browser draws it) must read back the same value.
 */
export function checkPageReader(): void {
  const width = 640;
  const rows = 70;
  const luma = new Uint8ClampedArray(width * rows).fill(128);
  const at = 1_733_000_000_123.4;
  stamp(luma, width, at);
  const rgba = new Uint8ClampedArray(width * rows * 4);
  for (let i = 0; i < luma.length; i++) {
    const v = Math.max(0, Math.min(255, Math.round(((luma[i]! - 16) * 255) / 219)));
    rgba.set([v, v, v, 255], i * 4);
  }
  const read = new Function(`${READER}; return readStampRgba;`)() as (rgba: Uint8ClampedArray, width: number) => number | undefined;
  const expected = Math.floor(at * 10) >>> 0;
  if (read(rgba, width) !== expected) throw new Error(`the page's stamp reader read ${read(rgba, width)}, not ${expected}`);
}
