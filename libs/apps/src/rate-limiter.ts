/**
 * One token bucket: `rate` tokens per second, holding at most one second's worth (the burst).
 * Small on purpose: the edge keeps one per connection that sends, created on its first send.
 */
export class TokenBucket {
  private tokens: number;
  private at: number;

  constructor(rate: number, now = Date.now()) {
    this.tokens = rate;
    this.at = now;
  }

  /**
   * Milliseconds until `n` tokens can be taken (0: now), after refilling to `now`; takes
   * nothing. A rate of 0 means no limit.
   *
   * The bucket never holds more than `rate` tokens, so a request for more would never get in
   * (and a client obeying the returned wait would retry forever). Such a request is admitted
   * once the bucket is full and leaves it in debt, which holds back what follows: the average
   * stays at `rate`.
   */
  waitMs(rate: number, n: number, now = Date.now()): number {
    if (rate <= 0) return 0;
    this.tokens = Math.min(rate, this.tokens + ((now - this.at) / 1000) * rate);
    this.at = now;
    const needed = Math.min(n, rate);
    if (this.tokens >= needed) return 0;
    return Math.max(1, Math.ceil(((needed - this.tokens) / rate) * 1000));
  }

  /** Takes one token when there is one and answers 0; else answers the ms to wait (nothing taken). */
  admitOne(rate: number, now = Date.now()): number {
    const wait = this.waitMs(rate, 1, now);
    if (wait === 0) this.take(1);
    return wait;
  }

  /** Takes `n` tokens (after `waitMs` answered 0); the bucket may go into debt. */
  take(n: number): void {
    this.tokens -= n;
  }

  /**
   * Whether the bucket is surely full again at `now`: not in debt and unused for a second (it
   * refills its whole burst in one second), so forgetting it changes nothing.
   */
  isFull(now = Date.now()): boolean {
    return this.tokens >= 0 && now - this.at >= 1000;
  }
}

/**
 * Token buckets by key (an app, a user): `rate` messages per second, bursts up to one second's
 * worth. Per process: with N processes a key may get up to N x rate. Used by the center (pushes
 * per app) and the edge (client sends per user).
 */
export class RateLimiter {
  private readonly buckets = new Map<string, TokenBucket>();

  /** Buckets held now. */
  get size(): number {
    return this.buckets.size;
  }

  /**
   * Milliseconds until `n` tokens of `key`'s bucket can be taken; 0 when they can now. Takes
   * nothing (see `take`). A rate of 0 means no limit.
   */
  waitMs(key: string, rate: number, n: number, now = Date.now()): number {
    if (rate <= 0) return 0;
    let b = this.buckets.get(key);
    if (b === undefined) {
      b = new TokenBucket(rate, now);
      this.buckets.set(key, b);
    }
    return b.waitMs(rate, n, now);
  }

  /**
   * Takes `n` tokens from the key's bucket. Returns 0 when allowed, otherwise the whole seconds
   * to wait (at least 1) before the same request is allowed; a refused request takes nothing.
   * A rate of 0 means no limit.
   */
  take(key: string, rate: number, n: number, now = Date.now()): number {
    const ms = this.waitMs(key, rate, n, now);
    if (ms > 0) return Math.ceil(ms / 1000);
    this.buckets.get(key)?.take(n);
    return 0;
  }

  /** Takes `n` tokens after `waitMs` answered 0. */
  takeNow(key: string, n: number): void {
    this.buckets.get(key)?.take(n);
  }

  /** Forgets buckets that are full again at `now`, so the map does not grow with every key ever seen. */
  prune(now = Date.now()): void {
    for (const [key, b] of this.buckets) if (b.isFull(now)) this.buckets.delete(key);
  }
}
