import type { Subjects } from '@push/protocol';
import type { Redis } from 'ioredis';

/**
 * Reads the topics the business bound a user to, from the Redis set the center mirrors from
 * Postgres (`push:bind:<app>:<user>`, see apps/center/src/bindings.ts): one SMEMBERS when a
 * connection opens, so connecting never touches Postgres.
 */
export class BindingsReader {
  constructor(
    private readonly redis: Pick<Redis, 'smembers'>,
    private readonly subjects: Pick<Subjects, 'bindingsKey'>,
  ) {}

  /** The user's bound topics (none for a user never bound); rejects when Redis fails. */
  read(app: string, user: string): Promise<string[]> {
    return this.redis.smembers(this.subjects.bindingsKey(app, user));
  }
}
