import type { InboxMessage } from '@push/nats';
import {
  PushError,
  isPushError,
  ServerFrames,
  type ClientFrame,
  type EventInput,
  type EventType,
} from '@push/protocol';
import type { ClientSocket, ConnectionContext } from './client-connection.js';
import { InboxDelivery } from './inbox-delivery.js';
import type { ErrorExtra, SessionHost } from './session-host.js';
import { TopicSubscriptions, type LateAll } from './topic-subscriptions.js';
import type { TrafficCell } from './traffic-meter.js';
import { UpstreamFrames, type RpcSlots } from './upstream-frames.js';
import type { LiveReceiver } from './user-channels.js';

/** The frames a session handles itself (the connection handles `ping`, `attach` and `detach`). */
export type SessionFrame = Extract<ClientFrame, { t: 'ack' | 'send' | 'up' | 'rpc' | 'sub' | 'unsub' }>;

/**
 * Most frames (and bytes) a client may send before its `hello`, which waits for the app's `_all`
 * channel when it is not open on this edge yet (ClientSession.start): they are handled after the
 * `hello`, in order. Past either bound the socket is closed with 1008 (policy violation). The
 * same holds for frames about an attached session before its `attached` (AttachedSession).
 */
export const FRAMES_BEFORE_HELLO = 64;
export const BYTES_BEFORE_HELLO = 64 * 1024;

/**
 * Longest a greeting waits for the app's `_all` channel while the store does not answer (each
 * attempt to open it is retried 1-2 s after it failed): a broadcast stored once the client has
 * its greeting then reaches it. Past this the greeting goes out and `_all` is joined when the
 * store answers, first sending the broadcasts stored since the greeting (TopicSubscriptions.catchUpAll).
 */
const ALL_HELLO_WAIT_MS = 10_000;
/** How far before a `hello` sent without `_all` its late join looks for broadcasts (clock skew with the store). */
const LATE_ALL_MARGIN_MS = 2000;

/** Frames held until a greeting (`hello`, `attached`), within FRAMES_BEFORE_HELLO and BYTES_BEFORE_HELLO. */
export class EarlyFrames<T> {
  readonly frames: T[] = [];
  private bytes = 0;

  /** Holds a frame (`text` is what the client sent); false when that passes a bound: close with 1008. */
  hold(frame: T, text: string): boolean {
    this.frames.push(frame);
    this.bytes += Buffer.byteLength(text);
    return this.frames.length <= FRAMES_BEFORE_HELLO && this.bytes <= BYTES_BEFORE_HELLO;
  }
}

/**
 * One app's session on a connection: who it is (app, user, device, token expiry and grants) and
 * its parts, each in its own module: inbox delivery and acks (InboxDelivery), topic
 * subscriptions and bindings (TopicSubscriptions), and upstream frames `send`/`up`/`rpc`
 * (UpstreamFrames). A connection is its first app's session (ClientConnection) and may hold
 * others (AttachedSession); every session has its own windows, acks, rate limits, presence and
 * events, and ends on its own (kick, disable, token expiry, `detach`).
 */
export abstract class ClientSession implements SessionHost, LiveReceiver {
  protected readonly inbox: InboxDelivery;
  protected readonly topics: TopicSubscriptions;
  /** Made on the first `send`, `up` or `rpc`: most connections never send one. */
  private upstreamFrames: UpstreamFrames | undefined;
  /** Where this session's traffic is counted; set by `count()` once the first app is known. */
  protected traffic: TrafficCell | undefined;
  /** When presence first recorded the session, epoch ms (its `since` every time); 0 before. */
  presenceSince = 0;
  /** Recorded in presence under the current epoch: its user's online was decided (EdgePresence). */
  presenceRecorded = false;
  /**
   * Its presence entry was written at least once: an entry its removal then finds gone was
   * removed by a sweep, which reported its `conn_close` (EdgePresence).
   */
  presenceWritten = false;

  constructor(
    readonly ctx: ConnectionContext,
    readonly app: string,
    readonly user: string,
    readonly device: string,
    /** Token expiry, epoch seconds. */
    readonly exp: number,
    /** Topic patterns the client token grants (its `topics` claim). */
    readonly topicGrants: readonly string[] | undefined,
  ) {
    this.inbox = new InboxDelivery(this);
    this.topics = new TopicSubscriptions(this);
  }

  private get upstream(): UpstreamFrames {
    return (this.upstreamFrames ??= new UpstreamFrames(this));
  }

  /** Connection id, unique across edges; every session of a connection shares it. */
  abstract get id(): string;
  abstract get ws(): ClientSocket | undefined;
  abstract rpcSlots(): RpcSlots;
  /** Sends one frame of this session on the socket; answers as uWS `send` does. */
  abstract send(text: string): number;
  /** Ends this session for a kick. */
  abstract kick(reason: string): void;
  /** Ends this session for a newer connection of its user (devicePolicy). */
  abstract replace(): void;
  /** The uWS pub/sub key this session's socket joins for a topic channel's key. */
  abstract topicKey(key: string): string;

  get isClosed(): boolean {
    return this.inbox.isClosed;
  }

  /**
   * Starts the session: joins the user's live channel and `_all`, greets (`hello` or
   * `attached`), then reads the backlog once the channel is live and subscribes the bound topics.
   *
   * `_all` reaches a connection from its open (protocol.md): when the app's broadcast channel is
   * open on this edge, the socket joins it at once; when not, the greeting waits until the
   * channel's NATS subscription is active and its last sequence read (a flush and one Direct Get;
   * when the read fails, until a retry succeeds, at most ALL_HELLO_WAIT_MS), so that a broadcast
   * stored once the client has its `hello` reaches it. Nothing is sent before the greeting (frames the client sent meanwhile
   * wait: ClientConnection).
   */
  protected start(greeting: string): void {
    const subscribed = this.ctx.channels.join(this.app, this.user, this);
    const greet = (): void => {
      if (this.isClosed || this.greeted) return;
      this.greeted = true;
      this.sendText(greeting);
      // Open from its greeting on (api.md: `conn_open` after the `hello`): its event, presence
      // (`user_online`), then devicePolicy, which may replace the user's older connections: only
      // once this one is recorded, so that the user is never without a connection in presence.
      this.emit('conn_open', {});
      // Ordered among the user's connections by its hello, not by when its record came back.
      const at = this.ctx.devicePolicy?.stamp();
      const recorded = this.ctx.edgePresence?.opened(this);
      if (recorded === undefined) this.ctx.devicePolicy?.opened(this, at);
      else void recorded.then(() => this.ctx.devicePolicy?.opened(this, at));
      // Read the backlog once the live subscription is active: no gap between the two.
      void subscribed.then(() => this.inbox.resync());
      // Registered for control messages above (channels.join), so a bind is seen by this read or
      // by its control message, never by neither.
      this.topics.loadBindings();
      this.onGreeted();
    };
    const late: LateAll = {};
    const joining = this.topics.joinAll(late);
    if (joining === undefined) greet();
    else {
      // A store that does not answer holds the hello at most ALL_HELLO_WAIT_MS; `_all` joins
      // later, sending first what was stored since (a margin for the store's clock).
      const timer = setTimeout(() => {
        late.since = Date.now() - LATE_ALL_MARGIN_MS;
        greet();
      }, ALL_HELLO_WAIT_MS);
      void joining.then(() => {
        clearTimeout(timer);
        greet();
      });
    }
  }

  /** True once the greeting was sent: frames go out only after it. */
  greeted = false;

  /**
   * The session ended (its socket closed, or it was detached): its `conn_close`, presence and
   * devicePolicy; nothing for one that ended before its greeting (it never opened for them).
   */
  ended(code: number, reason: string): void {
    if (!this.greeted) return;
    // With presence, `conn_close` comes with the removal of the entry (unless a sweep reported it).
    if (this.ctx.edgePresence !== undefined) this.ctx.edgePresence.closed(this, code, reason);
    else this.emit('conn_close', { code, reason });
    this.ctx.devicePolicy?.closed(this);
  }

  /** Called right after the greeting (ClientConnection hands over the frames that waited for it). */
  protected onGreeted(): void {
    // Nothing by default.
  }

  /** Ends the session's delivery and subscriptions. Undelivered and unacked messages stay stored. */
  stop(): void {
    this.inbox.close();
    this.ctx.channels.leave(this.app, this.user, this);
    // uWS unsubscribes a closed socket from its pub/sub keys; the edge's references go here.
    this.topics.close();
  }

  /** Counts a frame from the client about this session (TrafficMeter). */
  countIn(text: string): void {
    if (this.traffic === undefined) return;
    this.traffic.framesIn++;
    this.traffic.bytesIn += Buffer.byteLength(text);
  }

  /** Handles one frame about this session. */
  handle(frame: SessionFrame): void {
    switch (frame.t) {
      case 'ack':
        this.inbox.ack(frame.seqs);
        return;
      case 'send':
        void this.upstream.handleSend(frame);
        return;
      case 'up':
        void this.upstream.handleUp(frame);
        return;
      case 'rpc':
        void this.upstream.handleRpc(frame);
        return;
      case 'sub':
        this.topics.handleSub(frame);
        return;
      case 'unsub':
        this.topics.unsubscribeTopic(frame.topic);
        return;
    }
  }

  /**
   * A topic the business bound the user to (control message, or the read at open): subscribed
   * with no grant check. A refusal (`too_many_topics`, a store error) is an `error` frame with
   * the topic, as for a `sub`.
   */
  bindTopic(topic: string): void {
    this.topics.bindTopic(topic);
  }

  /** The business unbound the user from a topic: the session leaves it (`unsubscribed`). */
  unbindTopic(topic: string): void {
    this.topics.unbindTopic(topic);
  }

  /**
   * Reads the store from `cursor + 1` until caught up or blocked, then goes live. Safe to call
   * any time (after a NATS reconnect, an ack, a drain): one read loop runs at a time.
   */
  resync(): void {
    this.inbox.resync();
  }

  /** A live (republished) message of this user. */
  onLive(m: InboxMessage): void {
    this.inbox.onLive(m);
  }

  /** A transient message's frame (user-channels.ts): sent now or dropped, never kept. */
  onTransient(frame: string): void {
    this.inbox.onTransient(frame);
  }

  /** Emits an event about this session (app, user, device, conn and edge filled in). */
  emit<T extends EventType>(type: T, fields: Omit<EventInput<T>, 'app' | 'user' | 'device' | 'conn' | 'edge'>): void {
    const about = {
      app: this.app,
      user: this.user,
      device: this.device,
      conn: this.id,
      edge: this.ctx.edgeId,
      ...fields,
    };
    // TypeScript cannot see that `about` restores what Omit removed from a generic T.
    this.ctx.events.emit(type, about as unknown as EventInput<T>);
  }

  /** The socket drained: resume if stalled, and let waiting topic resumes read on. */
  drained(): void {
    this.inbox.drained();
    this.topics.drained();
  }

  /**
   * Records this session's topic subscriptions anew: the edge's presence lease had lapsed, or
   * Redis lost its data (TopicPresence.joined).
   */
  recordTopics(again: 'lease' | 'data'): void {
    this.topics.recordTopics(again);
  }

  /** Topics this session subscribed to (`_all` not included). */
  get topicCount(): number {
    return this.topics.topicCount;
  }

  /**
   * Leaves a topic (the entry point for `unsub` and a server-initiated unbind); answers
   * `unsubscribed`.
   */
  unsubscribeTopic(topic: string): void {
    this.topics.unsubscribeTopic(topic);
  }

  /** Answers with an `error` frame (a PushError's code, else `internal`, logged). */
  sendError(err: unknown, extra?: ErrorExtra): void {
    const e = isPushError(err) ? err : new PushError('internal', undefined, { cause: err });
    if (e.code === 'internal') this.ctx.log.error({ err, conn: this.id }, 'frame handling failed');
    this.ctx.metrics.errors.inc({ code: e.code });
    this.sendText(ServerFrames.error(e.code, e.message, extra));
  }

  /** Sends one frame (nothing once closed). */
  sendText(text: string): void {
    if (this.isClosed) return;
    this.send(text);
  }
}
