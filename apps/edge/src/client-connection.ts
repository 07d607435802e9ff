import { TokenBucket, verifyTopicToken, type AppDirectory } from '@push/apps';
import type { Config } from '@push/config';
import type {
  BacklogReader,
  EventPublisher,
  InboxMessage,
  InboxStore,
  RpcClient,
  TopicStore,
  UpstreamStore,
} from '@push/nats';
import {
  ALL_TOPIC,
  CLOSE,
  FrameError,
  PushError,
  ServerFrames,
  TopicFrameError,
  backoffDelay,
  isPushError,
  parseClientFrame,
  topicGranted,
  type BackoffPolicy,
  type EventInput,
  type EventType,
  type InboxKind,
  type RpcFrame,
  type SendFrame,
  type Subjects,
  type UpFrame,
  type SubFrame,
} from '@push/protocol';
import type { Logger } from '@push/logger';
import type { AckBatcher } from './ack-batcher.js';
import type { BindingsReader } from './bindings.js';
import type { DeliveryCounts } from './delivery-counts.js';
import type { EdgeMetrics } from './metrics.js';
import type { SendLimits } from './send-limits.js';
import type { TopicChannel, TopicChannels } from './topic-channels.js';
import type { TopicPresence } from './topic-presence.js';
import { sendTransient } from './transient-delivery.js';
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
/** Delay before joining `_all` again after a failure (the store down): 1-2 s, doubling up to 30 s. */
const ALL_RETRY: BackoffPolicy = { minMs: 1000, baseMs: 1000, capMs: 30_000 };
/** Most topic messages one history read asks for when a `sub` resumes with `since`. */
const TOPIC_REPLAY_BATCH = 256;
/**
 * How long a resume whose `since` is ahead of what this edge has fanned out waits before asking
 * the store whether the topic reaches `since` at all.
 */
const FANNED_OUT_CHECK_MS = 1000;

/** The `sub`s of one topic of a connection, not all answered yet: they run one after another. */
interface SubQueue {
  /** Settles once the last queued `sub` of the topic was answered. */
  tail: Promise<void>;
  /** `sub`s numbered at or below it were overtaken by an `unsub`: answered `unsubscribed`. */
  overtakenUpTo: number;
}

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
  /** Reads topic history (resume, gap fill). */
  topicStore: Pick<TopicStore, 'readBatch' | 'lastSeq'>;
  /** One NATS subscription per topic with local subscribers; fan-out through uWS pub/sub. */
  topics: Pick<TopicChannels, 'join' | 'leave' | 'channel' | 'reached'>;
  /** Records topic subscriptions for occupancy and presence; emits their events (TopicPresence). */
  topicPresence: Pick<TopicPresence, 'joined' | 'left'>;
  /** Reads the backlog (per user, or in a shared pass when many wait): InboxStore.readBatch's contract. */
  backlog: Pick<BacklogReader, 'read'>;
  channels: Pick<UserChannels, 'join' | 'leave'>;
  apps: Pick<AppDirectory, 'get'>;
  metrics: EdgeMetrics;
  log: Pick<Logger, 'warn' | 'error' | 'debug'>;
  sendLimits: Pick<SendLimits, 'admit'>;
  acks: Pick<AckBatcher, 'ack'>;
  /** Send no more frames to a socket past this many buffered bytes; resume on drain. */
  highWaterBytes: number;
  /** The topics the business bound a user to (read once per connection, at open). */
  bindings: Pick<BindingsReader, 'read'>;
  /** Never-ack guard (issue 17 part 3): told what a closing connection leaves unacked. */
  deliveryCounts: Pick<DeliveryCounts, 'unacked'>;
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
  /** uWS pub/sub: the socket joins or leaves a topic's key (topic fan-out, `app.publish`). */
  subscribe(key: string): boolean;
  unsubscribe(key: string): boolean;
  /** uWS pub/sub: sends to every socket subscribed to the key but this one. */
  publish(key: string, message: string): boolean;
}

/**
 * What uWS keeps per socket. uWS copies the own properties of the object given to `upgrade` into
 * its own user data (dropping the prototype), so the connection object is wrapped.
 */
export interface SocketData {
  conn: ClientConnection;
  /**
   * Ping interval agreed at the upgrade (seconds), applied at open. Not named `ping`: uWS.js keeps
   * these fields on the socket object itself, where `ping` would hide `ws.ping()`.
   */
  pingSeconds: number;
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
  /**
   * Per kind (business, client), a sequence up to which this connection got or read every
   * message of that kind: a live message whose `prev` is above it follows one it never got.
   */
  private seenB = 0;
  private seenC = 0;
  /** Delivered, not acked: sequence -> kind, in delivery (= sequence) order. */
  private inflight: Map<number, InboxKind> | undefined;
  private mode = LOADING;
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
  /** Rate limit of this connection's sends; made on its first send. */
  private sendBucket: TokenBucket | undefined;
  /** Rate limits of this connection's `up` and `rpc` frames; made on first use. */
  private upBucket: TokenBucket | undefined;
  private rpcBucket: TokenBucket | undefined;
  /** `rpc` frames awaiting their answer. */
  private rpcInFlight = 0;
  /** Agrees a new ping interval a `ping` frame proposed (the edge's heartbeat wheel); answers the agreed one. */
  heartbeat: { propose(seconds: number): number } | undefined;
  /** Why the edge closed the socket (`kicked`, `token_expired`...), for the `conn_close` event; undefined when the client did. */
  closeReason: string | undefined;
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
  /** Token of whoever joins the socket to `_all`'s pub/sub key (the open, or a later resume): the latest wins. */
  private allToken: object | undefined;
  /** Resume reads waiting for the socket to drain. */
  private drainWaiters: Array<() => void> | undefined;
  /**
   * Topics unbound while the bindings read at open was out (undefined when none is): the read
   * may predate the unbind, so those are not subscribed from it.
   */
  private unboundWhileLoading: Set<string> | undefined;

  constructor(
    private readonly ctx: ConnectionContext,
    readonly n: number,
    readonly app: string,
    readonly user: string,
    readonly device: string,
    /** Token expiry, epoch seconds. */
    readonly exp: number,
    /** Topic patterns the client token grants (its `topics` claim). */
    private readonly topicGrants: readonly string[] | undefined = undefined,
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
    this.joinAll();
    // Registered for control messages above (channels.join), so a bind is seen by this read or
    // by its control message, never by neither.
    this.loadBindings();
  }

  /**
   * Subscribes the topics the business bound the user to (after `hello`; each answered with
   * `subscribed`, as a bind does). Retried with backoff while the connection lives when Redis
   * fails, and read again while the mirror is being rebuilt (Redis lost its data): a bound topic
   * must not stay away silently.
   */
  private loadBindings(attempt = 0): void {
    const { ctx } = this;
    const skip = (this.unboundWhileLoading ??= new Set());
    const again = (): void => {
      setTimeout(
        () => {
          if (this.mode !== CLOSED) this.loadBindings(attempt + 1);
        },
        backoffDelay(attempt, ALL_RETRY),
      ).unref();
    };
    ctx.bindings.read(this.app, this.user).then(
      ({ topics, whole }) => {
        if (this.unboundWhileLoading === skip) this.unboundWhileLoading = undefined;
        if (this.mode === CLOSED) return;
        // Already held: a bind's control message came first.
        for (const t of topics) {
          if (!skip.has(t) && this.topics?.has(t) !== true && this.subQueues?.has(t) !== true) this.bindTopic(t);
        }
        if (!whole) again();
      },
      (err: unknown) => {
        ctx.metrics.errors.inc({ code: 'bindings' });
        ctx.log.warn({ err, conn: this.id }, 'reading the topic bindings failed; retrying');
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
    if (this.mode === CLOSED) return;
    this.queueSub(topic, undefined);
  }

  /** The business unbound the user from a topic: the connection leaves it (`unsubscribed`). */
  unbindTopic(topic: string): void {
    if (this.mode === CLOSED) return;
    this.unboundWhileLoading?.add(topic);
    this.unsubscribeTopic(topic);
  }

  /** Every connection receives the app's broadcast topic `_all`, with no `sub` and no `subscribed`. */
  private joinAll(attempt = 0): void {
    const { ctx } = this;
    const token = {};
    this.inAll = true;
    this.allToken = token;
    ctx.topics.join(this.app, ALL_TOPIC).then(
      (ch) => {
        // A `sub` of `_all` (a resume) that came meanwhile joins the key itself, after its replay.
        if (this.mode === CLOSED || this.ws === undefined || this.allToken !== token) return;
        this.ws.subscribe(ch.key);
      },
      (err: unknown) => {
        ctx.metrics.errors.inc({ code: isPushError(err) ? err.code : 'internal' });
        // Counted; logged at debug only: when the store fails, every connection of a storm fails here.
        ctx.log.debug({ err, conn: this.id }, 'joining the _all topic failed');
        if (this.inAll) ctx.topics.leave(this.app, ALL_TOPIC);
        this.inAll = false;
        // Broadcasts must not stay away silently: try again while the connection lives.
        setTimeout(
          () => {
            if (this.mode !== CLOSED && !this.inAll && this.allToken === token) this.joinAll(attempt + 1);
          },
          backoffDelay(attempt, ALL_RETRY),
        ).unref();
      },
    );
  }

  /** Called on WebSocket close (any reason). Undelivered and unacked messages stay stored. */
  closed(): void {
    if (this.mode === CLOSED) return;
    this.mode = CLOSED;
    this.ctx.channels.leave(this.app, this.user, this);
    // uWS unsubscribes a closed socket from its pub/sub keys; the edge's references go here.
    if (this.inAll) this.ctx.topics.leave(this.app, ALL_TOPIC);
    this.inAll = false;
    this.allToken = undefined;
    if (this.topics !== undefined) {
      for (const topic of this.topics.keys()) {
        this.ctx.topics.leave(this.app, topic);
        this.ctx.topicPresence.left(this, topic);
      }
      this.ctx.metrics.topicSubscriptions.dec(this.topics.size);
      this.topics = undefined;
    }
    for (const w of this.drainWaiters?.splice(0) ?? []) w();
    // Never-ack guard (issue 17 part 3): each delivery still unacked at the close counts once.
    if (this.inflight?.size)
      this.ctx.deliveryCounts.unacked(this.app, this.user, this.inflight.keys(), this.ackFloor());
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
        // Nothing says messages wait (a connect, or a resync of a connection that had caught
        // up): ask first, in a probe shared with other connects, whether there is anything.
        const probe = this.caughtUp;
        this.caughtUp = false;
        const { messages, more } = await ctx.backlog.read(
          this.app,
          this.user,
          this.cursor + 1,
          {
            max: ctx.config.window - (this.inflight?.size ?? 0),
            maxBytes: Math.min(BACKLOG_MAX_BYTES, ctx.highWaterBytes - ws.getBufferedAmount()),
          },
          this,
          probe,
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
      // Read to the end: every message of both kinds up to the cursor was got.
      this.seenB = Math.max(this.seenB, this.cursor);
      this.seenC = Math.max(this.seenC, this.cursor);
      this.caughtUp = true;
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
        if (this.buffered.length < this.ctx.config.window) this.buffered.push(m);
        else this.overflow = true;
        return;
      default:
        return; // stalled or closed: the store has it
    }
  }

  /** A transient message's frame (user-channels.ts): sent now or dropped, never kept (transient-delivery.ts). */
  onTransient(frame: string): void {
    if (this.ws !== undefined && this.mode !== CLOSED) {
      sendTransient(this.ws, frame, this.ctx.highWaterBytes, this.ctx.metrics);
    }
  }

  /**
   * A live message came whose previous message of its kind (`prev`) this connection never got:
   * lost on its way (a stream leader died after storing it, before its RePublish crossed to this
   * edge's server). Going on would move the cursor past it, and the ack floor's purge would then
   * remove it undelivered; instead the store is read again from it. Messages of the other kind
   * after it that were delivered may come again (at-least-once).
   */
  private missed(prev: number): void {
    this.ctx.metrics.liveGaps.inc();
    this.cursor = Math.min(this.cursor, prev - 1);
    // Stalled first: called while a read loop still hands over its buffered live messages, the
    // rest of them must be dropped (they are stored), and that loop's end runs the resync.
    this.stall();
    this.resync();
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
    if (m.from === undefined) this.seenB = Math.max(this.seenB, m.seq);
    else this.seenC = Math.max(this.seenC, m.seq);
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

  /** The socket drained: resume if stalled, and let waiting topic resumes read on. */
  drained(): void {
    if (this.mode === STALLED && this.canSend()) this.resync();
    if (
      this.drainWaiters !== undefined &&
      this.ws !== undefined &&
      this.ws.getBufferedAmount() < this.ctx.highWaterBytes
    ) {
      for (const w of this.drainWaiters.splice(0)) w();
    }
  }

  /** Resolves when the socket has room below the high-water mark again (or closed). */
  private roomToSend(): Promise<void> {
    const ws = this.ws;
    if (ws === undefined || this.mode === CLOSED || ws.getBufferedAmount() < this.ctx.highWaterBytes) {
      return Promise.resolve();
    }
    return new Promise((resolve) => (this.drainWaiters ??= []).push(resolve));
  }

  /**
   * Records this connection's topic subscriptions anew: the edge's presence lease had lapsed, or
   * Redis lost its data (TopicPresence.joined).
   */
  recordTopics(again: 'lease' | 'data'): void {
    if (this.mode === CLOSED || this.topics === undefined) return;
    for (const topic of this.topics.keys()) this.ctx.topicPresence.joined(this, topic, again);
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
  private queueSub(topic: string, since: number | undefined, check?: () => void): void {
    const n = ++this.subCounter;
    const queues = (this.subQueues ??= new Map<string, SubQueue>());
    let q = queues.get(topic);
    if (q === undefined) {
      q = { tail: Promise.resolve(), overtakenUpTo: 0 };
      queues.set(topic, q);
    }
    const queue = q;
    const overtaken = () => queue.overtakenUpTo >= n;
    const run = async (): Promise<void> => {
      if (this.mode === CLOSED) return;
      try {
        if (!overtaken()) {
          check?.();
          if (await this.subscribeTopic(topic, since, n)) return;
        }
        this.sendText(ServerFrames.unsubscribed(topic));
      } catch (err) {
        if (overtaken()) this.sendText(ServerFrames.unsubscribed(topic));
        else this.sendError(err, { topic });
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
    const { ctx } = this;
    const app = ctx.apps.get(this.app);
    const topics = (this.topics ??= new Map());
    // One string per topic on the edge rather than one per subscriber.
    topic = ctx.topics.channel(this.app, topic)?.topic ?? topic;
    const current = () => this.mode !== CLOSED && this.topics?.get(topic) === n;
    let ch;
    if (topics.has(topic)) {
      topics.set(topic, n);
      ch = ctx.topics.channel(this.app, topic);
      // Resuming while subscribed: live frames stop until the history read has caught up.
      if (ch !== undefined) this.ws?.unsubscribe(ch.key);
      ch = await ctx.topics.join(this.app, topic).finally(() => ctx.topics.leave(this.app, topic));
    } else {
      const limit = app?.settings.maxTopicsPerConnection ?? 0;
      if (topics.size >= limit) {
        throw new PushError('too_many_topics', `a connection may hold at most ${limit} topics`);
      }
      topics.set(topic, n);
      ctx.metrics.topicSubscriptions.inc();
      // Recorded (occupancy, presence) for as long as the entry is in `topics`: every removal leaves.
      ctx.topicPresence.joined(this, topic);
      try {
        ch = await ctx.topics.join(this.app, topic);
      } catch (err) {
        ctx.topics.leave(this.app, topic);
        if (current()) {
          topics.delete(topic);
          ctx.metrics.topicSubscriptions.dec();
          ctx.topicPresence.left(this, topic);
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
    const ws = this.ws;
    if (ws === undefined || this.mode === CLOSED) return false;
    ws.subscribe(ch.key);
    this.sendText(ServerFrames.subscribed(topic, ch.last));
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
  ): Promise<boolean> {
    const { ctx } = this;
    if (since === undefined) return true;
    if (since > ch.last && !(await this.awaitFannedOut(topic, ch, since, current))) return false;
    // Nothing fanned out after `since`: live from here (no read, and no `lost` for what is not missing).
    if (since >= ch.last) return true;
    /** Highest sequence the client has (sent now, or `since`): the `prev` of the next frame. */
    let cursor = since;
    /** The next sequence to read: only ever past messages at or below what the edge fanned out. */
    let from = since === 0 ? 1 : since;
    // The first read starts at `since` itself: when it is still held, history reaches back.
    let probe = since > 0;
    for (;;) {
      // What the edge has fanned out so far; what comes after it arrives live once subscribed.
      const target = ch.last;
      if (from > target) break;
      await this.roomToSend();
      if (!current()) return false;
      const ws = this.ws as ClientSocket;
      const { messages, more } = await ctx.topicStore.readBatch(this.app, topic, from, {
        max: TOPIC_REPLAY_BATCH,
        maxBytes: Math.max(1, Math.min(BACKLOG_MAX_BYTES, ctx.highWaterBytes - ws.getBufferedAmount())),
      });
      if (!current()) return false;
      if (probe) {
        probe = false;
        const head = messages[0];
        if (head?.seq !== since) {
          this.sendText(ServerFrames.lost(ch.topicJson, head?.seq ?? target + 1));
          ctx.metrics.topicLost.inc();
        }
      }
      let sent = 0;
      let past = false;
      for (const m of messages) {
        // Stored after the target was taken: the next round reads it again, against a newer target
        // (it is either fanned out by then, or arrives live).
        if (m.seq > target) {
          past = true;
          break;
        }
        from = m.seq + 1;
        if (m.seq <= cursor || m.expires <= Date.now()) continue;
        this.sendText(ServerFrames.topicMessage(ch.topicJson, m.seq, cursor, m.ts, m.bytes, m.binary));
        cursor = m.seq;
        sent++;
      }
      ctx.metrics.topicMessagesOut.inc(sent);
      // History holds nothing more up to the target (the rest expired or was evicted).
      if (past || !more) from = Math.max(from, target + 1);
    }
    return true;
  }

  /**
   * Waits until the edge has fanned out the topic up to `since`. Every FANNED_OUT_CHECK_MS it
   * asks the store whether the topic reaches `since` at all: a `since` past the topic's newest
   * message (made up, or from before the app was created again) waits for nothing. False when
   * the subscription was dropped meanwhile.
   */
  private async awaitFannedOut(
    topic: string,
    ch: TopicChannel,
    since: number,
    current: () => boolean,
  ): Promise<boolean> {
    const { ctx } = this;
    while (ch.last < since) {
      const reached = await ctx.topics.reached(ch, since, FANNED_OUT_CHECK_MS);
      if (!current()) return false;
      if (reached) break;
      const newest = await ctx.topicStore.lastSeq(this.app, topic);
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
    const { ctx } = this;
    const token = {};
    this.allToken = token;
    const current = () => this.mode !== CLOSED && this.allToken === token;
    const held = ctx.topics.channel(this.app, ALL_TOPIC);
    if (held !== undefined) this.ws?.unsubscribe(held.key);
    let ch: TopicChannel;
    if (this.inAll) {
      ch = await ctx.topics.join(this.app, ALL_TOPIC).finally(() => ctx.topics.leave(this.app, ALL_TOPIC));
    } else {
      // Joining at open had failed: this resume takes the connection's reference.
      try {
        ch = await ctx.topics.join(this.app, ALL_TOPIC);
      } catch (err) {
        ctx.topics.leave(this.app, ALL_TOPIC);
        throw err;
      }
      if (this.mode === CLOSED) {
        ctx.topics.leave(this.app, ALL_TOPIC);
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
    const { ctx } = this;
    const queue = this.subQueues?.get(topic);
    if (queue !== undefined) queue.overtakenUpTo = this.subCounter;
    if (this.topics?.delete(topic) === true) {
      const ch = ctx.topics.channel(this.app, topic);
      if (ch !== undefined) this.ws?.unsubscribe(ch.key);
      ctx.topics.leave(this.app, topic);
      ctx.metrics.topicSubscriptions.dec();
      ctx.topicPresence.left(this, topic);
    }
    this.sendText(ServerFrames.unsubscribed(topic));
  }

  /** A client's `sub`: the token's patterns, or a topic token, must grant the topic. */
  private handleSub(f: SubFrame): void {
    const { ctx } = this;
    this.queueSub(f.topic, f.since, () => {
      const app = ctx.apps.get(this.app);
      if (app === undefined || app.disabled) throw new PushError('app_disabled');
      // `_all` needs no grant: every connection of the app receives it.
      if (f.topic !== ALL_TOPIC && !topicGranted(this.topicGrants, f.topic)) {
        if (f.token === undefined) {
          throw new PushError('topic_forbidden', 'the client token does not grant this topic; pass a topic token');
        }
        verifyTopicToken(f.token, app, this.user, f.topic);
      }
    });
  }

  /** Handles one text frame from the client. Bad frames get an error frame; the socket stays. */
  onFrame(text: string): void {
    let frame;
    try {
      frame = parseClientFrame(text);
    } catch (err) {
      // A refused `send` is answered with its id, a refused `sub`/`unsub` with its topic.
      this.sendError(
        err,
        err instanceof FrameError && err.id !== undefined
          ? { id: err.id }
          : err instanceof TopicFrameError && err.topic !== undefined
            ? { topic: err.topic }
            : undefined,
      );
      return;
    }
    switch (frame.t) {
      case 'ack':
        this.ack(frame.seqs);
        return;
      case 'ping':
        this.sendText(ServerFrames.pong(frame.ping === undefined ? undefined : this.heartbeat?.propose(frame.ping)));
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
      case 'sub':
        this.handleSub(frame);
        return;
      case 'unsub':
        this.unsubscribeTopic(frame.topic);
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
      if (wait > 0) return this.rateLimited(f.id, 'sends', wait);
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
      const wait = (this.upBucket ??= new TokenBucket(s.upRatePerConnection)).admitOne(s.upRatePerConnection);
      if (wait > 0) return this.rateLimited(f.id, 'up frames', wait);
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
      const wait = (this.rpcBucket ??= new TokenBucket(s.rpcRatePerConnection)).admitOne(s.rpcRatePerConnection);
      if (wait > 0) {
        ctx.metrics.rpc.inc({ outcome: 'rate_limited' });
        counted = true;
        return this.rateLimited(f.id, 'rpc', wait);
      }
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

  /** Answers a frame refused by a per-connection (or per-user) rate with `rate_limited`, its id and the wait. */
  private rateLimited(id: string, what: string, waitMs: number): void {
    this.sendError(new PushError('rate_limited', `too many ${what}; retry in ${waitMs} ms`), {
      id,
      retryAfter: waitMs,
    });
  }

  private sendError(err: unknown, extra?: { id?: string; seqs?: number[]; retryAfter?: number; topic?: string }): void {
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
