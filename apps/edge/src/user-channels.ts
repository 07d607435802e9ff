import { readLiveMessage, type InboxMessage, type LiveSubscriber } from '@push/nats';
import { ServerFrames, type Subjects } from '@push/protocol';

/** A client connection as its user's channel sees it: takes live messages, can be kicked, bound to topics. */
export interface LiveReceiver {
  readonly device: string;
  onLive(msg: InboxMessage): void;
  /** A transient message (never stored, no seq, no ack) as its `msg` frame, built once for all receivers. */
  onTransient(frame: string): void;
  kick(reason: string): void;
  /** The business bound the user to a topic: subscribe (no grant needed). */
  bindTopic(topic: string): void;
  /** The business unbound the user from a topic: leave it. */
  unbindTopic(topic: string): void;
}

/** The receivers of one user on this edge: one, or an array when several devices connect here. */
type Receivers = LiveReceiver | LiveReceiver[];

interface Channel {
  sid: number;
  receivers: Receivers;
  /** Settles once the server has the SUB (undefined after that). */
  ready: Promise<void> | undefined;
}

/** A message on a user's live subject: to each of the user's receivers here (one handler for every channel). */
function onUserMessage(headers: Buffer, payload: Buffer, _subject: string, channel: Channel): void {
  const m = readLiveMessage(headers, payload);
  if (m === undefined) return;
  const rs = channel.receivers;
  if (m.seq === 0) {
    const frame = ServerFrames.transientMessage(m.ts, m.bytes, m.binary, m.from);
    if (Array.isArray(rs)) for (const r of rs) r.onTransient(frame);
    else rs.onTransient(frame);
    return;
  }
  if (Array.isArray(rs)) for (const r of rs) r.onLive(m);
  else rs.onLive(m);
}

/**
 * One NATS subscription per connected user on this edge (`push.live.u.<app>.<user>`), shared by
 * all of that user's connections here and dropped with the last one. Never one per connection.
 * Subscriptions go through the lean LiveSubscriber (a Map entry each, not a nats.js object).
 */
export class UserChannels {
  private readonly live: LiveSubscriber;
  private readonly subjects: Subjects;
  private readonly channels = new Map<string, Channel>();

  constructor(live: LiveSubscriber, subjects: Subjects) {
    this.live = live;
    this.subjects = subjects;
  }

  /** Users with a channel here. */
  get size(): number {
    return this.channels.size;
  }

  /**
   * Adds a receiver for the user's live messages, subscribing when it is the first. Resolves
   * once the server has the subscription: the backlog is read after that (it goes out on another
   * NATS connection), so every message stored after the read is also seen live.
   */
  join(app: string, user: string, receiver: LiveReceiver): Promise<void> {
    const subject = this.subjects.liveUser(app, user);
    const ch = this.channels.get(subject);
    if (ch !== undefined) {
      ch.receivers = Array.isArray(ch.receivers) ? [...ch.receivers, receiver] : [ch.receivers, receiver];
      return ch.ready ?? Promise.resolve();
    }
    const channel: Channel = { sid: 0, receivers: receiver, ready: undefined };
    channel.sid = this.live.subscribe(subject, onUserMessage, channel);
    this.channels.set(subject, channel);
    const ready = this.live.flush().then(() => {
      channel.ready = undefined;
    });
    channel.ready = ready;
    return ready;
  }

  /** The receivers of one user here (none when the user has no connection on this edge). */
  receivers(app: string, user: string): LiveReceiver[] {
    const rs = this.channels.get(this.subjects.liveUser(app, user))?.receivers;
    if (rs === undefined) return [];
    return Array.isArray(rs) ? [...rs] : [rs];
  }

  /** Removes a receiver; unsubscribes when it was the last of its user. */
  leave(app: string, user: string, receiver: LiveReceiver): void {
    const subject = this.subjects.liveUser(app, user);
    const ch = this.channels.get(subject);
    if (ch === undefined) return;
    if (Array.isArray(ch.receivers)) {
      const rest = ch.receivers.filter((r) => r !== receiver);
      ch.receivers = rest.length === 1 ? (rest[0] as LiveReceiver) : rest;
      if (rest.length > 0) return;
    } else if (ch.receivers !== receiver) {
      return;
    }
    this.channels.delete(subject);
    this.live.unsubscribe(ch.sid);
  }
}
