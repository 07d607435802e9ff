import type { InboxMessage } from '@push/nats';
import { ServerFrames, PushError, backoffDelay, isPushError, type BackoffPolicy } from '@push/protocol';
import type { ClientSocket } from './client-connection.js';
import type { SessionHost } from './session-host.js';
import { sendTransient } from './transient-delivery.js';

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
export const BACKLOG_MAX_BYTES = 1024 * 1024;

/**
 * A session's inbox delivery and acks.
 *
 * Delivery follows DESIGN.md: subscribe to the user's live subject first, then read the backlog
 * (batched Direct Get from `cursor + 1`, a free window at a time), then flush live messages
 * buffered meanwhile, skipping any at or below the cursor: no gap, no duplicate. Acks go to the
 * edge's AckBatcher (one delete each). At most `window` messages are in flight (delivered,
 * not acked) and a socket buffering past `highWaterBytes` gets nothing more; in both cases the
 * connection stalls, leaving messages in the store, and resyncs from the store when acks or
 * drain make room. Memory per connection never grows with a slow or silent client.
 *
 * Kept small on purpose (one per connection): sets and buffers are created only when needed.
 */
export class InboxDelivery {
  /** Highest sequence delivered or skipped: the backlog is read after it. */
  private cursor = 0;
  /**
   * Per kind (business, client), a sequence up to which this connection got or read every
   * message of that kind: a live message whose `prev` is above it follows one it never got.
   */
  private seenB = 0;
  private seenC = 0;
  /** Delivered, not acked, in delivery (= sequence) order. */
  private inflight: Set<number> | undefined;
  private mode = LOADING;
  /** Registered with AckBatcher.whenRoom. */
  private awaitingRoom = false;
  private loading = false;
  private again = false;
  private overflow = false;
  private buffered: InboxMessage[] | undefined;
  /**
   * True when the last backlog load read to the end (and at connect): the next load's first
   * read is a probe (BacklogReader), since most such reads find nothing.
   */
  private caughtUp = true;
  /** Backlog reads failed in a row (the backoff attempt); 0 after one that succeeds. */
  private readFailures = 0;

  constructor(private readonly host: SessionHost) {}

  get isClosed(): boolean {
    return this.mode === CLOSED;
  }

  /** The session closed: nothing more is delivered. Undelivered and unacked messages stay stored. */
  close(): void {
    this.mode = CLOSED;
    // Never-ack guard: each delivery still unacked when the session ends counts once.
    if (this.inflight?.size) {
      this.host.ctx.deliveryCounts.unacked(this.host.app, this.host.user, this.inflight.keys(), this.ackFloor());
    }
    this.inflight = undefined;
    this.buffered = undefined;
  }

  /**
   * A transient message's frame: sent now, outside the delivery state (no seq, no window slot, no
   * ack), or dropped when the socket is past its high-water mark (transient-delivery.ts).
   */
  onTransient(frame: string): void {
    const ws = this.host.ws;
    // Before its greeting a session is not online yet for the client: nothing goes before `hello`.
    if (ws === undefined || this.mode === CLOSED || !this.host.greeted) return;
    sendTransient(
      ws.getBufferedAmount(),
      () => this.host.send(frame),
      this.host.ctx.highWaterBytes,
      this.host.ctx.metrics,
    );
  }

  /** The socket drained: resume if stalled. */
  drained(): void {
    this.wake();
  }

  /** A stalled delivery that may send again resyncs; one held back by a full ack path waits for room. */
  private wake(): void {
    if (this.mode !== STALLED) return;
    if (this.canSend()) this.resync();
    else this.waitForRoom();
  }

  /** The ack path is far behind the store (AckBatcher.full): go on once it has caught up. */
  private waitForRoom(): void {
    const { acks } = this.host.ctx;
    if (this.awaitingRoom || !acks.full) return;
    this.awaitingRoom = true;
    acks.whenRoom(() => {
      this.awaitingRoom = false;
      this.wake();
    });
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
        this.host.ctx.metrics.errors.inc({ code: isPushError(err) ? err.code : 'internal' });
        this.host.ctx.log.warn({ err, conn: this.host.id }, 'backlog read failed');
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
    const { ctx } = this.host;
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
        const ws = this.host.ws as ClientSocket;
        ctx.metrics.backlogRequests.inc();
        // Nothing says messages wait (a connect, or a resync of a connection that had caught
        // up): ask first, in a probe shared with other connects, whether there is anything.
        const probe = this.caughtUp;
        this.caughtUp = false;
        const { messages, more } = await ctx.backlog.read(
          this.host.app,
          this.host.user,
          this.cursor + 1,
          {
            max: ctx.config.window - (this.inflight?.size ?? 0),
            maxBytes: Math.min(BACKLOG_MAX_BYTES, ctx.highWaterBytes - ws.getBufferedAmount()),
          },
          this.host,
          probe,
        );
        if (this.mode === CLOSED) return;
        ctx.metrics.backlogReads.inc(messages.length);
        if (!this.deliverBatch(messages)) return;
        if (!more) break;
      }
      // Live messages were dropped while reading (buffer full), or a resync was asked for:
      // read again; whatever was dropped is in the store.
      if (this.overflow || this.again) continue;
      const buffered = this.buffered;
      this.buffered = undefined;
      // Read to the end: every message of both kinds up to the cursor was got.
      this.seenB = Math.max(this.seenB, this.cursor);
      this.seenC = Math.max(this.seenC, this.cursor);
      this.caughtUp = true;
      this.mode = LIVE;
      if (buffered !== undefined) for (const m of buffered) this.onLive(m);
      return;
    }
  }

  /**
   * Delivers a batch read from the store, in one write: corked, the frames go out together
   * instead of one syscall each (each `send` alone flushes). False when the connection stalled
   * or closed on the way; the rest of the batch stays stored and is read again from the cursor.
   */
  private deliverBatch(messages: InboxMessage[]): boolean {
    const ws = this.host.ws;
    if (ws === undefined) {
      this.stall();
      return false;
    }
    let going = true;
    ws.cork(() => {
      for (const m of messages) {
        if (m.seq <= this.cursor) continue;
        if (!this.canSend()) {
          this.stall();
          going = false;
          return;
        }
        this.deliver(m);
        if (this.mode !== LOADING) {
          going = false; // dropped by uWS (stalled: read again after drain), or closed
          return;
        }
      }
    });
    return going;
  }

  /** A live (republished) message of this user. */
  onLive(m: InboxMessage): void {
    switch (this.mode) {
      case LIVE:
        if (m.seq <= this.cursor) return;
        if ((m.prev ?? 0) > (m.from === undefined ? this.seenB : this.seenC)) {
          this.missed(m.prev ?? 0);
          return;
        }
        if (!this.canSend()) {
          this.stall();
          return;
        }
        this.deliver(m);
        return;
      case LOADING:
        if (this.buffered === undefined) this.buffered = [];
        if (this.buffered.length < this.host.ctx.config.window) this.buffered.push(m);
        else this.overflow = true;
        return;
      default:
        return; // stalled or closed: the store has it
    }
  }

  /**
   * A live message came whose previous message of its kind (`prev`) this connection never got:
   * lost on its way (a stream leader died after storing it, before its RePublish crossed to this
   * edge's server). Going on would move the cursor past it, and it would stay stored undelivered
   * until it expired; instead the store is read again from it. Messages of the other kind
   * after it that were delivered may come again (at-least-once).
   */
  private missed(prev: number): void {
    this.host.ctx.metrics.liveGaps.inc();
    this.cursor = Math.min(this.cursor, prev - 1);
    // Stalled first: called while a read loop still hands over its buffered live messages, the
    // rest of them must be dropped (they are stored), and that loop's end runs the resync.
    this.stall();
    this.resync();
  }

  private canSend(): boolean {
    const ws = this.host.ws;
    if (ws === undefined) return false;
    return (
      (this.inflight?.size ?? 0) < this.host.ctx.config.window &&
      ws.getBufferedAmount() < this.host.ctx.highWaterBytes &&
      !this.host.ctx.acks.full
    );
  }

  private stall(): void {
    if (this.mode === STALLED) return;
    this.mode = STALLED;
    this.buffered = undefined;
    this.host.ctx.metrics.stalls.inc();
    this.waitForRoom();
  }

  private deliver(m: InboxMessage): void {
    const { ctx } = this.host;
    const previous = this.cursor;
    this.cursor = m.seq;
    if (m.from === undefined) this.seenB = Math.max(this.seenB, m.seq);
    else this.seenC = Math.max(this.seenC, m.seq);
    if (m.expires <= Date.now()) {
      // Second guard: the server's per-message TTL removes it within about a second.
      ctx.metrics.expired.inc();
      ctx.acks.ack(this.host.app, m.seq);
      ctx.events.emit('expired', { app: this.host.app, user: this.host.user, seq: m.seq });
      return;
    }
    const frame = ServerFrames.message(m.seq, m.ts, m.bytes, m.binary, m.from);
    const status = this.host.send(frame);
    if (status === 2) {
      // Dropped by uWS (backpressure limit): not sent; read it again after drain.
      this.cursor = previous;
      this.stall();
      return;
    }
    (this.inflight ??= new Set()).add(m.seq);
    ctx.metrics.messagesOut.inc();
    if (ctx.apps.get(this.host.app)?.settings.deliveryEvents === true) this.host.emit('delivered', { seq: m.seq });
  }

  /** A client's `ack`: each seq delivered here and not yet acked goes to the AckBatcher; others get `ack_unknown`. */
  ack(seqs: number[]): void {
    const { ctx } = this.host;
    let unknown: number[] | undefined;
    const events = ctx.apps.get(this.host.app)?.settings.deliveryEvents === true;
    for (const seq of seqs) {
      if (this.inflight?.delete(seq) === true) {
        ctx.metrics.acks.inc();
        ctx.acks.ack(this.host.app, seq);
        if (events) this.host.emit('acked', { seq });
      } else {
        (unknown ??= []).push(seq);
      }
    }
    if (unknown !== undefined) this.host.sendError(new PushError('ack_unknown'), { seqs: unknown });
    this.wake();
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
}
