import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import { readInboxMessage, type InboxMessage } from '@push/nats';
import type { Subjects } from '@push/protocol';

/** Something that takes a user's live messages: a client connection. */
export interface LiveReceiver {
  onLive(msg: InboxMessage): void;
}

interface Channel {
  sub: Subscription;
  receivers: LiveReceiver[];
}

/**
 * One NATS subscription per connected user on this edge (`push.live.u.<app>.<user>`), shared by
 * all of that user's connections here and dropped with the last one. Never one per connection.
 */
export class UserChannels {
  private readonly nc: NatsConnection;
  private readonly subjects: Subjects;
  private readonly channels = new Map<string, Channel>();

  constructor(nc: NatsConnection, subjects: Subjects) {
    this.nc = nc;
    this.subjects = subjects;
  }

  /** Users with a channel here. */
  get size(): number {
    return this.channels.size;
  }

  /**
   * Adds a receiver for the user's live messages, subscribing when it is the first. The SUB is
   * written before anything the caller sends next on this connection (such as the backlog
   * read), so every message stored after that read is seen live.
   */
  join(app: string, user: string, receiver: LiveReceiver): void {
    const subject = this.subjects.liveUser(app, user);
    const ch = this.channels.get(subject);
    if (ch !== undefined) {
      ch.receivers.push(receiver);
      return;
    }
    const channel: Channel = {
      receivers: [receiver],
      sub: this.nc.subscribe(subject, {
        callback: (err, msg) => {
          if (err !== null) return;
          const m = readInboxMessage(msg);
          if (m === undefined) return;
          const rs = channel.receivers;
          for (let i = 0; i < rs.length; i++) rs[i]?.onLive(m);
        },
      }),
    };
    this.channels.set(subject, channel);
  }

  /** Removes a receiver; unsubscribes when it was the last of its user. */
  leave(app: string, user: string, receiver: LiveReceiver): void {
    const subject = this.subjects.liveUser(app, user);
    const ch = this.channels.get(subject);
    if (ch === undefined) return;
    const i = ch.receivers.indexOf(receiver);
    if (i >= 0) ch.receivers.splice(i, 1);
    if (ch.receivers.length === 0) {
      this.channels.delete(subject);
      ch.sub.unsubscribe();
    }
  }
}
