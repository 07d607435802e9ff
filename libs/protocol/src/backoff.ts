/** How a retry's delay grows; see `backoffDelay`. */
export interface BackoffPolicy {
  /** Upper bound of the random part at attempt 0, ms; it doubles with every attempt. */
  baseMs: number;
  /** No delay is longer than this, ms. */
  capMs: number;
  /**
   * Added to the random part, ms (default 0: pure full jitter). A floor keeps a crowd of retriers
   * from coming back at once right after a failure (centrifuge-js uses its base delay here).
   */
  minMs?: number;
}

/** Attempts past this no longer double the delay (2^31 ms is already far past any cap). */
const MAX_DOUBLINGS = 31;

/**
 * The delay before retry number `attempt` (0 for the first retry), ms: full jitter as in
 * centrifuge-js and the AWS architecture blog, `min(cap, min + random(0, min(cap, base * 2^attempt)))`.
 * The randomness spreads retriers that failed together (a NATS restart, an edge drain) over the
 * whole window instead of bunching them at its end; the doubling eases load on a server that
 * stays down. `random` returns a number in [0, 1) (Math.random unless a test fixes it).
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  // NaN or a negative attempt counts as the first.
  const doublings = attempt > 0 ? Math.min(MAX_DOUBLINGS, Math.floor(attempt)) : 0;
  const window = Math.min(policy.capMs, policy.baseMs * 2 ** doublings);
  return Math.min(policy.capMs, (policy.minMs ?? 0) + random() * window);
}
