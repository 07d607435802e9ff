import type { Logger } from 'pino';
import {
  readLivePresenceFrame,
  readLiveTopicMessage,
  type LiveSubscriber,
  type TopicStore,
  type TopicStoredMessage,
} from '@push/nats';
import { ServerFrames, backoffDelay, taggedTopicKey, withApp, type BackoffPolicy, type Subjects } from '@push/protocol';
import type { EdgeMetrics } from './metrics.js';
import type { TopicPresence } from './topic-presence.js';

/** The socket fan-out: uWebSockets.js' own pub/sub (`app.publish`), never a JS loop over sockets. */
export interface TopicFanout {
  publish(key: string, frame: string): void;
  /** Sockets subscribed to the key on this edge (for the delivery count). */
  subscribers(key: string): number;
}

/** One topic with local subscribers: its NATS subscription and what was fanned out so far. */
export interface TopicChannel {
  readonly app: string;
  readonly topic: string;
  /** `push.live.t.<app>.<topic>`: the NATS subject and the uWS pub/sub key. */
  readonly key: string;
  /** The topic name as a JSON string, encoded once for every frame. */
  readonly topicJson: string;
  sid: number;
  /** Local subscriptions (connections, `_all` included) holding this channel. */
  refs: number;
  /** Highest sequence fanned out (or known when the channel opened): a `sub` is live after it. */
  last: number;
  /** Set while live messages are held back: the channel is opening, or filling a gap from history. */
  held: TopicStoredMessage[] | undefined;
  /** Held messages were dropped past the bound: read the store to its end after the fill. */
  overflow: boolean;
  /** Settles once the NATS subscription is active and `last` is known (undefined after that). */
  ready: Promise<void> | undefined;
  /** Joiners to attach when the channel is ready, before what it held is fanned out (see `join`). */
  attachers: Array<(ch: TopicChannel) => void> | undefined;
  /** Called each time `last` moves on (resumes waiting for the edge to catch up, see `reached`). */
  waiters: Array<() => boolean> | undefined;
  /** Order stamp of the last `join`/`leave` fanned out, by user (presence topics; made on the first). */
  presenceOrder?: Map<string, number>;
}

/**
 * Another door's fan-out of the same topics (the Pusher door, apps/edge/src/pusher): told of every
 * message fanned out, in the same order and once, and of every presence announcement.
 */
export interface TopicObserver {
  message(ch: TopicChannel, m: TopicStoredMessage): void;
  /**
   * A `join`/`leave` frame; `joiner`: the local socket whose `join` it announces (it must not get
   * it); `order`: Redis's clock when it was decided (µs; 0 unknown).
   */
  presence(
    ch: TopicChannel,
    t: 'join' | 'leave',
    frame: string,
    joiner: TopicJoinerSocket | undefined,
    order: number,
  ): void;
}

/** A socket that publishes to a uWS pub/sub key (reaching every subscriber but itself). */
export interface TopicJoinerSocket {
  publish(key: string, frame: string): boolean;
}

/** Users whose last announcement's order a channel keeps before it forgets those older than PRESENCE_ORDER_KEPT_US. */
const PRESENCE_ORDER_USERS = 10_000;
const PRESENCE_ORDER_KEPT_US = 10 * 60 * 1_000_000;

/**
 * Whether a `join`/`leave` is newer than the last one fanned out for its user on this channel,
 * by the order Redis decided them in (`order`, µs; 0: none, taken as it comes). Two edges
 * announce a user's `leave` (their last connection closed) and `join` (a new one subscribed)
 * on separate NATS connections, so the later decision can arrive first: the older frame is then
 * dropped, and subscribers end with the user's true state.
 */
function inPresenceOrder(ch: TopicChannel, frame: string, order: number): boolean {
  if (order <= 0) return true;
  let user: unknown;
  try {
    user = (JSON.parse(frame) as { user?: unknown }).user;
  } catch {
    return true;
  }
  if (typeof user !== 'string') return true;
  const seen = (ch.presenceOrder ??= new Map<string, number>());
  const last = seen.get(user);
  if (last !== undefined && order < last) return false;
  if (last === undefined && seen.size >= PRESENCE_ORDER_USERS) {
    for (const [u, o] of seen) if (o < order - PRESENCE_ORDER_KEPT_US) seen.delete(u);
  }
  seen.set(user, order);
  return true;
}

/** Most live messages held per channel while it opens or fills a gap; past it, the store is read again. */
const MAX_HELD = 10_000;
/** Messages per history read when filling a gap. */
const FILL_BATCH = 256;
const FILL_MAX_BYTES = 1024 * 1024;
/**
 * Retries of a fill whose history read failed (typically the store connection still reconnecting
 * after the outage that made the gap): live messages stay held meanwhile. Past the last attempt
 * the subscribers are told `lost`.
 */
const FILL_RETRY: BackoffPolicy = { minMs: 200, baseMs: 500, capMs: 4000 };
const FILL_ATTEMPTS = 8;

/**
 * One NATS subscription per topic per edge (`push.live.t.<app>.<topic>`), ref-counted by the
 * local subscriptions and dropped with the last; each message serialized once and fanned out to
 * the sockets with uWebSockets.js' pub/sub, so a slow socket (whose frames uWS drops past its
 * backpressure bound) never holds up the others.
 *
 * No silent gap at the edge: the RePublish copy carries `Nats-Last-Sequence`, the previous
 * sequence of the same topic. A message whose previous sequence is above what this edge fanned
 * out means the edge missed some (core NATS drops on a slow or reconnecting connection): live
 * messages are held, the gap is read from the topic's history (batched Direct Get) and fanned out
 * in order, then the held ones; what history no longer holds is announced with a `lost` frame.
 * After a reconnect of the live connection every channel reads the store from its last sequence.
 */
export class TopicChannels {
  private readonly channels = new Map<string, TopicChannel>();
  /** Who announced a `join` from this edge (TopicPresence), set once both exist. */
  joiners: Pick<TopicPresence, 'takeJoiner'> | undefined;
  /** The Pusher door's fan-out, set once both exist. */
  observer: TopicObserver | undefined;

  constructor(
    private readonly live: LiveSubscriber,
    private readonly store: TopicStore,
    private readonly subjects: Subjects,
    private readonly fanout: TopicFanout,
    private readonly metrics: EdgeMetrics,
    private readonly log: Logger,
  ) {}

  /** Topics with a NATS subscription on this edge. */
  get size(): number {
    return this.channels.size;
  }

  /** The channel of a topic, when it has local subscribers. */
  channel(app: string, topic: string): TopicChannel | undefined {
    return this.channels.get(this.subjects.liveTopic(app, topic));
  }

  /**
   * Takes a reference on the topic's channel, subscribing on NATS when it is the first. Resolves
   * with the channel once its subscription is active and its last sequence known; rejects (with
   * the store's error) when that could not be learned: the caller must still `leave`.
   *
   * `attach`, when given, subscribes the joiner's socket: at once when the channel is ready, else
   * when it becomes ready and before the messages it held while opening are fanned out. Those
   * were stored after its NATS subscription was active, so after the open of every connection
   * that joins meanwhile: a connection receives `_all` from its open (protocol.md), including a
   * broadcast stored while the channel was reading its last sequence. A joiner without `attach`
   * (a `sub`) is live after `last` once this resolves, as its `subscribed` says.
   */
  async join(app: string, topic: string, attach?: (ch: TopicChannel) => void): Promise<TopicChannel> {
    const key = this.subjects.liveTopic(app, topic);
    let ch = this.channels.get(key);
    if (ch !== undefined) {
      ch.refs++;
      if (ch.ready === undefined) attach?.(ch);
      else {
        if (attach !== undefined) (ch.attachers ??= []).push(attach);
        await ch.ready;
      }
      return ch;
    }
    const channel: TopicChannel = {
      app,
      topic,
      key,
      topicJson: JSON.stringify(topic),
      sid: 0,
      refs: 1,
      last: 0,
      held: [],
      overflow: false,
      ready: undefined,
      attachers: attach === undefined ? undefined : [attach],
      waiters: undefined,
    };
    ch = channel;
    channel.sid = this.live.subscribe(key, (h, payload) => this.onLive(channel, h, payload));
    this.channels.set(key, channel);
    this.metrics.topicChannels.set(this.channels.size);
    // The subscription is active before the last sequence is read: whatever is stored after
    // the read arrives live (held until then), so nothing falls between the two. What arrived
    // before the read is held too, and is fanned out: the channel starts before the first held
    // message (at `last` when none came).
    channel.ready = this.live
      .flush()
      .then(() => this.store.lastSeq(app, topic))
      .then(
        (last) => {
          const first = channel.held?.[0];
          this.advance(channel, first === undefined ? last : Math.min(last, first.seq - 1));
          channel.ready = undefined;
          const attachers = channel.attachers;
          channel.attachers = undefined;
          for (const a of attachers ?? []) a(channel);
          this.release(channel);
        },
        (err: unknown) => {
          channel.ready = undefined;
          channel.held = undefined;
          channel.attachers = undefined;
          throw err;
        },
      );
    await channel.ready;
    return channel;
  }

  /**
   * Resolves true once the channel has fanned out `seq` (at once when it has), or false after
   * `timeoutMs` or when the channel is dropped (its last subscriber left).
   */
  reached(ch: TopicChannel, seq: number, timeoutMs: number): Promise<boolean> {
    if (ch.last >= seq) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiters = (ch.waiters ??= []);
      const check = () => {
        if (ch.last < seq && this.channels.get(ch.key) === ch) return false;
        clearTimeout(timer);
        resolve(ch.last >= seq);
        return true;
      };
      const timer = setTimeout(() => {
        const i = waiters.indexOf(wake);
        if (i >= 0) waiters.splice(i, 1);
        resolve(ch.last >= seq);
      }, timeoutMs);
      const wake = () => check();
      waiters.push(wake);
    });
  }

  /** Moves the channel's fanned-out sequence on to `seq` (never back), waking those waiting for it. */
  private advance(ch: TopicChannel, seq: number): void {
    if (seq <= ch.last) return;
    ch.last = seq;
    const waiters = ch.waiters;
    if (waiters === undefined) return;
    ch.waiters = waiters.filter((w) => !w());
    if (ch.waiters.length === 0) ch.waiters = undefined;
  }

  /** Drops a reference; unsubscribes from NATS when it was the last. */
  leave(app: string, topic: string): void {
    const key = this.subjects.liveTopic(app, topic);
    const ch = this.channels.get(key);
    if (ch === undefined) return;
    if (--ch.refs > 0) return;
    this.channels.delete(key);
    for (const w of ch.waiters?.splice(0) ?? []) w();
    this.live.unsubscribe(ch.sid);
    this.metrics.topicChannels.set(this.channels.size);
  }

  /** After the live connection reconnected: every channel reads what it missed from the store. */
  catchUpAll(): void {
    for (const ch of this.channels.values()) {
      if (ch.held !== undefined || ch.ready !== undefined) {
        ch.overflow = true; // read to the store's end once the current fill or open is done
        continue;
      }
      ch.held = [];
      void this.fill(ch, 0);
    }
  }

  private onLive(ch: TopicChannel, hdrs: Buffer, payload: Buffer): void {
    const m = readLiveTopicMessage(hdrs, payload);
    if (m === undefined) {
      // Not stored, so no sequence: a presence topic's `join`/`leave`, fanned out as it comes.
      const p = readLivePresenceFrame(hdrs, payload);
      if (p === undefined) return;
      if (!inPresenceOrder(ch, p.frame, p.order)) {
        this.metrics.presenceStale.inc();
        return;
      }
      // A `join` this edge announced goes to every subscriber but its joiner (from the joiner's socket).
      const joiner = p.conn === undefined ? undefined : this.joiners?.takeJoiner(p.conn, ch.app, ch.topic)?.ws;
      this.fan(ch, p.frame, joiner);
      this.observer?.presence(ch, p.t, p.frame, joiner, p.order);
      const n = this.reach(ch);
      this.metrics.presenceFrames.inc({ kind: p.t }, joiner === undefined ? n : Math.max(0, n - 1));
      return;
    }
    // Not an envelope (a trusted service publishing straight to the subject got it wrong): its
    // tombstone is never delivered but keeps the sequence chain whole.
    if (m.malformed === true) this.metrics.errors.inc({ code: 'topic_message_malformed' });
    this.metrics.topicMessagesIn.inc();
    this.take(ch, m);
  }

  /** One live message: held, skipped (already fanned out), gap-filled first, or fanned out. */
  private take(ch: TopicChannel, m: TopicStoredMessage): void {
    if (ch.held !== undefined) {
      if (ch.held.length < MAX_HELD) ch.held.push(m);
      else ch.overflow = true;
      return;
    }
    if (m.seq <= ch.last) return;
    if (m.prev > ch.last) {
      // This edge did not fan out the topic's previous message: fill from history first.
      this.metrics.topicGapFills.inc();
      ch.held = [m];
      void this.fill(ch, m.prev);
      return;
    }
    this.emit(ch, m, m.prev);
  }

  /**
   * Publishes one frame to the topic's local sockets (from `joiner`'s socket: to all but it).
   * Sockets of connections holding several apps' sessions join the tagged key instead, and get
   * the frame with `app` (serialized once more, only while such a socket holds the topic).
   */
  private fan(ch: TopicChannel, frame: string, joiner?: { publish(key: string, frame: string): boolean }): void {
    const tagged = taggedTopicKey(ch.key);
    const out = joiner ?? this.fanout;
    out.publish(ch.key, frame);
    if (this.fanout.subscribers(tagged) > 0) out.publish(tagged, withApp(JSON.stringify(ch.app), frame));
  }

  /** Sockets on this edge a frame of the topic reaches (plain and tagged keys). */
  private reach(ch: TopicChannel): number {
    return this.fanout.subscribers(ch.key) + this.fanout.subscribers(taggedTopicKey(ch.key));
  }

  /** Fans one message out to the topic's local sockets, serialized once. */
  private emit(ch: TopicChannel, m: TopicStoredMessage, prev: number): void {
    if (m.expires > Date.now()) {
      const frame = ServerFrames.topicMessage(ch.topicJson, m.seq, prev, m.ts, m.bytes, m.binary);
      this.fan(ch, frame);
      this.metrics.topicMessagesOut.inc(this.reach(ch));
      this.observer?.message(ch, m);
    }
    // After the publish: a resume woken here joins the key once this message went out.
    this.advance(ch, m.seq);
  }

  /** Tells every local subscriber of the topic that messages before `first` are gone. */
  private lost(ch: TopicChannel, first: number): void {
    this.fan(ch, ServerFrames.lost(ch.topicJson, first));
    this.metrics.topicLost.inc(this.reach(ch));
  }

  /**
   * Reads the topic's history from `last + 1` to the store's end and fans it out, then releases
   * the held live messages. `expectPrev` (0: unknown) is a sequence that must be among what is
   * read; when history no longer holds it, subscribers get `lost` first.
   */
  private async fill(ch: TopicChannel, expectPrev: number, attempt = 0): Promise<void> {
    try {
      let cursor = ch.last;
      let sawExpected = expectPrev <= ch.last;
      for (;;) {
        const { messages, more } = await this.store.readBatch(ch.app, ch.topic, cursor + 1, {
          max: FILL_BATCH,
          maxBytes: FILL_MAX_BYTES,
        });
        if (this.channels.get(ch.key) !== ch) return; // left meanwhile
        for (const m of messages) {
          cursor = Math.max(cursor, m.seq);
          if (m.seq <= ch.last) continue;
          if (!sawExpected && m.seq > expectPrev) {
            this.lost(ch, m.seq);
            sawExpected = true;
          }
          if (m.seq === expectPrev) sawExpected = true;
          // What this edge fanned out before is the previous message its subscribers saw.
          this.emit(ch, m, ch.last);
        }
        if (!more || messages.length === 0) break;
      }
      if (!sawExpected) {
        // Nothing held at or after the missing one: it is gone.
        this.lost(ch, ch.last + 1);
        this.advance(ch, expectPrev);
      }
    } catch (err) {
      if (this.channels.get(ch.key) !== ch) return;
      this.metrics.errors.inc({ code: 'topic_fill' });
      if (attempt + 1 < FILL_ATTEMPTS) {
        this.log.debug(
          { err, topic: ch.topic, app: ch.app, attempt },
          'reading a topic gap from history failed; retrying',
        );
        setTimeout(() => void this.fill(ch, expectPrev, attempt + 1), backoffDelay(attempt, FILL_RETRY)).unref();
        return;
      }
      // The store keeps failing: the subscribers cannot be given the gap; say so (when one is known).
      this.log.warn({ err, topic: ch.topic, app: ch.app }, 'filling a topic gap from history failed');
      const next = ch.held?.[0];
      if (next !== undefined && next.prev > ch.last) {
        this.lost(ch, next.seq);
        this.advance(ch, next.prev);
      }
    }
    this.release(ch);
  }

  /** Lets the held live messages through, in order (a gap among them starts another fill). */
  private release(ch: TopicChannel): void {
    const held = ch.held;
    ch.held = undefined;
    if (ch.overflow) {
      ch.overflow = false;
      ch.held = held ?? [];
      if (ch.held.length > MAX_HELD) ch.held.length = MAX_HELD;
      void this.fill(ch, 0);
      return;
    }
    if (held === undefined) return;
    for (let i = 0; i < held.length; i++) {
      this.take(ch, held[i] as TopicStoredMessage);
      // `take` may have started a fill (a gap among the held ones): the rest wait behind it.
      const refilling = ch.held as TopicStoredMessage[] | undefined;
      if (refilling !== undefined) {
        for (let j = i + 1; j < held.length; j++) refilling.push(held[j] as TopicStoredMessage);
        return;
      }
    }
  }
}
