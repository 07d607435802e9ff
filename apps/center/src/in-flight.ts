import { PushError } from '@push/protocol';
import type { HttpExchange } from '@push/http';
import { IdleWaiters } from '@push/nats';

/**
 * The API requests a center is answering (HTTP and NATS). On stop it is `stopping`: new requests
 * are answered `503 shutting_down` (and HTTP ones close their keep-alive connection, so the client
 * goes to another center), and `idle` lets those in flight finish before the store closes under
 * them.
 */
export class InFlight {
  stopping = false;
  private count = 0;
  /** When the last HTTP request came (ms). */
  private lastSeen = 0;
  private readonly waiters = new IdleWaiters();

  /**
   * Takes an HTTP request; when stopping, answers it `503 shutting_down` on a closing connection
   * (a keep-alive connection outlives the listen socket: its client goes elsewhere) and is false.
   */
  admit(ex: HttpExchange): boolean {
    this.lastSeen = Date.now();
    if (this.stopping) {
      ex.closeAfter = true;
      ex.error(new PushError('shutting_down'));
      return false;
    }
    this.begin();
    return true;
  }

  /** An admitted HTTP request is about to be answered (on a closing connection once stopping). */
  answered(ex: HttpExchange): void {
    this.end();
    ex.closeAfter = this.stopping;
  }

  begin(): void {
    this.count++;
  }

  end(): void {
    this.count--;
    if (this.count === 0) this.waiters.wake();
  }

  /**
   * Resolves once no HTTP request came for `quietMs`, or after `maxMs`: the clients holding
   * keep-alive connections have each been answered on a closing one (or had none to send), so
   * closing the rest cuts no request on its way.
   */
  async quiet(quietMs: number, maxMs: number): Promise<void> {
    const until = Date.now() + maxMs;
    for (;;) {
      const wait = this.lastSeen + quietMs - Date.now();
      if (wait <= 0 || Date.now() >= until) return;
      await new Promise((resolve) => setTimeout(resolve, Math.min(wait, until - Date.now())));
    }
  }

  /** Resolves true once no request is in flight, false when `timeoutMs` passes first. */
  idle(timeoutMs: number): Promise<boolean> {
    return this.count === 0 ? Promise.resolve(true) : this.waiters.wait(timeoutMs);
  }
}
