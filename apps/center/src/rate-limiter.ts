/**
 * Token buckets per app: `rate` messages per second, bursts up to one second's worth.
 * Per process: with N centers an app may push up to N x rate.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  /**
   * Takes `n` tokens from the app's bucket. Returns 0 when allowed, otherwise the seconds to
   * wait before `n` tokens are there. A rate of 0 means no limit.
   */
  take(app: string, rate: number, n: number, now = Date.now()): number {
    if (rate <= 0) return 0;
    let b = this.buckets.get(app);
    if (b === undefined) {
      b = { tokens: rate, at: now };
      this.buckets.set(app, b);
    }
    b.tokens = Math.min(rate, b.tokens + ((now - b.at) / 1000) * rate);
    b.at = now;
    if (n > rate) return Math.ceil(n / rate);
    if (b.tokens >= n) {
      b.tokens -= n;
      return 0;
    }
    return Math.max(1, Math.ceil((n - b.tokens) / rate));
  }
}
