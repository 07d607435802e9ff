import { RedisScript, TurnBatch } from '@push/presence';
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
 * The mirror's marker, then the members of each user's set: KEYS marker, then one set per read.
 * Returns the marker (or nil) followed by one list of members per set, in order.
 */
const READ_SCRIPT = new RedisScript(`
local out = {redis.call('GET', KEYS[1]) or false}
for i = 2, #KEYS do out[i] = redis.call('SMEMBERS', KEYS[i]) end
return out
`);

/**
 * Reads the topics the business bound a user to, from the Redis set the center mirrors from
 * Postgres (`push:bind:<app>:<user>`, see apps/center/src/bindings.ts) with the mirror's marker,
 * so connecting never touches Postgres. The reads of one event-loop turn (every connection
 * opened in it) go out as one script call.
 */
export class BindingsReader {
  private readonly reads = new TurnBatch<string, BoundTopics>((keys) => this.readMany(keys));

  constructor(
    private readonly redis: Pick<Redis, 'evalsha' | 'eval'>,
    private readonly subjects: Pick<Subjects, 'bindingsKey' | 'bindingsMirrorKey'>,
  ) {}

  /** The user's bound topics (none for a user never bound); rejects when Redis fails. */
  read(app: string, user: string): Promise<BoundTopics> {
    return this.reads.add(this.subjects.bindingsKey(app, user));
  }

  private async readMany(keys: string[]): Promise<BoundTopics[]> {
    // The marker first, in the same atomic call: `done` then means the sets read after it are whole.
    const r = (await READ_SCRIPT.run(this.redis, [this.subjects.bindingsMirrorKey, ...keys], [])) as unknown[];
    const whole = r[0] === 'done';
    return keys.map((_, i) => ({ topics: (r[i + 1] as string[] | undefined) ?? [], whole }));
  }
}
