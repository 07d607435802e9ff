import type { AppDirectory } from '@push/apps';
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
  CLOSE,
  FrameError,
  PushError,
  ServerFrames,
  TopicFrameError,
  isPushError,
  parseClientFrame,
  type EventInput,
  type EventType,
  type Subjects,
} from '@push/protocol';
import type { Logger } from '@push/logger';
import type { AckBatcher } from './ack-batcher.js';
import type { BindingsReader } from './bindings.js';
import { InboxDelivery } from './inbox-delivery.js';
import type { EdgeMetrics } from './metrics.js';
import type { SendLimits } from './send-limits.js';
import type { ErrorExtra, SessionHost } from './session-host.js';
import type { TopicChannels } from './topic-channels.js';
import type { TopicPresence } from './topic-presence.js';
import { TopicSubscriptions } from './topic-subscriptions.js';
import { UpstreamFrames } from './upstream-frames.js';
import type { LiveReceiver, UserChannels } from './user-channels.js';

export { RPC_IN_FLIGHT_PER_CONNECTION } from './upstream-frames.js';

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
  /** Ping interval the client asked for at the upgrade (seconds, clamped), applied at open. */
  ping: number;
}
/**
 * One client WebSocket: a thin shell over the parts of its session, each in its own module:
 * inbox delivery and acks (InboxDelivery), topic subscriptions and bindings
 * (TopicSubscriptions), and upstream frames `send`/`up`/`rpc` (UpstreamFrames). The connection
 * greets, reads frames and hands each to the part it concerns, and closes: a new frame kind
 * touches one part.
 */
export class ClientConnection implements LiveReceiver, SessionHost {
  ws: ClientSocket | undefined;
  /** Why the edge closed the socket (`kicked`, `token_expired`...), for the `conn_close` event; undefined when the client did. */
  closeReason: string | undefined;
  private readonly inbox: InboxDelivery;
  private readonly topics: TopicSubscriptions;
  private readonly upstream: UpstreamFrames;

  constructor(
    readonly ctx: ConnectionContext,
    readonly n: number,
    readonly app: string,
    readonly user: string,
    readonly device: string,
    /** Token expiry, epoch seconds. */
    readonly exp: number,
    /** Topic patterns the client token grants (its `topics` claim). */
    readonly topicGrants: readonly string[] | undefined = undefined,
  ) {
    this.inbox = new InboxDelivery(this);
    this.topics = new TopicSubscriptions(this);
    this.upstream = new UpstreamFrames(this);
  }

  /** Connection id, unique across edges (edge id + counter). */
  get id(): string {
    return `${this.ctx.edgeId}-${this.n}`;
  }

  get isClosed(): boolean {
    return this.inbox.isClosed;
  }

  /** Called on WebSocket open: greet, subscribe, then read the backlog. */
  open(ws: ClientSocket, pingSeconds: number, maxMessageBytes: number): void {
    if (this.isClosed) return; // closed before it was greeted
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
    void subscribed.then(() => this.inbox.resync());
    this.topics.joinAll();
    // Registered for control messages above (channels.join), so a bind is seen by this read or
    // by its control message, never by neither.
    this.topics.loadBindings();
  }

  /**
   * A topic the business bound the user to (control message, or the read at open): subscribed
   * with no grant check. A refusal (`too_many_topics`, a store error) is an `error` frame with
   * the topic, as for a `sub`.
   */
  bindTopic(topic: string): void {
    this.topics.bindTopic(topic);
  }

  /** The business unbound the user from a topic: the connection leaves it (`unsubscribed`). */
  unbindTopic(topic: string): void {
    this.topics.unbindTopic(topic);
  }

  /** Called on WebSocket close (any reason). Undelivered and unacked messages stay stored. */
  closed(): void {
    if (this.isClosed) return;
    this.inbox.close();
    this.ctx.channels.leave(this.app, this.user, this);
    // uWS unsubscribes a closed socket from its pub/sub keys; the edge's references go here.
    this.topics.close();
    this.ws = undefined;
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

  /** Emits an event about this connection (app, user, device, conn and edge filled in). */
  emit<T extends EventType>(type: T, fields: Omit<EventInput<T>, 'app' | 'user' | 'device' | 'conn' | 'edge'>): void {
    const about = { app: this.app, user: this.user, device: this.device, conn: this.id, edge: this.ctx.edgeId };
    // TypeScript cannot see that the spread of `about` restores what Omit removed from a generic T.
    this.ctx.events.emit(type, { ...about, ...fields } as unknown as EventInput<T>);
  }

  /** The socket drained: resume if stalled, and let waiting topic resumes read on. */
  drained(): void {
    this.inbox.drained();
    this.topics.drained();
  }

  /**
   * Records this connection's topic subscriptions anew: the edge's presence lease had lapsed, or
   * Redis lost its data (TopicPresence.joined).
   */
  recordTopics(again: 'lease' | 'data'): void {
    this.topics.recordTopics(again);
  }

  /** Topics this connection subscribed to (`_all` not included). */
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
        this.inbox.ack(frame.seqs);
        return;
      case 'ping':
        this.sendText(ServerFrames.pong());
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

  /** Answers a frame the edge will not read with an error; the socket stays open. */
  rejectFrame(err: PushError): void {
    this.sendError(err);
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
    const ws = this.ws;
    if (ws === undefined || this.isClosed) return;
    ws.cork(() => {
      ws.send(text);
    });
  }

  /** Closes the connection for a kick (close code 4004): the client must not come back with this token. */
  kick(reason: string): void {
    if (this.ws === undefined || this.isClosed) return;
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
    if (ws === undefined || this.isClosed) return;
    this.closeReason ??= why;
    ws.end(code, reason);
  }
}
