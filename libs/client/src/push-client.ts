import type { AppSession, AppSessionHost, AttachOptions } from './app-session.js';
import { EdgeRoutes } from './edge-routes.js';
import { Emitter } from './emitter.js';
import { HeartbeatPolicy, type HeartbeatOptions } from './heartbeat-policy.js';
import { CLOSE, MAX_ACKS_PER_FRAME, RECONNECT_BACKOFF, REFUSAL_AS_CLOSE, REFUSED } from './protocol-constants.js';
import { BROADCAST_TOPIC, PushClientError, Subscription, type SubscribeOptions } from './subscription.js';

/**
 * The client's state (docs/sdk.md#state-machine):
 * `disconnected` --connect()--> `connecting` --hello--> `connected`;
 * `connected` --connection lost--> `connecting` (backoff, next edge when one fails);
 * any --disconnect(), kicked (4004), app disabled (4003), replaced (4006), refused for good (4403)--> `disconnected`.
 */
export type ClientState = 'disconnected' | 'connecting' | 'connected';

/**
 * The part of a WebSocket the SDK uses: the browser's, Node 22's global one, or the `ws`
 * package's. Handler parameters are `never` so that any implementation's event types fit.
 */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: never) => void) | null;
  onmessage: ((ev: never) => void) | null;
  onclose: ((ev: never) => void) | null;
  onerror: ((ev: never) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** The part of `fetch` the SDK uses (to ask the dispatcher for edges). */
export type FetchLike = (url: string) => Promise<{ ok: boolean; status: number; json(): Promise<unknown> }>;

export interface PushClientOptions {
  /**
   * The client token, or a function that gets one from your business server. The function is
   * called on the first connect, ahead of the token's expiry (`tokenRefreshMarginSeconds`), and
   * after the edge refused or closed for the token (4005, 4401, 4400). A rejection is reported as
   * an `error` event and retried with backoff.
   */
  token: string | (() => string | Promise<string>);
  /** Edge URLs (`ws://host:8081/ws`), tried in order; the one that works is kept. */
  edges?: readonly string[];
  /**
   * The dispatcher's base URL (`http://host:8082`): asked for the user's ranked edge list
   * (`GET /v1/edges?app=&user=`, app and user read from the token) when no edge list is given,
   * and again after every edge of its list failed.
   */
  dispatcher?: string;
  /** A WebSocket class; defaults to the global one (browsers, Node 22+). On Node 20 pass `ws`'s. */
  WebSocket?: WebSocketConstructor;
  /** Defaults to the global fetch. */
  fetch?: FetchLike;
  /**
   * `auto` (default): a message is acked once every `message` listener returned without throwing
   * (acks of one event-loop turn go in one frame). `manual`: call `message.ack()` or `client.ack(seq)`.
   */
  ackMode?: 'auto' | 'manual';
  /**
   * App-level ping interval to start at, seconds (25); the edge clamps it (hello.ping). With the
   * adaptive heartbeat (default) the interval steps up from here while pongs come on time.
   */
  pingSeconds?: number;
  /** The adaptive heartbeat (docs/sdk.md#heartbeats); `{ mode: 'fixed' }` pings at `pingSeconds` always. */
  heartbeat?: HeartbeatOptions;
  /** A connection with no `hello` after this long is abandoned and the next edge tried, ms (10000). */
  connectTimeoutMs?: number;
  /** A token is refreshed this many seconds before its `exp` (30). */
  tokenRefreshMarginSeconds?: number;
  /** Reconnect backoff: full jitter, random in [0, min(capMs, baseMs * 2^attempt)) (500, 30000). */
  backoff?: { baseMs: number; capMs: number };
  /** A `send` not answered within this long rejects with code `timeout`, ms (60000). */
  sendTimeoutMs?: number;
  /** How many recent `seq`s are remembered to drop repeats (10000). */
  dedupeSize?: number;
  /**
   * Gets the members of a presence topic for `subscribe(topic, { presence: true })`
   * (docs/sdk.md#presence), typically from your backend, which asks the center's
   * `GET /v1/apps/<app>/topics/<topic>/presence` with its API key (never give the key to a
   * client). Returns (or resolves with) that answer as is, or an array of `{ user }` or user ids.
   * Called after each `subscribed`; a rejection is reported as an `error` event (type
   * `presence`) and retried.
   */
  fetchMembers?: (topic: string) => unknown;
  /**
   * The network the device is on now (`wifi`, `cellular`...): the edge list and the edges that
   * could not be reached are kept per network (docs/sdk.md#edges-and-networks). Defaults to the
   * browser's `navigator.connection.type`, else one network.
   */
  network?: () => string;
  /**
   * The region whose edges the dispatcher should answer first (`region=`, a label of its
   * `PUSH_DISPATCHER_EDGES`); by default the region of the user's best-ranked edge.
   */
  region?: string;
}

/** One message delivered to the user. */
export interface PushMessage {
  /** Delivery id in the store; increases per user. 0 on a transient message (never stored). */
  seq: number;
  /**
   * True on a transient message: the business sent it to the connections online at that moment
   * and stored nothing. It has no `seq` to dedupe on or ack (`ack()` does nothing) and is not
   * ordered with stored messages.
   */
  transient?: true;
  /** When the message was accepted, epoch ms. */
  ts: number;
  /** The sending user, for messages another client sent. */
  from?: string;
  /** The message, when it was JSON. */
  data?: unknown;
  /** The bytes, base64, when it was binary. */
  b64?: string;
  /** Acknowledges it (manual mode; a no-op in auto mode once acked). */
  ack(): void;
}

/** What `send` resolves with: the message is stored in the recipient's inbox. */
export interface SendResult {
  id: string;
  seq: number;
  /** True when this id had been stored already (a retry): `seq` is the first one's. */
  dup: boolean;
}

/** What `up` resolves with: the data is stored in the app's upstream stream for the business. */
export type UpResult = SendResult;

export interface UpOptions {
  /** What the business filters on (`push.up.<app>.<kind>`): 1-64 of `A-Z a-z 0-9 _ -`; `default` when absent. */
  kind?: string;
  /** Your id for it (1-128 bytes); makes retries safe. Generated when absent. */
  id?: string;
}

export interface RpcOptions {
  /** Reject with `timeout` when no answer came within this long, ms (30000); waiting to connect counts. */
  timeoutMs?: number;
}

export interface SendOptions {
  /** Your id for the message (1-128 bytes); makes retries safe. Generated when absent. */
  id?: string;
  /** Seconds until it expires (capped by the app's setting). */
  ttl?: number;
}

/** Why the client left a connection, or gave up. */
export interface CloseInfo {
  /** The WebSocket close code (docs/protocol.md#close-codes); 0 for a first connect. */
  code: number;
  reason: string;
}

export interface ConnectedInfo {
  /** The edge URL connected to. */
  edge: string;
  conn: string;
  app: string;
  user: string;
  device: string;
  /** Ping interval the edge chose, seconds. */
  ping: number;
  window: number;
  maxMessageBytes: number;
}

export interface ClientErrorEvent {
  /** Where it failed: getting a token, asking the dispatcher, an `error` frame, a listener. */
  type: 'token' | 'dispatcher' | 'server' | 'handler' | 'listener' | 'transport' | 'presence';
  error: PushClientError;
}

/** The typed event map: `client.on('message', (m) => ...)`. */
export interface PushClientEvents {
  state: [{ from: ClientState; to: ClientState }];
  connecting: [CloseInfo];
  connected: [ConnectedInfo];
  disconnected: [CloseInfo];
  message: [PushMessage];
  error: [ClientErrorEvent];
}

interface PendingSend {
  id: string;
  frame: string;
  resolve(r: SendResult): void;
  reject(e: PushClientError): void;
  timeout: ReturnType<typeof setTimeout>;
  retry: ReturnType<typeof setTimeout> | undefined;
}

/** Frames from the edge, as the SDK reads them (unknown fields and frame kinds are ignored). */
interface ServerFrame {
  t?: unknown;
  topic?: unknown;
  prev?: unknown;
  first?: unknown;
  seq?: unknown;
  transient?: unknown;
  ts?: unknown;
  from?: unknown;
  data?: unknown;
  b64?: unknown;
  id?: unknown;
  dup?: unknown;
  code?: unknown;
  message?: unknown;
  retryAfter?: unknown;
  conn?: unknown;
  app?: unknown;
  user?: unknown;
  device?: unknown;
  ping?: unknown;
  window?: unknown;
  maxMessageBytes?: unknown;
  since?: unknown;
}

/** What a `msg` frame tells of its message (all but `seq` and `ack`). */
function messageFields(f: ServerFrame): Pick<PushMessage, 'ts' | 'from' | 'data' | 'b64'> {
  return {
    ts: typeof f.ts === 'number' ? f.ts : 0,
    ...(typeof f.from === 'string' ? { from: f.from } : {}),
    ...(f.data !== undefined ? { data: f.data } : {}),
    ...(typeof f.b64 === 'string' ? { b64: f.b64 } : {}),
  };
}

interface SocketEvents {
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onopen: ((ev: unknown) => void) | null;
}

const OPEN = 1;

/** What to do after a close: stop, or retry after a delay (on the next edge, with a new token). */
type Next = { stop: true } | { stop: false; delayMs: number; nextEdge: boolean; newToken: boolean };

/** `app` and `sub` and `exp` of a JWT, read without verifying it (the edge verifies). */
function tokenClaims(token: string): { app?: string; sub?: string; exp?: number } {
  try {
    const part = token.split('.')[1] ?? '';
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(
      Array.from(atob(b64), (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join(''),
    );
    const v = JSON.parse(json) as Record<string, unknown>;
    return {
      ...(typeof v['app'] === 'string' ? { app: v['app'] } : {}),
      ...(typeof v['sub'] === 'string' ? { sub: v['sub'] } : {}),
      ...(typeof v['exp'] === 'number' ? { exp: v['exp'] } : {}),
    };
  } catch {
    // Not a JWT the SDK can read: the edge will say so (token_malformed) when it is used.
    return {};
  }
}

let idCounter = 0;
/** A send id unique across clients and reloads: time, random and a counter. */
function newSendId(): string {
  idCounter = (idCounter + 1) % 1e9;
  return `c-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}-${idCounter.toString(36)}`;
}

/**
 * Makes the sessions of `attach()`: set by app-session.ts when it is loaded. The Node package
 * always loads it; in browsers `push-client-apps.min.js` has it and `push-client.min.js` does not,
 * so a page of one app pays nothing for multi-app sessions (docs/sdk.md).
 */
type SessionFactory = (options: AttachOptions, host: AppSessionHost, forget: (s: AppSession) => void) => AppSession;
let makeSession: SessionFactory | undefined;

/** Lets `attach()` make AppSessions (called by app-session.ts as it loads). */
export function registerAppSessions(factory: SessionFactory): void {
  makeSession = factory;
}

/**
 * A client of the push edge (docs/sdk.md): connects to an edge from the dispatcher's list (or
 * a given one), keeps the connection up (pings, reconnects with full-jitter backoff following
 * each close code, new tokens before they expire), delivers each message once to `message`
 * listeners, acks in batches, and sends to other users with a promise per message.
 */
export class PushClient extends Emitter<PushClientEvents> {
  /** The user of the last `hello`. */
  private user: string | undefined;
  private readonly opts: Required<
    Pick<
      PushClientOptions,
      'ackMode' | 'connectTimeoutMs' | 'tokenRefreshMarginSeconds' | 'sendTimeoutMs' | 'dedupeSize' | 'pingSeconds'
    >
  > &
    PushClientOptions;
  private readonly WS: WebSocketConstructor;
  private current: ClientState = 'disconnected';
  /** Bumped by disconnect(): work started before it sees the change and stops. */
  private generation = 0;
  private sock: (WebSocketLike & SocketEvents) | undefined;
  private sockEdge = '';
  /** The token the current socket connected with. */
  private sockToken = '';
  private helloOnSocket = false;
  private attempt = 0;
  /** Which edge to try, per network (EdgeRoutes). */
  private readonly routes: EdgeRoutes;
  private token: { value: string; exp: number | undefined } | undefined;
  private tokenFetch: Promise<string> | undefined;
  private window = 100;
  private lastHeard = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private pingTimer: ReturnType<typeof setTimeout> | undefined;
  /** Armed while a ping awaits its pong. */
  private pongTimer: ReturnType<typeof setTimeout> | undefined;
  /** An interval to propose with the next ping. */
  private propose: number | undefined;
  private readonly beat: HeartbeatPolicy;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private ackTimer: ReturnType<typeof setTimeout> | undefined;
  /** Sequences delivered on the current socket and not acked on it yet. */
  private delivered = new Set<number>();
  private toAck: number[] = [];
  /** Recent sequences: true once handled (acked by the app or the auto mode). */
  private readonly seen = new Map<number, boolean>();
  /** Pending `send`s and `up`s by id (one id space: both are answered by id). */
  private readonly sends = new Map<string, PendingSend>();
  /** Pending `rpc`s by id; `sent` once written on the current socket. */
  private readonly rpcs = new Map<
    string,
    {
      frame: string;
      sent: boolean;
      resolve(data: unknown): void;
      reject(e: PushClientError): void;
      timeout: ReturnType<typeof setTimeout>;
    }
  >();
  private readonly subs = new Map<string, Subscription>();
  /** Subscriptions left and waiting for their `unsubscribed`, per topic in order. */
  private readonly leaving = new Map<string, Subscription[]>();
  /**
   * The app's broadcast (`_all`): received without subscribing, from the moment a connection
   * opens; after a reconnect it resumes from the last broadcast received. Cannot be left.
   */
  readonly broadcasts: Subscription;
  /** Other apps' sessions on this connection (`attach`), by app; the app of the last `hello`. */
  private readonly appSessions = new Map<string, AppSession>();
  private firstApp: string | undefined;

  constructor(options: PushClientOptions) {
    super();
    this.opts = {
      ackMode: 'auto',
      connectTimeoutMs: 10_000,
      tokenRefreshMarginSeconds: 30,
      sendTimeoutMs: 60_000,
      dedupeSize: 10_000,
      pingSeconds: 25,
      ...options,
    };
    // Undefined on Node 20, whatever the DOM types say.
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (WS === undefined) {
      throw new PushClientError('no_websocket', 'no global WebSocket: pass one as WebSocket');
    }
    this.WS = WS;
    this.beat = new HeartbeatPolicy({ startSeconds: this.opts.pingSeconds, ...options.heartbeat });
    this.broadcasts = new Subscription(BROADCAST_TOPIC, this.host);
    this.routes = new EdgeRoutes(options);
    if ((options.edges?.length ?? 0) === 0 && options.dispatcher === undefined) {
      throw new PushClientError('no_edges', 'give edges or a dispatcher URL');
    }
  }

  /** The heartbeat interval in use (or asked for at the next connect), seconds, and the network it is for. */
  get heartbeat(): { seconds: number; network: string } {
    return { seconds: this.beat.seconds, network: this.beat.network };
  }

  /** The current state (see ClientState). */
  get state(): ClientState {
    return this.current;
  }

  /** Starts connecting (no-op unless disconnected). */
  connect(): void {
    if (this.current !== 'disconnected') return;
    this.attempt = 0;
    this.setState('connecting', { code: 0, reason: 'connect' });
    void this.open(this.generation);
  }

  /** Closes the connection and stops reconnecting; pending sends reject with `disconnected`. */
  disconnect(): void {
    this.stop({ code: 1000, reason: 'disconnect' });
  }

  /** Acknowledges a message (manual mode); safe to call twice. */
  ack(seq: number): void {
    if (this.seen.get(seq) === true) return;
    this.remember(seq, true);
    if (this.delivered.has(seq)) this.queueAck(seq);
  }

  /**
   * Sends `data` (any JSON value) to user `to` of the same app. Resolves once the message is
   * stored in their inbox; rejects with a PushClientError carrying the server's code
   * (`client_messaging_disabled`, `payload_too_large`, ...), `timeout` or `disconnected`.
   * Sent again with the same id after a reconnect and after `rate_limited` / `store_unavailable`
   * (the edge stores one copy per id).
   */
  send(to: string, data: unknown, options: SendOptions = {}): Promise<SendResult> {
    return this.sendFrame({ t: 'send', to, data }, options);
  }

  /**
   * Sends `data` (any JSON value) up to the business (the app's `upstream` setting must be on).
   * Resolves once the edge stored it (`upsent`: `seq` in the upstream stream); retried with the
   * same id like `send`, so the business gets it once; rejects with the server's code
   * (`upstream_disabled`, `invalid_kind`, `payload_too_large`, ...), `timeout` or `disconnected`.
   */
  up(data: unknown, options: UpOptions = {}): Promise<UpResult> {
    return this.sendFrame({ t: 'up', ...(options.kind !== undefined ? { kind: options.kind } : {}), data }, options);
  }

  /**
   * Asks the business (`method`, `data`) and resolves with its reply's data. Rejects with the
   * server's code (`rpc_unavailable`, `rpc_timeout`, `rpc_failed` with the business's message,
   * `rate_limited`, ...), `timeout`, or `disconnected` when the connection dropped before the
   * answer: an rpc is never sent twice (the business may have acted on it); ask again if safe.
   * One made while not connected goes out on the next `hello`.
   */
  rpc(method: string, data?: unknown, options: RpcOptions = {}): Promise<unknown> {
    const id = newSendId();
    const frame = JSON.stringify({ t: 'rpc', id, method, data: data ?? null });
    return new Promise<unknown>((resolve, reject) => {
      const timeout = setTimeout(
        () => this.settleRpc(id, new PushClientError('timeout', `no answer to rpc ${method}`)),
        options.timeoutMs ?? 30_000,
      );
      this.rpcs.set(id, { frame, sent: false, resolve, reject, timeout });
      if (this.current === 'connected') this.writeRpcs();
    });
  }

  /**
   * Subscribes to a topic (docs/sdk.md#topics); the Subscription's `message` events carry its
   * messages, once each and in order, also across reconnects (it resumes from the last `seq`).
   * A topic already subscribed gives the same Subscription. `_all` gives `broadcasts`.
   */
  subscribe(topic: string, options: SubscribeOptions = {}): Subscription {
    if (topic === BROADCAST_TOPIC) return this.broadcasts;
    let sub = this.subs.get(topic);
    if (sub === undefined) {
      sub = new Subscription(topic, this.host, options);
      this.subs.set(topic, sub);
      if (this.current === 'connected') sub.resubscribe();
    }
    return sub;
  }

  /**
   * Attaches another app's session to this connection with that app's own token
   * (docs/sdk.md#several-apps-on-one-connection): its messages, acks, sends, topics and events
   * are the AppSession's. Attached again after every reconnect, until `session.detach()`.
   */
  attach(options: AttachOptions): AppSession {
    const known = this.appSessions.get(options.app);
    if (known !== undefined) return known;
    if (makeSession === undefined) {
      throw new PushClientError('attach_unavailable', 'load push-client-apps.min.js for attach()');
    }
    const session = makeSession(options, this.sessionHost, (s) => {
      if (this.appSessions.get(s.app) === s) this.appSessions.delete(s.app);
    });
    this.appSessions.set(options.app, session);
    if (this.current === 'connected') void session.attach();
    return session;
  }

  /** What the attached sessions may do to the client. */
  private readonly sessionHost: AppSessionHost = {
    write: (text: string): boolean => this.current === 'connected' && this.write(text),
    connected: (): boolean => this.current === 'connected',
    ackMode: (): 'auto' | 'manual' => this.opts.ackMode,
    membersFetcher: (): ((topic: string) => unknown) | undefined => this.opts.fetchMembers,
    failed: (err: unknown, event: string): void => this.host.failed(err, event),
  };

  /**
   * A frame about an attached app goes to its session (true); one of an app detached meanwhile
   * (still in flight) is dropped, never taken for the first app's. The first app's `detached`
   * (its session ended while others stay) is reported as an `error` event with the reason as code;
   * its `app_attached` answers an `attach()` of the first app: that session's.
   */
  private routeToSession(f: ServerFrame & { reason?: unknown }): boolean {
    if (typeof f.app !== 'string' || f.t === 'hello') return false;
    if (f.app === this.firstApp && f.code !== 'app_attached') {
      if (f.t !== 'detached') return false;
      const reason = typeof f.reason === 'string' ? f.reason : 'detached';
      this.emit('error', { type: 'server', error: new PushClientError(reason, `the session of ${f.app} ended`) });
      return true;
    }
    this.appSessions.get(f.app)?.onFrame(f);
    return true;
  }

  /** What the subscriptions may do to the client. */
  private readonly host = {
    write: (frame: object): boolean => this.current === 'connected' && this.write(JSON.stringify(frame)),
    leave: (sub: Subscription, unsub: boolean): boolean => {
      if (this.subs.get(sub.topic) === sub) this.subs.delete(sub.topic);
      if (!unsub || !this.write(JSON.stringify({ t: 'unsub', topic: sub.topic }))) return false;
      const waiting = this.leaving.get(sub.topic) ?? [];
      waiting.push(sub);
      this.leaving.set(sub.topic, waiting);
      return true;
    },
    failed: (err: unknown, event: string): void => this.listenerFailed(err, event as keyof PushClientEvents),
    self: (): string | undefined => this.user,
    // The options are set in the constructor, after this field: read them when asked.
    membersFetcher: (): ((topic: string) => unknown) | undefined => this.opts.fetchMembers,
    presenceFailed: (error: PushClientError): void => this.emit('error', { type: 'presence', error }),
  };

  /** Like `send`, for bytes (they arrive as the message's `b64`). */
  sendBytes(to: string, bytes: Uint8Array, options: SendOptions = {}): Promise<SendResult> {
    let bin = '';
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return this.sendFrame({ t: 'send', to, b64: btoa(bin) }, options);
  }

  private sendFrame(
    body: { t: string; to?: string; kind?: string; data?: unknown; b64?: string },
    options: SendOptions,
  ): Promise<SendResult> {
    const id = options.id ?? newSendId();
    if (this.sends.has(id))
      return Promise.reject(new PushClientError('duplicate_id', `a send with id ${id} is pending`));
    const frame = JSON.stringify({ ...body, id, ...(options.ttl !== undefined ? { ttl: options.ttl } : {}) });
    return new Promise<SendResult>((resolve, reject) => {
      const pending: PendingSend = {
        id,
        frame,
        resolve,
        reject,
        retry: undefined,
        timeout: setTimeout(
          () => this.settleSend(id, new PushClientError('timeout', `no answer to send ${id}`)),
          this.opts.sendTimeoutMs,
        ),
      };
      this.sends.set(id, pending);
      if (this.current === 'connected') this.write(frame);
    });
  }

  // --- connection life ---------------------------------------------------------------------

  private setState(to: ClientState, why: CloseInfo): void {
    const from = this.current;
    if (from === to) return;
    this.current = to;
    this.emit('state', { from, to });
    if (to === 'connecting') this.emit('connecting', why);
    if (to === 'disconnected') this.emit('disconnected', why);
  }

  /** Gets a token and an edge, opens a socket; failures schedule the next attempt. */
  private async open(gen: number): Promise<void> {
    let token: string;
    let edge: string;
    try {
      token = await this.currentToken();
      if (gen !== this.generation) return;
      const { app, sub } = tokenClaims(token);
      edge = await this.routes.pick(app ?? '', sub ?? '');
      if (gen !== this.generation) return;
    } catch (err) {
      if (gen !== this.generation) return;
      const e = err instanceof PushClientError ? err : new PushClientError('token', String(err), { cause: err });
      this.emit('error', { type: e.code === 'dispatcher' ? 'dispatcher' : 'token', error: e });
      this.schedule(this.backoff(), gen);
      return;
    }
    const url = new URL(edge);
    url.searchParams.set('token', token);
    url.searchParams.set('ping', String(this.beat.connecting()));
    url.searchParams.set('refusal', REFUSAL_AS_CLOSE);
    let sock: WebSocketLike & SocketEvents;
    try {
      sock = new this.WS(url.toString()) as WebSocketLike & SocketEvents;
    } catch (err) {
      // A malformed URL: the next edge may do better.
      this.emit('error', { type: 'transport', error: new PushClientError('transport', String(err), { cause: err }) });
      this.routes.failed(edge, false);
      this.schedule(this.backoff(), gen);
      return;
    }
    this.sock = sock;
    this.sockEdge = edge;
    this.sockToken = token;
    this.helloOnSocket = false;
    this.lastHeard = Date.now();
    this.connectTimer = setTimeout(() => this.abandon(sock, 'connect timeout'), this.opts.connectTimeoutMs);
    sock.onmessage = (ev) => this.onData(sock, ev.data);
    sock.onclose = (ev) => this.onClosed(sock, ev.code, ev.reason);
    sock.onerror = () => {
      // A close event follows with the code that says why.
    };
  }

  /** The token to connect with: the cached one while it has time left, else a fresh one. */
  private async currentToken(): Promise<string> {
    const t = this.token;
    const now = Date.now() / 1000;
    if (t !== undefined && (t.exp === undefined || t.exp - now > this.opts.tokenRefreshMarginSeconds)) {
      this.armRefresh(t.exp); // a disconnect() stopped the one armed before
      return t.value;
    }
    return this.refreshToken();
  }

  /** Asks the token provider (one call at a time) and arms the refresh before expiry. */
  private refreshToken(): Promise<string> {
    if (this.tokenFetch !== undefined) return this.tokenFetch;
    const p = this.askProvider().finally(() => {
      if (this.tokenFetch === p) this.tokenFetch = undefined;
    });
    this.tokenFetch = p;
    return p;
  }

  private async askProvider(): Promise<string> {
    let value: unknown;
    try {
      const p = this.opts.token;
      value = typeof p === 'string' ? p : await p();
    } catch (err) {
      throw new PushClientError('token', `the token provider failed: ${String(err)}`, { cause: err });
    }
    if (typeof value !== 'string' || value === '')
      throw new PushClientError('token', 'the token provider gave no token');
    const exp = tokenClaims(value).exp;
    this.token = { value, exp };
    this.armRefresh(exp);
    return value;
  }

  /**
   * Fetches the next token ahead of `exp`, so that the reconnect after the edge's 4005 needs no
   * round trip to the business server. An open connection keeps its old token until then.
   */
  private armRefresh(exp: number | undefined): void {
    clearTimeout(this.refreshTimer);
    // A token that came after disconnect(): nothing to refresh (and no timer to keep Node alive).
    if (exp === undefined || typeof this.opts.token === 'string' || this.current === 'disconnected') return;
    // The margin before `exp`; a token living less than that, at half of what is left (not every
    // second, which is what the floor below would do with each such token).
    const left = exp * 1000 - Date.now();
    let inMs = left - this.opts.tokenRefreshMarginSeconds * 1000;
    if (inMs < 1000) inMs = left / 2;
    const gen = this.generation;
    this.refreshTimer = setTimeout(
      () => {
        if (gen !== this.generation || this.current === 'disconnected') return;
        this.refreshToken().catch((err: unknown) => {
          this.emit('error', { type: 'token', error: err as PushClientError });
        });
      },
      Math.max(1000, Math.min(inMs, 2 ** 31 - 1)),
    );
  }

  private schedule(delayMs: number, gen: number): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (gen === this.generation) void this.open(gen);
    }, delayMs);
  }

  /** Full jitter: random in [0, min(cap, base * 2^attempt)); the attempt counter resets on hello. */
  private backoff(): number {
    const { baseMs, capMs } = this.opts.backoff ?? RECONNECT_BACKOFF;
    return Math.random() * Math.min(capMs, baseMs * 2 ** Math.min(this.attempt++, 31));
  }

  /** Gives up on a socket that is silent (no hello in time, no pong): like a lost connection. */
  private abandon(sock: WebSocketLike & SocketEvents, reason: string): void {
    if (sock !== this.sock) return;
    try {
      sock.close(4000, reason);
    } catch (err) {
      this.emit('error', { type: 'transport', error: new PushClientError('transport', String(err), { cause: err }) });
    }
    this.onClosed(sock, 1006, reason);
  }

  private onClosed(sock: WebSocketLike & SocketEvents, code: number, reason: string): void {
    if (sock !== this.sock) return;
    const hadHello = this.helloOnSocket;
    // A connection that died silently while idle may say the interval was too long for the network.
    if (hadHello && code === 1006 && reason !== 'no pong') this.beat.lost(Date.now() - this.lastHeard);
    this.dropSocket();
    const next = this.decide(code, reason, hadHello);
    if (next.stop) {
      this.stop({ code, reason });
      return;
    }
    // A token fetched ahead of expiry while this socket ran is kept: that is what it was for.
    if (next.newToken && this.token?.value === this.sockToken) this.token = undefined;
    // No answer before a hello (1006; 1015 a TLS failure): reported to the dispatcher as unreachable.
    if (next.nextEdge) this.routes.failed(this.sockEdge, !hadHello && (code === 1006 || code === 1015));
    // Every failed attempt is reported, also those that do not change the state.
    if (this.current === 'connecting') this.emit('connecting', { code, reason });
    else this.setState('connecting', { code, reason });
    this.schedule(next.delayMs, this.generation);
  }

  /** The reaction to each close code (docs/protocol.md#close-codes, docs/sdk.md#reconnecting). */
  private decide(code: number, reason: string, hadHello: boolean): Next {
    switch (code) {
      case CLOSE.APP_GONE:
      case CLOSE.KICKED:
      case CLOSE.REPLACED: // coming back would replace the newer connection in turn
      case REFUSED.FORBIDDEN:
        return { stop: true };
      case CLOSE.SHUTDOWN: {
        const ms = Number(/^reconnect:(\d+)$/.exec(reason)?.[1] ?? NaN);
        return { stop: false, delayMs: Number.isFinite(ms) ? ms : this.backoff(), nextEdge: true, newToken: false };
      }
      case CLOSE.TOKEN_EXPIRED:
        return { stop: false, delayMs: hadHello ? 0 : this.backoff(), nextEdge: false, newToken: true };
      case REFUSED.BAD_REQUEST:
      case REFUSED.UNAUTHORIZED:
        return { stop: false, delayMs: this.backoff(), nextEdge: false, newToken: true };
      case REFUSED.UNAVAILABLE:
      case REFUSED.TOO_MANY_REQUESTS:
        return { stop: false, delayMs: this.backoff(), nextEdge: true, newToken: false };
      default:
        // 1006 and the rest: a lost connection. An edge that never said hello is skipped; and a
        // server that refuses with an HTTP status (no refusal=close: a proxy, an older edge)
        // looks the same, so a token whose exp the SDK cannot read is asked for again.
        return {
          stop: false,
          delayMs: this.backoff(),
          nextEdge: !hadHello,
          newToken: !hadHello && this.token?.exp === undefined,
        };
    }
  }

  /** To `disconnected`: no socket, no timers; pending sends reject. */
  private stop(why: CloseInfo): void {
    this.generation++;
    clearTimeout(this.retryTimer);
    clearTimeout(this.refreshTimer);
    const sock = this.sock;
    if (sock !== undefined) {
      this.flushAcks();
      this.dropSocket();
      try {
        sock.close(1000, 'bye');
      } catch (err) {
        this.emit('error', { type: 'transport', error: new PushClientError('transport', String(err), { cause: err }) });
      }
    }
    const gone = new PushClientError('disconnected', `the client disconnected (${why.code} ${why.reason})`);
    for (const id of [...this.sends.keys()]) this.settleSend(id, gone);
    for (const id of [...this.rpcs.keys()]) this.settleRpc(id, gone);
    for (const session of this.appSessions.values()) session.stopped();
    for (const sub of this.subs.values()) sub.stopped();
    this.setState('disconnected', why);
  }

  /** Forgets the current socket. Acks not sent are void: the edge delivers those messages again. */
  private dropSocket(): void {
    const sock = this.sock;
    if (sock !== undefined) {
      sock.onmessage = null;
      sock.onclose = null;
      sock.onerror = () => {
        // Late errors of a forgotten socket do not matter.
      };
    }
    this.sock = undefined;
    this.helloOnSocket = false;
    clearTimeout(this.connectTimer);
    clearTimeout(this.pingTimer);
    clearTimeout(this.pongTimer);
    this.pongTimer = undefined;
    this.propose = undefined;
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.toAck = [];
    this.delivered.clear();
    for (const p of this.sends.values()) {
      clearTimeout(p.retry);
      p.retry = undefined;
    }
    // An rpc is not repeated on the next connection: the business may have acted on it.
    for (const [id, r] of this.rpcs) {
      if (r.sent) this.settleRpc(id, new PushClientError('disconnected', 'the connection dropped before the answer'));
    }
    // Their `unsubscribed` will not come: the next connection does not hold them anyway.
    for (const subs of this.leaving.values()) for (const sub of subs) sub.onUnsubscribed();
    this.leaving.clear();
    for (const session of this.appSessions.values()) session.connectionLost();
  }

  /** Writes the rpcs not written yet. */
  private writeRpcs(): void {
    for (const r of this.rpcs.values()) if (!r.sent) r.sent = this.write(r.frame);
  }

  private settleRpc(id: string, outcome: { data: unknown } | PushClientError): void {
    const r = this.rpcs.get(id);
    if (r === undefined) return;
    this.rpcs.delete(id);
    clearTimeout(r.timeout);
    if (outcome instanceof PushClientError) r.reject(outcome);
    else r.resolve(outcome.data);
  }

  /**
   * The subscription a topic frame is for (`_all` included). None while an `unsub` of the topic
   * is in flight: what comes before its `unsubscribed` is of the subscription that left, not of
   * one made since.
   */
  private topicSub(f: ServerFrame): Subscription | undefined {
    return f.topic === BROADCAST_TOPIC
      ? this.broadcasts
      : typeof f.topic === 'string' && !this.leaving.get(f.topic)?.length
        ? this.subs.get(f.topic)
        : undefined;
  }

  /** Writes a frame on the open socket; false when there is none. */
  private write(text: string): boolean {
    const sock = this.sock;
    if (sock === undefined || sock.readyState !== OPEN) return false;
    sock.send(text);
    return true;
  }

  // --- frames ------------------------------------------------------------------------------

  private onData(sock: WebSocketLike & SocketEvents, data: unknown): void {
    if (sock !== this.sock) return;
    this.lastHeard = Date.now();
    if (typeof data !== 'string') return; // the edge sends text frames only
    let f: ServerFrame;
    try {
      f = JSON.parse(data) as ServerFrame;
    } catch (err) {
      this.emit('error', {
        type: 'server',
        error: new PushClientError('bad_frame', 'a frame of the edge is not JSON', { cause: err }),
      });
      return;
    }
    if (this.routeToSession(f)) return;
    switch (f.t) {
      case 'hello':
        this.onHello(f);
        break;
      case 'msg':
        if (f.topic === undefined) this.onMessage(f);
        else if (typeof f.seq === 'number' && typeof f.topic === 'string') {
          // Topic messages take no ack.
          this.topicSub(f)?.onMessage({
            topic: f.topic,
            seq: f.seq,
            prev: typeof f.prev === 'number' ? f.prev : 0,
            ts: typeof f.ts === 'number' ? f.ts : 0,
            ...(f.data !== undefined ? { data: f.data } : {}),
            ...(typeof f.b64 === 'string' ? { b64: f.b64 } : {}),
          });
        }
        break;
      case 'sent':
      case 'upsent':
        if (typeof f.id === 'string' && typeof f.seq === 'number') {
          this.settleSend(f.id, { id: f.id, seq: f.seq, dup: f.dup === true });
        }
        break;
      case 'rpc':
        if (typeof f.id === 'string') this.settleRpc(f.id, { data: f.data ?? null });
        break;
      case 'subscribed':
        this.topicSub(f)?.onSubscribed(typeof f.seq === 'number' ? f.seq : 0);
        break;
      case 'join':
        if (typeof f.user === 'string') {
          this.topicSub(f)?.onJoin({
            user: f.user,
            ...(typeof f.device === 'string' ? { device: f.device } : {}),
            ...(typeof f.since === 'number' ? { since: f.since } : {}),
          });
        }
        break;
      case 'leave':
        if (typeof f.user === 'string') this.topicSub(f)?.onLeave(f.user);
        break;
      case 'lost':
        if (typeof f.first === 'number') this.topicSub(f)?.onLost(f.first);
        break;
      case 'unsubscribed':
        // Of an `unsubscribe()`, or unasked (an unbind): that subscription ends.
        if (typeof f.topic === 'string') (this.leaving.get(f.topic)?.shift() ?? this.topicSub(f))?.onUnsubscribed();
        break;
      case 'error':
        this.onError(f);
        break;
      case 'pong':
        this.onPong(f);
        break;
      default:
        break; // frame kinds of later versions
    }
  }

  private onHello(f: ServerFrame): void {
    this.helloOnSocket = true;
    this.attempt = 0;
    this.routes.connected(this.sockEdge);
    clearTimeout(this.connectTimer);
    this.window = typeof f.window === 'number' ? f.window : 100;
    const ping = typeof f.ping === 'number' ? f.ping : this.beat.seconds;
    this.beat.agreed(ping);
    this.schedulePing();
    this.user = String(f.user);
    this.setState('connected', { code: 0, reason: '' });
    this.emit('connected', {
      edge: this.sockEdge,
      conn: String(f.conn),
      app: String(f.app),
      user: String(f.user),
      device: String(f.device),
      ping,
      window: this.window,
      maxMessageBytes: typeof f.maxMessageBytes === 'number' ? f.maxMessageBytes : 0,
    });
    // Sends not answered on the last connection go again, with their ids.
    for (const p of this.sends.values()) if (p.retry === undefined) this.write(p.frame);
    this.writeRpcs();
    // Topics again, each from the last sequence it delivered.
    this.broadcasts.resubscribe();
    for (const sub of this.subs.values()) sub.resubscribe();
    this.firstApp = String(f.app);
    for (const session of this.appSessions.values()) void session.attach();
  }

  /**
   * The next app-level ping, one interval (the policy's) from now. It carries an interval to
   * propose when the policy stepped up or the network changed; a ping with no pong within the
   * policy's `pongTimeoutMs` is a failure: the connection is given up (docs/sdk.md#heartbeats).
   */
  private schedulePing(): void {
    clearTimeout(this.pingTimer);
    const sock = this.sock;
    if (sock === undefined) return;
    this.pingTimer = setTimeout(() => {
      this.propose = this.beat.networkChanged() ?? this.propose;
      const frame = this.propose === undefined ? '{"t":"ping"}' : `{"t":"ping","ping":${this.propose}}`;
      this.propose = undefined;
      if (!this.write(frame)) return;
      this.pongTimer = setTimeout(() => {
        this.beat.failed();
        this.abandon(sock, 'no pong');
      }, this.beat.pongTimeoutMs);
    }, this.beat.seconds * 1000);
  }

  /** A pong: confirms the interval the ping was sent after; answers a proposal with the agreed interval. */
  private onPong(f: ServerFrame): void {
    if (this.pongTimer === undefined) return; // not awaited (an extra ping of an older client)
    clearTimeout(this.pongTimer);
    this.pongTimer = undefined;
    const next = this.beat.onTime();
    if (typeof f.ping === 'number') this.beat.agreed(f.ping);
    else this.propose = next;
    this.schedulePing();
  }

  private onMessage(f: ServerFrame): void {
    if (f.transient === true) {
      // Never stored: nothing to dedupe or ack (docs/sdk.md#transient-messages).
      this.emitMessage({ ...messageFields(f), seq: 0, transient: true, ack: () => undefined });
      return;
    }
    if (typeof f.seq !== 'number') return;
    const seq = f.seq;
    this.delivered.add(seq);
    const handled = this.seen.get(seq);
    if (handled !== undefined) {
      // A repeat (at-least-once): not shown again, but acked again once handled.
      if (handled) this.queueAck(seq);
      return;
    }
    this.remember(seq, false);
    const msg: PushMessage = { ...messageFields(f), seq, ack: () => this.ack(seq) };
    const threw = this.emitMessage(msg);
    if (this.opts.ackMode !== 'auto') return;
    // A listener that threw: not acked, it comes again on the next connection and is shown
    // again then (forgotten here, it is no repeat).
    if (threw) this.seen.delete(seq);
    else this.ack(seq);
  }

  /** Emits `message`; true when a listener threw (then auto mode does not ack: it comes again). */
  private emitMessage(msg: PushMessage): boolean {
    let threw = false;
    this.messageFailed = () => {
      threw = true;
    };
    try {
      this.emit('message', msg);
    } finally {
      this.messageFailed = undefined;
    }
    return threw;
  }

  private messageFailed: (() => void) | undefined;

  protected override listenerFailed(err: unknown, event: keyof PushClientEvents): void {
    if (event === 'message') this.messageFailed?.();
    if (event === 'error') return; // never loop
    const error = new PushClientError('listener', `a ${String(event)} listener threw: ${String(err)}`, { cause: err });
    this.emit('error', { type: event === 'message' ? 'handler' : 'listener', error });
  }

  private remember(seq: number, handled: boolean): void {
    this.seen.delete(seq);
    this.seen.set(seq, handled);
    if (this.seen.size > this.opts.dedupeSize) {
      const oldest = this.seen.keys().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
  }

  /**
   * Queues an ack for this turn: all acks of one turn go in one frame, and at once when half the
   * window is waiting (so the edge never stalls on a full window).
   */
  private queueAck(seq: number): void {
    if (!this.delivered.delete(seq)) return;
    this.toAck.push(seq);
    if (this.toAck.length >= Math.max(1, this.window / 2)) this.flushAcks();
    else this.ackTimer ??= setTimeout(() => this.flushAcks(), 0);
  }

  private flushAcks(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    while (this.toAck.length > 0) {
      this.write(JSON.stringify({ t: 'ack', seqs: this.toAck.splice(0, MAX_ACKS_PER_FRAME) }));
    }
  }

  private onError(f: ServerFrame): void {
    const code = typeof f.code === 'string' ? f.code : 'internal';
    const message = typeof f.message === 'string' ? f.message : code;
    const pending = typeof f.id === 'string' ? this.sends.get(f.id) : undefined;
    if (pending === undefined) {
      const error = new PushClientError(code, message);
      const sub = this.topicSub(f);
      if (typeof f.id === 'string' && this.rpcs.has(f.id)) this.settleRpc(f.id, error);
      else if (sub !== undefined) sub.onError(error, typeof f.retryAfter === 'number' ? f.retryAfter : undefined);
      else this.emit('error', { type: 'server', error });
      return;
    }
    // Worth another try with the same id (the edge stores one copy per id).
    if (code === 'rate_limited' || code === 'store_unavailable' || code === 'internal') {
      const wait = typeof f.retryAfter === 'number' ? f.retryAfter : 1000;
      pending.retry = setTimeout(() => {
        pending.retry = undefined;
        if (this.current === 'connected') this.write(pending.frame);
      }, wait);
      return;
    }
    this.settleSend(pending.id, new PushClientError(code, message));
  }

  private settleSend(id: string, outcome: SendResult | PushClientError): void {
    const p = this.sends.get(id);
    if (p === undefined) return;
    this.sends.delete(id);
    clearTimeout(p.timeout);
    clearTimeout(p.retry);
    if (outcome instanceof PushClientError) p.reject(outcome);
    else p.resolve(outcome);
  }
}
