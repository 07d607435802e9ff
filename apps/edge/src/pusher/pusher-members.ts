import type { Redis } from 'ioredis';
import type { PresenceRegistry } from '@push/presence';
import type { Subjects } from '@push/protocol';

/** How long a presence channel's `user_info` hash lives after its latest write, seconds. */
const INFO_TTL_SECONDS = 24 * 3600;

/** A presence channel's members as `pusher_internal:subscription_succeeded` lists them. */
export interface PusherPresenceData {
  ids: string[];
  hash: Record<string, unknown>;
  count: number;
}

/** The members, and when they were read (Redis's clock, µs: the order stamp of `join`/`leave`). */
export interface PusherMembersRead {
  presence: PusherPresenceData;
  at: number;
}

/**
 * The Pusher `user_info` of presence channel members, in Redis next to topic presence (which
 * holds who is subscribed: libs/presence). Written before the member's subscription is
 * recorded, so every edge that announces their `member_added` finds it. Entries of members who
 * left stay until overwritten or the hash expires (a day after its latest write): the members
 * list only reads the info of users topic presence lists.
 */
export class PusherMembers {
  constructor(
    private readonly redis: Redis,
    private readonly subjects: Subjects,
    private readonly presence: Pick<PresenceRegistry, 'topicMembersAt'>,
  ) {}

  async write(app: string, channel: string, user: string, info: unknown): Promise<void> {
    const key = this.subjects.pusherMembersKey(app, channel);
    await this.redis
      .multi()
      .hset(key, user, JSON.stringify(info ?? null))
      .expire(key, INFO_TTL_SECONDS)
      .exec();
  }

  /** A member's `user_info` (undefined when none was recorded). */
  async info(app: string, channel: string, user: string): Promise<unknown> {
    const v = await this.redis.hget(this.subjects.pusherMembersKey(app, channel), user);
    return v === null ? undefined : parse(v);
  }

  /** The channel's members on live edges, with their `user_info`, and when they were read. */
  async list(app: string, channel: string): Promise<PusherMembersRead> {
    const { members, at } = await this.presence.topicMembersAt(app, channel);
    const ids = [...new Set(members.map((m) => m.user))];
    const hash: Record<string, unknown> = {};
    if (ids.length > 0) {
      const infos = await this.redis.hmget(this.subjects.pusherMembersKey(app, channel), ...ids);
      ids.forEach((id, i) => {
        const v = infos[i];
        hash[id] = v === null || v === undefined ? null : parse(v);
      });
    }
    return { presence: { ids, hash, count: ids.length }, at };
  }
}

function parse(v: string): unknown {
  try {
    return JSON.parse(v) as unknown;
  } catch {
    return null; // written by this class as JSON: only a foreign write gets here
  }
}
