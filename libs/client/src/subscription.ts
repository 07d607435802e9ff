import { Emitter } from './emitter.js';
import { PresenceRoster, parseMembers, type PresenceMember } from './presence-roster.js';

/** A failure with a stable code: the server's error codes, or `timeout`, `disconnected`, ... */
export class PushClientError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PushClientError';
    this.code = code;
  }
}

/** The reserved topic every connection receives without subscribing: the app's broadcast. */
export const BROADCAST_TOPIC = '_all';

/** One message of a topic. Topic messages take no ack. */
export interface TopicMessage {
  topic: string;
  /** Its sequence in the app's topic stream: increasing per topic, not consecutive. */
  seq: number;
  /** The sequence of the topic's previous message (0: none). */
  prev: number;
  /** When it was published, epoch ms. */
  ts: number;
  /** The message, when it was JSON. */
  data?: unknown;
  /** The bytes, base64, when it was binary. */
  b64?: string;
}

export interface SubscribeOptions {
  /**
   * Start after this sequence: the messages after it that the topic's history holds come first
   * (0: all it holds). Absent: live messages only.
   */
  since?: number;
  /** A topic token (docs/protocol.md#topics) for a topic the client token does not grant. */
  token?: string;
  /**
   * Keep the topic's member list (docs/sdk.md#presence): on every `subscribed` the client's
   * `fetchMembers` gives the current members, and `join`/`leave` frames keep them current. The
   * topic must be one of the app's `presenceTopics`. Throws `no_fetch_members` without that option.
   */
  presence?: boolean;
}

/** `subscribing` until the edge's `subscribed` (again after each reconnect), `unsubscribed` at the end. */
export type SubscriptionState = 'subscribing' | 'subscribed' | 'unsubscribed';

/** The typed events of a Subscription: `sub.on('message', (m) => ...)`. */
export interface SubscriptionEvents {
  /** A topic message, once per `seq`, in order. */
  message: [TopicMessage];
  /** The edge took the `sub` (after what was missed): `seq` is the topic's last sequence then. */
  subscribed: [{ seq: number }];
  /** History no longer reached back: messages before `first` (after the last one seen) are gone. */
  lost: [{ first: number }];
  /** The edge refused the `sub` (`topic_forbidden`, `too_many_topics`, ...): the subscription ended. */
  error: [PushClientError];
  /** `unsubscribe()` took effect. */
  unsubscribed: [];
  /**
   * Presence (`presence: true`): the whole member list, this user included, after each fetch
   * (on every `subscribed`, so again after a reconnect): replace what you show with it.
   */
  members: [PresenceMember[]];
  /** A user's first connection subscribed (presence: once the list is ready, and only a new member). */
  join: [PresenceMember];
  /** A user's last connection left (presence: once the list is ready, and only a member). */
  leave: [{ user: string }];
}

/** What a Subscription needs from its client: write a frame when connected, and forget it. */
export interface SubscriptionHost {
  /** Writes the frame when the client is connected (a no-op otherwise: `hello` resends). */
  write(frame: object): boolean;
  /** Removes the subscription from the client; with `unsub`, true when an `unsub` frame went out. */
  leave(sub: Subscription, unsub: boolean): boolean;
  /** Reports a listener's throw as the client's `error` event. */
  failed(err: unknown, event: string): void;
  /** The user of the current connection (hello), if connected. */
  self(): string | undefined;
  /** The client's `fetchMembers` option, if given. */
  membersFetcher(): ((topic: string) => unknown) | undefined;
  /** Reports a failed member fetch as the client's `error` event (type `presence`); it is retried. */
  presenceFailed(err: PushClientError): void;
}

/**
 * A topic subscription (docs/sdk.md#topics): sends `sub` on every connection, resuming from the
 * last sequence it delivered (`since`), so a reconnect or an edge failover loses nothing history
 * still holds and repeats nothing. It also follows `prev`: a message whose `prev` is past the
 * last one delivered means some were missed on the way, and the SDK asks for them again before
 * going on.
 */
export class Subscription extends Emitter<SubscriptionEvents> {
  private current: SubscriptionState = 'subscribing';
  /** The last sequence delivered (or the `since` asked for); undefined: none yet, take anything. */
  private last: number | undefined;
  /** The `since` of the next `sub` when nothing was delivered yet. */
  private readonly since: number | undefined;
  /** A gap was seen and a `sub` asking for it went out: out-of-order frames wait for it. */
  private refilling = false;
  private retry: ReturnType<typeof setTimeout> | undefined;
  /** The member list, with `presence: true`. */
  private readonly roster: PresenceRoster | undefined;
  /** Counts fetches: an answer for an older one (before a resubscribe) is dropped. */
  private fetches = 0;
  private fetchFailures = 0;
  /** The next `subscribed` fetches the members (the first after each `sub` from `resubscribe`). */
  private membersDue = false;
  private fetchRetry: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly topic: string,
    private readonly host: SubscriptionHost,
    private readonly options: SubscribeOptions = {},
  ) {
    super();
    this.since = options.since;
    if (options.since !== undefined && options.since > 0) this.last = options.since;
    if (options.presence === true) {
      if (host.membersFetcher() === undefined) {
        throw new PushClientError('no_fetch_members', 'presence needs the fetchMembers option');
      }
      this.roster = new PresenceRoster();
    }
  }

  /**
   * Presence (`presence: true`): the members, this user included, once fetched (empty until the
   * first `members` event). One entry per user.
   */
  members(): PresenceMember[] {
    return this.roster?.ready === true ? this.roster.members() : [];
  }

  get state(): SubscriptionState {
    return this.current;
  }

  /** The last sequence delivered (what the next `sub` resumes from), if any. */
  get lastSeq(): number | undefined {
    return this.last;
  }

  /**
   * Leaves the topic: no message of it is delivered from now on; `unsubscribed` follows once the
   * edge confirmed (at once when not connected). The `_all` broadcast cannot be left.
   */
  unsubscribe(): void {
    if (this.current === 'unsubscribed') return;
    if (this.topic === BROADCAST_TOPIC) throw new PushClientError('invalid_topic', '_all cannot be left');
    this.end();
    if (!this.host.leave(this, true)) this.emit('unsubscribed');
  }

  /** Called on each `hello`: subscribe again, from the last sequence delivered. */
  resubscribe(): void {
    if (this.current === 'unsubscribed') return;
    this.current = 'subscribing';
    this.refilling = false;
    // Frames of the last connection said nothing about this one: the list is fetched again.
    this.fetches += 1;
    this.membersDue = true;
    this.roster?.reset();
    const since = this.last ?? this.since;
    // `_all` needs no `sub`: only one that resumes what was missed while away.
    if (this.topic === BROADCAST_TOPIC && since === undefined) {
      this.current = 'subscribed';
      return;
    }
    this.host.write({
      t: 'sub',
      topic: this.topic,
      ...(since !== undefined ? { since } : {}),
      ...(this.options.token !== undefined ? { token: this.options.token } : {}),
    });
  }

  /** A topic `msg` frame of this topic. */
  onMessage(m: TopicMessage): void {
    if (this.current === 'unsubscribed') return;
    const last = this.last;
    if (last !== undefined) {
      if (m.seq <= last) return; // a repeat
      if (m.prev > last) {
        // Missed messages: ask for them (once) and drop what comes before them.
        if (!this.refilling) {
          this.refilling = true;
          this.host.write({ t: 'sub', topic: this.topic, since: last });
        }
        return;
      }
    }
    this.last = m.seq;
    this.emit('message', m);
  }

  onSubscribed(seq: number): void {
    if (this.current === 'unsubscribed') return;
    this.refilling = false;
    // Below what was delivered: the topic is not the one resumed (its app was created again, or
    // its whole history expired): what comes next is new, and what came after `last` may be lost.
    if (seq < (this.last ?? seq)) this.onLost(seq + 1, seq);
    // Nothing delivered yet: a later resume starts where the live feed started.
    this.last ??= seq;
    this.current = 'subscribed';
    this.emit('subscribed', { seq });
    // Once per (re)subscribe: the `subscribed` of a gap's refill finds the list kept current.
    if (this.roster !== undefined && this.membersDue) {
      this.membersDue = false;
      this.fetchMembers(this.roster);
    }
  }

  /** A `join` frame of this topic. */
  onJoin(member: PresenceMember): void {
    if (this.current === 'unsubscribed') return;
    if (this.roster === undefined || this.roster.join(member)) this.emit('join', member);
  }

  /** A `leave` frame of this topic. */
  onLeave(user: string): void {
    if (this.current === 'unsubscribed') return;
    if (this.roster === undefined || this.roster.leave(user, this.host.self())) this.emit('leave', { user });
  }

  /**
   * Asks `fetchMembers` for the list, after the edge took the `sub`: frames from then on reach
   * the roster, which holds them until the answer. Retried (1 s, doubling to 30 s) on failure.
   */
  private fetchMembers(roster: PresenceRoster): void {
    const fetch = ++this.fetches;
    const fetchMembers = this.host.membersFetcher();
    if (fetchMembers === undefined) return;
    const current = (): boolean => fetch === this.fetches && this.current === 'subscribed';
    new Promise<unknown>((resolve) => resolve(fetchMembers(this.topic)))
      .then((value) => {
        if (!current()) return;
        let snapshot: PresenceMember[];
        try {
          snapshot = parseMembers(value);
        } catch (err) {
          throw new PushClientError('bad_members', `fetchMembers(${this.topic}): ${String(err)}`, { cause: err });
        }
        this.fetchFailures = 0;
        roster.fetched(snapshot, this.host.self());
        this.emit('members', roster.members());
      })
      .catch((err: unknown) => {
        if (!current()) return;
        this.host.presenceFailed(
          err instanceof PushClientError
            ? err
            : new PushClientError('presence_fetch_failed', `fetchMembers(${this.topic}) failed: ${String(err)}`, {
                cause: err,
              }),
        );
        const delay = Math.min(30_000, 1000 * 2 ** this.fetchFailures++);
        clearTimeout(this.fetchRetry);
        this.fetchRetry = setTimeout(() => {
          if (current()) this.fetchMembers(roster);
        }, delay);
      });
  }

  onLost(first: number, last = Math.max(this.last ?? 0, first - 1)): void {
    if (this.current === 'unsubscribed') return;
    // What comes next starts at `first`: its `prev` points into what is gone, and is no gap.
    this.last = last;
    this.emit('lost', { first });
  }

  /** An `error` frame for this topic: worth another try later, or the end of the subscription. */
  onError(err: PushClientError, retryAfter: number | undefined): void {
    if (this.current === 'unsubscribed') return;
    if (err.code === 'store_unavailable' || err.code === 'internal' || err.code === 'rate_limited') {
      clearTimeout(this.retry);
      this.retry = setTimeout(() => this.resubscribe(), retryAfter ?? 1000);
      return;
    }
    this.end();
    this.host.leave(this, false);
    this.emit('error', err);
  }

  /** The client disconnected (or this ended): no member fetch and no retry goes on until the next `hello`. */
  stopped(): void {
    this.fetches += 1;
    clearTimeout(this.retry);
    clearTimeout(this.fetchRetry);
  }

  /** The edge's `unsubscribed`: of an `unsubscribe()`, or unasked (the topic was unbound). */
  onUnsubscribed(): void {
    if (this.current !== 'unsubscribed') {
      this.end();
      this.host.leave(this, false);
    }
    this.emit('unsubscribed');
  }

  private end(): void {
    this.current = 'unsubscribed';
    this.stopped();
  }

  protected override listenerFailed(err: unknown, event: keyof SubscriptionEvents): void {
    this.host.failed(err, `${this.topic} ${event}`);
  }
}
