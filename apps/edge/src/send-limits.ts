import { RateLimiter, type TokenBucket } from '@push/apps';
import type { AppSettings } from '@push/protocol';

/** Idle per-user buckets are forgotten at most this often (a pass over the map). */
const PRUNE_MS = 10_000;

/**
 * Rate limits of client `send`s on one edge: per connection (the caller's bucket) and per user
 * across that user's connections here (issue 7: one client stored 1,000 sends in 100 ms). A
 * refused send takes nothing from either bucket.
 */
export class SendLimits {
  private readonly perUser = new RateLimiter();
  private prunedAt = Date.now();

  /** Per-user buckets held now. */
  get size(): number {
    return this.perUser.size;
  }

  /**
   * Admits one send: 0 when admitted (a token taken from both buckets), otherwise the
   * milliseconds to wait before it would be.
   */
  admit(settings: AppSettings, app: string, user: string, conn: TokenBucket, now = Date.now()): number {
    if (now - this.prunedAt >= PRUNE_MS) {
      this.prunedAt = now;
      this.perUser.prune(now);
    }
    // Ids hold no control characters, so the newline keeps app and user apart.
    const key = `${app}\n${user}`;
    const wait = Math.max(
      conn.waitMs(settings.sendRatePerConnection, 1, now),
      this.perUser.waitMs(key, settings.sendRatePerUser, 1, now),
    );
    if (wait > 0) return wait;
    conn.take(1);
    this.perUser.takeNow(key, 1);
    return 0;
  }
}
