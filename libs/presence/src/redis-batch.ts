import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * A Lua script run by its SHA1 (`EVALSHA`), sent whole (`EVAL`) only when Redis does not hold it
 * yet (`NOSCRIPT`: first use, or after a restart or `SCRIPT FLUSH`), so a call on a hot path
 * carries its arguments, not the script's text, and Redis does not hash the text again.
 */
export class RedisScript {
  private readonly sha: string;

  constructor(private readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  async run(redis: Pick<Redis, 'evalsha' | 'eval'>, keys: string[], args: Array<string | number>): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return redis.eval(this.source, keys.length, ...keys, ...args);
    }
  }
}

interface Waiter<R> {
  resolve(value: R): void;
  reject(err: unknown): void;
}

/**
 * Gathers the calls made in one event-loop turn (up to `max`) and runs them as one request
 * (`run` gets the items in call order and answers one result per item, in that order): a
 * thousand connects in a turn cost one Redis command, not a thousand. A batch that fails fails
 * each of its calls with the same error. Batches go out in call order: a full batch at once, the
 * rest at the turn's end (`setImmediate`), or when `flush()` is called (before a call that must
 * not overtake them).
 */
export class TurnBatch<T, R> {
  private items: T[] = [];
  private waiters: Array<Waiter<R>> = [];

  constructor(
    private readonly run: (items: T[]) => Promise<R[]>,
    private readonly max = 500,
  ) {}

  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.items.push(item);
      this.waiters.push({ resolve, reject });
      if (this.items.length >= this.max) this.flush();
      else if (this.items.length === 1) setImmediate(() => this.flush());
    });
  }

  /** Sends what was gathered now (nothing when empty). */
  flush(): void {
    if (this.items.length === 0) return;
    const items = this.items;
    const waiters = this.waiters;
    this.items = [];
    this.waiters = [];
    let sent: Promise<R[]>;
    try {
      sent = this.run(items);
    } catch (err) {
      sent = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    sent.then(
      (results) => {
        if (results.length !== waiters.length) {
          const err = new Error(`a batch of ${waiters.length} calls was answered with ${results.length} results`);
          for (const w of waiters) w.reject(err);
          return;
        }
        for (let i = 0; i < waiters.length; i++) (waiters[i] as Waiter<R>).resolve(results[i] as R);
      },
      (err: unknown) => {
        for (const w of waiters) w.reject(err);
      },
    );
  }
}
