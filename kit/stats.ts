/** Small statistics for test and benchmark figures (median, percentile, a line fit) and their formatting. */

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The p-th percentile (0..100), nearest rank. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export function min(xs: readonly number[]): number {
  return xs.length ? Math.min(...xs) : NaN;
}

export function max(xs: readonly number[]): number {
  return xs.length ? Math.max(...xs) : NaN;
}

/** Least-squares line y = intercept + slope·x. */
export function linearFit(points: ReadonlyArray<{ x: number; y: number }>): { slope: number; intercept: number } {
  const n = points.length;
  if (n === 0) return { slope: NaN, intercept: NaN };
  if (n === 1) return { slope: points[0]!.y / Math.max(points[0]!.x, 1), intercept: 0 };
  const mx = points.reduce((s, p) => s + p.x, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  const sxx = points.reduce((s, p) => s + (p.x - mx) ** 2, 0);
  const sxy = points.reduce((s, p) => s + (p.x - mx) * (p.y - my), 0);
  const slope = sxx > 0 ? sxy / sxx : NaN;
  return { slope, intercept: my - slope * mx };
}

/** "12.3 (10.1–14.0)": a median with the range of the runs. */
export function spread(xs: readonly number[], digits = 1): string {
  if (xs.length === 0) return 'n/a';
  const f = (x: number) => fmt(x, digits);
  return xs.length === 1 ? f(xs[0]!) : `${f(median(xs))} (${f(min(xs))}–${f(max(xs))})`;
}

export function fmt(x: number, digits = 1): string {
  if (!Number.isFinite(x)) return 'n/a';
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString('en');
  // A slope of -0.00001 is "0.000", not "-0.000".
  return x.toFixed(digits).replace(/^-(?=0(\.0*)?$)/, '');
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
