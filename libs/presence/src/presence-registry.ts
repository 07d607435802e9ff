import type { Redis } from 'ioredis';
import type { EventInput, EventType, Subjects } from '@push/protocol';

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
  /**
   * Called with the entries a sweep removed (connections of a dead edge): the edge or center
   * emits their `conn_close` events, and `user_offline` for those with `last` set. Exactly one
   * sweeper removes a given entry, so each is reported once.
   */
  onSwept?: (entries: SweptEntry[]) => void;
}

/** A connection of a dead edge removed by a sweep. */
export interface SweptEntry extends PresenceEntry {
  app: string;
  user: string;
  /** The user had no other connection left: this removal took them offline. */
  last: boolean;
}

/** Where events go (an EventPublisher of @push/nats): never blocks. */
export interface EventSink {
  emit<T extends EventType>(type: T, fields: EventInput<T>): unknown;
}

/**
 * The events of connections a presence sweep removed (their edge died): `conn_close` with
 * reason `edge_lost` (code 0: no close frame was seen), and `user_offline` for the users it left
 * with no connection. Edges and the center both sweep, and both report this way.
 */
export function emitSweptEvents(events: EventSink, entries: SweptEntry[]): void {
  for (const e of entries) {
    const about = { app: e.app, user: e.user, device: e.device, conn: e.conn, edge: e.edge };
    events.emit('conn_close', { ...about, code: 0, reason: 'edge_lost' });
    if (e.last) events.emit('user_offline', { ...about, reason: 'edge_lost' });
  }
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
local out = {}
for i = 1, #idx, 2 do
  local v = redis.call('HGET', idx[i + 1], idx[i])
  if v then
    redis.call('HDEL', idx[i + 1], idx[i])
    local left = redis.call('HLEN', idx[i + 1])
    table.insert(out, idx[i + 1])
    table.insert(out, idx[i])
    table.insert(out, v)
    table.insert(out, left)
  end
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return out
`;

/**
 * Records a connection and tells whether it is the user's first: KEYS presence hash, edge
 * index; ARGV conn, value. Returns the user's connection count after (1 = first), atomically
 * with the write, so of two edges connecting the same user at once exactly one sees 1; 0 when
 * the connection was recorded already (an edge recording its connections again).
 */
const CONNECT_SCRIPT = `
local added = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], KEYS[1])
if added == 0 then return 0 end
return redis.call('HLEN', KEYS[1])
`;

/**
 * Forgets a connection: KEYS presence hash, edge index; ARGV conn. Returns -1 when the entry
 * was already gone (swept), else the user's connection count after (0 = that was the last).
 */
const DISCONNECT_SCRIPT = `
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return -1 end
return redis.call('HLEN', KEYS[1])
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

  /** Sweeps one edge if its lease lapsed; -1 when it is alive, else the entries removed (reported to `onSwept`). */
  private async sweepEdge(edge: string): Promise<number> {
    const r = (await this.redis.eval(
      SWEEP_SCRIPT,
      3,
      this.subjects.edgeAliveKey(edge),
      this.subjects.edgeConnectionsKey(edge),
      this.subjects.edgesKey,
      edge,
    )) as number | Array<string | number>;
    if (!Array.isArray(r)) return Number(r);
    const swept: SweptEntry[] = [];
    for (let i = 0; i + 3 < r.length; i += 4) {
      const target = this.subjects.parsePresenceKey(String(r[i]));
      if (target === undefined) continue; // not a key of ours: nothing to report
      const entry = decodePresence(String(r[i + 1]), String(r[i + 2]));
      swept.push({ ...entry, ...target, last: Number(r[i + 3]) === 0 });
    }
    if (swept.length > 0) this.opts.onSwept?.(swept);
    return r.length / 4;
  }

  /**
   * Records a connection. Resolves true when it is the user's first (no other connection is
   * recorded on any edge; entries of a dead edge not swept yet still count, so a user who moves
   * to another edge before the sweep stays online throughout).
   */
  async connected(app: string, user: string, conn: string, device: string, since = Date.now()): Promise<boolean> {
    const n = await this.redis.eval(
      CONNECT_SCRIPT,
      2,
      this.subjects.presenceKey(app, user),
      this.subjects.edgeConnectionsKey(this.edgeId),
      conn,
      encodePresence(this.edgeId, device, since),
    );
    return Number(n) === 1;
  }

  /**
   * Forgets a connection. Resolves true when it was the user's last (on any edge); false when
   * others remain or a sweep had already removed it (and reported it).
   */
  async disconnected(app: string, user: string, conn: string): Promise<boolean> {
    const n = await this.redis.eval(
      DISCONNECT_SCRIPT,
      2,
      this.subjects.presenceKey(app, user),
      this.subjects.edgeConnectionsKey(this.edgeId),
      conn,
    );
    return Number(n) === 0;
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
    // Hidden, not removed: the sweep removes them and reports the users it takes offline.
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
