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

/** Options of a PresenceRegistry. */
export interface PresenceOptions {
  /**
   * Seconds the edge's lease lasts without renewal (renewed, and dead edges swept, every third
   * of it). Entries of an edge killed without a goodbye are removed within 4/3 of this.
   */
  leaseSeconds?: number;
  /**
   * Called when a renewal found the lease lapsed (Redis unreachable or the process paused past
   * the lease): another edge may have swept this edge's entries, so the caller records its
   * connections again.
   */
  onLeaseLost?: () => void;
  /** Called when a renewal or a sweep fails (retried on the next tick). */
  onError?: (err: unknown) => void;
}

/**
 * Removes the entries of one edge whose lease lapsed, atomically with the check, so several
 * sweepers never race an edge that renews its lease and records its connections again.
 * KEYS: lease, index, edges set; ARGV: edge id. Returns the entries removed, -1 when alive.
 * The presence hashes it touches are named in the index, not in KEYS: this needs one Redis
 * (not Redis Cluster), as the rest of presence does today.
 */
const SWEEP_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local idx = redis.call('HGETALL', KEYS[2])
for i = 1, #idx, 2 do redis.call('HDEL', idx[i + 1], idx[i]) end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return #idx / 2
`;

/** The value stored for a connection: a JSON array, so no id can spill into another field. */
export function encodePresence(edge: string, device: string, since: number): string {
  return JSON.stringify([edge, device, since]);
}

/**
 * Reads a stored value. The JSON form is current; the old `edge|device|since` form (written by
 * edges before the JSON one) is read with the edge id before the first `|` (edge ids have none)
 * and `since` after the last, so a device id containing `|` stays whole.
 */
export function decodePresence(conn: string, value: string): PresenceEntry {
  if (value.startsWith('[')) {
    const v = parseJson(value);
    if (Array.isArray(v) && typeof v[0] === 'string' && typeof v[1] === 'string' && typeof v[2] === 'number') {
      return { conn, edge: v[0], device: v[1], since: v[2] };
    }
  }
  const first = value.indexOf('|');
  const last = value.lastIndexOf('|');
  if (first < 0 || last === first)
    return { conn, edge: first < 0 ? value : value.slice(0, first), device: '', since: 0 };
  return {
    conn,
    edge: value.slice(0, first),
    device: value.slice(first + 1, last),
    since: Number(value.slice(last + 1)),
  };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined; // not ours: read as the old form
  }
}

/**
 * Who is connected where, in Redis: one hash per user (field = connection id, value =
 * `[edge, device, since]`), and per edge a lease (a key with a TTL it renews), an index of its
 * entries (hash: connection id -> presence key) and membership in the set of edges. Every edge
 * sweeps the edges whose lease lapsed (and the center does too), removing their entries, so an
 * edge killed with kill -9 leaves nothing behind past the documented bound; readers hide such
 * entries at once.
 */
export class PresenceRegistry {
  private readonly redis: Redis;
  private readonly subjects: Subjects;
  private readonly edgeId: string;
  private readonly leaseSeconds: number;
  private readonly opts: PresenceOptions;
  private timer: NodeJS.Timeout | undefined;

  constructor(redis: Redis, subjects: Subjects, edgeId: string, opts: PresenceOptions = {}) {
    this.redis = redis;
    this.subjects = subjects;
    this.edgeId = edgeId;
    this.opts = opts;
    this.leaseSeconds = opts.leaseSeconds ?? 15;
  }

  /** Takes this edge's lease now, then renews it and sweeps dead edges every third of it until `stop()`. */
  async start(): Promise<void> {
    await this.redis.set(this.subjects.edgeAliveKey(this.edgeId), String(Date.now()), 'EX', this.leaseSeconds);
    await this.redis.sadd(this.subjects.edgesKey, this.edgeId);
    this.every(async () => {
      await this.renew();
      await this.sweep();
    });
  }

  /** Sweeps dead edges every third of the lease without holding one (the center). */
  startSweeping(): void {
    this.every(async () => {
      await this.sweep();
    });
  }

  private every(task: () => Promise<void>): void {
    this.timer = setInterval(
      () => {
        task().catch((err: unknown) => this.opts.onError?.(err)); // retried on the next tick
      },
      (this.leaseSeconds * 1000) / 3,
    );
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    const key = this.subjects.edgeAliveKey(this.edgeId);
    const kept = await this.redis.set(key, String(Date.now()), 'EX', this.leaseSeconds, 'XX');
    if (kept !== null) return;
    await this.redis.set(key, String(Date.now()), 'EX', this.leaseSeconds);
    await this.redis.sadd(this.subjects.edgesKey, this.edgeId);
    this.opts.onLeaseLost?.();
  }

  /**
   * Removes the entries of every edge whose lease lapsed. Safe with any number of sweepers (see
   * SWEEP_SCRIPT). Returns the number of entries removed.
   */
  async sweep(): Promise<number> {
    const edges = await this.redis.smembers(this.subjects.edgesKey);
    if (edges.length === 0) return 0;
    const leases = await this.redis.mget(edges.map((e) => this.subjects.edgeAliveKey(e)));
    let removed = 0;
    for (let i = 0; i < edges.length; i++) {
      if (leases[i] !== null) continue;
      removed += Math.max(0, await this.sweepEdge(edges[i] as string));
    }
    return removed;
  }

  private async sweepEdge(edge: string): Promise<number> {
    const n = await this.redis.eval(
      SWEEP_SCRIPT,
      3,
      this.subjects.edgeAliveKey(edge),
      this.subjects.edgeConnectionsKey(edge),
      this.subjects.edgesKey,
      edge,
    );
    return Number(n);
  }

  /** Records a connection. */
  async connected(app: string, user: string, conn: string, device: string, since = Date.now()): Promise<void> {
    const key = this.subjects.presenceKey(app, user);
    await Promise.all([
      this.redis.hset(key, conn, encodePresence(this.edgeId, device, since)),
      this.redis.hset(this.subjects.edgeConnectionsKey(this.edgeId), conn, key),
    ]);
  }

  /** Forgets a connection. */
  async disconnected(app: string, user: string, conn: string): Promise<void> {
    await Promise.all([
      this.redis.hdel(this.subjects.presenceKey(app, user), conn),
      this.redis.hdel(this.subjects.edgeConnectionsKey(this.edgeId), conn),
    ]);
  }

  /** The user's live connections on edges that are alive. */
  async lookup(app: string, user: string): Promise<PresenceEntry[]> {
    const key = this.subjects.presenceKey(app, user);
    const all = await this.redis.hgetall(key);
    const entries = Object.entries(all).map(([conn, value]) => decodePresence(conn, value));
    if (entries.length === 0) return entries;
    const edges = [...new Set(entries.map((e) => e.edge))];
    const alive = await this.redis.mget(edges.map((e) => this.subjects.edgeAliveKey(e)));
    const dead = new Set(edges.filter((_, i) => alive[i] === null));
    if (dead.size === 0) return entries;
    const stale = entries.filter((e) => dead.has(e.edge)).map((e) => e.conn);
    await this.redis.hdel(key, ...stale);
    return entries.filter((e) => !dead.has(e.edge));
  }

  /**
   * Stops renewing and sweeping, gives up this edge's lease and removes whatever entries of it
   * remain. Idempotent. The center's registry (no lease) only stops sweeping.
   */
  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.redis.del(this.subjects.edgeAliveKey(this.edgeId));
    await this.sweepEdge(this.edgeId);
  }
}
