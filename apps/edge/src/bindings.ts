import type { Subjects } from '@push/protocol';
import type { Redis } from 'ioredis';

/** A user's bound topics as the mirror holds them, and whether the mirror was whole. */
export interface BoundTopics {
  topics: string[];
  /**
   * False while the mirror is being rebuilt (Redis lost its data; apps/center BindingsMirror):
   * `topics` may lack some, and the caller reads again later.
   */
  whole: boolean;
}

/**
 * Reads the topics the business bound a user to, from the Redis set the center mirrors from
 * Postgres (`push:bind:<app>:<user>`, see apps/center/src/bindings.ts): one SMEMBERS when a
 * connection opens, so connecting never touches Postgres, beside a GET of the mirror's marker.
 */
export class BindingsReader {
  constructor(
    private readonly redis: Pick<Redis, 'smembers' | 'get'>,
    private readonly subjects: Pick<Subjects, 'bindingsKey' | 'bindingsMirrorKey'>,
  ) {}

  /** The user's bound topics (none for a user never bound); rejects when Redis fails. */
  async read(app: string, user: string): Promise<BoundTopics> {
    // The marker first (the commands are pipelined in order): `done` then means the set read after it is whole.
    const [marker, topics] = await Promise.all([
      this.redis.get(this.subjects.bindingsMirrorKey),
      this.redis.smembers(this.subjects.bindingsKey(app, user)),
    ]);
    return { topics, whole: marker === 'done' };
  }
}
