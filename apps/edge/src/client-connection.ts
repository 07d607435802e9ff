import { TokenBucket, type AppDirectory } from '@push/apps';
import type { Config } from '@push/config';
import type { BacklogReader, EventPublisher, InboxMessage, InboxStore, RpcClient, UpstreamStore } from '@push/nats';
import {
  CLOSE,
  FrameError,
  PushError,
  ServerFrames,
  backoffDelay,
  isPushError,
  parseClientFrame,
  type BackoffPolicy,
  type EventInput,
  type EventType,
  type InboxKind,
  type RpcFrame,
  type SendFrame,
  type Subjects,
  type UpFrame,
} from '@push/protocol';
import type { Logger } from '@push/logger';
import type { AckBatcher } from './ack-batcher.js';
import type { EdgeMetrics } from './metrics.js';
import type { SendLimits } from './send-limits.js';
import type { LiveReceiver, UserChannels } from './user-channels.js';

/** Reading the backlog from the store; live messages are buffered meanwhile. */
const LOADING = 0;
/** Caught up: live messages go straight to the socket. */
const LIVE = 1;
/** Window full or socket slow: nothing is sent; the store keeps what arrives; resync later. */
const STALLED = 2;
const CLOSED = 3;
/**
 * Delay before a failed backlog read is retried: 1-2 s the first time (as before the shared
 * helper), the random window doubling while the store keeps failing, up to 5 s, so an overloaded
 * store is not read again by every connection at the same pace. A NATS reconnect, an ack or a
 * drain still retries sooner.
 */
const BACKLOG_RETRY: BackoffPolicy = { minMs: 1000, baseMs: 1000, capMs: 5000 };
/** Most bytes one backlog read asks for (the socket's free room below its high-water mark bounds it too). */
const BACKLOG_MAX_BYTES = 1024 * 1024;

/**
 * Most `rpc` frames of one connection awaiting their answer; past it `rate_limited`. Bounds what
 * one client can hold open at the business (and the edge's timers) whatever the app's rate.
 */
export const RPC_IN_FLIGHT_PER_CONNECTION = 16;

/** The subject kind a message is stored under: client messages carry their sender. */
function kindOf(m: InboxMessage): InboxKind {
  return m.from === undefined ? 'b' : 'c';
}

/**
 * What a connection uses of its edge's EdgeContext (which fits it as is). Narrow on purpose: unit
 * tests drive a connection with a fake store, channels, app directory and ack path, no NATS.
 */
export interface ConnectionContext {
  edgeId: string;
  config: Pick<Config['edge'], 'window'>;
  subjects: Pick<Subjects, 'clientMessageId' | 'upstreamMessageId'>;
  store: Pick<InboxStore, 'publish'>;
  /** Stores `up` frames in the app's upstream stream. */
  upstream: Pick<UpstreamStore, 'publish'>;
  /** Forwards `rpc` frames to the business over NATS. */
  rpc: Pick<RpcClient, 'call'>;
  /** Emits the connection's events (never blocks delivery). */
  events: Pick<EventPublisher, 'emit'>;
  /** Reads the backlog (per user, or in a shared pass when many wait): InboxStore.readBatch's contract. */
  backlog: Pick<BacklogReader, 'read'>;
  channels: Pick<UserChannels, 'join' | 'leave'>;
  apps: Pick<AppDirectory, 'get'>;
  metrics: EdgeMetrics;
  log: Pick<Logger, 'warn' | 'error'>;
  sendLimits: Pick<SendLimits, 'admit'>;
  acks: Pick<AckBatcher, 'ack'>;
  /** Send no more frames to a socket past this many buffered bytes; resume on drain. */
  highWaterBytes: number;
}

/**
 * What a connection uses of its uWS WebSocket (uWS's `WebSocket<SocketData>` fits), so unit tests
 * can pass a fake socket. `send` answers as uWS does: 1 sent, 0 buffered (backpressure), 2 dropped.
 */
export interface ClientSocket {
  send(message: string): number;
  cork(cb: () => void): unknown;
  getBufferedAmount(): number;
  end(code: number, reason: string): void;
}

/**
 * What uWS keeps per socket. uWS copies the own properties of the object given to `upgrade` into
 * its own user data (dropping the prototype), so the connection object is wrapped.
 */
export interface SocketData {
  conn: ClientConnection;
  /** Ping interval the client asked for at the upgrade (seconds, clamped), applied at open. */
  ping: number;
}

/**
 * One client WebSocket: delivery state and frame handling.
 *
 * Delivery follows DESIGN.md: subscribe to the user's live subject first, then read the backlog
 * (batched Direct Get from `cursor + 1`, a free window at a time), then flush live messages
 * buffered meanwhile, skipping any at or below the cursor: no gap, no duplicate. Acks go to the
 * edge's AckBatcher with the connection's ack floor. At most `window` messages are in flight (delivered,
 * not acked) and a socket buffering past `highWaterBytes` gets nothing more; in both cases the
 * connection stalls, leaving messages in the store, and resyncs from the store when acks or
 * drain make room. Memory per connection never grows with a slow or silent client.
 *
 * Kept small on purpose (one per connection): sets and buffers are created only when needed.
 */
export class ClientConnection implements LiveReceiver {
  ws: ClientSocket | undefined;
  /** Highest sequence delivered or skipped: the backlog is read after it. */
  private cursor = 0;
  /** Delivered, not acked: sequence -> kind, in delivery (= sequence) order. */
  private inflight: Map<number, InboxKind> | undefined;
  private mode = LOADING;
  private loading = false;
  private again = false;
  private overflow = false;
  private buffered: InboxMessage[] | undefined;
  /** Backlog reads failed in a row (the backoff attempt); 0 after one that succeeds. */
  private readFailures = 0;
  /** Rate limit of this connection's sends; made on its first send. */
  private sendBucket: TokenBucket | undefined;
  /** Rate limits of this connection's `up` and `rpc` frames; made on first use. */
  private upBucket: TokenBucket | undefined;
  private rpcBucket: TokenBucket | undefined;
  /** `rpc` frames awaiting their answer. */
  private rpcInFlight = 0;
  /** Why the edge closed the socket (`kicked`, `token_expired`...), for the `conn_close` event; undefined when the client did. */
  closeReason: string | undefined;

  constructor(
    private readonly ctx: ConnectionContext,
    readonly n: number,
    readonly app: string,
    readonly user: string,
    readonly device: string,
    /** Token expiry, epoch seconds. */
    readonly exp: number,
  ) {}

  /** Connection id, unique across edges (edge id + counter). */
  get id(): string {
    return `${this.ctx.edgeId}-${this.n}`;
  }

  get isClosed(): boolean {
    return this.mode === CLOSED;
  }

  /** Called on WebSocket open: greet, subscribe, then read the backlog. */
  open(ws: ClientSocket, pingSeconds: number, maxMessageBytes: number): void {
    if (this.mode === CLOSED) return; // closed before it was greeted
    this.ws = ws;
    const { ctx } = this;
    const subscribed = ctx.channels.join(this.app, this.user, this);
    this.sendText(
      ServerFrames.hello({
        conn: this.id,
        app: this.app,
        user: this.user,
        device: this.device,
        ping: pingSeconds,
        window: ctx.config.window,
        maxMessageBytes,
      }),
    );
    // Read the backlog once the live subscription is active: no gap between the two.
    void subscribed.then(() => this.resync());
  }

  /** Called on WebSocket close (any reason). Undelivered and unacked messages stay stored. */
  closed(): void {
    if (this.mode === CLOSED) return;
    this.mode = CLOSED;
    this.ctx.channels.leave(this.app, this.user, this);
    this.ws = undefined;
    this.inflight = undefined;
    this.buffered = undefined;
  }

  /**
   * Reads the store from `cursor + 1` until caught up or blocked, then goes live. Safe to call
   * any time (after a NATS reconnect, an ack, a drain): one read loop runs at a time.
   */
  resync(): void {
    if (this.mode === CLOSED) return;
    if (this.loading) {
      this.again = true;
      return;
    }
    this.mode = LOADING;
    this.loading = true;
    this.loadBacklog()
      .then(() => {
        this.readFailures = 0;
      })
      .catch((err: unknown) => {
        // The store did not answer: stall, and retry after a jittered delay (a NATS reconnect,
        // an ack or a drain may retry sooner). Without the timer a connection with nothing in
        // flight would get no further trigger and its messages would sit in the store.
        this.ctx.metrics.errors.inc({ code: isPushError(err) ? err.code : 'internal' });
        this.ctx.log.warn({ err, conn: this.id }, 'backlog read failed');
        if (this.mode === CLOSED) return;
        this.stall();
        setTimeout(
          () => {
            if (this.mode === STALLED) this.resync();
          },
          backoffDelay(this.readFailures++, BACKLOG_RETRY),
        ).unref();
      })
      .finally(() => {
        this.loading = false;
        // A resync asked for while this read was failing (typically the NATS reconnect that
        // ends the outage which failed it) runs now.
        if (this.again && this.mode === STALLED) this.resync();
      });
  }

  private async loadBacklog(): Promise<void> {
    const { ctx } = this;
    ctx.metrics.backlogLoads.inc();
    for (;;) {
      this.again = false;
      this.overflow = false;
      for (;;) {
        if (this.mode === CLOSED) return;
        if (!this.canSend()) {
          this.stall();
          return;
        }
        // One batched read per free window, bounded by the bytes the socket may still take.
        const ws = this.ws as ClientSocket;
        ctx.metrics.backlogRequests.inc();
        const { messages, more } = await ctx.backlog.read(
          this.app,
          this.user,
          this.cursor + 1,
          {
            max: ctx.config.window - (this.inflight?.size ?? 0),
            maxBytes: Math.min(BACKLOG_MAX_BYTES, ctx.highWaterBytes - ws.getBufferedAmount()),
          },
          this,
        );
        if (this.mode === CLOSED) return;
        ctx.metrics.backlogReads.inc(messages.length);
        for (const m of messages) {
          if (m.seq <= this.cursor) continue;
          // The rest of the batch stays stored and is read again from the cursor.
          if (!this.canSend()) {
            this.stall();
            return;
          }
          this.deliver(m);
          if (this.mode === STALLED) return; // dropped by uWS: read again after drain
        }
        if (!more) break;
      }
      // Live messages were dropped while reading (buffer full), or a resync was asked for:
      // read again; whatever was dropped is in the store.
      if (this.overflow || this.again) continue;
      const buffered = this.buffered;
      this.buffered = undefined;
      this.mode = LIVE;
      if (buffered !== undefined) for (const m of buffered) this.onLive(m);
      return;
    }
  }

  /** A live (republished) message of this user. */
  onLive(m: InboxMessage): void {
    switch (this.mode) {
      case LIVE:
        if (m.seq <= this.cursor) return;
        if (!this.canSend()) {
          this.stall();
          return;
        }
        this.deliver(m);
        return;
      case LOADING:
        if (this.buffered === undefined) this.buffered = [];
        if (this.buffered.length < this.ctx.config.window) this.buffered.push(m);
        else this.overflow = true;
        return;
      default:
        return; // stalled or closed: the store has it
    }
  }

  private canSend(): boolean {
    const ws = this.ws;
    if (ws === undefined) return false;
    return (this.inflight?.size ?? 0) < this.ctx.config.window && ws.getBufferedAmount() < this.ctx.highWaterBytes;
  }

  private stall(): void {
    if (this.mode === STALLED) return;
    this.mode = STALLED;
    this.buffered = undefined;
    this.ctx.metrics.stalls.inc();
  }

  private deliver(m: InboxMessage): void {
    const { ctx } = this;
    const previous = this.cursor;
    this.cursor = m.seq;
    if (m.expires <= Date.now()) {
      // Second guard: the server's per-message TTL removes it within about a second.
      ctx.metrics.expired.inc();
      ctx.acks.ack(this.app, this.user, m.seq, this.ackFloor(), kindOf(m));
      ctx.events.emit('expired', { app: this.app, user: this.user, seq: m.seq });
      return;
    }
    const frame = ServerFrames.message(m.seq, m.ts, m.bytes, m.binary, m.from);
    const ws = this.ws as ClientSocket;
    let status = 1;
    ws.cork(() => {
      status = ws.send(frame);
    });
    if (status === 2) {
      // Dropped by uWS (backpressure limit): not sent; read it again after drain.
      this.cursor = previous;
      this.stall();
      return;
    }
    (this.inflight ??= new Map()).set(m.seq, kindOf(m));
    ctx.metrics.messagesOut.inc();
    if (ctx.apps.get(this.app)?.settings.deliveryEvents === true) this.emit('delivered', { seq: m.seq });
  }

  /** Emits an event about this connection (app, user, device, conn and edge filled in). */
  emit<T extends EventType>(type: T, fields: Omit<EventInput<T>, 'app' | 'user' | 'device' | 'conn' | 'edge'>): void {
    const about = { app: this.app, user: this.user, device: this.device, conn: this.id, edge: this.ctx.edgeId };
    // TypeScript cannot see that the spread of `about` restores what Omit removed from a generic T.
    this.ctx.events.emit(type, { ...about, ...fields } as unknown as EventInput<T>);
  }

  /** The socket drained: resume if stalled. */
  drained(): void {
    if (this.mode === STALLED && this.canSend()) this.resync();
  }

  /** Handles one text frame from the client. Bad frames get an error frame; the socket stays. */
  onFrame(text: string): void {
    let frame;
    try {
      frame = parseClientFrame(text);
    } catch (err) {
      // A refused `send` is answered with its id, so the client knows which send failed.
      this.sendError(err, err instanceof FrameError && err.id !== undefined ? { id: err.id } : undefined);
      return;
    }
    switch (frame.t) {
      case 'ack':
        this.ack(frame.seqs);
        return;
      case 'ping':
        this.sendText(ServerFrames.pong());
        return;
      case 'send':
        void this.handleSend(frame);
        return;
      case 'up':
        void this.handleUp(frame);
        return;
      case 'rpc':
        void this.handleRpc(frame);
        return;
    }
  }

  /** Answers a frame the edge will not read with an error; the socket stays open. */
  rejectFrame(err: PushError): void {
    this.sendError(err);
  }

  private ack(seqs: number[]): void {
    const { ctx } = this;
    let unknown: number[] | undefined;
    const events = ctx.apps.get(this.app)?.settings.deliveryEvents === true;
    for (const seq of seqs) {
      const kind = this.inflight?.get(seq);
      if (kind !== undefined) {
        this.inflight?.delete(seq);
        ctx.metrics.acks.inc();
        ctx.acks.ack(this.app, this.user, seq, this.ackFloor(), kind);
        if (events) this.emit('acked', { seq });
      } else {
        (unknown ??= []).push(seq);
      }
    }
    if (unknown !== undefined) this.sendError(new PushError('ack_unknown'), { seqs: unknown });
    if (this.mode === STALLED && this.canSend()) this.resync();
  }

  /**
   * The highest sequence at or below which every stored message of the user was delivered here
   * and acked (or skipped as expired): the backlog is read from the start in sequence order, and
   * deliveries enter `inflight` in that order, so it is the sequence before the oldest unacked
   * delivery, or the cursor when none is unacked.
   */
  private ackFloor(): number {
    const oldest = this.inflight?.keys().next().value;
    return oldest === undefined ? this.cursor : oldest - 1;
  }

  private async handleSend(f: SendFrame): Promise<void> {
    const { ctx } = this;
    try {
      const app = ctx.apps.get(this.app);
      if (app === undefined || app.disabled) throw new PushError('app_disabled');
      if (!app.settings.clientMessaging) throw new PushError('client_messaging_disabled');
      const bucket = (this.sendBucket ??= new TokenBucket(app.settings.sendRatePerConnection));
      const wait = ctx.sendLimits.admit(app.settings, this.app, this.user, bucket);
      if (wait > 0) {
        this.sendError(new PushError('rate_limited', `too many sends; retry in ${wait} ms`), {
          id: f.id,
          retryAfter: wait,
        });
        return;
      }
      if (f.payload.bytes.length > app.settings.maxMessageBytes) {
        throw new PushError('payload_too_large', `the message is larger than ${app.settings.maxMessageBytes} bytes`);
      }
      const ttlSeconds = Math.min(f.ttl ?? app.settings.defaultTtlSeconds, app.settings.defaultTtlSeconds);
      const r = await ctx.store.publish(this.app, f.to, f.payload, {
        ttlMs: Math.round(ttlSeconds * 1000),
        msgId: ctx.subjects.clientMessageId(this.app, this.user, f.id),
        from: this.user,
      });
      if (!r.duplicate) ctx.metrics.messagesIn.inc();
      this.sendText(ServerFrames.sent(f.id, r.seq, r.duplicate));
    } catch (err) {
      this.sendError(err, { id: f.id });
    }
  }

  /**
   * Stores an `up` frame in the app's upstream stream and answers `upsent` once the store acked
   * (a retry with the same id answers `dup: true`), or `error` with the frame's id: the app takes
   * no upstream, the payload is over `maxUpBytes`, the connection is over `upRatePerConnection`,
   * or the store is unavailable.
   */
  private async handleUp(f: UpFrame): Promise<void> {
    const { ctx } = this;
    try {
      const app = ctx.apps.get(this.app);
      if (app === undefined || app.disabled) throw new PushError('app_disabled');
      const s = app.settings;
      if (!s.upstream) throw new PushError('upstream_disabled');
      if (f.payload.bytes.length > s.maxUpBytes) {
        throw new PushError('payload_too_large', `the up payload is larger than ${s.maxUpBytes} bytes`);
      }
      const bucket = (this.upBucket ??= new TokenBucket(s.upRatePerConnection));
      const wait = bucket.waitMs(s.upRatePerConnection, 1);
      if (wait > 0) {
        this.sendError(new PushError('rate_limited', `too many up frames; retry in ${wait} ms`), {
          id: f.id,
          retryAfter: wait,
        });
        return;
      }
      bucket.take(1);
      const r = await ctx.upstream.publish(
        {
          id: ctx.subjects.upstreamMessageId(this.app, this.user, f.id),
          app: this.app,
          user: this.user,
          device: this.device,
          conn: this.id,
          kind: f.kind,
          time: Date.now(),
        },
        f.payload,
      );
      if (!r.duplicate) ctx.metrics.upstreamStored.inc();
      this.sendText(ServerFrames.upsent(f.id, r.seq, r.duplicate));
    } catch (err) {
      this.sendError(err, { id: f.id });
    }
  }

  /**
   * Forwards an `rpc` frame as a NATS request on `push.rpc.<app>` and answers the client with the
   * reply (`rpc` frame) or an `error` with its id (`rpc_unavailable`, `rpc_timeout`,
   * `rpc_failed`, `rate_limited` past `rpcRatePerConnection` or RPC_IN_FLIGHT_PER_CONNECTION).
   */
  private async handleRpc(f: RpcFrame): Promise<void> {
    const { ctx } = this;
    let counted = false;
    try {
      const app = ctx.apps.get(this.app);
      if (app === undefined || app.disabled) throw new PushError('app_disabled');
      const s = app.settings;
      if (this.rpcInFlight >= RPC_IN_FLIGHT_PER_CONNECTION) {
        throw new PushError(
          'rate_limited',
          `at most ${RPC_IN_FLIGHT_PER_CONNECTION} rpc may await their answer on one connection`,
        );
      }
      const bucket = (this.rpcBucket ??= new TokenBucket(s.rpcRatePerConnection));
      const wait = bucket.waitMs(s.rpcRatePerConnection, 1);
      if (wait > 0) {
        ctx.metrics.rpc.inc({ outcome: 'rate_limited' });
        counted = true;
        this.sendError(new PushError('rate_limited', `too many rpc; retry in ${wait} ms`), {
          id: f.id,
          retryAfter: wait,
        });
        return;
      }
      bucket.take(1);
      this.rpcInFlight++;
      let json: string;
      try {
        json = await ctx.rpc.call(
          {
            id: f.id,
            app: this.app,
            user: this.user,
            device: this.device,
            conn: this.id,
            method: f.method,
            data: f.data,
          },
          s.rpcTimeoutMs,
        );
      } finally {
        this.rpcInFlight--;
      }
      ctx.metrics.rpc.inc({ outcome: 'ok' });
      counted = true;
      this.sendText(ServerFrames.rpc(f.id, json));
    } catch (err) {
      if (!counted) ctx.metrics.rpc.inc({ outcome: isPushError(err) ? err.code : 'internal' });
      this.sendError(err, { id: f.id });
    }
  }

  private sendError(err: unknown, extra?: { id?: string; seqs?: number[]; retryAfter?: number }): void {
    const e = isPushError(err) ? err : new PushError('internal', undefined, { cause: err });
    if (e.code === 'internal') this.ctx.log.error({ err, conn: this.id }, 'frame handling failed');
    this.ctx.metrics.errors.inc({ code: e.code });
    this.sendText(ServerFrames.error(e.code, e.message, extra));
  }

  private sendText(text: string): void {
    const ws = this.ws;
    if (ws === undefined || this.mode === CLOSED) return;
    ws.cork(() => {
      ws.send(text);
    });
  }

  /** Closes the connection for a kick (close code 4004): the client must not come back with this token. */
  kick(reason: string): void {
    if (this.ws === undefined || this.mode === CLOSED) return;
    this.ctx.metrics.kicked.inc();
    this.emit('kicked', { reason });
    this.end(CLOSE.KICKED, reason, 'kicked');
  }

  /**
   * Closes the socket with a code and reason. `why` names the cause in the `conn_close` event
   * (`kicked`, `shutdown`, `token_expired`, `app_gone`...).
   */
  end(code: number, reason: string, why?: string): void {
    const ws = this.ws;
    if (ws === undefined || this.mode === CLOSED) return;
    this.closeReason ??= why;
    ws.end(code, reason);
  }
}
