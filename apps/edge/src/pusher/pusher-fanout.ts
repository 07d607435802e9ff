import { pusherFrameOf } from '@push/protocol';
import type { Logger } from 'pino';
import type { TopicStoredMessage } from '@push/nats';
import type { TopicChannel, TopicFanout, TopicJoinerSocket, TopicObserver } from '../topic-channels.js';
import { pusherKey, pusherMembersKey, type PusherConnection } from './pusher-connection.js';
import type { PusherMembers } from './pusher-members.js';

/**
 * A presence subscriber getting its member list: the channel's `member_added` / `member_removed`
 * reach it through here, not pub/sub, until it subscribes to the members key. Until the list is
 * read they are held; then those in the list (decided before it was read: order <= `at`) are
 * dropped and the later ones sent, so it gets each change once, after the list that lacks it.
 */
export interface MemberWatch {
  /** Its own member (the list has it; its own frames never go to it). */
  readonly user: string;
  /** Frames that came before the list, with their user and order; undefined once it was sent. */
  held: Array<{ user: string; order: number; frame: string }> | undefined;
  /** Order stamp of the list (Redis's clock when it was read). */
  at: number;
  send(frame: string): void;
}

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
  /** Per channel key, the subscribers getting their member list (MemberWatch). */
  private readonly watches = new Map<string, Set<MemberWatch>>();

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

  /** Sends the channel's member frames to `w` until the returned function is called. */
  watch(liveKey: string, w: MemberWatch): () => void {
    let set = this.watches.get(liveKey);
    if (set === undefined) this.watches.set(liveKey, (set = new Set()));
    const watching = set;
    watching.add(w);
    return () => {
      watching.delete(w);
      if (watching.size === 0 && this.watches.get(liveKey) === watching) this.watches.delete(liveKey);
    };
  }

  presence(
    ch: TopicChannel,
    t: 'join' | 'leave',
    frame: string,
    joiner: TopicJoinerSocket | undefined,
    order: number,
  ): void {
    const key = pusherMembersKey(ch.key);
    if (this.fanout.subscribers(key) === 0 && !this.watches.has(ch.key)) return;
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
      for (const w of this.watches.get(ch.key) ?? []) {
        if (w.user === user) continue;
        if (w.held !== undefined) w.held.push({ user, order, frame: out });
        else if (order === 0 || order > w.at) w.send(out);
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
