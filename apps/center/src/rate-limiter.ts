/**
 * Token buckets per app: `rate` messages per second, bursts up to one second's worth.
 * Per process: with N centers an app may push up to N x rate.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  /**
   * Takes `n` tokens from the app's bucket. Returns 0 when allowed, otherwise the whole seconds
   * to wait before the same request is allowed. A rate of 0 means no limit.
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
    // The bucket never holds more than `rate` tokens, so a request for more would never get in
    // (and a client obeying the returned wait would retry forever). Such a request is admitted
    // once the bucket is full and leaves it in debt, which holds back what follows: the average
    // stays at `rate`.
    const needed = Math.min(n, rate);
    if (b.tokens >= needed) {
      b.tokens -= n;
      return 0;
    }
    return Math.max(1, Math.ceil((needed - b.tokens) / rate));
  }
}
