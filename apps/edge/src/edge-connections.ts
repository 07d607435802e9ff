import { CLOSE, backoffDelay } from '@push/protocol';
import type { ClientConnection } from './client-connection.js';
import type { ClientSession } from './client-session.js';

/** How often connections whose token expired are closed, ms. */
const TOKEN_SWEEP_MS = 5_000;

/**
 * The open client connections of one edge process, and what is done to all of them at once:
 * resync after a NATS reconnect, close those of a disabled app, close those whose token
 * expired (a sweep every few seconds rather than a timer per connection).
 */
export class EdgeConnections {
  private readonly open = new Set<ClientConnection>();
  private sweeper: NodeJS.Timeout | undefined;
  /** Callers of `whenEmpty()` waiting for the last connection to close. */
  private emptyWaiters: Array<() => void> = [];

  /** Open connections now. */
  get size(): number {
    return this.open.size;
  }

  add(conn: ClientConnection): void {
    this.open.add(conn);
  }

  delete(conn: ClientConnection): void {
    this.open.delete(conn);
    if (this.open.size > 0 || this.emptyWaiters.length === 0) return;
    for (const w of this.emptyWaiters.splice(0)) w();
  }

  /**
   * Resolves true once no connection is open (at once when none is), or false when `timeoutMs`
   * passes first (a client that never completes the close handshake must not hold a shutdown).
   */
  whenEmpty(timeoutMs: number): Promise<boolean> {
    if (this.open.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.emptyWaiters = this.emptyWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      this.emptyWaiters.push(done);
    });
  }

  /**
   * Closes every connection for a shutdown, each told to reconnect after its own random delay in
   * [0, drainMs) (close code 4000, reason `reconnect:<ms>`), so a restart does not bring every
   * client back in the same instant.
   */
  endAll(drainMs: number): void {
    for (const c of this.open) {
      const delay = Math.floor(backoffDelay(0, { baseMs: drainMs, capMs: drainMs }));
      c.end(CLOSE.SHUTDOWN, `reconnect:${delay}`, 'shutdown');
    }
  }

  [Symbol.iterator](): IterableIterator<ClientConnection> {
    return this.open.values();
  }

  /** Every open session of every connection (a connection's first app's, and those it attached). */
  *sessions(): IterableIterator<ClientSession> {
    for (const c of this.open) yield* c.sessions();
  }

  /** Core NATS may have dropped live messages: every connection rereads the store from its cursor. */
  resyncAll(): void {
    for (const c of this.open) c.resyncSessions();
  }

  /**
   * Ends every session of one app (disabled or deleted): a connection whose only session it is
   * closes; one holding other apps' sessions stays, and the client gets `detached`.
   */
  endApp(app: string): void {
    for (const c of this.open) {
      for (const s of [...c.sessions()]) {
        if (s.app === app) c.endSession(s, 'app_disabled', CLOSE.APP_GONE, 'app disabled', 'app_gone');
      }
    }
  }

  /** Ends the sessions whose token has expired (`now` in epoch ms), as `endApp` does. */
  sweepTokens(now = Date.now()): void {
    const seconds = now / 1000;
    for (const c of this.open) {
      for (const s of [...c.sessions()]) {
        if (s.exp <= seconds) c.endSession(s, 'token_expired', CLOSE.TOKEN_EXPIRED, 'token expired', 'token_expired');
      }
    }
  }

  /** Starts the periodic token sweep (does not keep the process alive). */
  startTokenSweep(): void {
    if (this.sweeper !== undefined) return;
    this.sweeper = setInterval(() => this.sweepTokens(), TOKEN_SWEEP_MS);
    this.sweeper.unref();
  }

  /** Stops the token sweep. Idempotent. */
  stopTokenSweep(): void {
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    this.sweeper = undefined;
  }
}
