import {
  PUSHER_USER_CHANNEL_PREFIX,
  TokenBucket,
  pusherCacheChannel,
  pusherChannelKind,
  pusherChannelProblem,
  pusherCredentials,
  pusherVerify,
  type PusherChannelKind,
} from '@push/apps';
import { PushError, idProblem, isObject, isPushError, pusherFrameOf } from '@push/protocol';
import type { TopicChannel } from '../topic-channels.js';
import type { EdgeContext } from '../edge-context.js';
import type { TopicSubscriber } from '../topic-presence.js';
import { PUSHER_CLIENT_EVENT_MAX_BYTES, PUSHER_CODE, PUSHER_USER_INFO_MAX_BYTES } from './pusher-codes.js';
import type { MemberWatch, PusherFanout } from './pusher-fanout.js';
import type { PusherMembers } from './pusher-members.js';

/** What a Pusher connection uses of its uWS WebSocket. */
export interface PusherSocket {
  send(message: string): number;
  cork(cb: () => void): unknown;
  end(code: number, reason: string): void;
  subscribe(key: string): boolean;
  unsubscribe(key: string): boolean;
  publish(key: string, message: string): boolean;
}

/** The uWS pub/sub key of a topic's Pusher frames (the native frames use the live subject itself). */
export function pusherKey(liveKey: string): string {
  return `${liveKey}|pusher`;
}

/** The uWS pub/sub key of a presence channel's `member_added` / `member_removed`. */
export function pusherMembersKey(liveKey: string): string {
  return `${liveKey}|pusher-members`;
}

/**
 * How long a new presence subscriber gets the member frames through its watch (by order) after
 * its list, ms: a `join`/`leave` decided before the list was read can reach this edge later than
 * the list (NATS against Redis); within this it is dropped, not sent as a change the list has.
 */
const MEMBER_WATCH_MS = 2000;

/** One channel of a connection, from its `pusher:subscribe` until it is left. */
interface ChannelSub {
  kind: PusherChannelKind;
  /** How topic presence records it: the presence member, or the socket as its own user. */
  subscriber: TopicSubscriber;
  /** Whether it holds a reference on the topic's channel (TopicChannels), to leave. */
  topicRef: boolean;
  /** Whether topic presence recorded it (to forget). */
  recorded: boolean;
  /** Ends the member frames' watch of a presence subscriber still on it (PusherFanout.watch). */
  unwatch?: (() => void) | undefined;
}

/** What the door hands each connection. */
export interface PusherDoorContext {
  ctx: EdgeContext;
  members: PusherMembers;
  /** Member frames to a presence subscriber getting its list. */
  memberFrames: Pick<PusherFanout, 'watch'>;
  /** Seconds of silence after which a pusher-js client pings (`activity_timeout`). */
  activityTimeout: number;
  /** A connection signed in as a user (`pusher:signin`): a kick or terminate_connections of the user closes it. */
  signedIn(conn: PusherConnection): void;
}

/**
 * One Pusher protocol 7 WebSocket (docs/pusher.md): channels are topics (`TopicChannels`,
 * fanned out by `PusherFanout` under their Pusher key), private and presence subscriptions are
 * checked against the app's Pusher secret, presence members are topic presence, and client
 * events are topic messages stored like any other (so native subscribers of the topic get them
 * too). Every problem with a frame is answered on the socket; the connection stays open.
 */
export class PusherConnection {
  ws: PusherSocket | undefined;
  private readonly channels = new Map<string, ChannelSub>();
  private closed = false;
  private eventBucket: TokenBucket | undefined;
  /** The user this socket signed in as (`pusher:signin`), if it did. */
  user: string | undefined;

  constructor(
    private readonly door: PusherDoorContext,
    /** Pusher socket id: `<edge number>.<counter>`, unique across edges. */
    readonly socketId: string,
    /** Id in topic presence and events: `<edge id>-p<counter>`. */
    readonly id: string,
    readonly app: string,
  ) {}

  get isClosed(): boolean {
    return this.closed;
  }

  open(ws: PusherSocket): void {
    if (this.closed) return;
    this.ws = ws;
    this.send('pusher:connection_established', {
      socket_id: this.socketId,
      activity_timeout: this.door.activityTimeout,
    });
  }

  /** Handles one text frame. */
  onFrame(text: string): void {
    let f: unknown;
    try {
      f = JSON.parse(text);
    } catch {
      this.error(null, 'the frame is not JSON');
      return;
    }
    if (!isObject(f) || typeof f['event'] !== 'string') {
      this.error(null, 'a frame is a JSON object with a string event');
      return;
    }
    const event = f['event'];
    const data = f['data'];
    switch (event) {
      case 'pusher:ping':
        this.send('pusher:pong', {});
        return;
      case 'pusher:pong':
        return;
      case 'pusher:subscribe':
        void this.subscribe(isObject(data) ? data : {});
        return;
      case 'pusher:signin':
        this.signin(isObject(data) ? data : {});
        return;
      case 'pusher:unsubscribe':
        if (isObject(data) && typeof data['channel'] === 'string') this.leave(data['channel']);
        return;
      default:
        if (event.startsWith('client-')) void this.clientEvent(event, f['channel'], data);
        else this.error(null, `unknown event ${event.slice(0, 64)}`);
    }
  }

  /** `pusher:subscribe`: check the channel and its auth, then join its topic. */
  private async subscribe(d: Record<string, unknown>): Promise<void> {
    const { ctx } = this.door;
    const channel = d['channel'];
    const bad = pusherChannelProblem(channel);
    if (bad !== undefined || typeof channel !== 'string') {
      this.subscriptionError(typeof channel === 'string' ? channel : '', 'InvalidChannel', bad ?? '', 400);
      return;
    }
    if (this.channels.has(channel)) return; // already subscribed (or subscribing): Pusher ignores it
    const app = ctx.apps.get(this.app);
    if (app === undefined || app.disabled) {
      this.end(PUSHER_CODE.APP_DISABLED, 'the app is disabled');
      return;
    }
    const kind = pusherChannelKind(channel);
    let member: { user: string; info: unknown } | undefined;
    if (kind === 'user') {
      // Only the signed-in user's own channel, with no auth: the signin proved who they are.
      if (this.user === undefined || channel !== `${PUSHER_USER_CHANNEL_PREFIX}${this.user}`) {
        this.subscriptionError(channel, 'AuthError', 'only the signed-in user may subscribe to their own channel', 401);
        return;
      }
    } else if (kind !== 'public') {
      const channelData = typeof d['channel_data'] === 'string' ? d['channel_data'] : undefined;
      const auth = typeof d['auth'] === 'string' ? d['auth'] : '';
      const creds = pusherCredentials(app);
      const colon = auth.indexOf(':');
      const signed =
        kind === 'presence' ? `${this.socketId}:${channel}:${channelData ?? ''}` : `${this.socketId}:${channel}`;
      if (
        colon < 0 ||
        auth.slice(0, colon) !== creds.key ||
        !pusherVerify(creds.secrets, signed, auth.slice(colon + 1))
      ) {
        ctx.metrics.errors.inc({ code: 'pusher_auth' });
        this.subscriptionError(
          channel,
          'AuthError',
          `invalid signature: expected HMAC SHA256 hex digest of ${signed} keyed with the app's Pusher secret`,
          401,
        );
        return;
      }
      if (kind === 'presence') {
        const m = readChannelData(channelData);
        if (typeof m === 'string') {
          this.subscriptionError(channel, 'InvalidChannelData', m, 400);
          return;
        }
        member = m;
      }
    }
    if (this.channels.size >= app.settings.maxTopicsPerConnection) {
      this.subscriptionError(
        channel,
        'LimitReached',
        `a connection may hold at most ${app.settings.maxTopicsPerConnection} channels`,
        400,
      );
      return;
    }
    const s: ChannelSub = {
      kind,
      subscriber: {
        id: this.id,
        app: this.app,
        user: member?.user ?? `pusher-${this.socketId}`,
        device: 'pusher',
        ws: this.ws,
      },
      topicRef: false,
      recorded: false,
    };
    this.channels.set(channel, s);
    ctx.metrics.topicSubscriptions.inc();
    const current = () => !this.closed && this.channels.get(channel) === s;
    try {
      // The member's info first: the edges that announce their `member_added` read it.
      if (member !== undefined) await this.door.members.write(this.app, channel, member.user, member.info);
      if (!current()) return;
      ctx.topicPresence.joined(s.subscriber, channel);
      s.recorded = true;
      s.topicRef = true;
      const ch = await ctx.topics.join(this.app, channel);
      if (!current()) return;
      // A cache channel's last event, read until it is still the last one this edge fanned out:
      // then the socket joins the fan-out in the same turn, so nothing newer comes before it.
      let cached: string | undefined;
      if (pusherCacheChannel(channel)) {
        for (;;) {
          const last = ch.last;
          const frame = await this.lastEvent(channel, ch, last);
          if (!current()) return;
          if (ch.last === last) {
            cached = frame ?? `{"event":"pusher:cache_miss","channel":${ch.topicJson}}`;
            break;
          }
        }
      }
      this.ws?.subscribe(pusherKey(ch.key));
      if (member === undefined) {
        this.sendRaw(`{"event":"pusher_internal:subscription_succeeded","channel":${JSON.stringify(channel)}}`);
        if (cached !== undefined) this.sendRaw(cached);
        return;
      }
      // Member changes from now on reach it through the watch, ordered against the list.
      const watch: MemberWatch = { user: member.user, held: [], at: 0, send: (f) => this.sendRaw(f) };
      const unwatch = this.door.memberFrames.watch(ch.key, watch);
      s.unwatch = unwatch;
      const { presence, at } = await this.door.members.list(this.app, channel);
      if (!current()) return;
      if (!(member.user in presence.hash)) {
        presence.ids.push(member.user);
        presence.count++;
      }
      presence.hash[member.user] = member.info ?? null;
      this.send('pusher_internal:subscription_succeeded', JSON.stringify({ presence }), channel);
      if (cached !== undefined) this.sendRaw(cached);
      const held = watch.held ?? [];
      watch.held = undefined;
      watch.at = at;
      for (const h of held) if (h.order === 0 || h.order > at) this.sendRaw(h.frame);
      const membersKey = pusherMembersKey(ch.key);
      setTimeout(() => {
        if (!current() || s.unwatch !== unwatch) return;
        // In the same turn: each frame after this reaches it by pub/sub, each before by the watch.
        unwatch();
        s.unwatch = undefined;
        this.ws?.subscribe(membersKey);
      }, MEMBER_WATCH_MS).unref();
    } catch (err) {
      const e = isPushError(err) ? err : new PushError('internal', undefined, { cause: err });
      ctx.metrics.errors.inc({ code: e.code });
      ctx.log.warn({ err, conn: this.id, channel }, 'pusher subscribe failed');
      if (!current()) return;
      this.leave(channel, false);
      this.subscriptionError(channel, 'ServerError', `${e.code}: ${e.message}`, e.status);
    }
  }

  /**
   * `pusher:signin` (user authentication): `auth` = `<key>:<hex HMAC-SHA256 of
   * "<socket_id>::user::<user_data>">` with the app's Pusher secret, `user_data` a JSON object
   * with a string `id`. Answered `pusher:signin_success`; a bad one `pusher:error` code 4009 and
   * the close, as Pusher does.
   */
  private signin(d: Record<string, unknown>): void {
    const { ctx } = this.door;
    const app = ctx.apps.get(this.app);
    if (app === undefined || app.disabled) return;
    const userData = typeof d['user_data'] === 'string' ? d['user_data'] : '';
    const auth = typeof d['auth'] === 'string' ? d['auth'] : '';
    const creds = pusherCredentials(app);
    const colon = auth.indexOf(':');
    const signed = `${this.socketId}::user::${userData}`;
    let id: unknown;
    try {
      id = (JSON.parse(userData) as { id?: unknown }).id;
    } catch {
      id = undefined;
    }
    const ok =
      colon >= 0 &&
      auth.slice(0, colon) === creds.key &&
      pusherVerify(creds.secrets, signed, auth.slice(colon + 1)) &&
      typeof id === 'string' &&
      idProblem('user', id) === undefined &&
      (this.user === undefined || this.user === id);
    if (!ok) {
      ctx.metrics.errors.inc({ code: 'pusher_signin' });
      this.end(PUSHER_CODE.UNAUTHORIZED, 'signin refused: bad auth or user_data without a valid id');
      return;
    }
    this.user = id as string;
    this.door.signedIn(this);
    this.send('pusher:signin_success', { user_data: userData });
  }

  /** The Pusher frame of the topic's message `seq` (its last), from history; undefined when there is none. */
  private async lastEvent(channel: string, ch: TopicChannel, seq: number): Promise<string | undefined> {
    if (seq === 0) return undefined;
    const { messages } = await this.door.ctx.topicStore.readBatch(this.app, channel, seq, {
      max: 1,
      maxBytes: 1024 * 1024,
    });
    const m = messages[0];
    if (m === undefined || m.seq !== seq || m.malformed === true || m.expires <= Date.now()) return undefined;
    // An event this socket was left out of (`socket_id`: its own client event, say) is no cache for it.
    const { frame, exclude } = pusherFrameOf(ch.topicJson, m.bytes, m.binary);
    return exclude === this.socketId ? undefined : frame;
  }

  /** Leaves a channel (`pusher:unsubscribe`, a failed subscribe, or the close). */
  private leave(channel: string, unsubscribeSocket = true): void {
    const { ctx } = this.door;
    const s = this.channels.get(channel);
    if (s === undefined) return;
    this.channels.delete(channel);
    ctx.metrics.topicSubscriptions.dec();
    s.unwatch?.();
    s.unwatch = undefined;
    if (unsubscribeSocket && !this.closed) {
      const key = ctx.subjects.liveTopic(this.app, channel);
      this.ws?.unsubscribe(pusherKey(key));
      if (s.kind === 'presence') this.ws?.unsubscribe(pusherMembersKey(key));
    }
    if (s.topicRef) ctx.topics.leave(this.app, channel);
    if (s.recorded) ctx.topicPresence.left(s.subscriber, channel);
  }

  /**
   * A client event (`client-*`): only on private and presence channels the connection holds, when
   * the app's `clientMessaging` is on, at most the app's `sendRatePerConnection` per second and
   * 10 KB of data. Stored in the channel's topic, so it reaches every subscriber on every edge
   * (native ones too) but this socket.
   */
  private async clientEvent(event: string, channel: unknown, data: unknown): Promise<void> {
    const { ctx } = this.door;
    if (typeof channel !== 'string' || !this.channels.has(channel)) {
      this.error(null, `client event ${event.slice(0, 64)} on a channel this connection is not subscribed to`);
      return;
    }
    const s = this.channels.get(channel) as ChannelSub;
    if (s.kind !== 'private' && s.kind !== 'presence') {
      this.error(null, 'client events are only accepted on private- and presence- channels (not encrypted ones)');
      return;
    }
    const app = ctx.apps.get(this.app);
    if (app === undefined || app.disabled) return;
    if (!app.settings.clientMessaging) {
      this.error(null, 'client events are not enabled for this app (its clientMessaging setting)');
      return;
    }
    const rate = app.settings.sendRatePerConnection;
    if ((this.eventBucket ??= new TokenBucket(rate)).admitOne(rate) > 0) {
      ctx.metrics.errors.inc({ code: 'rate_limited' });
      this.error(PUSHER_CODE.CLIENT_EVENT_RATE, `client event rejected: more than ${rate} per second`);
      return;
    }
    const text = JSON.stringify(data ?? null);
    if (Buffer.byteLength(text) > PUSHER_CLIENT_EVENT_MAX_BYTES) {
      this.error(null, `client event data is larger than ${PUSHER_CLIENT_EVENT_MAX_BYTES} bytes`);
      return;
    }
    const stored: Record<string, unknown> = { event, data: data ?? null, socket_id: this.socketId };
    if (s.kind === 'presence') stored['user_id'] = s.subscriber.user;
    try {
      await ctx.topicStore.publish(
        this.app,
        channel,
        { bytes: Buffer.from(JSON.stringify(stored)), binary: false },
        { ttlMs: app.settings.topicHistorySeconds * 1000, explicitTtl: false, live: ctx.apps.holds(this.app) },
      );
      ctx.metrics.messagesIn.inc();
      ctx.events.emit('client_event', {
        app: this.app,
        topic: channel,
        event,
        data: data ?? null,
        socket_id: this.socketId,
        ...(s.kind === 'presence' ? { user_id: s.subscriber.user } : {}),
      });
    } catch (err) {
      ctx.metrics.errors.inc({ code: isPushError(err) ? err.code : 'internal' });
      this.error(null, `client event not delivered: ${isPushError(err) ? err.code : 'internal'}`);
    }
  }

  /** Called on WebSocket close: leaves every channel (uWS has unsubscribed the socket). */
  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    for (const channel of [...this.channels.keys()]) this.leave(channel, false);
    this.ws = undefined;
  }

  /** Sends `pusher:error` with a Pusher code, then closes with it. */
  end(code: number, message: string): void {
    const ws = this.ws;
    if (ws === undefined || this.closed) return;
    this.error(code, message);
    ws.end(code, message);
  }

  private subscriptionError(channel: string, type: string, error: string, status: number): void {
    this.sendRaw(
      JSON.stringify({ event: 'pusher:subscription_error', channel, data: JSON.stringify({ type, error, status }) }),
    );
  }

  private error(code: number | null, message: string): void {
    this.sendRaw(JSON.stringify({ event: 'pusher:error', data: { code, message } }));
  }

  private send(event: string, data: unknown, channel?: string): void {
    const frame: Record<string, unknown> = { event };
    if (channel !== undefined) frame['channel'] = channel;
    frame['data'] = typeof data === 'string' ? data : JSON.stringify(data);
    this.sendRaw(JSON.stringify(frame));
  }

  private sendRaw(text: string): void {
    const ws = this.ws;
    if (ws === undefined || this.closed) return;
    ws.cork(() => {
      ws.send(text);
    });
  }
}

/**
 * The member a presence subscription's `channel_data` names: `{"user_id": "...", "user_info": ...}`
 * (a numeric `user_id`, as Laravel sends, is taken as its decimal text); a message when it is not.
 */
function readChannelData(text: string | undefined): { user: string; info: unknown } | string {
  if (text === undefined) return 'presence channels need channel_data with a user_id';
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return 'channel_data is not JSON';
  }
  if (!isObject(v)) return 'channel_data is not a JSON object';
  const raw = v['user_id'];
  const user = typeof raw === 'number' && Number.isFinite(raw) ? String(raw) : raw;
  if (typeof user !== 'string') return 'channel_data has no user_id (a string)';
  const bad = idProblem('user', user);
  if (bad !== undefined) return `user_id: ${bad}`;
  const info = v['user_info'];
  if (info !== undefined && Buffer.byteLength(JSON.stringify(info)) > PUSHER_USER_INFO_MAX_BYTES) {
    return `user_info is larger than ${PUSHER_USER_INFO_MAX_BYTES} bytes`;
  }
  return { user, info };
}
