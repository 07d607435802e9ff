import { randomBytes } from 'node:crypto';
import type { BindingsRepository } from '@push/db';
import type { Logger } from '@push/logger';
import type { Subjects } from '@push/protocol';
import type { Redis } from 'ioredis';

/** Bindings copied per Postgres read while rebuilding. */
const PAGE = 1000;
/** Seconds a rebuild holds the marker without progress before another center may take over. */
const REBUILD_HOLD_SECONDS = 60;

/** Sets KEYS[1] to ARGV[2] (no TTL) if it still holds ARGV[1]: a rebuild ends only if Redis kept its marker. */
const FINISH_SCRIPT = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
`;

/** Extends KEYS[1] by ARGV[2] seconds if it still holds ARGV[1]. */
const HOLD_SCRIPT = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('EXPIRE', KEYS[1], ARGV[2])
`;

/**
 * Keeps the Redis mirror of topic bindings whole (apps/center/src/bindings.ts): when Redis lost
 * its data (restarted empty), the marker key `Subjects.bindingsMirrorKey` is gone with it, and the
 * first center to see that (at start, every `everyMs`, and when Redis becomes ready again)
 * copies every binding from Postgres back into Redis, then marks the mirror `done`. One center
 * rebuilds at a time (the marker holds `rebuilding:<id>` meanwhile); a rebuild that Redis lost
 * again midway is not marked done, and the next check starts over. Edges that read a user's
 * bindings while the marker is not `done` read them again later (apps/edge BindingsReader).
 *
 * A binding removed while a rebuild copies it may come back into the mirror (the rebuild read
 * it first); unbinding again removes it.
 */
export class BindingsMirror {
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<boolean> | undefined;
  private readonly onReady = (): void => this.checkNow();

  constructor(
    private readonly repo: Pick<BindingsRepository, 'page'>,
    private readonly redis: Redis,
    private readonly subjects: Pick<Subjects, 'bindingsKey' | 'bindingsMirrorKey'>,
    private readonly log: Logger,
  ) {}

  /** Checks now, then every `everyMs` and on each Redis reconnect, until `stop()`. */
  start(everyMs: number): void {
    this.timer = setInterval(() => this.checkNow(), everyMs);
    this.timer.unref();
    this.redis.on('ready', this.onReady);
    this.checkNow();
  }

  /** Stops checking. Idempotent. */
  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.redis.off('ready', this.onReady);
  }

  private checkNow(): void {
    this.check().catch((err: unknown) => this.log.warn({ err }, 'bindings mirror check failed (retried)'));
  }

  /** Rebuilds the mirror when its marker is gone; resolves true when this call rebuilt it. */
  check(): Promise<boolean> {
    this.checking ??= this.rebuildIfLost().finally(() => {
      this.checking = undefined;
    });
    return this.checking;
  }

  private async rebuildIfLost(): Promise<boolean> {
    const key = this.subjects.bindingsMirrorKey;
    if ((await this.redis.get(key)) !== null) return false;
    const mine = `rebuilding:${randomBytes(6).toString('hex')}`;
    if ((await this.redis.set(key, mine, 'EX', REBUILD_HOLD_SECONDS, 'NX')) === null) return false;
    let copied = 0;
    for (let after = undefined; ;) {
      const rows = await this.repo.page(after, PAGE);
      if (rows.length === 0) break;
      await Promise.all(rows.map((b) => this.redis.sadd(this.subjects.bindingsKey(b.app, b.user), b.topic)));
      copied += rows.length;
      after = rows[rows.length - 1];
      if (Number(await this.redis.eval(HOLD_SCRIPT, 1, key, mine, REBUILD_HOLD_SECONDS)) === 0) return false;
    }
    if (Number(await this.redis.eval(FINISH_SCRIPT, 1, key, mine, 'done')) === 0) return false;
    this.log.info({ bindings: copied }, 'topic bindings mirrored from Postgres into Redis');
    return true;
  }
}
