import type { Redis } from 'ioredis';
import type { Subjects } from '@push/protocol';

/** One live connection of a user, as presence knows it. */
export interface PresenceEntry {
  conn: string;
  edge: string;
  device: string;
  /** Epoch ms when it connected. */
  since: number;
}

/**
 * Who is connected where, in Redis: one hash per user (field = connection id, value =
 * `edge|device|since`) and one alive key per edge with a TTL the edge keeps refreshing. Entries
 * of an edge whose alive key lapsed (it crashed) are ignored by readers and cleaned lazily.
 */
export class PresenceRegistry {
  private readonly redis: Redis;
  private readonly subjects: Subjects;
  private readonly edgeId: string;
  private readonly aliveTtlSeconds: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(redis: Redis, subjects: Subjects, edgeId: string, aliveTtlSeconds = 15) {
    this.redis = redis;
    this.subjects = subjects;
    this.edgeId = edgeId;
    this.aliveTtlSeconds = aliveTtlSeconds;
  }

  /** Marks this edge alive now and every third of the TTL until `stop()`. */
  async start(): Promise<void> {
    await this.beat();
    this.timer = setInterval(
      () => {
        this.beat().catch(() => undefined); // a missed beat is retried on the next tick
      },
      (this.aliveTtlSeconds * 1000) / 3,
    );
    this.timer.unref();
  }

  private async beat(): Promise<void> {
    await this.redis.set(this.subjects.edgeAliveKey(this.edgeId), String(Date.now()), 'EX', this.aliveTtlSeconds);
  }

  /** Records a connection. */
  async connected(app: string, user: string, conn: string, device: string, since = Date.now()): Promise<void> {
    const key = this.subjects.presenceKey(app, user);
    await this.redis.hset(key, conn, `${this.edgeId}|${device}|${since}`);
  }

  /** Forgets a connection. */
  async disconnected(app: string, user: string, conn: string): Promise<void> {
    await this.redis.hdel(this.subjects.presenceKey(app, user), conn);
  }

  /** The user's live connections on edges that are alive. */
  async lookup(app: string, user: string): Promise<PresenceEntry[]> {
    const key = this.subjects.presenceKey(app, user);
    const all = await this.redis.hgetall(key);
    const entries: PresenceEntry[] = [];
    for (const [conn, value] of Object.entries(all)) {
      const [edge = '', device = '', since = '0'] = value.split('|');
      entries.push({ conn, edge, device, since: Number(since) });
    }
    if (entries.length === 0) return entries;
    const edges = [...new Set(entries.map((e) => e.edge))];
    const alive = await this.redis.mget(edges.map((e) => this.subjects.edgeAliveKey(e)));
    const dead = new Set(edges.filter((_, i) => alive[i] === null));
    if (dead.size === 0) return entries;
    const stale = entries.filter((e) => dead.has(e.edge)).map((e) => e.conn);
    await this.redis.hdel(key, ...stale);
    return entries.filter((e) => !dead.has(e.edge));
  }

  /** Stops the heartbeat and drops this edge's alive key. Idempotent. */
  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.redis.del(this.subjects.edgeAliveKey(this.edgeId));
  }
}
