/**
 * The capture time a publisher writes into each video frame's pixels and a viewer reads back from
 * the decoded picture (the benchmark's latency measurement), against one clock for every process
 * on the machine.
 */

/**
 * Wall-clock time in ms with sub-ms resolution, the same in every process on the machine: the
 * monotonic clock, offset to the wall clock at the instants Date.now() ticks over to a new
 * millisecond. Any delay in noticing a tick (the process descheduled on a busy machine) makes
 * that reading's offset too small, so the largest of 60 readings is taken. (performance.timeOrigin
 * alone is a few ms off, differently in each process.)
 */
const wallOffset = (() => {
  let best = -Infinity;
  for (let i = 0; i < 60; i++) {
    const first = Date.now();
    let now = first;
    while (now === first) now = Date.now();
    best = Math.max(best, now - performance.now());
  }
  return best;
})();
export const wallMs = (): number => performance.now() + wallOffset;

// 40 bits in two rows of 20 square blocks across the top of the picture, black or white: the
// capture time in units of 0.1 ms modulo 2^32, then a check byte. Blocks of 16 px (at 320 wide)
// are VP8 macroblocks: they survive the encoder even when it is short of bits.

const STAMP_COLUMNS = 20;
const STAMP_BITS = 40;
const UNITS_PER_MS = 10;

/** Delays outside this are misread stamps that passed the check byte (1 in 256 of misreads). */
export const PLAUSIBLE_DELAY_MS = 10_000;

function checkByte(value: number): number {
  return ((value & 0xff) ^ ((value >>> 8) & 0xff) ^ ((value >>> 16) & 0xff) ^ ((value >>> 24) & 0xff) ^ 0x5a) & 0xff;
}

/** Writes the capture time `atMs` into the luma plane `y` of an I420 frame `width` wide. */
export function stamp(y: Uint8ClampedArray, width: number, atMs: number): void {
  const value = Math.floor(atMs * UNITS_PER_MS) >>> 0;
  const block = Math.floor(width / STAMP_COLUMNS);
  const check = checkByte(value);
  for (let bit = 0; bit < STAMP_BITS; bit++) {
    const on = bit < 32 ? (value >>> (31 - bit)) & 1 : (check >>> (39 - bit)) & 1;
    const bx = (bit % STAMP_COLUMNS) * block;
    const by = Math.floor(bit / STAMP_COLUMNS) * block;
    for (let row = by; row < by + block; row++) y.fill(on ? 235 : 16, row * width + bx, row * width + bx + block);
  }
}

/** The capture time (ms, modulo 2^32 units) a decoded I420 frame carries, or undefined if unreadable. */
export function readStamp(data: Uint8Array, width: number): number | undefined {
  const block = width / STAMP_COLUMNS;
  let value = 0;
  let check = 0;
  for (let bit = 0; bit < STAMP_BITS; bit++) {
    const cx = Math.floor((bit % STAMP_COLUMNS) * block + block / 2);
    const cy = Math.floor(Math.floor(bit / STAMP_COLUMNS) * block + block / 2);
    let sum = 0;
    for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) sum += data[(cy + dy) * width + cx + dx]!;
    const on = sum / 9 > 128 ? 1 : 0;
    if (bit < 32) value = ((value << 1) | on) >>> 0;
    else check = (check << 1) | on;
  }
  return checkByte(value) === check ? value : undefined;
}

/** Delay in ms from a stamp to now, with the modulo-2^32 wrap undone (negative if the stamp is ahead). */
export function delaySince(stampValue: number, nowMs: number): number {
  const now = Math.floor(nowMs * UNITS_PER_MS) >>> 0;
  return ((now - stampValue) | 0) / UNITS_PER_MS;
}
