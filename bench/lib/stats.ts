/** Small statistics for benchmark figures. */

/** Median of the values (mean of the two middle ones for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Nearest-rank percentile `p` (0..100) of values already sorted ascending; NaN when empty. */
export function percentileSorted(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

/** Latency summary, in the unit of the input. */
export interface LatencySummary {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

export function summarizeLatencies(values: Float64Array): LatencySummary {
  const s = Float64Array.from(values).sort();
  let sum = 0;
  for (const v of s) sum += v;
  return {
    count: s.length,
    p50: percentileSorted(s, 50),
    p95: percentileSorted(s, 95),
    p99: percentileSorted(s, 99),
    max: s.length > 0 ? (s[s.length - 1] as number) : Number.NaN,
    mean: s.length > 0 ? sum / s.length : Number.NaN,
  };
}

/**
 * `part[i] / whole[i]` in percent for every round i measured on both (a target left out of the
 * run, or a round it did not finish, gives no share rather than NaN).
 */
export function sameRoundPercent(part: readonly number[], whole: readonly number[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < Math.min(part.length, whole.length); i++) {
    const p = part[i] as number;
    const w = whole[i] as number;
    if (Number.isFinite(p) && Number.isFinite(w) && w > 0) out.push((p / w) * 100);
  }
  return out;
}

/** Rounds for display and JSON (keeps figures readable). */
export function round(n: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}
