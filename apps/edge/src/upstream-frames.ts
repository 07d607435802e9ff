import { TokenBucket } from '@push/apps';
import { PushError, ServerFrames, isPushError, type RpcFrame, type SendFrame, type UpFrame } from '@push/protocol';
import type { SessionHost } from './session-host.js';

/**
 * Most `rpc` frames of one connection awaiting their answer; past it `rate_limited`. Bounds what
 * one client can hold open at the business (and the edge's timers) whatever the app's rate.
 */
export const RPC_IN_FLIGHT_PER_CONNECTION = 16;

/**
 * The `rpc` frames of one connection awaiting their answer, every session of it together (at
 * most RPC_IN_FLIGHT_PER_CONNECTION), by deadline.
 */
export class RpcSlots {
  private readonly deadlines: number[] = [];

  /**
   * Takes a slot until `deadline` (epoch ms): 0 when taken; when none is free, the ms until the
   * oldest one's deadline, by when a slot is free at the latest (an answer frees one sooner).
   */
  take(deadline: number, now: number): number {
    if (this.deadlines.length < RPC_IN_FLIGHT_PER_CONNECTION) {
      this.deadlines.push(deadline);
      return 0;
    }
    return Math.max(1, Math.min(...this.deadlines) - now);
  }

  /** Gives back the slot taken until `deadline`. */
  release(deadline: number): void {
    const i = this.deadlines.indexOf(deadline);
    if (i >= 0) this.deadlines.splice(i, 1);
  }
}

/**
 * A session's upstream frames: `send` (client messaging into another user's inbox), `up`
 * (stored in the app's upstream stream) and `rpc` (a NATS request to the business), each with
 * its own per-connection rate limit, answered `sent`, `upsent`, `rpc` or an `error` with the
 * frame's id.
 */
export class UpstreamFrames {
  /** Rate limit of this connection's sends; made on its first send. */
  private sendBucket: TokenBucket | undefined;
  /** Rate limits of this connection's `up` and `rpc` frames; made on first use. */
  private upBucket: TokenBucket | undefined;
  private rpcBucket: TokenBucket | undefined;

  constructor(private readonly host: SessionHost) {}

  async handleSend(f: SendFrame): Promise<void> {
    const { host } = this;
    const { ctx } = host;
    try {
      const app = ctx.apps.get(host.app);
      if (app === undefined || app.disabled) throw new PushError('app_disabled');
      if (!app.settings.clientMessaging) throw new PushError('client_messaging_disabled');
      const bucket = (this.sendBucket ??= new TokenBucket(app.settings.sendRatePerConnection));
      const wait = ctx.sendLimits.admit(app.settings, host.app, host.user, bucket);
      if (wait > 0) return this.rateLimited(f.id, 'sends', wait);
      if (f.payload.bytes.length > app.settings.maxMessageBytes) {
        throw new PushError('payload_too_large', `the message is larger than ${app.settings.maxMessageBytes} bytes`);
      }
      const ttlSeconds = Math.min(f.ttl ?? app.settings.defaultTtlSeconds, app.settings.defaultTtlSeconds);
      const r = await ctx.store.publish(host.app, f.to, f.payload, {
        ttlMs: Math.round(ttlSeconds * 1000),
        msgId: ctx.subjects.clientMessageId(host.app, host.user, f.id),
        from: host.user,
        live: ctx.apps.holds(host.app),
      });
      if (!r.duplicate) ctx.metrics.messagesIn.inc();
      host.sendText(ServerFrames.sent(f.id, r.seq, r.duplicate));
    } catch (err) {
      host.sendError(err, { id: f.id });
    }
  }

  /**
   * Stores an `up` frame in the app's upstream stream and answers `upsent` once the store acked
   * (a retry with the same id answers `dup: true`), or `error` with the frame's id: the app takes
   * no upstream, the payload is over `maxUpBytes`, the connection is over `upRatePerConnection`,
   * or the store is unavailable.
   */
  async handleUp(f: UpFrame): Promise<void> {
    const { host } = this;
    const { ctx } = host;
    try {
      const app = ctx.apps.get(host.app);
      if (app === undefined || app.disabled) throw new PushError('app_disabled');
      const s = app.settings;
      if (!s.upstream) throw new PushError('upstream_disabled');
      if (f.payload.bytes.length > s.maxUpBytes) {
        throw new PushError('payload_too_large', `the up payload is larger than ${s.maxUpBytes} bytes`);
      }
      const wait = (this.upBucket ??= new TokenBucket(s.upRatePerConnection)).admitOne(s.upRatePerConnection);
      if (wait > 0) return this.rateLimited(f.id, 'up frames', wait);
      const r = await ctx.upstream.publish(
        {
          id: ctx.subjects.upstreamMessageId(host.app, host.user, f.id),
          app: host.app,
          user: host.user,
          device: host.device,
          conn: host.id,
          kind: f.kind,
          time: Date.now(),
        },
        f.payload,
      );
      if (!r.duplicate) ctx.metrics.upstreamStored.inc();
      host.sendText(ServerFrames.upsent(f.id, r.seq, r.duplicate));
    } catch (err) {
      host.sendError(err, { id: f.id });
    }
  }

  /**
   * Forwards an `rpc` frame as a NATS request on `push.rpc.<app>` and answers the client with the
   * reply (`rpc` frame) or an `error` with its id (`rpc_unavailable`, `rpc_timeout`,
   * `rpc_failed`, `rate_limited` past `rpcRatePerConnection` or RPC_IN_FLIGHT_PER_CONNECTION).
   */
  async handleRpc(f: RpcFrame): Promise<void> {
    const { host } = this;
    const { ctx } = host;
    let counted = false;
    try {
      const app = ctx.apps.get(host.app);
      if (app === undefined || app.disabled) throw new PushError('app_disabled');
      const s = app.settings;
      const now = Date.now();
      const deadline = now + s.rpcTimeoutMs;
      const slots = host.rpcSlots();
      const full = slots.take(deadline, now);
      if (full > 0) {
        ctx.metrics.rpc.inc({ outcome: 'rate_limited' });
        counted = true;
        return this.rateLimited(
          f.id,
          `rpc awaiting their answer on this connection (at most ${RPC_IN_FLIGHT_PER_CONNECTION})`,
          full,
        );
      }
      const wait = (this.rpcBucket ??= new TokenBucket(s.rpcRatePerConnection)).admitOne(s.rpcRatePerConnection);
      if (wait > 0) {
        slots.release(deadline);
        ctx.metrics.rpc.inc({ outcome: 'rate_limited' });
        counted = true;
        return this.rateLimited(f.id, 'rpc', wait);
      }
      let json: string;
      try {
        json = await ctx.rpc.call(
          {
            id: f.id,
            app: host.app,
            user: host.user,
            device: host.device,
            conn: host.id,
            method: f.method,
            data: f.data,
          },
          s.rpcTimeoutMs,
        );
      } finally {
        slots.release(deadline);
      }
      ctx.metrics.rpc.inc({ outcome: 'ok' });
      counted = true;
      host.sendText(ServerFrames.rpc(f.id, json));
    } catch (err) {
      if (!counted) ctx.metrics.rpc.inc({ outcome: isPushError(err) ? err.code : 'internal' });
      host.sendError(err, { id: f.id });
    }
  }

  /** Answers a frame refused by a per-connection (or per-user) rate with `rate_limited`, its id and the wait. */
  private rateLimited(id: string, what: string, waitMs: number): void {
    this.host.sendError(new PushError('rate_limited', `too many ${what}; retry in ${waitMs} ms`), {
      id,
      retryAfter: waitMs,
    });
  }
}
