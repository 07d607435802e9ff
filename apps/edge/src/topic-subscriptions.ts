import { verifyTopicToken } from '@push/apps';
import {
  ALL_TOPIC,
  PushError,
  ServerFrames,
  backoffDelay,
  isPushError,
  topicGranted,
  type BackoffPolicy,
  type SubFrame,
} from '@push/protocol';
import type { ClientSocket } from './client-connection.js';
import { BACKLOG_MAX_BYTES } from './inbox-delivery.js';
import type { SessionHost } from './session-host.js';
import type { TopicChannel } from './topic-channels.js';

/** Delay before joining `_all` again after a failure (the store down): 1-2 s, doubling up to 30 s. */
const ALL_RETRY: BackoffPolicy = { minMs: 1000, baseMs: 1000, capMs: 30_000 };
/**
 * A replayed message found gone this close to its own expiry (or past it) is taken as expired, not
 * dropped by the history's count limit: the store's clock and the center's may differ a little.
 */
const EXPIRY_MARGIN_MS = 1000;
/** Most topic messages one history read asks for when a `sub` resumes with `since`. */
const TOPIC_REPLAY_BATCH = 256;
/**
 * How long a resume whose `since` is ahead of what this edge has fanned out waits before asking
 * the store whether the topic reaches `since` at all.
 */
const FANNED_OUT_CHECK_MS = 1000;
/** The first of those waits, ms. */
const FANNED_OUT_FIRST_CHECK_MS = 50;

/** The `sub`s of one topic of a connection, not all answered yet: they run one after another. */
interface SubQueue {
  /** Settles once the last queued `sub` of the topic was answered. */
  tail: Promise<void>;
  /** `sub`s numbered at or below it were overtaken by an `unsub`: answered `unsubscribed`. */
  overtakenUpTo: number;
  /** Number of the newest `sub` queued. */
  last: number;
}

let allTokens = 0;
/** A fresh `_all` join token (unique in the process; never 0). */
const nextAllToken = (): number => ++allTokens;

/**
 * Whether the `hello` went out before `_all` joined (ClientSession sets `since`, epoch ms a little
 * before the `hello`, when it stops waiting): the join then sends what was stored since.
 */
export interface LateAll {
  since?: number;
}

/**
 * A session's topic subscriptions: the app's broadcast topic `_all` (held from the open), the
 * topics the business bound the user to (read at open, then control messages), and the client's
 * `sub`/`unsub`, each resumable from a `since` with no gap and no duplicate. Fan-out itself goes
 * through uWS pub/sub on the socket (TopicChannels).
 */
export class TopicSubscriptions {
  /**
   * Topics this connection subscribed to (`_all` apart), each with the number of its latest
   * `sub`: a resume still reading history stops when the entry is gone or replaced. Made on the
   * first. Numbers, not objects, and the channel's copy of the name as key when there is one:
   * an edge holds one entry per subscription (bench/fanout.ts measures the bytes).
   */
  private topics: Map<string, number> | undefined;
  /** Numbers the `sub`s of this connection (see `topics`). */
  private subCounter = 0;
  /** Per topic, the `sub`s queued or running (see `queueSub`); made on the first, entries dropped once answered. */
  private subQueues: Map<string, SubQueue> | undefined;
  /** Whether this connection holds a reference on the app's `_all` channel. */
  private inAll = false;
  /**
   * Token of whoever joins the socket to `_all`'s pub/sub key (the open, or a later resume): the
   * latest wins; 0 for none. A number from `nextAllToken`, not an object per connection.
   */
  private allToken = 0;
  /** Resume reads waiting for the socket to drain. */
  private drainWaiters: Array<() => void> | undefined;
  /**
   * Topics unbound while the bindings read at open was out (undefined when none is): the read
   * may predate the unbind, so those are not subscribed from it.
   */
  private unboundWhileLoading: Set<string> | undefined;

  constructor(private readonly host: SessionHost) {}

  /** The session closed: the edge's references on its topics go (uWS unsubscribes a closed socket from its keys). */
  close(): void {
    const { ctx } = this.host;
    if (this.inAll) ctx.topics.leave(this.host.app, ALL_TOPIC);
    this.inAll = false;
    this.allToken = 0;
    if (this.topics !== undefined) {
      for (const topic of this.topics.keys()) {
        ctx.topics.leave(this.host.app, topic);
        ctx.topicPresence.left(this.host, topic);
      }
      ctx.metrics.topicSubscriptions.dec(this.topics.size);
      this.topics = undefined;
    }
    for (const w of this.drainWaiters?.splice(0) ?? []) w();
  }

  /** The socket drained: waiting topic resumes read on. */
  drained(): void {
    if (
      this.drainWaiters !== undefined &&
      this.host.ws !== undefined &&
      this.host.ws.getBufferedAmount() < this.host.ctx.highWaterBytes
    ) {
      for (const w of this.drainWaiters.splice(0)) w();
    }
  }

  /**
   * Subscribes the topics the business bound the user to (after `hello`; each answered with
   * `subscribed`, as a bind does). Retried with backoff while the connection lives when Redis
   * fails, and read again while the mirror is being rebuilt (Redis lost its data): a bound topic
   * must not stay away silently.
   */
  loadBindings(attempt = 0): void {
    const { ctx } = this.host;
    const skip = (this.unboundWhileLoading ??= new Set());
    const again = (): void => {
      setTimeout(
        () => {
          if (!this.host.isClosed) this.loadBindings(attempt + 1);
        },
        backoffDelay(attempt, ALL_RETRY),
      ).unref();
    };
    ctx.bindings.read(this.host.app, this.host.user).then(
      ({ topics, whole }) => {
        if (this.unboundWhileLoading === skip) this.unboundWhileLoading = undefined;
        if (this.host.isClosed) return;
        // Already held: a bind's control message came first.
        for (const t of topics) if (!skip.has(t)) this.bindTopic(t);
        if (!whole) again();
      },
      (err: unknown) => {
        ctx.metrics.errors.inc({ code: 'bindings' });
        ctx.log.warn({ err, conn: this.host.id }, 'reading the topic bindings failed; retrying');
        again();
      },
    );
  }

  /**
   * A topic the business bound the user to (control message, or the read at open): subscribed
   * with no grant check. A refusal (`too_many_topics`, a store error) is an `error` frame with
   * the topic, as for a `sub`.
   */
  bindTopic(topic: string): void {
    if (this.host.isClosed || this.holds(topic)) return;
    this.queueSub(topic, undefined);
  }

  /**
   * Whether the connection holds the topic, or a `sub` of it is on its way that no `unsub`
   * overtook: a bind then changes nothing (the read at open and the bind's control message both
   * bind a connection opening while the bind happens; it gets one `subscribed`).
   */
  private holds(topic: string): boolean {
    const q = this.subQueues?.get(topic);
    if (q !== undefined) return q.last > q.overtakenUpTo;
    return this.topics?.has(topic) === true;
  }

  /** The business unbound the user from a topic: the connection leaves it (`unsubscribed`). */
  unbindTopic(topic: string): void {
    if (this.host.isClosed) return;
    this.unboundWhileLoading?.add(topic);
    this.unsubscribeTopic(topic);
  }

  /**
   * Every connection receives the app's broadcast topic `_all`, with no `sub` and no `subscribed`.
   * Returns undefined when the socket joined at once (the channel is open on this edge), else a
   * promise settled once it joined: after failed attempts (the store did not answer) it is tried
   * again, 1-2 s later and backing off, for as long as the connection lives, and the promise
   * settles once one of them joined (or the connection closed).
   */
  joinAll(late: LateAll = {}, attempt = 0): Promise<void> | undefined {
    const { ctx } = this.host;
    const token = nextAllToken();
    this.inAll = true;
    this.allToken = token;
    // The socket joins the key as soon as the channel is ready (at once when it is open on this
    // edge), before what the channel held while opening is fanned out: `_all` from the open.
    let joining = true;
    let atOnce = false;
    const attach = (ch: TopicChannel): void => {
      if (joining) atOnce = true;
      // A `sub` of `_all` (a resume) that came meanwhile joins the key itself, after its replay.
      if (this.host.isClosed || this.host.ws === undefined || this.allToken !== token) return;
      if (late.since !== undefined) void this.catchUpAll(ch, late.since, token);
      else this.host.ws.subscribe(this.host.topicKey(ch.key));
    };
    const joined = ctx.topics.join(this.host.app, ALL_TOPIC, attach).then(
      () => undefined,
      (err: unknown) => {
        ctx.metrics.errors.inc({ code: isPushError(err) ? err.code : 'internal' });
        // Counted; logged at debug only: when the store fails, every connection of a storm fails here.
        ctx.log.debug({ err, conn: this.host.id }, 'joining the _all topic failed');
        if (this.inAll) ctx.topics.leave(this.host.app, ALL_TOPIC);
        this.inAll = false;
        // Broadcasts must not stay away silently: try again while the connection lives.
        return new Promise<void>((resolve) => {
          setTimeout(
            () => {
              if (this.host.isClosed || this.inAll || this.allToken !== token) return resolve();
              void (this.joinAll(late, attempt + 1) ?? Promise.resolve()).then(resolve);
            },
            backoffDelay(attempt, ALL_RETRY),
          ).unref();
        });
      },
    );
    joining = false;
    return atOnce ? undefined : joined;
  }

  /**
   * `_all` joined after the `hello` went out without it (the store had not answered): sends the
   * broadcasts stored since `sinceMs` (found by time) up to what the edge has fanned out, then
   * joins the key in the turn it caught up, so that none stored once the client had its `hello`
   * is missed. When the store fails this read, the key is joined without it (counted, logged).
   */
  private async catchUpAll(ch: TopicChannel, sinceMs: number, token: number): Promise<void> {
    const { ctx } = this.host;
    const current = () => !this.host.isClosed && this.allToken === token;
    try {
      const first = await ctx.topicStore.firstSeqSince(this.host.app, ALL_TOPIC, sinceMs);
      if (!current()) return;
      if (first !== undefined && !(await this.replayTopic(ALL_TOPIC, ch, first - 1, current, false))) return;
    } catch (err) {
      ctx.metrics.errors.inc({ code: isPushError(err) ? err.code : 'internal' });
      ctx.log.warn({ err, conn: this.host.id }, 'reading the broadcasts missed since the hello failed');
      if (!current()) return;
    }
    this.host.ws?.subscribe(this.host.topicKey(ch.key));
  }

  /** Resolves when the socket has room below the high-water mark again (or closed). */
  private roomToSend(): Promise<void> {
    const ws = this.host.ws;
    if (ws === undefined || this.host.isClosed || ws.getBufferedAmount() < this.host.ctx.highWaterBytes) {
      return Promise.resolve();
    }
    return new Promise((resolve) => (this.drainWaiters ??= []).push(resolve));
  }

  /**
   * Records this connection's topic subscriptions anew: the edge's presence lease had lapsed, or
   * Redis lost its data (TopicPresence.joined).
   */
  recordTopics(again: 'lease' | 'data'): void {
    if (this.host.isClosed || this.topics === undefined) return;
    for (const topic of this.topics.keys()) this.host.ctx.topicPresence.joined(this.host, topic, again);
  }

  /** Topics this connection subscribed to (`_all` not included). */
  get topicCount(): number {
    return this.topics?.size ?? 0;
  }

  /**
   * Queues a subscribe of one topic (a client's `sub`, or a bind): the `sub`s of a topic run one
   * after another, in the order they came, and each gets exactly one answer: `subscribed`, an
   * `error` with the topic, or `unsubscribed` when an `unsub` of the topic overtook it (came
   * before it was answered). `check` runs first, in turn (grant checks), and may throw.
   */
  private queueSub(topic: string, since: number | undefined, check?: () => void | Promise<void>): void {
    const n = ++this.subCounter;
    const queues = (this.subQueues ??= new Map<string, SubQueue>());
    let q = queues.get(topic);
    if (q === undefined) {
      q = { tail: Promise.resolve(), overtakenUpTo: 0, last: n };
      queues.set(topic, q);
    }
    q.last = n;
    const queue = q;
    const overtaken = () => queue.overtakenUpTo >= n;
    const run = async (): Promise<void> => {
      if (this.host.isClosed) return;
      try {
        if (!overtaken()) {
          await check?.();
          if (!overtaken() && (await this.subscribeTopic(topic, since, n))) return;
        }
        this.host.sendText(ServerFrames.unsubscribed(topic));
      } catch (err) {
        if (overtaken()) this.host.sendText(ServerFrames.unsubscribed(topic));
        else this.host.sendError(err, { topic });
      }
    };
    const task = queue.tail.then(run);
    queue.tail = task;
    void task.then(() => {
      const queues = this.subQueues;
      if (queue.tail === task && queues !== undefined && queues.get(topic) === queue) queues.delete(topic);
    });
  }

  /**
   * Subscribes this connection to a topic, permission already checked (called in turn by
   * `queueSub`, `n` the number of the `sub`). With `since`, first sends the messages after it
   * that history holds (a `lost` first when history no longer reaches back to it), then
   * `subscribed`; every later message comes live, with no gap and no duplicate: the socket joins
   * the topic's pub/sub key in the same event-loop turn in which it has caught up with what the
   * edge fanned out. Again for a topic already subscribed: resumes from `since`. Resolves true
   * once `subscribed` was sent, false when an `unsub` (or the close) overtook it; rejects with
   * PushError `too_many_topics` or the store's error (nothing held then).
   */
  private async subscribeTopic(topic: string, since: number | undefined, n: number): Promise<boolean> {
    if (topic === ALL_TOPIC) return this.resumeAll(since);
    const { ctx } = this.host;
    const app = ctx.apps.get(this.host.app);
    const topics = (this.topics ??= new Map());
    // One string per topic on the edge rather than one per subscriber.
    topic = ctx.topics.channel(this.host.app, topic)?.topic ?? topic;
    const current = () => !this.host.isClosed && this.topics?.get(topic) === n;
    let ch;
    if (topics.has(topic)) {
      topics.set(topic, n);
      ch = ctx.topics.channel(this.host.app, topic);
      // Resuming while subscribed: live frames stop until the history read has caught up.
      if (ch !== undefined) this.host.ws?.unsubscribe(this.host.topicKey(ch.key));
      ch = await ctx.topics.join(this.host.app, topic).finally(() => ctx.topics.leave(this.host.app, topic));
    } else {
      const limit = app?.settings.maxTopicsPerConnection ?? 0;
      if (topics.size >= limit) {
        throw new PushError('too_many_topics', `a connection may hold at most ${limit} topics`);
      }
      topics.set(topic, n);
      ctx.metrics.topicSubscriptions.inc();
      // Recorded (occupancy, presence) for as long as the entry is in `topics`: every removal leaves.
      ctx.topicPresence.joined(this.host, topic);
      try {
        ch = await ctx.topics.join(this.host.app, topic);
      } catch (err) {
        ctx.topics.leave(this.host.app, topic);
        if (current()) {
          topics.delete(topic);
          ctx.metrics.topicSubscriptions.dec();
          ctx.topicPresence.left(this.host, topic);
        }
        throw err;
      }
    }
    if (!current()) return false;
    if (!(await this.replayTopic(topic, ch, since, current))) return false;
    return this.goLive(topic, ch);
  }

  /**
   * Joins the socket to the topic's pub/sub key and answers `subscribed`. Called in the turn in
   * which the replay caught up with what the edge fanned out, so every later message reaches
   * this socket live, and none it already has.
   */
  private goLive(topic: string, ch: TopicChannel): boolean {
    const ws = this.host.ws;
    if (ws === undefined || this.host.isClosed) return false;
    ws.subscribe(this.host.topicKey(ch.key));
    this.host.sendText(ServerFrames.subscribed(topic, ch.last));
    return true;
  }

  /**
   * With `since`, sends the messages of the topic after it that history holds, up to what the
   * edge has fanned out (a `lost` first when history no longer holds `since`). A `since` ahead of
   * what this edge has fanned out (the client saw newer messages on another edge, or from the
   * API) first waits for the edge to catch up, so that no live frame repeats one the client has.
   * False when the subscription was dropped or replaced meanwhile (`current`); the caller then
   * stops.
   */
  private async replayTopic(
    topic: string,
    ch: TopicChannel,
    since: number | undefined,
    current: () => boolean,
    /** Send `lost` when history no longer holds `since` itself (false: `since` is not a message the client had). */
    checkSince = true,
  ): Promise<boolean> {
    const { ctx } = this.host;
    if (since === undefined) return true;
    if (since > ch.last && !(await this.awaitFannedOut(topic, ch, since, current))) return false;
    // Nothing fanned out after `since`: live from here (no read, and no `lost` for what is not missing).
    if (since >= ch.last) return true;
    /** Highest sequence the client has (sent now, or `since`): the `prev` of the next frame. */
    let cursor = since;
    /** The next sequence to read: only ever past messages at or below what the edge fanned out. */
    let from = since === 0 ? 1 : since;
    /**
     * A message of the topic the next read starts with, to check that history still holds it (0:
     * none): `since` itself first (when it is gone, history no longer reaches back), then the last
     * message the previous read returned. History drops a topic's oldest messages first
     * (`topicHistory`), so while it holds that one it holds everything after it; when it is gone
     * before its own expiry, what followed it may be gone too, dropped while this replay was
     * sending, and `lost` says so: no silent gap.
     */
    let check = checkSince && since > 0 ? since : 0;
    /** When `check` expires by itself (epoch ms; Infinity for `since`): gone after that, it is no sign of a drop. */
    let checkExpires = Number.POSITIVE_INFINITY;
    for (;;) {
      // What the edge has fanned out so far; what comes after it arrives live once subscribed.
      const target = ch.last;
      if (from > target) break;
      await this.roomToSend();
      if (!current()) return false;
      const ws = this.host.ws as ClientSocket;
      const { messages, more } = await ctx.topicStore.readBatch(this.host.app, topic, check > 0 ? check : from, {
        max: TOPIC_REPLAY_BATCH,
        maxBytes: Math.max(1, Math.min(BACKLOG_MAX_BYTES, ctx.highWaterBytes - ws.getBufferedAmount())),
      });
      if (!current()) return false;
      const head = messages[0];
      if (check > 0 && head?.seq !== check && Date.now() < checkExpires - EXPIRY_MARGIN_MS) {
        this.host.sendText(ServerFrames.lost(ch.topicJson, head?.seq ?? target + 1));
        ctx.metrics.topicLost.inc();
      }
      let sent = 0;
      let past = false;
      let last: (typeof messages)[number] | undefined;
      for (const m of messages) {
        // Stored after the target was taken: the next round reads it again, against a newer target
        // (it is either fanned out by then, or arrives live).
        if (m.seq > target) {
          past = true;
          break;
        }
        from = m.seq + 1;
        last = m;
        // At or below the cursor: the client has it (the checked message read again, among others).
        if (m.seq <= cursor || m.expires <= Date.now()) continue;
        this.host.sendText(ServerFrames.topicMessage(ch.topicJson, m.seq, cursor, m.ts, m.bytes, m.binary));
        cursor = m.seq;
        sent++;
      }
      ctx.metrics.topicMessagesOut.inc(sent);
      // History holds nothing more up to the target (the rest expired or was evicted).
      if (past || !more) from = Math.max(from, target + 1);
      // The next read starts with the last message this one returned, unless that was all it
      // returned (a read that brings nothing new would never end).
      if (last !== undefined && last.seq !== check) {
        check = last.seq;
        checkExpires = last.expires;
      } else {
        check = 0;
        checkExpires = Number.POSITIVE_INFINITY;
      }
    }
    return true;
  }

  /**
   * Waits until the edge has fanned out the topic up to `since`. After FANNED_OUT_FIRST_CHECK_MS,
   * then every FANNED_OUT_CHECK_MS, it asks the store whether the topic reaches `since` at all: a
   * `since` past the topic's newest message (made up, or from before the app was created again)
   * waits for next to nothing. False when the subscription was dropped meanwhile.
   */
  private async awaitFannedOut(
    topic: string,
    ch: TopicChannel,
    since: number,
    current: () => boolean,
  ): Promise<boolean> {
    const { ctx } = this.host;
    // A short first wait: an edge a little behind catches up in it, and a `since` past the
    // topic's newest message is answered in about that time, not a whole check period.
    let wait = FANNED_OUT_FIRST_CHECK_MS;
    while (ch.last < since) {
      const reached = await ctx.topics.reached(ch, since, wait);
      wait = FANNED_OUT_CHECK_MS;
      if (!current()) return false;
      if (reached) break;
      const newest = await ctx.topicStore.lastSeq(this.host.app, topic);
      if (!current()) return false;
      if (newest < since) break;
    }
    return true;
  }

  /**
   * A `sub` of `_all`, which every connection holds from its open: resumes it from `since`
   * (live broadcast frames stop until the history read has caught up), then `subscribed`.
   */
  private async resumeAll(since: number | undefined): Promise<boolean> {
    const { ctx } = this.host;
    const token = nextAllToken();
    this.allToken = token;
    const current = () => !this.host.isClosed && this.allToken === token;
    const held = ctx.topics.channel(this.host.app, ALL_TOPIC);
    if (held !== undefined) this.host.ws?.unsubscribe(this.host.topicKey(held.key));
    let ch: TopicChannel;
    if (this.inAll) {
      ch = await ctx.topics.join(this.host.app, ALL_TOPIC).finally(() => ctx.topics.leave(this.host.app, ALL_TOPIC));
    } else {
      // Joining at open had failed: this resume takes the connection's reference.
      try {
        ch = await ctx.topics.join(this.host.app, ALL_TOPIC);
      } catch (err) {
        ctx.topics.leave(this.host.app, ALL_TOPIC);
        throw err;
      }
      if (this.host.isClosed) {
        ctx.topics.leave(this.host.app, ALL_TOPIC);
        return false;
      }
      this.inAll = true;
    }
    if (!current()) return false;
    if (!(await this.replayTopic(ALL_TOPIC, ch, since, current))) return false;
    return this.goLive(ALL_TOPIC, ch);
  }

  /**
   * Leaves a topic (the entry point for `unsub` and a server-initiated unbind); answers
   * `unsubscribed`. A `sub` of the topic not yet answered is overtaken: it stops, and is answered
   * `unsubscribed` too.
   */
  unsubscribeTopic(topic: string): void {
    const { ctx } = this.host;
    const queue = this.subQueues?.get(topic);
    if (queue !== undefined) queue.overtakenUpTo = this.subCounter;
    if (this.topics?.delete(topic) === true) {
      const ch = ctx.topics.channel(this.host.app, topic);
      if (ch !== undefined) this.host.ws?.unsubscribe(this.host.topicKey(ch.key));
      ctx.topics.leave(this.host.app, topic);
      ctx.metrics.topicSubscriptions.dec();
      ctx.topicPresence.left(this.host, topic);
    }
    this.host.sendText(ServerFrames.unsubscribed(topic));
  }

  /**
   * A client's `sub`: the token's patterns, or a topic token, must grant the topic, or the
   * business bound the user to it (the bind granted it: a resume of a bound topic, read from the
   * bindings only when nothing else grants it).
   */
  handleSub(f: SubFrame): void {
    const { ctx } = this.host;
    this.queueSub(f.topic, f.since, async () => {
      const app = ctx.apps.get(this.host.app);
      if (app === undefined || app.disabled) throw new PushError('app_disabled');
      // `_all` needs no grant: every connection of the app receives it.
      if (f.topic === ALL_TOPIC || topicGranted(this.host.topicGrants, f.topic)) return;
      let refusal = new PushError('topic_forbidden', 'the client token does not grant this topic; pass a topic token');
      if (f.token !== undefined) {
        try {
          verifyTopicToken(f.token, app, this.host.user, f.topic);
          return;
        } catch (err) {
          if (!isPushError(err)) throw err;
          refusal = err;
        }
      }
      // A bind that came while this `sub` waited was skipped for it (`holds`): it must not fail.
      if (!(await ctx.bindings.read(this.host.app, this.host.user)).topics.includes(f.topic)) throw refusal;
    });
  }
}
