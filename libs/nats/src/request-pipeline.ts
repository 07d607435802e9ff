import { createInbox, type Msg, type MsgHdrs, type NatsConnection } from '@nats-io/nats-core';

function noop(): void {
  // A multi-reply request resolves through its `many` entry.
}

/** Raised when a pipelined request gets no answer within its deadline. */
export class RequestTimeoutError extends Error {
  constructor(subject: string, timeoutMs: number) {
    super(`no reply on ${subject} within ${timeoutMs} ms`);
    this.name = 'RequestTimeoutError';
  }
}

/** Raised for a request in flight when the connection to the server was lost: its reply will never come. */
export class RequestLostError extends Error {
  constructor(subject: string) {
    super(`the connection to the NATS server was lost before the reply on ${subject}`);
    this.name = 'RequestLostError';
  }
}

/** Raised when more requests wait for a slot than the pipeline holds (the server is behind). */
/** A request whose `live` test failed before it was sent (see `RequestPipeline.request`). */
export class RequestAbandonedError extends Error {
  constructor(subject: string) {
    super(`request on ${subject} abandoned before it was sent: what it was for is gone`);
    this.name = 'RequestAbandonedError';
  }
}

export class PipelineFullError extends Error {
  constructor(queued: number) {
    super(`${queued} requests already wait for a slot; the server is not keeping up`);
    this.name = 'PipelineFullError';
  }
}

/**
 * Callers waiting for something to become idle: `wait()` resolves true when `wake()` is called,
 * false when its timeout passes first.
 */
export class IdleWaiters {
  private waiters: Array<() => void> = [];

  get waiting(): boolean {
    return this.waiters.length > 0;
  }

  wait(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      this.waiters.push(done);
    });
  }

  wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

interface Pending<M> {
  resolve: (msg: M) => void;
  reject: (err: Error) => void;
  subject: string;
  deadline: number;
  /** Set for a request answered by several replies (see `requestMany`). */
  many: Many<M> | undefined;
}

/** The replies gathered so far for a multi-reply request. */
interface Many<M> {
  replies: M[];
  isLast: (msg: M) => boolean;
  resolve: (replies: M[]) => void;
}

/** A request waiting for a free slot. */
interface Queued<M, H> extends Pending<M> {
  payload: Uint8Array | string;
  headers: H | undefined;
  /** Asked before the request is sent: false abandons it. */
  live: (() => boolean) | undefined;
}

/**
 * The connection a RequestPipeline sends on and hears replies from: nats.js by default
 * (`natsWire`), or another client (the edge's LiveSubscriber, whose publishes cost a few string
 * writes where nats.js builds a headers object and encodes three buffers per message). `M` is a
 * reply, `H` a request's headers.
 */
export interface PipelineWire<M, H> {
  /** A fresh inbox (unique subject) under which the replies come. */
  inbox(): string;
  /** Hands every message on `<prefix>*` to `onReply`, with its subject; returns how to stop. */
  listen(prefix: string, onReply: (subject: string, msg: M) => void): () => void;
  /** Publishes one request with its reply subject; throws when it cannot. */
  send(subject: string, payload: Uint8Array | string, headers: H | undefined, reply: string): void;
  /** Calls `lost` when the connection drops and `back` once it returns, until `stopped()` is true. */
  watch(lost: () => void, back: () => void, stopped: () => boolean): void;
}

function isWire<M, H>(x: NatsConnection | PipelineWire<M, H>): x is PipelineWire<M, H> {
  return typeof (x as Partial<PipelineWire<M, H>>).listen === 'function';
}

/** A nats.js connection as a PipelineWire. */
export function natsWire(nc: NatsConnection): PipelineWire<Msg, MsgHdrs> {
  return {
    inbox: () => createInbox(),
    listen: (prefix, onReply) => {
      const sub = nc.subscribe(`${prefix}*`, {
        callback: (err, msg) => {
          if (!err) onReply(msg.subject, msg);
        },
      });
      return () => sub.unsubscribe();
    },
    send: (subject, payload, headers, reply) => {
      nc.publish(subject, payload, headers ? { reply, headers } : { reply });
    },
    watch: (lost, back, stopped) => {
      void (async () => {
        // Ends with the connection, or at the first status after the pipeline closed.
        for await (const s of nc.status()) {
          if (stopped()) break;
          if (s.type === 'disconnect') lost();
          else if (s.type === 'reconnect') back();
        }
      })();
    },
  };
}

export interface RequestPipelineOptions {
  /** Per-request deadline, ms, counted from the call (time spent queued included). */
  timeoutMs?: number;
  /**
   * Count the deadline from when the request is sent instead of from the call: a request waiting
   * for a slot never expires (the queue is still bounded by `maxQueued`). For requests whose
   * callers wait anyway and whose cost is the server's (backlog reads): expiring queued ones
   * would only have them retried, and sent again later, while the server is busiest.
   */
  deadlineFromSend?: boolean;
  /** Most requests awaiting a reply at once; further ones wait for a free slot. */
  maxInFlight?: number;
  /** Most requests waiting for a slot; past it `request()` rejects with PipelineFullError. */
  maxQueued?: number;
  /**
   * Follow the connection (default true): when it is lost, fail the requests already sent with
   * RequestLostError instead of at their deadline (a reply to a connection that is gone never
   * comes: the server's lame duck mode moves every client, a restart, a network cut), and hold
   * new ones in the queue until it is back (nats.js does not deliver what is published while it
   * reconnects). Every caller retries a failure (reads, deletes, store attempts, events), so
   * every one of them wants it; false leaves a lost request to its deadline.
   */
  watchConnection?: boolean;
}

/**
 * Many requests in flight over one reply subscription.
 *
 * `nc.request()` awaited one at a time is bound by the round trip; even run concurrently it
 * arms a timer per request. Here every request gets a reply subject under one wildcard
 * subscription, replies resolve a map entry, and one timer expires the late ones, so
 * JetStream publishes, direct gets and deletes stream at the rate the server stores them.
 * Past `maxInFlight` requests wait in a bounded FIFO, sent in order as replies free slots, and
 * expire by the same deadline: memory stays bounded when the server falls behind.
 *
 * Every request has the same timeout, so deadlines follow call order: the one timer is armed for
 * the oldest deadline and, when it fires, expires what is due and re-arms for the next. A request
 * fails at its deadline (to the event loop's precision), and the hot path touches no timer
 * unless none is armed.
 */
export class RequestPipeline<M = Msg, H = MsgHdrs> {
  private readonly wire: PipelineWire<M, H>;
  private readonly prefix: string;
  private readonly unlisten: () => void;
  private readonly pending = new Map<number, Pending<M>>();
  /** FIFO of requests waiting for a free slot; `queueHead` indexes the first (no O(n) shift). */
  private queue: Array<Queued<M, H>> = [];
  private queueHead = 0;
  private readonly timeoutMs: number;
  private readonly maxInFlight: number;
  private readonly maxQueued: number;
  private readonly deadlineFromSend: boolean;
  /** Fires at `timerAt`, the oldest deadline when it was armed; undefined when nothing waits. */
  private timer: NodeJS.Timeout | undefined;
  private timerAt = 0;
  private next = 1;
  /** The highest id handed to the connection (published, not merely queued for this turn). */
  private published = 0;
  /** Between a lost connection and its return (`watchConnection`): nothing is sent. */
  private paused = false;
  private closed = false;
  /** Callers of `idle()` waiting for the last request to settle. */
  private readonly idleWaiters = new IdleWaiters();

  /** `nc`: a nats.js connection, or any PipelineWire. */
  constructor(nc: NatsConnection | PipelineWire<M, H>, opts: RequestPipelineOptions = {}) {
    this.wire = isWire(nc) ? nc : (natsWire(nc) as unknown as PipelineWire<M, H>);
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.maxInFlight = opts.maxInFlight ?? 16384;
    this.maxQueued = opts.maxQueued ?? 100_000;
    this.deadlineFromSend = opts.deadlineFromSend === true;
    this.prefix = `${this.wire.inbox()}.`;
    this.unlisten = this.wire.listen(this.prefix, (subject, msg) => {
      const id = Number(subject.slice(this.prefix.length));
      const p = this.pending.get(id);
      if (p === undefined) return; // late reply to a request that already timed out
      const many = p.many;
      if (many !== undefined) {
        // Replies of one request come in the order the server sent them (one subscription).
        many.replies.push(msg);
        if (!many.isLast(msg)) return;
        this.pending.delete(id);
        this.release();
        many.resolve(many.replies);
        this.notifyIdle();
        return;
      }
      this.pending.delete(id);
      this.release();
      p.resolve(msg);
      this.notifyIdle();
    });
    if (opts.watchConnection !== false) {
      this.wire.watch(
        () => this.lost(),
        () => this.resume(),
        () => this.closed,
      );
    }
  }

  /** Requests in flight now. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Requests waiting for a slot now. */
  get queued(): number {
    return this.queue.length - this.queueHead;
  }

  /**
   * Resolves true once no request is in flight or waiting (at once when none is), or false when
   * `timeoutMs` passes first: how a shutdown lets the last stores and deletes finish without
   * polling. Requests made meanwhile are waited for too.
   */
  idle(timeoutMs: number): Promise<boolean> {
    if (this.pending.size === 0 && this.queued === 0) return Promise.resolve(true);
    return this.idleWaiters.wait(timeoutMs);
  }

  /** Wakes the `idle()` callers when the last request has settled. */
  private notifyIdle(): void {
    if (!this.idleWaiters.waiting || this.pending.size > 0 || this.queued > 0) return;
    this.idleWaiters.wake();
  }

  /**
   * Publishes `payload` to `subject` with a reply subject of this pipeline and resolves with the
   * reply. Rejects with RequestTimeoutError past the deadline, PipelineFullError when too many
   * wait, or an Error when the pipeline is closed. `live`, when given, is asked just before the
   * request goes out (it may have waited for a slot): false rejects it with RequestAbandonedError.
   */
  request(subject: string, payload: Uint8Array | string, headers?: H, live?: () => boolean): Promise<M> {
    if (this.closed) return Promise.reject(new Error('request pipeline is closed'));
    return new Promise<M>((resolve, reject) => {
      this.enqueue({
        resolve,
        reject,
        subject,
        deadline: this.callDeadline(),
        payload,
        headers,
        many: undefined,
        live,
      });
    });
  }

  /**
   * A request answered by a stream of replies (a batched Direct Get: messages, then an
   * end-of-batch status). Resolves with every reply, in order, once `isLast` is true for one;
   * it takes one slot and one deadline, like `request()`, and fails the same ways. Replies that
   * arrive after the deadline are dropped with the request: a partial answer is never resolved.
   */
  requestMany(subject: string, payload: Uint8Array | string, isLast: (msg: M) => boolean): Promise<M[]> {
    if (this.closed) return Promise.reject(new Error('request pipeline is closed'));
    return new Promise<M[]>((resolve, reject) => {
      const many: Many<M> = { replies: [], isLast, resolve };
      this.enqueue({
        resolve: noop,
        reject,
        subject,
        deadline: this.callDeadline(),
        payload,
        headers: undefined,
        many,
        live: undefined,
      });
    });
  }

  private enqueue(q: Queued<M, H>): void {
    if (this.pending.size < this.maxInFlight && this.queued === 0 && !this.paused) {
      this.send(q);
    } else if (this.queued >= this.maxQueued) {
      q.reject(new PipelineFullError(this.queued));
      return;
    } else {
      this.queue.push(q);
    }
    // Later calls have later deadlines: an armed timer already fires first.
    if (this.timer === undefined) this.arm();
  }

  /** The deadline of a request made now (see `deadlineFromSend`; `send()` sets the real one then). */
  private callDeadline(): number {
    return this.deadlineFromSend ? Number.POSITIVE_INFINITY : Date.now() + this.timeoutMs;
  }

  private send(q: Queued<M, H>): void {
    if (this.deadlineFromSend) q.deadline = Date.now() + this.timeoutMs;
    const id = this.next++;
    // The request is its own pending entry (one object per request); its payload is let go once published.
    this.pending.set(id, q);
    this.outbox.push(id, q);
    if (this.outbox.length === 2) setImmediate(() => this.flushOutbox());
    // A request sent from the queue when nothing else was timed (deadlineFromSend) needs the timer.
    if (this.timer === undefined && this.deadlineFromSend) this.arm();
  }

  /**
   * Requests taken this event-loop turn, published together: nats.js writes its buffer once per
   * microtask checkpoint, and uWS runs every HTTP request and every client frame in a callback of
   * its own, so publishing at once meant a socket write (a syscall and a loopback round into
   * nats-server) per request. Flat pairs of id and request.
   */
  private outbox: Array<number | Queued<M, H>> = [];

  private flushOutbox(): void {
    const out = this.outbox;
    this.outbox = [];
    // Taken before the connection was lost: back to the head of the queue, sent once it is back.
    const back: Array<Queued<M, H>> = [];
    for (let i = 0; i < out.length; i += 2) {
      const id = out[i] as number;
      const q = out[i + 1] as Queued<M, H>;
      if (!this.pending.has(id)) continue; // expired or closed meanwhile
      if (this.paused) {
        this.pending.delete(id);
        back.push(q);
        continue;
      }
      if (q.live !== undefined && !q.live()) {
        this.pending.delete(id);
        q.reject(new RequestAbandonedError(q.subject));
        this.release();
        continue;
      }
      try {
        const reply = this.prefix + id;
        this.wire.send(q.subject, q.payload, q.headers, reply);
        this.published = id;
        q.payload = '';
        q.headers = undefined;
      } catch (err) {
        this.pending.delete(id);
        q.reject(err as Error);
      }
    }
    if (back.length > 0) this.queue.splice(this.queueHead, 0, ...back);
    this.notifyIdle();
  }

  private shift(): Queued<M, H> | undefined {
    if (this.queueHead >= this.queue.length) return undefined;
    const q = this.queue[this.queueHead++];
    if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead);
      this.queueHead = 0;
    }
    return q;
  }

  /** A slot is free: send the oldest waiting request. */
  private release(): void {
    if (this.paused) return;
    const q = this.shift();
    if (q !== undefined) this.send(q);
  }

  /** Arms the timer for the oldest deadline of what is queued or in flight (none: disarmed). */
  private arm(): void {
    const q = this.queue[this.queueHead];
    let next = q?.deadline ?? Number.POSITIVE_INFINITY;
    // Ids grow with calls and Map keeps insertion order: the first entry has the oldest deadline.
    for (const p of this.pending.values()) {
      next = Math.min(next, p.deadline);
      break;
    }
    if (next === Number.POSITIVE_INFINITY) {
      if (this.timer !== undefined) clearTimeout(this.timer);
      this.timer = undefined;
      return;
    }
    if (this.timer !== undefined && this.timerAt <= next) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerAt = next;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.sweep();
        this.arm();
      },
      Math.max(0, next - Date.now()),
    );
    this.timer.unref();
  }

  private sweep(): void {
    const now = Date.now();
    // The queue is FIFO with one timeout: its expired entries are at the head. Expire them
    // first, so that slots freed below are not spent sending requests already too late.
    for (;;) {
      const q = this.queue[this.queueHead];
      if (q === undefined || q.deadline > now) break;
      this.shift();
      q.reject(new RequestTimeoutError(q.subject, this.timeoutMs));
    }
    // Ids grow with time and Map keeps insertion order: the oldest come first.
    for (const [id, p] of this.pending) {
      if (p.deadline > now) break;
      this.pending.delete(id);
      p.reject(new RequestTimeoutError(p.subject, this.timeoutMs));
      this.release();
    }
    this.notifyIdle();
  }

  /** The connection was lost: what it carried gets no reply, and nothing is sent until it is back (`watchConnection`). */
  private lost(): void {
    this.paused = true;
    // Ids grow with sends and Map keeps insertion order.
    for (const [id, p] of this.pending) {
      if (id > this.published) break;
      this.pending.delete(id);
      p.reject(new RequestLostError(p.subject));
    }
    this.notifyIdle();
  }

  /** The connection is back: send what waited, up to the free slots. */
  private resume(): void {
    this.paused = false;
    while (this.pending.size < this.maxInFlight && this.queued > 0) this.release();
  }

  /** Fails every request in flight or waiting and stops. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.unlisten();
    const err = new Error('request pipeline is closed');
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    const queued = this.queue.slice(this.queueHead);
    this.queue = [];
    this.queueHead = 0;
    for (const q of queued) q.reject(err);
    this.notifyIdle();
  }
}
