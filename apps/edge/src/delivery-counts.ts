import type { Redis } from 'ioredis';
import type { AppDirectory } from '@push/apps';
import type { EventPublisher, MoveOutcome, UndeliverableStore } from '@push/nats';
import type { Subjects } from '@push/protocol';
import type { Logger } from '@push/logger';
import type { EdgeMetrics } from './metrics.js';

/**
 * Adds one unacked delivery to each given sequence of a user's count hash and returns the new
 * counts; drops the fields at or below the connection's ack floor (those messages were acked or
 * skipped, so their counts are dead weight), and renews the hash's TTL.
 * KEYS[1] the hash; ARGV[1] TTL seconds; ARGV[2] ack floor; ARGV[3..] sequences.
 */
const COUNT_SCRIPT = `
local out = {}
for i = 3, #ARGV do out[#out + 1] = redis.call('HINCRBY', KEYS[1], ARGV[i], 1) end
local floor = tonumber(ARGV[2])
if floor > 0 then
  for _, k in ipairs(redis.call('HKEYS', KEYS[1])) do
    if tonumber(k) <= floor then redis.call('HDEL', KEYS[1], k) end
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return out
`;

/** Most sequences counted per script call (a connection has at most its window in flight). */
const MAX_SEQS_PER_CALL = 1024;

type CountingRedis = Pick<Redis, 'eval' | 'hdel'>;

/** What the never-ack guard needs from the edge. */
export interface DeliveryCountsDeps {
  redis: CountingRedis;
  subjects: Subjects;
  apps: Pick<AppDirectory, 'get'>;
  undeliverable: Pick<UndeliverableStore, 'move'>;
  events: Pick<EventPublisher, 'emit'>;
  metrics: Pick<EdgeMetrics, 'undeliverable' | 'deliveryCountWrites' | 'errors'>;
  log: Pick<Logger, 'warn'>;
}

/**
 * The never-ack loop guard (docs/architecture.md "Never-ack loops"). A message a client never
 * acks would be delivered again on every reconnect, forever; the app's `maxDeliveries` bounds it.
 *
 * Counted where it costs least: nothing is written when a message is delivered, nor when it is
 * acked. Only when a connection closes with messages still in flight (delivered, not acked) does
 * the edge add one to each of their counts, in one Redis script call per such close, in a hash
 * per user with a TTL (`<prefix>:redeliv:<app>:<user>`, field = inbox sequence). Those are
 * exactly the deliveries that ended without an ack, on any edge, across reconnects. A count that
 * reaches `maxDeliveries` moves the message to the app's undeliverable list right then
 * (UndeliverableStore.move: stored there first, then deleted from the inbox), emits
 * `undeliverable` and counts it.
 *
 * Failures lose nothing: when Redis or the store fails, the message stays in the inbox, and the
 * next unacked close counts it again (at or past the limit, it is moved then). An edge that dies
 * counts nothing for its connections: the loop then lasts a few more deliveries.
 */
export class DeliveryCounts {
  /** Script calls and moves in flight (for `idle`). */
  private inFlight = 0;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly deps: DeliveryCountsDeps) {}

  /**
   * A connection of `user` closed with `seqs` delivered and not acked; `floor` is its ack floor
   * (every message of the user at or below it was acked or skipped). Never throws, never blocks.
   */
  unacked(app: string, user: string, seqs: Iterable<number>, floor: number): void {
    const max = this.deps.apps.get(app)?.settings.maxDeliveries ?? 0;
    if (max <= 0) return;
    const list: number[] = [];
    for (const seq of seqs) {
      list.push(seq);
      if (list.length === MAX_SEQS_PER_CALL) break;
    }
    if (list.length === 0) return;
    const ttl = Math.max(60, this.deps.apps.get(app)?.settings.defaultTtlSeconds ?? 0);
    const key = this.deps.subjects.deliveryCountsKey(app, user);
    this.track(
      (async () => {
        this.deps.metrics.deliveryCountWrites.inc();
        const counts = (await this.deps.redis.eval(COUNT_SCRIPT, 1, key, ttl, floor, ...list)) as number[];
        for (let i = 0; i < list.length; i++) {
          const n = counts[i] ?? 0;
          if (n >= max) await this.move(app, user, list[i] as number, n, key);
        }
      })(),
    );
  }

  /** Moves one message out of the inbox; its count field goes once the inbox no longer holds it. */
  private async move(app: string, user: string, seq: number, deliveries: number, key: string): Promise<void> {
    const outcome: MoveOutcome = await this.deps.undeliverable.move(app, user, seq, deliveries);
    await this.deps.redis.hdel(key, String(seq));
    if (outcome !== 'moved') return;
    this.deps.metrics.undeliverable.inc();
    this.deps.events.emit('undeliverable', { app, user, seq, deliveries });
  }

  private track(work: Promise<void>): void {
    this.inFlight++;
    work
      .catch((err: unknown) => {
        // The message stays in the inbox; the next unacked close counts and tries again.
        this.deps.metrics.errors.inc({ code: 'delivery_counts' });
        this.deps.log.warn({ err }, 'counting unacked deliveries failed (the messages stay in the inbox)');
      })
      .finally(() => {
        this.inFlight--;
        if (this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
      });
  }

  /** Resolves true once no count or move is in flight, false when `timeoutMs` passes first (shutdown). */
  idle(timeoutMs: number): Promise<boolean> {
    if (this.inFlight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      timer.unref();
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
}
