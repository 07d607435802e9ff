import { TokenBucket, type AppDirectory } from '@push/apps';
import type { Config } from '@push/config';
import type { BacklogReader, EventPublisher, InboxStore, RpcClient, TopicStore, UpstreamStore } from '@push/nats';
import {
  CLOSE,
  FrameError,
  PushError,
  ServerFrames,
  SessionFrames,
  TopicFrameError,
  isPushError,
  parseAppFrame,
  taggedTopicKey,
  withApp,
  type DetachReason,
  type Subjects,
} from '@push/protocol';
import type { Logger } from '@push/logger';
import type { AckBatcher } from './ack-batcher.js';
import type { BindingsReader } from './bindings.js';
import type { DeliveryCounts } from './delivery-counts.js';
import { REPLACED_REASON, type DevicePolicy } from './device-policy.js';
import { AttachedSession, tokenApp, type ClientAuthenticator } from './attached-session.js';
import { ClientSession, EarlyFrames } from './client-session.js';
import type { EdgePresence } from './edge-presence.js';
import type { Heartbeat } from './heartbeat.js';
import type { EdgeMetrics } from './metrics.js';
import type { SendLimits } from './send-limits.js';
import type { TopicChannels } from './topic-channels.js';
import type { TopicPresence } from './topic-presence.js';
import type { TrafficCell } from './traffic-meter.js';
import type { UserChannels } from './user-channels.js';
import { RpcSlots } from './upstream-frames.js';

export { RPC_IN_FLIGHT_PER_CONNECTION } from './upstream-frames.js';

/**
 * Most `attach` frames one connection may send per second (a burst of as many): each costs a
 * token check, a live subscription and a presence write, so an attach/detach loop must not turn
 * one socket into a storm on NATS and Redis. Past it `rate_limited` with `retryAfter`.
 */
export const ATTACHES_PER_SECOND = 10;

/**
 * What a connection uses of its edge's EdgeContext (which fits it as is). Narrow on purpose: unit
 * tests drive a connection with a fake store, channels, app directory and ack path, no NATS.
 */
export interface ConnectionContext {
  edgeId: string;
  /** Connection ids are `<connIdPrefix>-<counter>` (EdgeContext). */
  connIdPrefix: string;
  config: Pick<Config['edge'], 'window'> & Partial<Pick<Config['edge'], 'maxAppsPerConnection'>>;
  subjects: Pick<Subjects, 'clientMessageId' | 'upstreamMessageId'>;
  store: Pick<InboxStore, 'publish'>;
  /** Stores `up` frames in the app's upstream stream. */
  upstream: Pick<UpstreamStore, 'publish'>;
  /** Forwards `rpc` frames to the business over NATS. */
  rpc: Pick<RpcClient, 'call'>;
  /** Emits the connection's events (never blocks delivery). */
  events: Pick<EventPublisher, 'emit'>;
  /** Reads topic history (resume, gap fill). */
  topicStore: Pick<TopicStore, 'readBatch' | 'lastSeq' | 'firstSeqSince'>;
  /** One NATS subscription per topic with local subscribers; fan-out through uWS pub/sub. */
  topics: Pick<TopicChannels, 'join' | 'leave' | 'channel' | 'reached'>;
  /** Records topic subscriptions for occupancy and presence; emits their events (TopicPresence). */
  topicPresence: Pick<TopicPresence, 'joined' | 'left'>;
  /** Reads the backlog (per user, or in a shared pass when many wait): InboxStore.readBatch's contract. */
  backlog: Pick<BacklogReader, 'read'>;
  channels: Pick<UserChannels, 'join' | 'leave'>;
  apps: Pick<AppDirectory, 'get' | 'holds'>;
  metrics: EdgeMetrics;
  log: Pick<Logger, 'warn' | 'error' | 'debug'>;
  sendLimits: Pick<SendLimits, 'admit'>;
  acks: Pick<AckBatcher, 'ack' | 'full' | 'whenRoom'>;
  /** Send no more frames to a socket past this many buffered bytes; resume on drain. */
  highWaterBytes: number;
  /** The topics the business bound a user to (read once per connection, at open). */
  bindings: Pick<BindingsReader, 'read'>;
  /** Never-ack guard: told what a closing session leaves delivered and unacked (delivery-counts.ts). */
  deliveryCounts: Pick<DeliveryCounts, 'unacked'>;
  /** The app setting `devicePolicy`: told of every session after its greeting, and of its end. */
  devicePolicy?: Pick<DevicePolicy, 'opened' | 'closed' | 'stamp'>;
  /** Presence of the sessions attached after the first (the edge records the first's itself). */
  edgePresence?: Pick<EdgePresence, 'opened' | 'closed'>;
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
  /** A WebSocket ping (the heartbeat's probe of a silent connection). */
  ping(): unknown;
  /** Drops the connection at once, without a close frame (the heartbeat's drop of a silent one). */
  close(): unknown;
  /** uWS pub/sub: the socket joins or leaves a topic's key (topic fan-out, `app.publish`). */
  subscribe(key: string): boolean;
  unsubscribe(key: string): boolean;
  /** uWS pub/sub: sends to every socket subscribed to the key but this one. */
  publish(key: string, message: string): boolean;
  /** uWS pub/sub: the keys the socket joined (moved to their `app`-tagged keys at the first attach). */
  getTopics?(): string[];
}

/**
 * What uWS keeps per socket. uWS copies the own properties of the object given to `upgrade` into
 * its own user data (dropping the prototype), so the connection object is wrapped; everything
 * else of the connection lives on it (a property more here is a property array per socket).
 */
export interface SocketData {
  conn: ClientConnection;
}

/**
 * The edge's heartbeat as a connection sees it (one object for every connection of the edge):
 * agrees a new ping interval a `ping` frame proposed and answers the agreed one.
 */
export interface PingAgreement {
  propose(conn: ClientConnection, seconds: number): number;
}

/**
 * One client WebSocket, and its first app's session (ClientSession: inbox delivery and acks,
 * topics and bindings, upstream frames, each in its own module). The connection greets, reads
 * frames and hands each to the session it is about, and closes. It may hold further apps'
 * sessions (`attach`, AttachedSession): from the first attach on, every frame about an app
 * carries `app`, and one session can end (`detached`) while the socket stays for the others.
 */
export class ClientConnection extends ClientSession {
  ws: ClientSocket | undefined;
  /** Why the edge closed the socket (`kicked`, `token_expired`...), for the `conn_close` event; undefined when the client did. */
  closeReason: string | undefined;
  /** Agrees a new ping interval a `ping` frame proposed (the edge's heartbeat wheel); answers the agreed one. */
  heartbeat: PingAgreement | undefined;
  /** The connection's entry in the edge's heartbeat wheel (set at open). */
  beat: Heartbeat<ClientConnection> | undefined;
  /** Ping interval agreed at the upgrade, seconds (in `hello`). */
  pingSeconds = 0;
  /** Page origin of the upgrade ('' for none): an `attach` is checked against each app's allowed origins. */
  origin = '';
  /** The client's address (access policy): an `attach` is checked against each app's CIDRs. */
  ip = '';
  /** Checks an `attach`'s client token (the upgrade's checks); unset: `attach` is refused. */
  authenticate: ClientAuthenticator | undefined;
  /** Sessions attached after the first, by app (made on the first attach). */
  private attached: Map<string, AttachedSession> | undefined;
  /** JSON of the first app, set at the first attach: from then on its frames carry `app` too. */
  private appJson: string | undefined;
  private socketClosed = false;
  /** Rate of `attach` frames (ATTACHES_PER_SECOND); made on the first. */
  private attachBucket: TokenBucket | undefined;
  /** `rpc` frames awaiting their answer, of every session; made on the first. */
  private rpcs: RpcSlots | undefined;

  constructor(
    ctx: ConnectionContext,
    readonly n: number,
    app: string,
    user: string,
    device: string,
    /** Token expiry, epoch seconds. */
    exp: number,
    /** Topic patterns the client token grants (its `topics` claim). */
    topicGrants: readonly string[] | undefined = undefined,
  ) {
    super(ctx, app, user, device, exp, topicGrants);
  }

  /** Connection id, unique across edges and their restarts (edge id, start time, counter). */
  get id(): string {
    return `${this.ctx.connIdPrefix}-${this.n}`;
  }

  rpcSlots(): RpcSlots {
    return (this.rpcs ??= new RpcSlots());
  }

  /** Called on WebSocket open: greet, subscribe, then read the backlog. */
  open(ws: ClientSocket, maxMessageBytes: number): void {
    if (this.isClosed) return; // closed before it was greeted
    this.ws = ws;
    const { ctx } = this;
    this.traffic = ctx.metrics.traffic.cell(this.app, this.app);
    this.start(
      ServerFrames.hello({
        conn: this.id,
        app: this.app,
        user: this.user,
        device: this.device,
        ping: this.pingSeconds,
        window: ctx.config.window,
        maxMessageBytes,
      }),
    );
  }

  /**
   * Called on WebSocket close (any reason). Undelivered and unacked messages stay stored.
   * Returns the sessions that were still open (each gets its `conn_close` and presence removal).
   */
  closed(): ClientSession[] {
    if (this.socketClosed) return [];
    this.socketClosed = true;
    const ended = [...this.sessions()];
    for (const s of ended) s.stop();
    this.attached = undefined;
    this.ws = undefined;
    return ended;
  }

  /** The sessions still open on this connection: the first app's (unless it ended), then the attached. */
  *sessions(): IterableIterator<ClientSession> {
    if (!this.isClosed) yield this;
    if (this.attached !== undefined) yield* this.attached.values();
  }

  /** Sends one frame of the first app's session. */
  send(text: string): number {
    return this.write(this.appJson === undefined ? text : withApp(this.appJson, text), this.traffic);
  }

  topicKey(key: string): string {
    return this.appJson === undefined ? key : taggedTopicKey(key);
  }

  /**
   * Writes one frame on the socket, counted to `traffic` (a session's cell; connection-level
   * frames count to the first app's). Answers as uWS `send` does; 0 once the socket closed.
   */
  write(text: string, traffic: TrafficCell | undefined = this.traffic): number {
    const ws = this.ws;
    if (ws === undefined) return 0;
    if (traffic !== undefined) {
      traffic.framesOut++;
      traffic.bytesOut += Buffer.byteLength(text);
    }
    let status = 1;
    ws.cork(() => {
      status = ws.send(text);
    });
    return status;
  }

  /** The socket drained: each session resumes if stalled, and waiting topic resumes read on. */
  override drained(): void {
    super.drained();
    if (this.attached !== undefined) for (const s of this.attached.values()) s.drained();
  }

  /** Core NATS may have dropped live messages: every session rereads the store from its cursor. */
  resyncSessions(): void {
    for (const s of this.sessions()) s.resync();
  }

  /** The session of an app on this connection (a frame with no `app`: the first app's), if open. */
  private sessionOf(app: string | undefined): ClientSession | undefined {
    if (app === undefined || app === this.app) return this.isClosed ? this.attached?.get(this.app) : this;
    return this.attached?.get(app);
  }

  /** Frames the client sent before its `hello` was (to be handled after it). */
  private early: EarlyFrames<string> | undefined;

  protected override onGreeted(): void {
    const early = this.early;
    this.early = undefined;
    for (const text of early?.frames ?? []) this.onFrame(text);
  }

  /** Handles one text frame from the client. Bad frames get an error frame; the socket stays. */
  onFrame(text: string): void {
    if (!this.greeted) {
      // Only before the first app's greeting: nothing may be answered before `hello`.
      if (!(this.early ??= new EarlyFrames()).hold(text, text)) {
        this.early = undefined;
        this.end(1008, 'too many frames before hello', 'protocol');
      }
      return;
    }
    const r = parseAppFrame(text);
    const session = this.sessionOf(r.app);
    // Counted to the session it is about, else to the first app (`ping`, `attach`, strays).
    (session ?? this).countIn(text);
    if ('error' in r) {
      const err = r.error;
      // A refused `send` is answered with its id, a refused `sub`/`unsub` with its topic.
      const extra =
        err instanceof FrameError && err.id !== undefined
          ? { id: err.id }
          : err instanceof TopicFrameError && err.topic !== undefined
            ? { topic: err.topic }
            : undefined;
      // A refused `attach` is the connection's: it names no session (the token's app is unread).
      if (session !== undefined && r.connection !== true) session.sendError(err, extra);
      else this.connectionError(err, r.app, extra);
      return;
    }
    const frame = r.frame;
    switch (frame.t) {
      case 'ping':
        this.write(ServerFrames.pong(frame.ping === undefined ? undefined : this.heartbeat?.propose(this, frame.ping)));
        return;
      case 'attach':
        this.attach(frame.token);
        return;
      case 'detach':
        this.detach(frame.app);
        return;
      default:
        // An attached session holds what comes before its `attached`, as this connection does before `hello`.
        if (session instanceof AttachedSession) session.handleText(frame, text);
        else if (session !== undefined) session.handle(frame);
        else {
          this.connectionError(new PushError('app_not_attached'), r.app, {
            id: 'id' in frame ? frame.id : undefined,
            topic: 'topic' in frame ? frame.topic : undefined,
          });
        }
    }
  }

  /** Answers a frame the edge will not read with an error; the socket stays open. */
  rejectFrame(err: PushError): void {
    const s = this.sessionOf(undefined);
    if (s !== undefined) s.sendError(err);
    else this.connectionError(err, undefined);
  }

  /** An `error` frame about no open session (its `app` when the frame named one). */
  private connectionError(
    err: unknown,
    app: string | undefined,
    extra?: { id?: string; topic?: string; retryAfter?: number },
  ): void {
    const e = isPushError(err) ? err : new PushError('internal', undefined, { cause: err });
    this.ctx.metrics.errors.inc({ code: e.code });
    const frame = ServerFrames.error(e.code, e.message, extra);
    // '' stands for an `app` that was not a string (parseAppFrame): not echoed.
    this.write(app === undefined || app === '' ? frame : withApp(JSON.stringify(app), frame));
  }

  /**
   * An `attach`: checks the token as an upgrade does (its app exists, is enabled, allows the
   * page's origin; signature, expiry), then opens the app's session with an `attached` answer.
   * Refused with an `error` carrying the token's app: `app_attached` (the app has a session
   * here), `too_many_apps` (PUSH_EDGE_MAX_APPS_PER_CONNECTION), or the token's code.
   */
  private attach(token: string): void {
    const { ctx } = this;
    const app = tokenApp(token);
    try {
      if (this.authenticate === undefined) throw new PushError('unknown_frame', 'this door takes no attach');
      const wait = (this.attachBucket ??= new TokenBucket(ATTACHES_PER_SECOND)).admitOne(ATTACHES_PER_SECOND);
      if (wait > 0) {
        this.connectionError(
          new PushError('rate_limited', `at most ${ATTACHES_PER_SECOND} attaches per second; retry in ${wait} ms`),
          app,
          { retryAfter: wait },
        );
        return;
      }
      const id = this.authenticate(token, this.origin, this.ip);
      if (this.sessionOf(id.app) !== undefined) throw new PushError('app_attached');
      const max = ctx.config.maxAppsPerConnection ?? 1;
      let open = 0;
      for (const _ of this.sessions()) open++;
      if (open >= max) {
        throw new PushError('too_many_apps', `a connection may hold at most ${max} app sessions`);
      }
      const record = ctx.apps.get(id.app);
      const session = new AttachedSession(this, id);
      (this.attached ??= new Map()).set(id.app, session);
      this.tagFrames();
      // Its `conn_open`, presence and devicePolicy come with its `attached` (ClientSession.start).
      session.open(record?.settings.maxMessageBytes ?? 0);
    } catch (err) {
      this.connectionError(err, app);
    }
  }

  /**
   * From the first attach on, the first app's frames carry `app` too: its socket moves from the
   * topics' plain pub/sub keys to their tagged ones, in one turn (no frame lost or repeated).
   */
  private tagFrames(): void {
    if (this.appJson !== undefined) return;
    this.appJson = JSON.stringify(this.app);
    const ws = this.ws;
    if (ws === undefined || this.isClosed) return;
    for (const key of ws.getTopics?.() ?? []) {
      ws.unsubscribe(key);
      ws.subscribe(taggedTopicKey(key));
    }
  }

  /** A client's `detach`: the app's session ends (`detached`, reason `client`). */
  private detach(app: string): void {
    const s = this.sessionOf(app);
    if (s === undefined) {
      this.connectionError(new PushError('app_not_attached'), app);
      return;
    }
    this.endSession(s, 'client', 1000, 'detached', 'client');
  }

  /**
   * Ends one session. The last open one closes the socket with `code` (as a connection with one
   * app always did); otherwise the client gets `detached` and the socket stays for the others.
   * `why` names the cause in the session's `conn_close` event.
   */
  endSession(s: ClientSession, reason: DetachReason, code: number, closeText: string, why: string): void {
    if (s.isClosed || this.socketClosed) return;
    let open = 0;
    for (const _ of this.sessions()) open++;
    if (open <= 1) {
      this.end(code, closeText, why);
      return;
    }
    const refused = s.greeted ? undefined : attachRefusal(reason, this.ctx.apps.get(s.app) === undefined);
    if (refused !== undefined) {
      // Its `attached` was not sent yet (it waits for the app's `_all`): the attach is answered
      // by an error, as one checked a moment later would have been; a session never greeted
      // has nothing to detach.
      this.connectionError(new PushError(refused), s.app);
    } else this.write(SessionFrames.detached(s.app, reason, reason === 'kicked' ? closeText : undefined));
    s.stop();
    if (s !== this) this.attached?.delete(s.app);
    s.ended(code, why);
  }

  /** A newer connection of the user took over (devicePolicy): this session ends, 4006 `replaced`. */
  replace(): void {
    this.endSession(this, 'replaced', CLOSE.REPLACED, REPLACED_REASON, REPLACED_REASON);
  }

  /** Closes the connection for a kick (close code 4004): the client must not come back with this token. */
  kick(reason: string): void {
    if (this.ws === undefined || this.isClosed) return;
    this.ctx.metrics.kicked.inc();
    this.emit('kicked', { reason });
    this.endSession(this, 'kicked', CLOSE.KICKED, reason, 'kicked');
  }

  /**
   * Closes the socket with a code and reason. `why` names the cause in the `conn_close` event
   * (`kicked`, `shutdown`, `token_expired`, `app_gone`...).
   */
  end(code: number, reason: string, why?: string): void {
    const ws = this.ws;
    if (ws === undefined || this.socketClosed) return;
    this.closeReason ??= why;
    ws.end(code, reason);
  }
}

/**
 * The `error` that answers an `attach` whose session ended before its `attached` went out: the
 * app deleted (`app_not_found`) or disabled, the token expired. Undefined for the ends a client
 * asked for or that say who ended it (`client`, `kicked`, `replaced`): those are `detached`.
 */
function attachRefusal(
  reason: DetachReason,
  appGone: boolean,
): 'app_not_found' | 'app_disabled' | 'token_expired' | undefined {
  if (reason === 'app_disabled') return appGone ? 'app_not_found' : 'app_disabled';
  if (reason === 'token_expired') return 'token_expired';
  return undefined;
}
