import { pusherFrameOf } from '@push/protocol';
import type { Logger } from 'pino';
import type { TopicStoredMessage } from '@push/nats';
import type { TopicChannel, TopicFanout, TopicJoinerSocket, TopicObserver } from '../topic-channels.js';
import { pusherKey, type PusherConnection } from './pusher-connection.js';
import type { PusherMembers } from './pusher-members.js';

/**
 * The Pusher door's half of topic fan-out: every message TopicChannels fans out (in order, once
 * per edge) is serialized once more as a Pusher frame and published under the topic's Pusher key,
 * when this edge has Pusher subscribers of it; `join`/`leave` announcements of presence channels
 * become `pusher_internal:member_added` (with the member's `user_info`) and `member_removed`.
 * An event carrying a `socket_id` (a trigger's exclusion, a client event's sender) is published
 * from that socket when it is on this edge, so it alone does not get it.
 */
export class PusherFanout implements TopicObserver {
  /** Per channel key, the presence frames waiting on a `user_info` read: they go out in order. */
  private readonly presenceQueues = new Map<string, Promise<void>>();

  constructor(
    private readonly fanout: TopicFanout,
    private readonly sockets: ReadonlyMap<string, PusherConnection>,
    private readonly members: Pick<PusherMembers, 'info'>,
    private readonly log: Pick<Logger, 'warn'>,
  ) {}

  message(ch: TopicChannel, m: TopicStoredMessage): void {
    const key = pusherKey(ch.key);
    if (this.fanout.subscribers(key) === 0) return;
    const f = pusherFrameOf(ch.topicJson, m.bytes, m.binary);
    const from = f.exclude === undefined ? undefined : this.sockets.get(f.exclude);
    if (from?.ws !== undefined && !from.isClosed) from.ws.publish(key, f.frame);
    else this.fanout.publish(key, f.frame);
  }

  presence(ch: TopicChannel, t: 'join' | 'leave', frame: string, joiner: TopicJoinerSocket | undefined): void {
    const key = pusherKey(ch.key);
    if (this.fanout.subscribers(key) === 0) return;
    let user: string;
    try {
      user = (JSON.parse(frame) as { user: string }).user;
    } catch (err) {
      this.log.warn({ err }, 'presence frame not readable');
      return;
    }
    const run = async (): Promise<void> => {
      let out: string;
      if (t === 'leave') {
        out = `{"event":"pusher_internal:member_removed","channel":${ch.topicJson},"data":${JSON.stringify(JSON.stringify({ user_id: user }))}}`;
      } else {
        const info = await this.members.info(ch.app, ch.topic, user).catch((err: unknown) => {
          this.log.warn({ err, topic: ch.topic }, 'reading a member user_info failed; announced without it');
          return undefined;
        });
        const data = JSON.stringify({ user_id: user, user_info: info ?? null });
        out = `{"event":"pusher_internal:member_added","channel":${ch.topicJson},"data":${JSON.stringify(data)}}`;
      }
      if (joiner === undefined) {
        this.fanout.publish(key, out);
        return;
      }
      try {
        joiner.publish(key, out);
      } catch (err) {
        // The joiner's socket closed meanwhile (uWS throws on a closed socket): it is no subscriber now.
        this.log.warn({ err }, 'joiner socket gone; member_added sent to every subscriber');
        this.fanout.publish(key, out);
      }
    };
    const before = this.presenceQueues.get(key) ?? Promise.resolve();
    // A failure is logged and the queue goes on: one lost announcement must not stop the channel's others.
    const task = before
      .then(run)
      .catch((err: unknown) => this.log.warn({ err, topic: ch.topic }, 'presence frame not sent'));
    this.presenceQueues.set(key, task);
    void task.then(() => {
      if (this.presenceQueues.get(key) === task) this.presenceQueues.delete(key);
    });
  }
}
