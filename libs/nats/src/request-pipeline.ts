import { createInbox, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/nats-core';

/** Raised when a pipelined request gets no answer within its deadline. */
export class RequestTimeoutError extends Error {
  constructor(subject: string, timeoutMs: number) {
    super(`no reply on ${subject} within ${timeoutMs} ms`);
    this.name = 'RequestTimeoutError';
  }
}

interface Pending {
  resolve: (msg: Msg) => void;
  reject: (err: Error) => void;
  subject: string;
  deadline: number;
}

export interface RequestPipelineOptions {
  /** Per-request deadline, ms. */
  timeoutMs?: number;
  /** Most requests awaiting a reply at once; further ones wait for a free slot. */
  maxInFlight?: number;
}

/**
 * Many requests in flight over one reply subscription.
 *
 * `nc.request()` awaited one at a time is bound by the round trip; even run concurrently it
 * arms a timer per request. Here every request gets a reply subject under one wildcard
 * subscription, replies resolve a map entry, and one sweep timer expires the late ones, so
 * JetStream publishes, direct gets and deletes stream at the rate the server stores them.
 */
export class RequestPipeline {
  private readonly nc: NatsConnection;
  private readonly prefix: string;
  private readonly sub: Subscription;
  private readonly pending = new Map<number, Pending>();
  /** FIFO of callers waiting for a free slot; `waitHead` indexes the first (no O(n) shift). */
  private waiting: Array<() => void> = [];
  private waitHead = 0;
  private readonly timeoutMs: number;
  private readonly maxInFlight: number;
  private readonly sweeper: NodeJS.Timeout;
  private next = 1;
  private closed = false;

  constructor(nc: NatsConnection, opts: RequestPipelineOptions = {}) {
    this.nc = nc;
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.maxInFlight = opts.maxInFlight ?? 16384;
    this.prefix = `${createInbox()}.`;
    this.sub = nc.subscribe(`${this.prefix}*`, {
      callback: (err, msg) => {
        if (err) return;
        const id = Number(msg.subject.slice(this.prefix.length));
        const p = this.pending.get(id);
        if (p === undefined) return; // late reply to a request that already timed out
        this.pending.delete(id);
        this.release();
        p.resolve(msg);
      },
    });
    this.sweeper = setInterval(() => this.sweep(), Math.max(50, this.timeoutMs / 4));
    this.sweeper.unref();
  }

  /** Requests in flight now. */
  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * Publishes `payload` to `subject` with a reply subject of this pipeline and resolves with the
   * reply. Rejects with RequestTimeoutError past the deadline, or when the pipeline is closed.
   */
  request(subject: string, payload: Uint8Array | string, headers?: MsgHdrs): Promise<Msg> {
    if (this.closed) return Promise.reject(new Error('request pipeline is closed'));
    if (this.pending.size >= this.maxInFlight) {
      return new Promise<void>((resolve) => this.waiting.push(resolve)).then(() =>
        this.request(subject, payload, headers),
      );
    }
    return new Promise<Msg>((resolve, reject) => {
      const id = this.next++;
      this.pending.set(id, { resolve, reject, subject, deadline: Date.now() + this.timeoutMs });
      try {
        this.nc.publish(subject, payload, headers ? { reply: this.prefix + id, headers } : { reply: this.prefix + id });
      } catch (err) {
        this.pending.delete(id);
        this.release();
        reject(err as Error);
      }
    });
  }

  private release(): void {
    if (this.waitHead >= this.waiting.length) return;
    const w = this.waiting[this.waitHead++];
    if (this.waitHead > 1024 && this.waitHead * 2 > this.waiting.length) {
      this.waiting = this.waiting.slice(this.waitHead);
      this.waitHead = 0;
    }
    w?.();
  }

  private sweep(): void {
    const now = Date.now();
    // Ids grow with time and Map keeps insertion order: the oldest come first.
    for (const [id, p] of this.pending) {
      if (p.deadline > now) break;
      this.pending.delete(id);
      this.release();
      p.reject(new RequestTimeoutError(p.subject, this.timeoutMs));
    }
  }

  /** Fails every request in flight and stops. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    this.sub.unsubscribe();
    const err = new Error('request pipeline is closed');
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    const waiting = this.waiting.slice(this.waitHead);
    this.waiting = [];
    this.waitHead = 0;
    for (const w of waiting) w();
  }
}
