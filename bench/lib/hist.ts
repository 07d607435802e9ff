/**
 * A latency histogram with buckets 1% wide (from 10 us to about 1,000 s): cheap to record in a
 * load generator, mergeable across processes, and percentiles within 1% of the exact value.
 */
const MIN_MS = 0.01;
const GROWTH = Math.log(1.01);
const BUCKETS = 2048;

export class LatencyHistogram {
  readonly counts = new Float64Array(BUCKETS);
  count = 0;
  max = 0;

  record(ms: number): void {
    const v = ms < MIN_MS ? MIN_MS : ms;
    const i = Math.min(BUCKETS - 1, Math.floor(Math.log(v / MIN_MS) / GROWTH));
    this.counts[i] = (this.counts[i] ?? 0) + 1;
    this.count++;
    if (ms > this.max) this.max = ms;
  }

  /** Non-empty buckets as [index, count] pairs (for IPC). */
  toPairs(): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (let i = 0; i < BUCKETS; i++) if ((this.counts[i] ?? 0) > 0) out.push([i, this.counts[i] as number]);
    return out;
  }

  add(pairs: ReadonlyArray<readonly [number, number]>, max: number): void {
    for (const [i, c] of pairs) {
      this.counts[i] = (this.counts[i] ?? 0) + c;
      this.count += c;
    }
    if (max > this.max) this.max = max;
  }

  /** The upper bound of the bucket holding the nearest-rank percentile p (0..100); NaN when empty. */
  percentile(p: number): number {
    if (this.count === 0) return Number.NaN;
    const rank = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i] ?? 0;
      if (seen >= rank) return Math.min(this.max, MIN_MS * Math.exp((i + 1) * GROWTH));
    }
    return this.max;
  }

  reset(): void {
    this.counts.fill(0);
    this.count = 0;
    this.max = 0;
  }
}

/** Milliseconds on CLOCK_MONOTONIC: one clock shared by every process of the machine. */
export function monoMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
