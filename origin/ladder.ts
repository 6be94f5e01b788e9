import { LADDER_MIN_STEP } from '../core/rtmpLadder.ts';

/**
 * Plans an RTMP ladder: from the configured heights (core/rtmpLadder.ts) and what the publish
 * carries, the renditions the bridge encodes (origin/RtmpBridge.ts), lowest first as mediasoup's
 * simulcast takes them (encodings[0] is the lowest layer).
 *
 * Never upscaled: a rung taller than the input is brought down to the input's height, and rungs
 * that then stand closer than LADDER_MIN_STEP merge, keeping the taller (the input's own size is
 * the best picture there is). So 720,360,180 over a 1080p input is 720/360/180, over a 540p input
 * 540/360/180, over a 360p input 360/180, over a 200p input a single layer (no ladder).
 */

export interface Rendition {
  width: number;
  height: number;
  /** Target (and cap) of the rendition's video bitrate, kbit/s. */
  kbps: number;
  /** The layer's RTP stream id: its height, e.g. "720p" (the WHEP layer extension names layers by it). */
  rid: string;
}

export interface LadderInput {
  width: number;
  height: number;
  /** Frames per second; the renditions keep it. */
  fps: number;
}

/**
 * Bitrates for 30 fps by picture size, kbit/s: libwebrtc's simulcast table (media/engine/
 * simulcast.cc, kSimulcastFormats: the most Chromium spends on a layer of that size when it is the
 * top one), which is what a WebRTC viewer is used to getting at those sizes. Between two sizes the
 * bitrate follows the pixel count linearly; below the smallest and above the largest, in
 * proportion to the pixels.
 */
const BITRATES_30FPS: ReadonlyArray<readonly [pixels: number, kbps: number]> = [
  [320 * 180, 200],
  [480 * 270, 450],
  [640 * 360, 700],
  [960 * 540, 900],
  [1280 * 720, 2500],
  [1920 * 1080, 5000],
];

/**
 * Above 30 fps a picture needs more bits, though not in proportion (consecutive frames differ
 * less): YouTube's live encoder settings ask about 1.5× the 30 fps bitrate for 60 fps.
 */
const HIGH_FPS = 30;
const HIGH_FPS_FACTOR = 1.5;

/** kbit/s for a rendition of this size at this frame rate (BITRATES_30FPS, HIGH_FPS_FACTOR). */
export function renditionKbps(width: number, height: number, fps: number): number {
  const pixels = width * height;
  const table = BITRATES_30FPS;
  let kbps: number;
  const [firstPixels, firstKbps] = table[0]!;
  const [lastPixels, lastKbps] = table[table.length - 1]!;
  if (pixels <= firstPixels) kbps = (firstKbps * pixels) / firstPixels;
  else if (pixels >= lastPixels) kbps = (lastKbps * pixels) / lastPixels;
  else {
    const upper = table.findIndex(([p]) => p >= pixels);
    const [p0, k0] = table[upper - 1]!;
    const [p1, k1] = table[upper]!;
    kbps = k0 + ((k1 - k0) * (pixels - p0)) / (p1 - p0);
  }
  return Math.round(kbps * (fps > HIGH_FPS ? HIGH_FPS_FACTOR : 1));
}

const even = (n: number) => Math.max(2, 2 * Math.round(n / 2));

/**
 * The renditions of `heights` (highest first, core/rtmpLadder.ts) for this input, lowest first. Fewer
 * than two means no ladder for this publish: the bridge passes it on as one layer.
 */
export function planLadder(heights: number[], input: LadderInput): Rendition[] {
  const top = input.height - (input.height % 2);
  const kept: number[] = [];
  for (const h of [...heights].sort((a, b) => b - a)) {
    const height = Math.min(h, top);
    const above = kept[kept.length - 1];
    if (above === undefined || above >= height * LADDER_MIN_STEP) kept.push(height);
  }
  return kept.reverse().map((height) => {
    // The input's aspect ratio, even sizes (4:2:0 chroma is subsampled by two both ways).
    const width = height === top && input.width % 2 === 0 ? input.width : even((height * input.width) / input.height);
    return { width, height, kbps: renditionKbps(width, height, input.fps), rid: `${height}p` };
  });
}
