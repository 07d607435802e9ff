import { Emitter } from './emitter.js';
import { registerAppSessions } from './push-client.js';
import {
  BROADCAST_TOPIC,
  PushClientError,
  Subscription,
  type SubscribeOptions,
  type SubscriptionHost,
} from './subscription.js';

/** Options of `client.attach()`. */
export interface AttachOptions {
  /** The app whose session this is (the token's `app`): frames about it carry it. */
  app: string;
  /**
   * A client token of that app (any user), or a function that gets one: called at each attach
   * (the first, and again after every reconnect and after a `token_expired` detach).
   */
  token: string | (() => string | Promise<string>);
}

/** What `attached` says: the session's own `hello`. */
export interface AttachedInfo {
  app: string;
  conn: string;
  user: string;
  device: string;
  window: number;
  maxMessageBytes: number;
}

/** One message of an attached app's inbox. */
export interface AppSessionMessage {
  seq: number;
  ts: number;
  from?: string;
  data?: unknown;
  b64?: string;
  /** Acknowledges it (manual mode; a no-op in auto mode once acked). */
  ack(): void;
}

/** State of an attached app's session. */
export type AppSessionState = 'attaching' | 'attached' | 'detached';

/** The typed event map of an AppSession. */
export interface AppSessionEvents {
  /** The edge took the session (after `attach()`, and again after each reconnect). */
  attached: [AttachedInfo];
  /**
   * The session ended while the connection stays (docs/protocol.md `detached`): `reason` is
   * `client`, `kicked` (it is not attached again), `app_disabled` (neither), or `token_expired`
   * (attached again at once with a new token from the function given).
   */
  detached: [{ reason: string; message?: string }];
  message: [AppSessionMessage];
  /** An `error` frame about this app that answers nothing pending, or a refused `attach`. */
  error: [PushClientError];
}

/** What an AppSession needs from its PushClient. */
export interface AppSessionHost {
  /** Writes a frame on the open socket (after the connection's `hello`); false when there is none. */
  write(text: string): boolean;
  /** Whether the connection said `hello` (frames can go out). */
  connected(): boolean;
  ackMode(): 'auto' | 'manual';
  /** The client's `fetchMembers` option (presence topics). */
  membersFetcher(): ((topic: string) => unknown) | undefined;
  /** Reports a listener's throw as the client's `error` event. */
  failed(err: unknown, event: string): void;
}

/** Frames from the edge as a session reads them (unknown fields are ignored). */
export interface SessionFrameIn {
  t?: unknown;
  app?: unknown;
  id?: unknown;
  seq?: unknown;
  ts?: unknown;
  from?: unknown;
  data?: unknown;
  b64?: unknown;
  dup?: unknown;
  code?: unknown;
  message?: unknown;
  reason?: unknown;
  retryAfter?: unknown;
  topic?: unknown;
  prev?: unknown;
  first?: unknown;
  user?: unknown;
  device?: unknown;
  since?: unknown;
  conn?: unknown;
  window?: unknown;
  maxMessageBytes?: unknown;
}

interface Pending {
  frame: string;
  resolve(v: unknown): void;
  reject(e: PushClientError): void;
  timeout: ReturnType<typeof setTimeout>;
  /** Written on the current connection (an rpc is never written twice). */
  sent: boolean;
  rpc: boolean;
}

let counter = 0;
const newId = (): string => `a-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}-${++counter}`;

/**
 * Another app's session on the PushClient's connection (docs/sdk.md#several-apps-on-one-connection):
 * attached with its own token, with its own messages and acks, `send`/`up`/`rpc`, topics and
 * events. Attached again on every connection the client makes, until `detach()`.
 */
export class AppSession extends Emitter<AppSessionEvents> {
  private current: AppSessionState = 'attaching';
  private user: string | undefined;
  /** Recent sequences: true once acked. */
  private readonly seen = new Map<number, boolean>();
  private readonly pending = new Map<string, Pending>();
  private readonly subs = new Map<string, Subscription>();
  /** `unsub`s in flight by topic: frames of the topic before their `unsubscribed` are of what left. */
  private readonly leaving = new Map<string, number>();
  /** The app's broadcast (`_all`), received from each attach on. */
  readonly broadcasts: Subscription;
  /** Set by `detach()` or a final `detached`: never attached again. */
  private ended = false;

  constructor(
    private readonly options: AttachOptions,
    private readonly host: AppSessionHost,
    private readonly forget: (s: AppSession) => void,
  ) {
    super();
    this.broadcasts = new Subscription(BROADCAST_TOPIC, this.subHost);
  }

  get app(): string {
    return this.options.app;
  }

  get state(): AppSessionState {
    return this.current;
  }

  /** Sends `attach` on the current connection (called after each `hello`). */
  async attach(): Promise<void> {
    if (this.ended) return;
    this.current = 'attaching';
    let token: string;
    try {
      const t = this.options.token;
      token = typeof t === 'string' ? t : await t();
    } catch (err) {
      this.emit('error', new PushClientError('token', `the token provider failed: ${String(err)}`, { cause: err }));
      return;
    }
    if (this.host.connected()) this.host.write(JSON.stringify({ t: 'attach', token }));
  }

  /** Ends the session (a `detach` frame); pending requests reject with `detached`. */
  detach(): void {
    if (this.ended) return;
    if (this.current === 'attached') this.host.write(JSON.stringify({ t: 'detach', app: this.app }));
    this.end('client');
  }

  /** Acknowledges a message (manual mode); safe to call twice. */
  ack(seq: number): void {
    if (this.seen.get(seq) === true) return;
    this.seen.set(seq, true);
    this.host.write(JSON.stringify({ t: 'ack', app: this.app, seqs: [seq] }));
  }

  /** Sends `data` to user `to` of this app; resolves once stored (`sent`), rejects with the server's code. */
  send(
    to: string,
    data: unknown,
    options: { id?: string; ttl?: number } = {},
  ): Promise<{ id: string; seq: number; dup: boolean }> {
    const id = options.id ?? newId();
    return this.request(
      id,
      { t: 'send', to, id, data, ...(options.ttl !== undefined ? { ttl: options.ttl } : {}) },
      false,
    ) as Promise<{
      id: string;
      seq: number;
      dup: boolean;
    }>;
  }

  /** Sends `data` up to this app's business; resolves once stored (`upsent`). */
  up(data: unknown, options: { id?: string; kind?: string } = {}): Promise<{ id: string; seq: number; dup: boolean }> {
    const id = options.id ?? newId();
    const frame = { t: 'up', id, data, ...(options.kind !== undefined ? { kind: options.kind } : {}) };
    return this.request(id, frame, false) as Promise<{ id: string; seq: number; dup: boolean }>;
  }

  /** Asks this app's business; resolves with its reply's data. Never sent twice. */
  rpc(method: string, data?: unknown, options: { timeoutMs?: number } = {}): Promise<unknown> {
    const id = newId();
    return this.request(id, { t: 'rpc', id, method, data: data ?? null }, true, options.timeoutMs);
  }

  /** Subscribes to a topic of this app (as `client.subscribe` does for the first app). */
  subscribe(topic: string, options: SubscribeOptions = {}): Subscription {
    if (topic === BROADCAST_TOPIC) return this.broadcasts;
    let sub = this.subs.get(topic);
    if (sub === undefined) {
      sub = new Subscription(topic, this.subHost, options);
      this.subs.set(topic, sub);
      if (this.current === 'attached') sub.resubscribe();
    }
    return sub;
  }

  private readonly subHost: SubscriptionHost = {
    write: (frame: object): boolean =>
      this.current === 'attached' && this.host.write(JSON.stringify({ ...frame, app: this.app })),
    leave: (sub: Subscription, unsub: boolean): boolean => {
      if (this.subs.get(sub.topic) === sub) this.subs.delete(sub.topic);
      if (unsub && this.host.write(JSON.stringify({ t: 'unsub', app: this.app, topic: sub.topic })))
        this.leaving.set(sub.topic, (this.leaving.get(sub.topic) ?? 0) + 1);
      return false; // answered at once: the `unsubscribed` frame is not waited for
    },
    failed: (err: unknown, event: string): void => this.host.failed(err, `${this.app} ${event}`),
    self: (): string | undefined => this.user,
    membersFetcher: () => this.host.membersFetcher(),
    presenceFailed: (error: PushClientError): void => this.emit('error', error),
  };

  private request(id: string, body: object, rpc: boolean, timeoutMs = 60_000): Promise<unknown> {
    if (this.ended) return Promise.reject(new PushClientError('detached', `the session of ${this.app} ended`));
    // As the client's: the answer of one id settles one call.
    if (this.pending.has(id))
      return Promise.reject(new PushClientError('duplicate_id', `a send with id ${id} is pending`));
    const frame = JSON.stringify({ ...body, app: this.app });
    return new Promise((resolve, reject) => {
      const timeout = setTimeout(
        () => this.settle(id, new PushClientError('timeout', `no answer to ${id}`)),
        timeoutMs,
      );
      const p: Pending = { frame, resolve, reject, timeout, sent: false, rpc };
      this.pending.set(id, p);
      if (this.current === 'attached') p.sent = this.host.write(frame);
    });
  }

  private settle(id: string, outcome: unknown): void {
    const p = this.pending.get(id);
    if (p === undefined) return;
    this.pending.delete(id);
    clearTimeout(p.timeout);
    if (outcome instanceof PushClientError) p.reject(outcome);
    else p.resolve(outcome);
  }

  /** The connection dropped: rpcs written on it reject; sends go again after the next `attached`. */
  connectionLost(): void {
    this.current = this.ended ? 'detached' : 'attaching';
    this.leaving.clear(); // their `unsubscribed` will not come
    for (const [id, p] of this.pending) {
      if (p.rpc && p.sent)
        this.settle(id, new PushClientError('disconnected', 'the connection dropped before the answer'));
      else p.sent = false;
    }
  }

  /** The client stopped: everything pending rejects. */
  stopped(): void {
    this.connectionLost();
    for (const id of [...this.pending.keys()])
      this.settle(id, new PushClientError('disconnected', 'the client disconnected'));
  }

  private end(reason: string, message?: string): void {
    this.ended = true;
    this.current = 'detached';
    for (const id of [...this.pending.keys()]) {
      this.settle(id, new PushClientError('detached', `the session of ${this.app} ended (${reason})`));
    }
    this.forget(this);
    this.emit('detached', { reason, ...(message !== undefined ? { message } : {}) });
  }

  /** A frame about this app (its `app`), or an `attached`/`detached` for it. */
  onFrame(f: SessionFrameIn): void {
    switch (f.t) {
      case 'attached':
        this.current = 'attached';
        this.user = String(f.user);
        this.emit('attached', {
          app: this.app,
          conn: String(f.conn),
          user: String(f.user),
          device: String(f.device),
          window: typeof f.window === 'number' ? f.window : 100,
          maxMessageBytes: typeof f.maxMessageBytes === 'number' ? f.maxMessageBytes : 0,
        });
        for (const p of this.pending.values()) if (!p.sent) p.sent = this.host.write(p.frame);
        this.broadcasts.resubscribe();
        for (const sub of this.subs.values()) sub.resubscribe();
        return;
      case 'detached': {
        const reason = typeof f.reason === 'string' ? f.reason : 'client';
        const message = typeof f.message === 'string' ? f.message : undefined;
        if (reason === 'token_expired' && typeof this.options.token !== 'string') {
          this.current = 'attaching';
          this.emit('detached', { reason });
          void this.attach();
          return;
        }
        this.end(reason, message);
        return;
      }
      case 'msg':
        if (typeof f.seq !== 'number') return;
        if (typeof f.topic === 'string') this.topicMessage(f, f.topic, f.seq);
        else this.inboxMessage(f, f.seq);
        return;
      case 'sent':
      case 'upsent':
        if (typeof f.id === 'string' && typeof f.seq === 'number') {
          this.settle(f.id, { id: f.id, seq: f.seq, dup: f.dup === true });
        }
        return;
      case 'rpc':
        if (typeof f.id === 'string') this.settle(f.id, f.data ?? null);
        return;
      case 'subscribed':
        this.topicSub(f)?.onSubscribed(typeof f.seq === 'number' ? f.seq : 0);
        return;
      case 'lost':
        if (typeof f.first === 'number') this.topicSub(f)?.onLost(f.first);
        return;
      case 'join':
        if (typeof f.user === 'string') {
          this.topicSub(f)?.onJoin({
            user: f.user,
            ...(typeof f.device === 'string' ? { device: f.device } : {}),
            ...(typeof f.since === 'number' ? { since: f.since } : {}),
          });
        }
        return;
      case 'leave':
        if (typeof f.user === 'string') this.topicSub(f)?.onLeave(f.user);
        return;
      case 'error':
        this.onError(f);
        return;
      case 'unsubscribed':
        if (typeof f.topic === 'string') {
          const n = this.leaving.get(f.topic) ?? 0;
          // Of an `unsub` (answered already), or unasked (an unbind): that subscription ends.
          if (n > 1) this.leaving.set(f.topic, n - 1);
          else if (n === 1) this.leaving.delete(f.topic);
          else this.topicSub(f)?.onUnsubscribed();
        }
        return;
      default:
        return; // frame kinds of later versions
    }
  }

  /** The subscription a topic frame is for; none while an `unsub` of the topic is in flight. */
  private topicSub(f: SessionFrameIn): Subscription | undefined {
    if (f.topic === BROADCAST_TOPIC) return this.broadcasts;
    return typeof f.topic === 'string' && !this.leaving.has(f.topic) ? this.subs.get(f.topic) : undefined;
  }

  private topicMessage(f: SessionFrameIn, topic: string, seq: number): void {
    this.topicSub(f)?.onMessage({
      topic,
      seq,
      prev: typeof f.prev === 'number' ? f.prev : 0,
      ts: typeof f.ts === 'number' ? f.ts : 0,
      ...(f.data !== undefined ? { data: f.data } : {}),
      ...(typeof f.b64 === 'string' ? { b64: f.b64 } : {}),
    });
  }

  private inboxMessage(f: SessionFrameIn, seq: number): void {
    const handled = this.seen.get(seq);
    if (handled !== undefined) {
      // A repeat (at-least-once): not shown again; acked again once handled.
      if (handled) this.host.write(JSON.stringify({ t: 'ack', app: this.app, seqs: [seq] }));
      return;
    }
    this.seen.set(seq, false);
    if (this.seen.size > 10_000) {
      const oldest = this.seen.keys().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    let threw = false;
    this.messageFailed = () => {
      threw = true;
    };
    try {
      this.emit('message', {
        seq,
        ts: typeof f.ts === 'number' ? f.ts : 0,
        ...(typeof f.from === 'string' ? { from: f.from } : {}),
        ...(f.data !== undefined ? { data: f.data } : {}),
        ...(typeof f.b64 === 'string' ? { b64: f.b64 } : {}),
        ack: () => this.ack(seq),
      });
    } finally {
      this.messageFailed = undefined;
    }
    if (this.host.ackMode() !== 'auto') return;
    // A listener that threw leaves it unacked in auto mode: it comes again (at-least-once), and
    // is shown again then (forgotten here, it is no repeat).
    if (threw) this.seen.delete(seq);
    else this.ack(seq);
  }

  private messageFailed: (() => void) | undefined;

  private onError(f: SessionFrameIn): void {
    const code = typeof f.code === 'string' ? f.code : 'internal';
    const error = new PushClientError(code, typeof f.message === 'string' ? f.message : code);
    const pending = typeof f.id === 'string' ? this.pending.get(f.id) : undefined;
    if (pending !== undefined && typeof f.id === 'string') {
      // A send or up worth another try with the same id (the edge stores one copy per id).
      if (!pending.rpc && (code === 'rate_limited' || code === 'store_unavailable' || code === 'internal')) {
        const wait = typeof f.retryAfter === 'number' ? f.retryAfter : 1000;
        setTimeout(() => {
          if (this.pending.get(f.id as string) === pending && this.current === 'attached')
            this.host.write(pending.frame);
        }, wait);
        return;
      }
      this.settle(f.id, error);
      return;
    }
    const sub = this.topicSub(f);
    if (sub !== undefined) {
      sub.onError(error, undefined);
      return;
    }
    // A refused attach is final but for a token the provider may renew (`app_attached`: the app
    // is the connection's first, or attached by another session).
    if (this.current === 'attaching') {
      if (code === 'rate_limited') {
        const wait = typeof f.retryAfter === 'number' ? f.retryAfter : 1000;
        setTimeout(() => void this.attach(), wait);
      } else if (code === 'token_expired' && typeof this.options.token !== 'string') void this.attach();
      else this.end(code);
    }
    this.emit('error', error);
  }

  protected override listenerFailed(err: unknown, event: keyof AppSessionEvents): void {
    if (event === 'message') this.messageFailed?.();
    if (event !== 'error') this.host.failed(err, `${this.app} ${String(event)}`);
  }
}

registerAppSessions((options, host, forget) => new AppSession(options, host, forget));
