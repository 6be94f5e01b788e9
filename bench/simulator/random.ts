/** Seeded pseudo-random numbers for the simulator: the same --seed gives the same cluster and viewers. */

export type Rng = () => number;

/** mulberry32: a small, fast 32-bit generator; uniform in [0, 1). */
export function rng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seed for one purpose (`model`, `viewers`, a policy's coin…), derived from the run's seed. */
export function derive(seed: number, purpose: string): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (let i = 0; i < purpose.length; i++) h = Math.imul(h ^ purpose.charCodeAt(i), 0x01000193) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  return (h ^ (h >>> 13)) >>> 0;
}

/** Exponentially distributed, with the given mean. */
export function exponential(random: Rng, mean: number): number {
  return -Math.log(1 - random()) * mean;
}

/** A standard normal (Box–Muller). */
export function gaussian(random: Rng): number {
  return Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
}

/** Draws an index with probability proportional to its weight (cumulative table, binary search). */
export class WeightedPicker {
  readonly #cumulative: Float64Array;

  constructor(weights: ArrayLike<number>) {
    this.#cumulative = new Float64Array(weights.length);
    let sum = 0;
    for (let i = 0; i < weights.length; i++) this.#cumulative[i] = sum += weights[i]!;
  }

  pick(random: Rng): number {
    const c = this.#cumulative;
    const u = random() * c[c.length - 1]!;
    let lo = 0;
    let hi = c.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (c[mid]! > u) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}

/** Zipf weights: the k-th item (from 1) weighs 1 / k^s. */
export function zipfWeights(n: number, s: number): Float64Array {
  return Float64Array.from({ length: n }, (_, k) => 1 / (k + 1) ** s);
}
