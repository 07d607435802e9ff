import { backoffDelay } from '@push/protocol';

/** What the ack path needs from the inbox store (InboxStore implements it). */
export interface AckStore {
  /** Removes one message; resolves false when it was already gone. */
  remove(app: string, seq: number): Promise<boolean>;
}

/** Counters the ack path reports (the edge's Prometheus metrics fit). */
export interface AckCounters {
  /** Messages removed from the store. */
  removed: { inc(n?: number): void };
  /** Store requests made by the ack path (one delete per message acked). */
  ackRequests: { inc(n?: number): void };
  /** Store requests that failed and were scheduled again. */
  ackRetries: { inc(n?: number): void };
  /** Acks not applied because the ack path held its bound (the messages stay stored). */
  acksDropped: { inc(n?: number): void };
}

export interface AckBatcherOptions {
  /** Most acks held at once (this turn, queued, in flight, waiting for a retry); more are dropped and counted. */
  maxHeld?: number;
  /** Deletes in flight at once; the rest wait in a compact queue (a number each). */
  maxInFlight?: number;
  /** An app's first probe after its deletes failed, ms (full jitter, doubling per failed probe up to `retryMaxMs`). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Called for each failed store request (for a rate-limited log). */
  onFailure?: (err: unknown) => void;
}

/** An app's acked sequences waiting for a free slot, oldest first (`head` indexes the first). */
interface Queue {
  seqs: number[];
  head: number;
}

/** Deletes of one app sent in a row before the next app with deletes waiting gets its turn. */
const FAIR_SHARE = 64;

/** An app whose deletes failed: they wait here while one probe at a time asks its store. */
interface Stalled {
  seqs: Set<number>;
  /** Probes that failed in a row (the backoff's attempt). */
  failures: number;
  timer: NodeJS.Timeout | undefined;
  probing: boolean;
}

/**
 * The edge's ack path: each message acked is removed from the store by its sequence
 * (`STREAM.MSG.DELETE`), once however many of the user's connections on this edge ack it within
 * one event-loop turn. A message already gone (acked by another device, expired, evicted, its
 * app's stream deleted) counts as done.
 *
 * Why deletes and not a purge of the user's subject up to an ack floor: a delete costs
 * nats-server the same whatever the stream holds, while a filtered purge walks every block
 * between the user's first message and the floor. On a stream of 500,000 messages interleaved
 * over 5,000 users, purges of 100 messages removed 9,293 messages/s against 40,269/s by deletes;
 * on 50,000 messages purges of 25 were ahead by only 15% (bench/acks.ts, docs/architecture.md).
 * A delete also removes exactly what was acked.
 *
 * Failures are per app (each app has its own stream, whose leader may be moving): a failed
 * delete waits with the app's other failed deletes, and one of them at a time probes the store,
 * after a full-jitter delay that doubles per failed probe up to `retryMaxMs`, or at once when
 * another delete of the app succeeds. When a probe succeeds, every waiting delete goes again. So
 * a store that was down for seconds gets its removals within moments of coming back, not after
 * each message's own backoff grew while it was down, and a store that stays down gets one
 * request per app per `retryMaxMs`, not one per message.
 *
 * At most `maxInFlight` deletes are in flight; acks past that wait in a queue per app as bare
 * numbers (8 bytes an ack, against about half a kilobyte for a request waiting in the store's
 * pipeline), taken in turns of FAIR_SHARE per app, so one app's burst does not hold another's.
 * So the ack path can run far behind the store for a while (a backlog storm delivers faster
 * than nats-server removes while it also serves the reads) without holding delivery back.
 *
 * Bounded: at most `maxHeld` acks wait here (fresh, queued, in flight or for a retry); past it an
 * ack is dropped and counted, its message stays stored and comes again (at-least-once). Before
 * that, from half the bound (`full`), deliveries wait (InboxDelivery asks `full` before it sends
 * and stalls, `whenRoom` resumes it at a quarter): when the store removes slower than clients ack
 * for long, delivery slows to the removal rate instead of acks being lost.
 */
export class AckBatcher {
  /** This turn's acks: app -> sequences. */
  private turn = new Map<string, Set<number>>();
  private scheduled = false;
  private held = 0;
  private closed = false;
  private readonly stalled = new Map<string, Stalled>();
  /** Per app, how many times it was forgotten (`forget`): an answer of an older epoch is dropped. */
  private readonly epochs = new Map<string, number>();
  /** Acks waiting for a delete slot, per app, in the order the apps got them. */
  private readonly queues = new Map<string, Queue>();
  private inFlight = 0;
  private readonly maxInFlight: number;
  /** Callers of `idle()`. */
  private idleWaiters: Array<() => void> = [];
  /** Called once when `held` falls to `lowWater` (stalled deliveries). */
  private waiters: Array<() => void> = [];
  private readonly maxHeld: number;
  private readonly highWater: number;
  private readonly lowWater: number;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;

  constructor(
    private readonly store: AckStore,
    private readonly counters: AckCounters,
    private readonly opts: AckBatcherOptions = {},
  ) {
    this.maxHeld = opts.maxHeld ?? 1_000_000;
    this.maxInFlight = Math.max(1, opts.maxInFlight ?? 1024);
    this.highWater = Math.floor(this.maxHeld / 2);
    this.lowWater = Math.floor(this.maxHeld / 4);
    this.retryBaseMs = opts.retryBaseMs ?? 200;
    this.retryMaxMs = opts.retryMaxMs ?? 5_000;
  }

  /** Acks held now (gathered, in flight or waiting for a retry). */
  get pending(): number {
    return this.held;
  }

  /** True from half the bound: deliveries should wait (see `whenRoom`). */
  get full(): boolean {
    return this.held >= this.highWater;
  }

  /** Calls `fn` once when the acks held fall to a quarter of the bound (or at once when they are). */
  whenRoom(fn: () => void): void {
    if (this.held <= this.lowWater) queueMicrotask(fn);
    else this.waiters.push(fn);
  }

  /** Takes an ack of message `seq` of `app`'s inbox. Returns false when it was dropped (bound reached, or closed). */
  ack(app: string, seq: number): boolean {
    if (this.closed || this.held >= this.maxHeld) {
      this.counters.acksDropped.inc();
      return false;
    }
    if (this.take(app, seq)) this.held++;
    return true;
  }

  /**
   * Drops every ack of the app held here: the app was deleted (and may be created again with its
   * id, whose new stream numbers from 1 again: an old delete sent there would remove a new app's
   * message). A delete in flight is not sent again, whatever its answer.
   */
  forget(app: string): void {
    this.epochs.set(app, (this.epochs.get(app) ?? 0) + 1);
    let n = this.turn.get(app)?.size ?? 0;
    this.turn.delete(app);
    const q = this.queues.get(app);
    if (q !== undefined) n += q.seqs.length - q.head;
    this.queues.delete(app);
    const s = this.stalled.get(app);
    if (s !== undefined) {
      clearTimeout(s.timer);
      n += s.seqs.size;
    }
    this.stalled.delete(app);
    for (; n > 0; n--) this.done();
    this.pump(); // wakes `idle` callers when nothing is left
  }

  /** Sends what this turn gathered now, as far as slots allow (tests, shutdown). */
  flush(): void {
    this.scheduled = false;
    const batch = this.turn;
    if (batch.size === 0) return;
    this.turn = new Map();
    for (const [app, seqs] of batch) {
      let q = this.queues.get(app);
      if (q === undefined) this.queues.set(app, (q = { seqs: [], head: 0 }));
      for (const seq of seqs) q.seqs.push(seq);
    }
    this.pump();
  }

  /**
   * Resolves true once nothing is queued or in flight (deletes waiting for a retry probe do not
   * count), false when `timeoutMs` passes first (shutdown).
   */
  idle(timeoutMs: number): Promise<boolean> {
    if (this.quiet()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.idleWaiters.push(done);
    });
  }

  /** Stops retry timers and drops whatever is held. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.stalled.values()) clearTimeout(s.timer);
    this.stalled.clear();
    this.turn.clear();
    this.queues.clear();
    this.waiters = [];
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private quiet(): boolean {
    return this.inFlight === 0 && this.queues.size === 0 && this.turn.size === 0;
  }

  /**
   * Sends queued deletes while slots are free, FAIR_SHARE of an app at a time: an app with more
   * waiting goes to the back of the map, which this loop then visits again (a Map's iteration
   * reaches entries set during it), until every queue is empty or the slots are full.
   */
  private pump(): void {
    for (const [app, q] of this.queues) {
      if (this.inFlight >= this.maxInFlight) return;
      let n = Math.min(FAIR_SHARE, this.maxInFlight - this.inFlight);
      for (; n > 0 && q.head < q.seqs.length; n--) this.remove(app, q.seqs[q.head++] as number, false);
      this.queues.delete(app);
      if (q.head < q.seqs.length) {
        if (q.head >= 4096 && q.head * 2 >= q.seqs.length) {
          q.seqs = q.seqs.slice(q.head);
          q.head = 0;
        }
        this.queues.set(app, q);
      }
    }
    if (this.idleWaiters.length > 0 && this.quiet()) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Adds a sequence to this turn; false when the turn has it already (another device's ack). */
  private take(app: string, seq: number): boolean {
    let seqs = this.turn.get(app);
    if (seqs === undefined) this.turn.set(app, (seqs = new Set<number>()));
    if (seqs.has(seq)) return false;
    seqs.add(seq);
    if (!this.scheduled) {
      this.scheduled = true;
      // After the I/O callbacks of this turn (every frame of every socket uWS read at once).
      setImmediate(() => this.flush());
    }
    return true;
  }

  private remove(app: string, seq: number, probe: boolean): void {
    this.counters.ackRequests.inc();
    this.inFlight++;
    // An answer after a `forget` of the app is dropped: neither counted nor retried.
    const epoch = this.epochs.get(app);
    this.store.remove(app, seq).then(
      (removed) => {
        this.inFlight--;
        this.done();
        if (this.epochs.get(app) === epoch) {
          if (removed) this.counters.removed.inc();
          this.answered(app, probe);
        }
        this.pump();
      },
      (err: unknown) => {
        this.inFlight--;
        if (this.epochs.get(app) === epoch) this.failed(err, app, seq, probe);
        else this.done();
        this.pump();
      },
    );
  }

  /** One ack less held; wakes the stalled deliveries once there is room. */
  private done(): void {
    this.held--;
    if (this.held > this.lowWater || this.waiters.length === 0) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const fn of waiters) fn();
  }

  /** The app's store answered: a probe's answer sends every waiting delete again; any other probes now. */
  private answered(app: string, probe: boolean): void {
    if (this.stalled.size === 0) return; // the common case: nothing waits
    const s = this.stalled.get(app);
    if (s === undefined || this.closed) return;
    if (!probe) {
      if (!s.probing) {
        clearTimeout(s.timer);
        this.probe(app, s);
      }
      return;
    }
    this.stalled.delete(app);
    // Already asked for again this turn (a newer ack of it): it is held once.
    for (const seq of s.seqs) if (!this.take(app, seq)) this.done();
  }

  /** A delete failed: it waits with the app's others for a probe (and, from a probe, the next probe backs off). */
  private failed(err: unknown, app: string, seq: number, probe: boolean): void {
    this.opts.onFailure?.(err);
    if (this.closed) {
      this.done();
      return;
    }
    this.counters.ackRetries.inc();
    let s = this.stalled.get(app);
    if (s === undefined) {
      s = { seqs: new Set(), failures: 0, timer: undefined, probing: false };
      this.stalled.set(app, s);
    }
    // Held once (a newer ack of it failed too).
    if (s.seqs.has(seq)) this.done();
    else s.seqs.add(seq);
    if (probe) {
      s.probing = false;
      s.failures++;
    } else if (s.probing || s.timer !== undefined) return;
    const stalled = s;
    stalled.timer = setTimeout(
      () => this.probe(app, stalled),
      backoffDelay(stalled.failures, { baseMs: this.retryBaseMs, capMs: this.retryMaxMs }),
    );
    stalled.timer.unref();
  }

  /** Sends the app's oldest waiting delete (a failed one goes to the back: the next probe is another). */
  private probe(app: string, s: Stalled): void {
    s.timer = undefined;
    const seq = s.seqs.values().next();
    if (seq.done === true) {
      this.stalled.delete(app);
      return;
    }
    s.seqs.delete(seq.value);
    s.probing = true;
    this.remove(app, seq.value, true);
  }
}
