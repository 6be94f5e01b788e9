/**
 * The RTMP ladder setting: the picture heights an origin's RTMP bridge makes from one publish, each
 * a simulcast layer of the stream (origin/ladder.ts plans them against the input). Set node-wide
 * (`--rtmp-ladder`, core/config.ts) and per stream (admin API); checked the same way in both.
 * Heights are kept highest first; an empty list means no ladder.
 */

/** The fewest and most rungs: one rung is no ladder; past three, the bridge's CPU is better spent on another stream. */
export const LADDER_MIN_RUNGS = 2;
export const LADDER_MAX_RUNGS = 3;

/** Picture heights a rung may have: 160x90 is the smallest picture worth a layer, 4K the largest input we expect. */
export const LADDER_MIN_HEIGHT = 90;
export const LADDER_MAX_HEIGHT = 2160;

/**
 * How much taller a rung must be than the next one down. A layer barely larger than the one below
 * costs a whole encode and gives a viewer nothing a switch would show; 1.25 lets every common
 * ladder step through (1080/720 is 1.5, 720/540 and 480/360 are 1.33).
 */
export const LADDER_MIN_STEP = 1.25;

export const LADDER_RULE =
  `"off", or ${LADDER_MIN_RUNGS} to ${LADDER_MAX_RUNGS} even picture heights from ${LADDER_MIN_HEIGHT} to ${LADDER_MAX_HEIGHT}, ` +
  `each at least ${LADDER_MIN_STEP}× the next, e.g. 720,360,180`;

/** What is wrong with a list of heights as a ladder, or undefined when it is one. */
export function ladderProblem(heights: number[]): string | undefined {
  if (heights.length < LADDER_MIN_RUNGS || heights.length > LADDER_MAX_RUNGS) return `${heights.length} heights given; expected ${LADDER_RULE}`;
  for (const h of heights) {
    if (!Number.isInteger(h) || h < LADDER_MIN_HEIGHT || h > LADDER_MAX_HEIGHT || h % 2 !== 0) return `${h} is not a height; expected ${LADDER_RULE}`;
  }
  const sorted = [...heights].sort((a, b) => b - a);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i - 1]! < sorted[i]! * LADDER_MIN_STEP) return `${sorted[i - 1]} and ${sorted[i]} are too close; expected ${LADDER_RULE}`;
  }
  return undefined;
}

/** `off` or comma-separated heights (`720,360,180`), highest first in the result ([] for off). Throws TypeError. */
export function parseLadder(text: string): number[] {
  const trimmed = text.trim();
  if (trimmed === 'off') return [];
  const heights = trimmed.split(',').map((part) => {
    const t = part.trim();
    return /^\d{1,5}$/.test(t) ? Number(t) : Number.NaN;
  });
  if (heights.some(Number.isNaN)) throw new TypeError(`"${text}" is not a ladder; expected ${LADDER_RULE}`);
  const problem = ladderProblem(heights);
  if (problem) throw new TypeError(problem);
  return heights.sort((a, b) => b - a);
}
