import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { RedisScript, TurnBatch } from './redis-batch.js';
import { ServerFrames, type EventInput, type EventType, type Subjects } from '@push/protocol';

/** One live connection of a user, as presence knows it. */
export interface PresenceEntry {
  conn: string;
  edge: string;
  device: string;
  /** Epoch ms when it connected. */
  since: number;
}

/**
 * What recording a connection found: the user's first connection (on any edge), not the first,
 * `again` (it was recorded already: an edge recording its connections again), or `lost`: Redis
 * had lost its data since this edge took its lease, and nothing was written (the edge records
 * every connection again, see `onDataLost`).
 */
export type ConnectOutcome = 'first' | 'more' | 'again' | 'lost';

/**
 * What forgetting a connection found: it was the user's `last`, or not (`more`: other
 * connections remain), or `gone`: the entry was not there (a sweep had removed and reported it,
 * or it was never written), or `lost`: Redis had lost its data, the entry with it, and nobody
 * reported the connection; whether the user went offline is known only once every edge recorded
 * its connections again.
 */
export type DisconnectOutcome = 'last' | 'more' | 'gone' | 'lost';

/** Options of a PresenceRegistry. */
export interface PresenceOptions {
  /**
   * Seconds the edge's lease lasts without renewal (renewed, and dead edges swept, every third
   * of it). Entries of an edge killed without a goodbye are removed within 4/3 of this.
   */
  leaseSeconds?: number;
  /**
   * Seconds a lapsed lease is held for an edge that still holds its Redis connection (a process
   * whose event loop stalled, not one that died), by the sweepers: see `PresenceRegistry.sweep`.
   * Default 4 leases.
   */
  stallMaxSeconds?: number;
  /**
   * Called when a renewal found the lease lapsed (Redis unreachable or the process paused past
   * the lease) and a sweeper had removed this edge's entries meanwhile (the sweep leaves a marker,
   * `Subjects.edgeSweptKey`), so the caller records its connections again. A lapse nobody swept
   * (every sweeper was stalled or cut off too) keeps the entries: the lease is taken again, silently.
   */
  onLeaseLost?: () => void;
  /**
   * Called when Redis lost its data (restarted empty: the presence epoch key is gone or new),
   * found by a renewal, by Redis becoming ready again, or by `connected`/`disconnected` answering
   * `lost`. Nothing was swept and nothing reported: the caller records its connections again
   * without online events, and settles the connections that closed meanwhile. The lease is
   * taken again before this is called.
   */
  onDataLost?: () => void;
  /** Called after each renewal that reached Redis (the caller retries what failed before). */
  onRenewed?: () => void;
  /**
   * Called when a renewal found the lease held by another process under this edge's id: one
   * started while this one was stalled (stopped, starved) past its lease took the id over and
   * swept and reported this process's entries. The registry has stopped (it renews, sweeps and
   * gives up nothing more); the caller must stop too (EdgeIdTakenError): two processes under one
   * id would each keep the other's entries alive.
   */
  onTakenOver?: (err: EdgeIdTakenError) => void;
  /** Called when a renewal or a sweep fails (retried on the next tick). */
  onError?: (err: unknown) => void;
  /**
   * Called with the entries a sweep removed (connections of a dead edge): the edge or center
   * emits their `conn_close` events, and `user_offline` for those with `last` set. Exactly one
   * sweeper removes a given entry, so each is reported once.
   */
  onSwept?: (entries: SweptEntry[]) => void;
  /**
   * Called with the topic memberships a sweep removed (subscriptions of connections of a dead
   * edge): the caller emits `topic_unsub`, and for presence topics whose user left (`last`)
   * announces `leave` and emits `presence_leave`. Reported once, as `onSwept`.
   */
  onTopicsSwept?: (entries: SweptTopicEntry[]) => void;
}

/** One subscription of a connection to a topic, as topic presence stores it. */
export interface TopicMember {
  conn: string;
  edge: string;
  user: string;
  device: string;
  /** Epoch ms when the connection subscribed. */
  since: number;
}

/** A topic membership of a dead edge's connection removed by a sweep. */
export interface SweptTopicEntry extends TopicMember {
  app: string;
  topic: string;
  /** The topic is a presence topic (as when the subscription was recorded). */
  presence: boolean;
  /** The user had no other connection subscribed: this removal made them leave the topic. */
  last: boolean;
  /** The topic had no other subscription left: this removal vacated it (`channel_vacated`). */
  vacated: boolean;
  /** Order stamp of the decision (Redis's clock, µs): carried by the `leave` it announces. */
  order: number;
}

/** A topic's subscribers: connections and distinct users (entries of a dead edge count until swept). */
export interface TopicOccupancy {
  connections: number;
  users: number;
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
  /** Resolves once the sink has room for more (its queue half empty); absent: always has room. */
  room?(): Promise<void>;
}

/**
 * Entries a sweep reports (two or three events each) between two waits for room in the sink: the
 * sweep of an edge that held any number of connections never overflows the sink's queue.
 */
const SWEEP_EVENTS_CHUNK = 100;

/**
 * The events of connections a presence sweep removed (their edge died): `conn_close` with
 * reason `edge_lost` (code 0: no close frame was seen), and `user_offline` for the users it left
 * with no connection. Edges and the center both sweep, and both report this way.
 */
export async function emitSweptEvents(events: EventSink, entries: SweptEntry[]): Promise<void> {
  for (const [i, e] of entries.entries()) {
    if (i > 0 && i % SWEEP_EVENTS_CHUNK === 0) await events.room?.();
    const about = { app: e.app, user: e.user, device: e.device, conn: e.conn, edge: e.edge };
    events.emit('conn_close', { ...about, code: 0, reason: 'edge_lost' });
    if (e.last) events.emit('user_offline', { ...about, reason: 'edge_lost' });
  }
}

/**
 * The events and announcements of topic subscriptions a presence sweep removed (their edge
 * died): `topic_unsub` for each, and on presence topics, for users it left with no subscribed
 * connection, a `leave` frame (`announce`: publishPresenceFrame of @push/nats) and `presence_leave`;
 * `channel_vacated` for a topic it left with no subscription (after the leave, as an edge orders them).
 */
export async function emitTopicsSweptEvents(
  events: EventSink,
  announce: (app: string, topic: string, frame: string, conn: undefined, order: number) => void,
  entries: SweptTopicEntry[],
): Promise<void> {
  for (const [i, e] of entries.entries()) {
    if (i > 0 && i % SWEEP_EVENTS_CHUNK === 0) await events.room?.();
    const about = { app: e.app, user: e.user, device: e.device, conn: e.conn, edge: e.edge, topic: e.topic };
    events.emit('topic_unsub', about);
    if (e.presence && e.last) {
      announce(e.app, e.topic, ServerFrames.leave(e.topic, e.user), undefined, e.order);
      events.emit('presence_leave', about);
    }
    if (e.vacated) events.emit('channel_vacated', { app: e.app, topic: e.topic });
  }
}

/**
 * Removes the entries of one edge whose lease lapsed, atomically with the check, so several
 * sweepers never race an edge that renews its lease and records its connections again, and
 * leaves the swept marker (a day) the edge reads when it takes its lease again (RETAKE_SCRIPT).
 * KEYS: lease, index, edges set, topic index, swept marker; ARGV: edge id. Returns -1 when alive, else two
 * lists: the presence entries removed (key, conn, value, left) and the topic memberships removed
 * (index value, stored value, the user's connections left on the topic, the topic's connections left),
 * then the order stamp of its decisions (Redis's clock, µs).
 * The presence hashes it touches are named in the index, not in KEYS: this needs one Redis
 * (not Redis Cluster), as the rest of presence does today.
 */
const SWEEP_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local idx = redis.call('HGETALL', KEYS[2])
local out = {}
for i = 1, #idx, 2 do
  local key = idx[i + 1]
  local conn = idx[i]
  local nl = string.find(conn, '\\n', 1, true)
  if nl then conn = string.sub(conn, 1, nl - 1) end
  local v = redis.call('HGET', key, conn)
  if v then
    redis.call('HDEL', key, conn)
    local left = redis.call('HLEN', key)
    table.insert(out, key)
    table.insert(out, conn)
    table.insert(out, v)
    table.insert(out, left)
  end
end
local tidx = redis.call('HGETALL', KEYS[4])
local tout = {}
for i = 1, #tidx, 2 do
  local ref = cjson.decode(tidx[i + 1])
  local v = redis.call('HGET', ref[1], ref[3])
  if v then
    redis.call('HDEL', ref[1], ref[3])
    local n = redis.call('HINCRBY', ref[2], ref[4], -1)
    if n <= 0 then
      redis.call('HDEL', ref[2], ref[4])
      n = 0
    end
    table.insert(tout, tidx[i + 1])
    table.insert(tout, v)
    table.insert(tout, n)
    table.insert(tout, redis.call('HLEN', ref[1]))
  end
end
redis.call('DEL', KEYS[2])
redis.call('DEL', KEYS[4])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('SET', KEYS[5], '1', 'EX', 86400)
local t = redis.call('TIME')
return {out, tout, t[1] * 1000000 + t[2]}
`;

/**
 * Records a topic subscription: KEYS topic connections, topic users, edge topic index; ARGV conn,
 * value, user, index field, index value. Returns the user's subscribed connections after (1 =
 * the user's first: they joined), atomically, so of two edges exactly one sees 1; 0 when the
 * subscription was recorded already; the topic's connections after (1 = it became occupied);
 * and Redis's clock in µs (the decision's order stamp, carried by its announcement: publishPresenceFrame).
 */
const TOPIC_JOIN_SCRIPT = new RedisScript(`
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 0 then return {0, 0, 0} end
local t = redis.call('TIME')
return {redis.call('HINCRBY', KEYS[2], ARGV[3], 1), redis.call('HLEN', KEYS[1]), t[1] * 1000000 + t[2]}
`);

/**
 * Forgets a topic subscription: KEYS as TOPIC_JOIN; ARGV conn, user, index field. Returns -1
 * when it was already gone (swept), else the user's subscribed connections after (0 = they left);
 * the topic's connections after (0 = it became vacant; -1 when already gone); and the order stamp.
 */
const TOPIC_LEAVE_SCRIPT = new RedisScript(`
redis.call('HDEL', KEYS[3], ARGV[3])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return {-1, -1, 0} end
local n = redis.call('HINCRBY', KEYS[2], ARGV[2], -1)
if n <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[2])
  n = 0
end
local t = redis.call('TIME')
return {n, redis.call('HLEN', KEYS[1]), t[1] * 1000000 + t[2]}
`);

/**
 * The edge topic index's field of a subscription: the connection, its app (the sessions of one
 * connection, one per app, share its id) and the topic; ids hold no newline.
 */
function topicIndexField(conn: string, app: string, topic: string): string {
  return `${conn}\n${app}\n${topic}`;
}

/** Reads a topic membership value (`[edge, user, device, since, presence]`); undefined when not ours. */
function decodeTopicMember(conn: string, value: string): (TopicMember & { presence: boolean }) | undefined {
  const v = parseJson(value);
  if (!Array.isArray(v)) return undefined;
  const [edge, user, device, since, presence] = v as unknown[];
  if (typeof edge !== 'string' || typeof user !== 'string' || typeof device !== 'string') return undefined;
  if (typeof since !== 'number') return undefined;
  return { conn, edge, user, device, since, presence: presence === 1 };
}

/**
 * Records and forgets connections, many in one call (PresenceRegistry batches those of one
 * event-loop turn): KEYS edge index, epoch key, then each entry's presence hash; ARGV epoch, then
 * per entry `c` (connected) or `d` (disconnected), conn, value (`''` for `d`). Returns -2, writing
 * nothing, when the epoch is not the edge's (Redis lost its data), else one number per entry, in
 * order (entries of one connection apply in the order they were made):
 * - `c`: the user's connection count after (1 = first), atomically with the write, so of two
 *   edges connecting the same user at once exactly one sees 1; 0 when the connection was
 *   recorded already (an edge recording its connections again);
 * - `d`: -1 when the entry was already gone (swept), else the user's connection count after
 *   (0 = that was the last).
 */
const PRESENCE_BATCH_SCRIPT = new RedisScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -2 end
local out = {}
for i = 1, #KEYS - 2 do
  local key, conn = KEYS[i + 2], ARGV[3 * i]
  if ARGV[3 * i - 1] == 'c' then
    local added = redis.call('HSET', key, conn, ARGV[3 * i + 1])
    redis.call('HSET', KEYS[1], conn .. '\\n' .. key, key)
    if added == 0 then out[i] = 0 else out[i] = redis.call('HLEN', key) end
  else
    redis.call('HDEL', KEYS[1], conn .. '\\n' .. key)
    if redis.call('HDEL', key, conn) == 0 then out[i] = -1 else out[i] = redis.call('HLEN', key) end
  end
end
return out
`);

/** One presence write waiting for its turn's batch (PRESENCE_BATCH_SCRIPT). */
interface PresenceWrite {
  key: string;
  op: 'c' | 'd';
  conn: string;
  value: string;
  /** The epoch when it was made: a batch spanning a renewal that changed it goes out as two. */
  epoch: string;
}

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

/**
 * The Redis client name an edge's connection carries (`CLIENT SETNAME`, ioredis's
 * `connectionName`): how a sweeper tells an edge whose loop stalled (its connection is still
 * open) from one that died (the kernel closed it). Characters Redis refuses in a name become `_`.
 */
export function presenceClientName(edgeId: string): string {
  return `push-edge:${edgeId.replace(/[^!-~]/g, '_')}`;
}

/** The value a sweeper writes in a stalled edge's lease: this prefix, then when it first saw it lapse (epoch ms). */
const STALL_PREFIX = 'stall:';

/**
 * Holds or ends a stalled edge's lease. KEYS lease; ARGV `hold` or `end`, the value of a new hold,
 * the lease in seconds. Does nothing (returns 0) once the edge renewed its lease itself.
 */
const STALL_SCRIPT = `
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, ${STALL_PREFIX.length}) ~= '${STALL_PREFIX}' then return 0 end
if ARGV[1] == 'end' then
  redis.call('DEL', KEYS[1])
elseif v then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return 1
`;

/** How long readers reuse a `CLIENT LIST` when they find a lapsed lease (see `deadEdges`), ms. */
const CLIENTS_CACHE_MS = 1000;

/**
 * The names of the clients connected to Redis now (`CLIENT LIST`), each with how many carry it;
 * undefined when Redis refuses the command (CLIENT disabled on some managed services).
 */
async function clientNames(redis: Redis): Promise<Map<string, number> | undefined> {
  let list: string;
  try {
    list = String(await redis.call('CLIENT', 'LIST', 'TYPE', 'normal'));
  } catch {
    return undefined;
  }
  const names = new Map<string, number>();
  for (const m of list.matchAll(/(?:^| )name=(\S+)/gm)) names.set(m[1] as string, (names.get(m[1] as string) ?? 0) + 1);
  return names;
}

/**
 * Takes an edge's lease (again): KEYS lease, edges set, swept marker; ARGV value, lease seconds,
 * edge id. Returns 1 when a sweep had removed the edge's entries since it last took it (the
 * marker, which this removes), else 0.
 */
const RETAKE_SCRIPT = `
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return redis.call('DEL', KEYS[3])
`;

/**
 * An edge was started with the id of an edge that is running (it renews the lease under that id):
 * the two would share connection ids and presence entries. `code` is stable.
 */
export class EdgeIdInUseError extends Error {
  readonly code = 'edge_id_in_use';

  constructor(readonly edgeId: string) {
    super(
      `edge id "${edgeId}" is in use: another running edge renews its presence lease; ` +
        'give each edge process its own PUSH_EDGE_ID (or leave it unset for a unique one)',
    );
    this.name = 'EdgeIdInUseError';
  }
}

/**
 * This edge's id was taken over while it was stalled (see `PresenceOptions.onTakenOver`). `code`
 * is stable.
 */
export class EdgeIdTakenError extends Error {
  readonly code = 'edge_id_taken';

  constructor(readonly edgeId: string) {
    super(
      `edge id "${edgeId}" was taken over by another process while this one was stalled past its ` +
        'presence lease; this process stops (its connections were reported closed)',
    );
    this.name = 'EdgeIdTakenError';
  }
}

/**
 * Renews an edge's lease: KEYS lease; ARGV the new value (`<ms> <token>`), this process's token,
 * the lease in seconds. Returns 1 when renewed, 0 when the lease lapsed (the caller takes it
 * again), -1 when another process holds it under the same id (its token; a sweeper's stall hold
 * is this edge's, renewed).
 */
const RENEW_SCRIPT = `
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if string.sub(v, 1, ${STALL_PREFIX.length}) ~= '${STALL_PREFIX}' and string.match(v, ' (%S+)$') ~= ARGV[2] then return -1 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
`;

/** The presence epoch: KEYS epoch key; ARGV a new value, set when there is none. Returns the value. */
const EPOCH_SCRIPT = `
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
`;

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
  /** How long a stalled edge's lapsed lease is held for it (`sweep`), ms. */
  private readonly stallMaxMs: number;
  /** The last `CLIENT LIST` read for `deadEdges`. */
  private clients: { at: number; names: Promise<Map<string, number> | undefined> } | undefined;
  private readonly opts: PresenceOptions;
  private timer: NodeJS.Timeout | undefined;
  /** The presence epoch this edge recorded its connections under (undefined before `start`). */
  private epoch: string | undefined;
  /** This edge took its lease (`start` got that far): `stop` gives it up. */
  private holding = false;
  /** Tells this process's lease from another's under the same id: its value is `<ms> <token>`. */
  private readonly token = randomBytes(6).toString('hex');
  /** The renewal under way, shared by the timer and by a `lost` answer or a Redis reconnect. */
  private renewing: Promise<void> | undefined;
  private readonly onReady = (): void => {
    this.renewNow();
  };
  /** Connects and disconnects of one event-loop turn, written in one script call. */
  private readonly writes = new TurnBatch<PresenceWrite, number>((w) => this.write(w));

  constructor(redis: Redis, subjects: Subjects, edgeId: string, opts: PresenceOptions = {}) {
    this.redis = redis;
    this.subjects = subjects;
    this.edgeId = edgeId;
    this.opts = opts;
    this.leaseSeconds = opts.leaseSeconds ?? 15;
    this.stallMaxMs = (opts.stallMaxSeconds ?? this.leaseSeconds * 4) * 1000;
  }

  /**
   * Takes this edge's lease now, then renews it and sweeps dead edges every third of it until
   * `stop()`. An edge started under the id of one that died (a fixed PUSH_EDGE_ID, restarted)
   * first sweeps and reports what that one left, as the sweepers would once its lease lapsed; its
   * new connections would otherwise reuse the dead one's connection ids and entries. Refused with
   * EdgeIdInUseError when a running edge holds the id (see `claim`).
   */
  async start(): Promise<void> {
    this.epoch = await this.readEpoch();
    await this.claim();
    await this.redis.del(this.subjects.edgeAliveKey(this.edgeId));
    await this.sweepEdge(this.edgeId);
    await this.retake();
    this.holding = true;
    // A reconnect may be to a Redis that restarted empty: look at once, not a third of a lease later.
    this.redis.on('ready', this.onReady);
    this.every(async () => {
      await this.renewOnce();
      if (this.holding) await this.sweep(); // not once another process took the id over
    });
  }

  /**
   * Throws EdgeIdInUseError when a running edge renews the lease under this edge's id. A live
   * lease whose edge's Redis connection is gone (`CLIENT LIST` names no other connection
   * `presenceClientName(id)`) is a dead process's: taken over at once. Otherwise (its connection
   * still open, or CLIENT refused) the lease is watched for up to one lease: renewed, a running
   * edge holds it; lapsed or held for a stalled edge, its process is gone or stopped, and taken over.
   */
  private async claim(): Promise<void> {
    const key = this.subjects.edgeAliveKey(this.edgeId);
    const lease = await this.redis.get(key);
    if (lease === null || lease.startsWith(STALL_PREFIX)) return;
    const name = presenceClientName(this.edgeId);
    const names = await clientNames(this.redis);
    const ours = this.redis.options.connectionName === name ? 1 : 0;
    if (names !== undefined && (names.get(name) ?? 0) <= ours) return; // its process died
    const until = Date.now() + this.leaseSeconds * 1000 + 1000;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, Math.min(250, (this.leaseSeconds * 1000) / 6)));
      const now = await this.redis.get(key);
      if (now === null || now.startsWith(STALL_PREFIX)) return;
      if (now !== lease) throw new EdgeIdInUseError(this.edgeId);
    }
  }

  /** Takes the lease (again); true when a sweep removed this edge's entries since it last had it. */
  private async retake(): Promise<boolean> {
    const r = await this.redis.eval(
      RETAKE_SCRIPT,
      3,
      this.subjects.edgeAliveKey(this.edgeId),
      this.subjects.edgesKey,
      this.subjects.edgeSweptKey(this.edgeId),
      this.leaseValue(),
      this.leaseSeconds,
      this.edgeId,
    );
    return Number(r) === 1;
  }

  /** A new value of this edge's lease: it changes at every renewal (`claim` watches for that). */
  private leaseValue(): string {
    return `${Date.now()} ${this.token}`;
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

  /** The epoch in Redis, made anew when Redis has none (it lost its data, or never had one). */
  private async readEpoch(): Promise<string> {
    const fresh = randomBytes(8).toString('hex');
    return String(await this.redis.eval(EPOCH_SCRIPT, 1, this.subjects.presenceEpochKey, fresh));
  }

  /** Renews now, joining a renewal under way; a failure goes to `onError` (the timer retries). */
  private renewNow(): void {
    if (this.timer === undefined) return; // stopped
    this.renewOnce().catch((err: unknown) => this.opts.onError?.(err));
  }

  private renewOnce(): Promise<void> {
    this.renewing ??= this.renew().finally(() => {
      this.renewing = undefined;
    });
    return this.renewing;
  }

  /**
   * Renews the lease, retaking it when it had lapsed; tells `onDataLost` when the epoch changed
   * (Redis lost everything: nobody swept, nobody reported), else `onLeaseLost` when the lease had
   * lapsed and a sweeper removed and reported this edge's entries meanwhile.
   */
  private async renew(): Promise<void> {
    const epoch = await this.readEpoch();
    const lost = epoch !== this.epoch;
    const key = this.subjects.edgeAliveKey(this.edgeId);
    const kept = Number(await this.redis.eval(RENEW_SCRIPT, 1, key, this.leaseValue(), this.token, this.leaseSeconds));
    if (kept === -1) return this.takenOver();
    const swept = kept === 0 && (await this.retake());
    // Only now, in the turn that tells the caller: a removal sent meanwhile under the old epoch
    // answers `lost` (its entry went with the data), not `more` as if a sweep had reported it.
    this.epoch = epoch;
    if (lost) this.opts.onDataLost?.();
    else if (swept) this.opts.onLeaseLost?.();
    this.opts.onRenewed?.();
  }

  /** Another process holds this edge's id: stop without giving up what is now its own. */
  private takenOver(): void {
    if (!this.holding) return;
    this.holding = false;
    this.stopTimers();
    this.opts.onTakenOver?.(new EdgeIdTakenError(this.edgeId));
  }

  /** No more renewals and sweeps (the timer, and the renewal a Redis reconnect starts). */
  private stopTimers(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.redis.off('ready', this.onReady);
  }

  /**
   * Removes the entries of every edge whose lease lapsed. Safe with any number of sweepers (see
   * SWEEP_SCRIPT). Returns the number of entries removed.
   *
   * An edge whose lease lapsed while its Redis connection is still open (named by
   * `presenceClientName`) is alive with its event loop stalled (a starved host, a long GC): its
   * lease is held for it (`stall:<since>`) for up to `stallMaxSeconds` from when a sweeper first
   * saw it lapse, and its connections are not swept. Sweeping them would report every one offline,
   * and the edge, back a moment later, would record them all again: a Redis write and two events
   * each, on a host already starved. An edge that died closed its connection (the kernel does,
   * whatever killed it), so it is swept as before; one whose host vanished without closing it is
   * swept once the hold runs out.
   */
  async sweep(): Promise<number> {
    const edges = await this.redis.smembers(this.subjects.edgesKey);
    if (edges.length === 0) return 0;
    const leases = await this.redis.mget(edges.map((e) => this.subjects.edgeAliveKey(e)));
    let names: Promise<Map<string, number> | undefined> | undefined;
    let removed = 0;
    for (let i = 0; i < edges.length; i++) {
      const lease = leases[i] ?? null;
      const held = lease?.startsWith(STALL_PREFIX) === true;
      if (lease !== null && !held) continue; // alive
      const edge = edges[i] as string;
      const now = Date.now();
      const since = held ? Number(lease.slice(STALL_PREFIX.length)) : now;
      names ??= clientNames(this.redis); // refused (some managed Redis): every lapsed lease is swept
      if ((await names)?.has(presenceClientName(edge)) === true && now - since < this.stallMaxMs) {
        await this.stall(edge, 'hold', `${STALL_PREFIX}${since}`);
        continue;
      }
      if (held && !(await this.stall(edge, 'end', ''))) continue; // it renewed meanwhile
      removed += Math.max(0, await this.sweepEdge(edge));
    }
    return removed;
  }

  /** Holds a stalled edge's lease, or ends the hold; false when the edge had renewed it itself. */
  private async stall(edge: string, op: 'hold' | 'end', value: string): Promise<boolean> {
    const r = await this.redis.eval(STALL_SCRIPT, 1, this.subjects.edgeAliveKey(edge), op, value, this.leaseSeconds);
    return Number(r) === 1;
  }

  /** Sweeps one edge if its lease lapsed; -1 when it is alive, else the entries removed (reported to `onSwept`). */
  private async sweepEdge(edge: string): Promise<number> {
    const both = (await this.redis.eval(
      SWEEP_SCRIPT,
      5,
      this.subjects.edgeAliveKey(edge),
      this.subjects.edgeConnectionsKey(edge),
      this.subjects.edgesKey,
      this.subjects.edgeTopicsKey(edge),
      this.subjects.edgeSweptKey(edge),
      edge,
    )) as number | [Array<string | number>, Array<string | number>, number];
    if (!Array.isArray(both)) return Number(both);
    const [r, t, order] = both;
    this.reportTopics(t, Number(order));
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

  /** Reports the topic memberships a sweep removed (SWEEP_SCRIPT's second list) to `onTopicsSwept`. */
  private reportTopics(t: Array<string | number>, order: number): void {
    const swept: SweptTopicEntry[] = [];
    for (let i = 0; i + 3 < t.length; i += 4) {
      const ref = parseJson(String(t[i]));
      if (!Array.isArray(ref)) continue;
      const [, , conn, , app, topic] = ref as unknown[];
      if (typeof conn !== 'string' || typeof app !== 'string' || typeof topic !== 'string') continue;
      const m = decodeTopicMember(conn, String(t[i + 1]));
      if (m === undefined) continue; // not ours: nothing to report
      swept.push({ ...m, app, topic, last: Number(t[i + 2]) === 0, vacated: Number(t[i + 3]) === 0, order });
    }
    if (swept.length > 0) this.opts.onTopicsSwept?.(swept);
  }

  /**
   * Records a connection's subscription to a topic (`_all` is never recorded). `added`: it was
   * not recorded (false when recording it again finds it still there); `first`: it is
   * the user's first subscribed connection on any edge (they joined the topic); `occupied`: the
   * topic's first (it had no subscriber). `presence` marks a presence topic, so a sweep knows to
   * announce the user's `leave`.
   */
  async topicJoined(
    m: Omit<TopicMember, 'edge'> & { app: string; topic: string; presence: boolean },
  ): Promise<{ added: boolean; first: boolean; occupied: boolean; order: number }> {
    const conns = this.subjects.topicConnsKey(m.app, m.topic);
    const users = this.subjects.topicUsersKey(m.app, m.topic);
    const n = await TOPIC_JOIN_SCRIPT.run(
      this.redis,
      [conns, users, this.subjects.edgeTopicsKey(this.edgeId)],
      [
        m.conn,
        JSON.stringify([this.edgeId, m.user, m.device, m.since, m.presence ? 1 : 0]),
        m.user,
        topicIndexField(m.conn, m.app, m.topic),
        JSON.stringify([conns, users, m.conn, m.user, m.app, m.topic]),
      ],
    );
    const [user, topic, order] = Array.isArray(n) ? (n as unknown[]) : [n, 0, 0];
    return {
      added: Number(user) >= 1,
      first: Number(user) === 1,
      occupied: Number(topic) === 1,
      order: Number(order),
    };
  }

  /**
   * Forgets a connection's subscription to a topic. `last`: it was the user's last subscribed
   * connection (they left), false when others remain or a sweep had removed it; `vacated`: it
   * was the topic's last subscription.
   */
  async topicLeft(
    app: string,
    topic: string,
    user: string,
    conn: string,
  ): Promise<{ last: boolean; vacated: boolean; order: number }> {
    const n = await TOPIC_LEAVE_SCRIPT.run(
      this.redis,
      [
        this.subjects.topicConnsKey(app, topic),
        this.subjects.topicUsersKey(app, topic),
        this.subjects.edgeTopicsKey(this.edgeId),
      ],
      [conn, user, topicIndexField(conn, app, topic)],
    );
    const [users, conns, order] = Array.isArray(n) ? (n as unknown[]) : [n, -1, 0];
    return { last: Number(users) === 0, vacated: Number(conns) === 0, order: Number(order) };
  }

  /** A topic's subscribers: two O(1) reads. Subscriptions of a dead edge count until swept. */
  async topicOccupancy(app: string, topic: string): Promise<TopicOccupancy> {
    const [connections, users] = await Promise.all([
      this.redis.hlen(this.subjects.topicConnsKey(app, topic)),
      this.redis.hlen(this.subjects.topicUsersKey(app, topic)),
    ]);
    return { connections, users };
  }

  /** A topic's subscribed connections on edges that are alive (those of a dead edge hidden at once). */
  async topicMembers(app: string, topic: string): Promise<TopicMember[]> {
    // A plain read, auto-pipelined in order with the counts a caller reads beside it (a MULTI
    // goes out apart from them, so the two would see different moments).
    return this.alive(await this.redis.hgetall(this.subjects.topicConnsKey(app, topic)));
  }

  /**
   * `topicMembers`, and Redis's clock (µs) when they were read, in one atomic step: every
   * `join`/`leave` decided before it is in the list, every later one has a greater order stamp.
   */
  async topicMembersAt(app: string, topic: string): Promise<{ members: TopicMember[]; at: number }> {
    const r = (await this.redis.multi().hgetall(this.subjects.topicConnsKey(app, topic)).time().exec()) as
      [[Error | null, Record<string, string>], [Error | null, [string, string]]] | null;
    if (r === null) throw new Error('the presence read was aborted');
    const [[e1, got], [e2, time]] = r;
    const failed = e1 ?? e2;
    if (failed !== null) throw failed;
    const at = Number(time[0]) * 1_000_000 + Number(time[1]);
    return { members: await this.alive(got), at };
  }

  private async alive(all: Record<string, string>): Promise<TopicMember[]> {
    const members: TopicMember[] = [];
    for (const [conn, value] of Object.entries(all)) {
      const m = decodeTopicMember(conn, value);
      if (m !== undefined) members.push({ conn, edge: m.edge, user: m.user, device: m.device, since: m.since });
    }
    if (members.length === 0) return members;
    const dead = await this.deadEdges(members.map((e) => e.edge));
    return dead.size === 0 ? members : members.filter((m) => !dead.has(m.edge));
  }

  /**
   * Of these edges, those taken for dead: the lease lapsed and the edge's presence connection to
   * Redis is closed. One whose connection is still open is stalled, and counts as alive, as the
   * sweep holds its lease for it (see `sweep`); until the next sweep writes that hold, this reads
   * the clients (`CLIENT LIST`, at most once a second; refused, every lapsed edge is dead).
   */
  private async deadEdges(of: string[]): Promise<Set<string>> {
    const edges = [...new Set(of)];
    const leases = await this.redis.mget(edges.map((e) => this.subjects.edgeAliveKey(e)));
    const lapsed = edges.filter((_, i) => leases[i] === null);
    if (lapsed.length === 0) return new Set();
    const now = Date.now();
    if (this.clients === undefined || now - this.clients.at > CLIENTS_CACHE_MS)
      this.clients = { at: now, names: clientNames(this.redis) };
    const names = await this.clients.names;
    return new Set(names === undefined ? lapsed : lapsed.filter((e) => !names.has(presenceClientName(e))));
  }

  /**
   * Records a connection. See ConnectOutcome: `first` when no other connection of the user is
   * recorded on any edge (entries of a dead edge not swept yet still count, so a user who moves
   * to another edge before the sweep stays online throughout).
   */
  async connected(
    app: string,
    user: string,
    conn: string,
    device: string,
    since = Date.now(),
  ): Promise<ConnectOutcome> {
    const value = encodePresence(this.edgeId, device, since);
    const n = await this.writes.add({
      key: this.subjects.presenceKey(app, user),
      op: 'c',
      conn,
      value,
      epoch: this.epoch ?? '',
    });
    if (n === -2) return this.dataLost();
    return n === 1 ? 'first' : n === 0 ? 'again' : 'more';
  }

  /** Forgets a connection. See DisconnectOutcome. */
  async disconnected(app: string, user: string, conn: string): Promise<DisconnectOutcome> {
    const n = await this.writes.add({
      key: this.subjects.presenceKey(app, user),
      op: 'd',
      conn,
      value: '',
      epoch: this.epoch ?? '',
    });
    if (n === -2) return this.dataLost();
    return n === -1 ? 'gone' : n === 0 ? 'last' : 'more';
  }

  /** Writes one turn's batch: one script call per run of writes made under the same epoch. */
  private async write(writes: PresenceWrite[]): Promise<number[]> {
    const calls: Array<Promise<number[]>> = [];
    let from = 0;
    for (let i = 1; i <= writes.length; i++) {
      if (i < writes.length && (writes[i] as PresenceWrite).epoch === (writes[from] as PresenceWrite).epoch) continue;
      calls.push(this.writeRun(writes.slice(from, i)));
      from = i;
    }
    return (await Promise.all(calls)).flat();
  }

  private async writeRun(writes: PresenceWrite[]): Promise<number[]> {
    const keys = [this.subjects.edgeConnectionsKey(this.edgeId), this.subjects.presenceEpochKey];
    const args: string[] = [(writes[0] as PresenceWrite).epoch];
    for (const w of writes) {
      keys.push(w.key);
      args.push(w.op, w.conn, w.value);
    }
    const r = await PRESENCE_BATCH_SCRIPT.run(this.redis, keys, args);
    return Array.isArray(r) ? r.map(Number) : writes.map(() => Number(r));
  }

  /** A script found another epoch: renew now (which tells `onDataLost`), and answer `lost`. */
  private dataLost(): 'lost' {
    this.renewNow();
    return 'lost';
  }

  /** The user's live connections on edges that are alive. */
  async lookup(app: string, user: string): Promise<PresenceEntry[]> {
    const key = this.subjects.presenceKey(app, user);
    const all = await this.redis.hgetall(key);
    const entries = Object.entries(all).map(([conn, value]) => decodePresence(conn, value));
    if (entries.length === 0) return entries;
    const dead = await this.deadEdges(entries.map((e) => e.edge));
    if (dead.size === 0) return entries;
    // Hidden, not removed: the sweep removes them and reports the users it takes offline.
    return entries.filter((e) => !dead.has(e.edge));
  }

  /**
   * Stops renewing and sweeping, gives up this edge's lease and removes whatever entries of it
   * remain. Idempotent. The center's registry (no lease), or one whose `start` failed (the id was
   * another edge's), only stops.
   */
  async stop(): Promise<void> {
    this.stopTimers();
    if (!this.holding) return;
    this.holding = false;
    this.writes.flush(); // before the lease goes: the sweep below must see (and remove) them
    await this.redis.del(this.subjects.edgeAliveKey(this.edgeId));
    await this.sweepEdge(this.edgeId);
    await this.redis.del(this.subjects.edgeSweptKey(this.edgeId)); // nobody will read it
  }
}
