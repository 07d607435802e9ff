import { backoffDelay, type InboxKind } from '@push/protocol';

/** What the ack path needs from the inbox store (InboxStore implements it). */
export interface AckStore {
  /** Removes the user's messages of one kind below `belowSeq`; resolves with how many were removed. */
  purge(app: string, user: string, belowSeq: number, kind: InboxKind): Promise<number>;
  /** Removes one message; resolves false when it was already gone. */
  remove(app: string, seq: number): Promise<boolean>;
}

/** Counters the ack path reports (the edge's Prometheus metrics fit). */
export interface AckCounters {
  /** Messages removed from the store. */
  removed: { inc(n?: number): void };
  /** Store requests made by the ack path (purges and deletes). */
  ackRequests: { inc(n?: number): void };
  /** Store requests that failed and were scheduled again. */
  ackRetries: { inc(n?: number): void };
  /** Acks not applied because the ack path held its bound (the messages stay stored). */
  acksDropped: { inc(n?: number): void };
}

export interface AckBatcherOptions {
  /** Most acks held at once (this turn, in flight, waiting for a retry); more are dropped and counted. */
  maxHeld?: number;
  /** First retry delay, ms (full jitter, doubling per attempt up to `retryMaxMs`). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /**
   * Longest a user's acks wait (parked) behind the user's purge in flight, ms: past it they go
   * as a purge of their own. A removal may take its full timeout (minutes) when its answer is
   * lost in a leader election; acks must not wait for that.
   */
  parkMaxMs?: number;
  /** Called for each failed store request (for a rate-limited log). */
  onFailure?: (err: unknown) => void;
}

/** One user's acks gathered for one store round. */
interface UserAcks {
  app: string;
  user: string;
  /** Every message of the user at or below this sequence may go (see `ack`). */
  floor: number;
  /** Acks at or below `floor`, all applied by one purge per kind among them. */
  purgeAcks: number;
  /** Kinds of the acks at or below `floor` (KIND_B | KIND_C). */
  purgeKinds: number;
  /** Acked sequences above `floor` (with their kind): one delete each. */
  deletes: Map<number, InboxKind> | undefined;
  /** Failed rounds so far (0 for fresh acks). */
  attempt: number;
}

/** A user's key in the maps; length-prefixed so that no pair of ids maps to another pair's key. */
const userKey = (app: string, user: string): string => `${app.length}:${app}${user}`;

const KIND_B = 1;
const KIND_C = 2;
const kindBit = (kind: InboxKind): number => (kind === 'b' ? KIND_B : KIND_C);

/**
 * Coalesces acks into few store requests. Acks of one user taken within one event-loop turn,
 * from any of the user's connections on this edge, become ONE purge of the user's subject up to
 * the highest ack floor (every message at or below it was delivered and acked, or expired), plus
 * a delete per acked sequence above the floor (acks out of order). The purge names the literal
 * subject of each kind acked (`.b`, and `.c` when client messages were acked too): nats-server
 * 2.15 purges a literal subject about three times faster than the wildcard of both, and then
 * twice as fast per message as deletes (bench/acks.ts). Each message at or below the floor was
 * acked itself, so the purge of its own kind covers it. A connection reads its user's
 * inbox from the start and in sequence order, so its floor is the sequence before its oldest
 * unacked delivery, or its cursor when nothing is unacked; another device's unacked copies below
 * it may go too: one device's ack is enough (DESIGN.md).
 *
 * At most one purge round per user is in flight: acks of a user whose purge has not been answered
 * yet wait (parked) and go as one purge up to the highest floor when it is. While the store
 * keeps up, that changes nothing (the answer comes before the next turn's acks); when it falls
 * behind, each user's purge covers more messages, so the store's work per message drops as the
 * load rises instead of its queue growing (issue 16: a remove costs nats-server about twice
 * what a publish does, bench/publish.ts). Deletes above the floor are not parked. Acks wait at
 * most `parkMaxMs` (1 s) behind a round: a purge whose answer was lost (a leader election) is
 * only failed at the removal timeout, and the later purge up to a higher floor covers it anyway.
 *
 * Bounded: at most `maxHeld` acks wait here (fresh, in flight or for a retry); past it an ack is
 * dropped and counted, its message stays stored and comes again (at-least-once). A failed
 * request is retried with full-jitter backoff, merged with newer acks of the same user.
 */
export class AckBatcher {
  private turn = new Map<string, UserAcks>();
  /** Users (by key) whose purge round is in flight: the round's number and when it was sent. */
  private readonly purging = new Map<string, { round: number; sentAt: number }>();
  private rounds = 0;
  /** Purge acks of users in `purging`, sent when that round is answered or `parkMaxMs` old. */
  private parked = new Map<string, UserAcks>();
  /** The one timer that releases parked acks whose round has taken `parkMaxMs`. */
  private parkTimer: NodeJS.Timeout | undefined;
  private readonly parkMaxMs: number;
  private scheduled = false;
  private held = 0;
  private closed = false;
  /** Set by drain(): purges are no longer parked behind a user's round in flight. */
  private draining = false;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly maxHeld: number;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;

  constructor(
    private readonly store: AckStore,
    private readonly counters: AckCounters,
    private readonly opts: AckBatcherOptions = {},
  ) {
    this.maxHeld = opts.maxHeld ?? 200_000;
    this.retryBaseMs = opts.retryBaseMs ?? 200;
    this.retryMaxMs = opts.retryMaxMs ?? 30_000;
    this.parkMaxMs = opts.parkMaxMs ?? 1000;
  }

  /** Acks held now (gathered, in flight or waiting for a retry). */
  get pending(): number {
    return this.held;
  }

  /**
   * Takes an ack of `seq` (stored under `kind`) from a connection whose ack floor (after this
   * ack) is `floor`.
   * Returns false when the ack was dropped (bound reached, or closed).
   */
  ack(app: string, user: string, seq: number, floor: number, kind: InboxKind): boolean {
    if (this.closed || this.held >= this.maxHeld) {
      this.counters.acksDropped.inc();
      return false;
    }
    const e = this.entry(this.turn, app, user);
    if (floor > e.floor) e.floor = floor;
    if (seq <= e.floor) {
      e.purgeAcks++;
      e.purgeKinds |= kindBit(kind);
    } else if (e.deletes?.has(seq) === true) {
      return true; // another device acked it this turn
    } else {
      (e.deletes ??= new Map()).set(seq, kind);
    }
    this.held++;
    this.schedule();
    return true;
  }

  /** Sends what this turn gathered now (tests, shutdown). */
  flush(): void {
    this.scheduled = false;
    const batch = this.turn;
    if (batch.size === 0) return;
    this.turn = new Map();
    for (const e of batch.values()) this.apply(e);
  }

  /**
   * Shutdown: sends what this turn gathered and every parked purge now, and parks no more, so
   * that once the store is idle every ack taken was sent.
   */
  drain(): void {
    this.draining = true;
    this.flush();
    for (const key of [...this.parked.keys()]) this.release(key);
  }

  /** Stops retry timers and drops whatever is held. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    clearTimeout(this.parkTimer);
    this.turn.clear();
    this.parked.clear();
  }

  private entry(map: Map<string, UserAcks>, app: string, user: string): UserAcks {
    const key = userKey(app, user);
    let e = map.get(key);
    if (e === undefined) {
      e = { app, user, floor: 0, purgeAcks: 0, purgeKinds: 0, deletes: undefined, attempt: 0 };
      map.set(key, e);
    }
    return e;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // After the I/O callbacks of this turn (every frame of every socket uWS read at once).
    setImmediate(() => this.flush());
  }

  private apply(e: UserAcks): void {
    let purgeAcks = e.purgeAcks;
    let purgeKinds = e.purgeKinds;
    const deletes: Array<[number, InboxKind]> = [];
    if (e.deletes !== undefined) {
      // The floor may have passed deletes taken earlier in the turn: the purge covers them.
      for (const [seq, kind] of e.deletes) {
        if (seq <= e.floor) {
          purgeAcks++;
          purgeKinds |= kindBit(kind);
        } else {
          deletes.push([seq, kind]);
        }
      }
    }
    if (purgeAcks > 0) {
      const key = userKey(e.app, e.user);
      if (this.purging.has(key) && !this.draining) {
        const into = this.entry(this.parked, e.app, e.user);
        if (e.floor > into.floor) into.floor = e.floor;
        into.purgeAcks += purgeAcks;
        into.purgeKinds |= purgeKinds;
        into.attempt = Math.max(into.attempt, e.attempt);
        this.scheduleRelease();
      } else {
        this.sendPurges({ ...e, purgeAcks, purgeKinds, deletes: undefined }, key);
      }
    }
    for (const [seq, kind] of deletes) {
      this.counters.ackRequests.inc();
      this.store.remove(e.app, seq).then(
        (removed) => {
          this.held--;
          if (removed) this.counters.removed.inc();
        },
        (err: unknown) =>
          this.failed(err, { ...e, floor: 0, purgeAcks: 0, purgeKinds: 0, deletes: new Map([[seq, kind]]) }),
      );
    }
  }

  /**
   * One purge per kind acked, up to the floor, as the user's round in flight; when it is answered
   * (and is still the user's latest round), whatever was parked meanwhile goes.
   */
  private sendPurges(e: UserAcks, key: string): void {
    const round = ++this.rounds;
    this.purging.set(key, { round, sentAt: performance.now() });
    const purges: Array<Promise<number>> = [];
    for (const kind of ['b', 'c'] as const) {
      if ((e.purgeKinds & kindBit(kind)) === 0) continue;
      this.counters.ackRequests.inc();
      purges.push(this.store.purge(e.app, e.user, e.floor + 1, kind));
    }
    const next = (): void => {
      if (this.purging.get(key)?.round === round) this.release(key);
    };
    Promise.all(purges).then(
      (counts) => {
        this.held -= e.purgeAcks;
        const n = counts.reduce((a, b) => a + b, 0);
        if (n > 0) this.counters.removed.inc(n);
        next();
      },
      (err: unknown) => {
        // Purges are idempotent: retry every kind of the round (later, merged with newer acks).
        this.failed(err, e);
        next();
      },
    );
  }

  /** Ends the user's round: sends what was parked behind it as the next one. */
  private release(key: string): void {
    this.purging.delete(key);
    const parked = this.parked.get(key);
    if (parked === undefined || this.closed) return;
    this.parked.delete(key);
    this.sendPurges(parked, key);
  }

  /** Releases, within `parkMaxMs`, the parked acks of rounds that have taken that long. */
  private scheduleRelease(): void {
    if (this.parkTimer !== undefined) return;
    this.parkTimer = setTimeout(() => {
      this.parkTimer = undefined;
      if (this.closed) return;
      const before = performance.now() - this.parkMaxMs;
      for (const key of [...this.parked.keys()]) {
        const r = this.purging.get(key);
        if (r === undefined || r.sentAt <= before) this.release(key);
      }
      if (this.parked.size > 0) this.scheduleRelease();
    }, this.parkMaxMs / 2);
    this.parkTimer.unref();
  }

  /** A request failed: apply its acks again after a full-jitter delay, with any newer ones. */
  private failed(err: unknown, e: UserAcks): void {
    this.opts.onFailure?.(err);
    const acks = e.purgeAcks + (e.deletes?.size ?? 0);
    if (this.closed) {
      this.held -= acks;
      return;
    }
    this.counters.ackRetries.inc();
    const attempt = e.attempt + 1;
    const delay = backoffDelay(attempt, { baseMs: this.retryBaseMs, capMs: this.retryMaxMs });
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (this.closed) {
        this.held -= acks;
        return;
      }
      const into = this.entry(this.turn, e.app, e.user);
      if (e.floor > into.floor) into.floor = e.floor;
      into.purgeAcks += e.purgeAcks;
      into.purgeKinds |= e.purgeKinds;
      if (e.deletes !== undefined) {
        for (const [seq, kind] of e.deletes) {
          if (into.deletes?.has(seq) === true)
            this.held--; // already asked for again
          else (into.deletes ??= new Map()).set(seq, kind);
        }
      }
      into.attempt = Math.max(into.attempt, attempt);
      this.schedule();
    }, delay);
    timer.unref();
    this.timers.add(timer);
  }
}
