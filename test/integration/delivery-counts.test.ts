import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import type { MoveOutcome } from '@push/nats';
import { DEFAULT_APP_SETTINGS, PushError, Subjects, type AppRecord } from '@push/protocol';
import { DeliveryCounts } from '../../apps/edge/src/delivery-counts.js';
import { createEdgeMetrics } from '../../apps/edge/src/metrics.js';

/**
 * The never-ack guard's counting on a real Redis (issue 17 part 3): one script call per unacked
 * close, counts per inbox sequence shared by every edge, fields at or below the ack floor
 * dropped, a TTL, and a move at `maxDeliveries` (the store side is UndeliverableStore's test).
 */
describe('DeliveryCounts: unacked deliveries counted in Redis (real Redis)', function () {
  this.timeout(10_000);
  const subjects = new Subjects(`dc${randomBytes(3).toString('hex')}`);
  let redis: Redis;
  const app = (maxDeliveries: number): AppRecord => ({
    id: 'shop',
    name: 'shop',
    disabled: false,
    secrets: [],
    settings: { ...DEFAULT_APP_SETTINGS, maxDeliveries, defaultTtlSeconds: 600 },
    apiKeys: [],
    updatedAt: '',
  });

  before(async function () {
    redis = new Redis(process.env['PUSH_REDIS_URL'] ?? 'redis://127.0.0.1:6379');
    await redis.ping();
  });
  after(async function () {
    const keys = await redis.keys(`${subjects.prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  /** Two edges' guards on one Redis, with a recording move. */
  function guards(maxDeliveries: number, outcome: () => Promise<MoveOutcome> = () => Promise.resolve('moved')) {
    const moves: Array<{ user: string; seq: number; deliveries: number }> = [];
    const events: unknown[] = [];
    const metrics = createEdgeMetrics(new Registry());
    const make = () =>
      new DeliveryCounts({
        redis,
        subjects,
        apps: { get: () => app(maxDeliveries) },
        undeliverable: {
          move: (_app, user, seq, deliveries) => {
            moves.push({ user, seq, deliveries });
            return outcome();
          },
        },
        events: {
          emit: (type, e) => {
            events.push({ type, ...e });
            return 'evt_test';
          },
        },
        metrics,
        log: { warn: () => undefined },
      });
    return { a: make(), b: make(), moves, events, metrics };
  }

  const counts = async (user: string) => redis.hgetall(subjects.deliveryCountsKey('shop', user));

  it('counts each unacked close across edges and moves at the limit, once', async function () {
    const { a, b, moves, events, metrics } = guards(3);
    a.unacked('shop', 'ann', [5, 6], 0);
    await a.idle(5000);
    b.unacked('shop', 'ann', [5, 6], 0);
    await b.idle(5000);
    expect(await counts('ann')).to.deep.equal({ 5: '2', 6: '2' });
    expect(moves).to.deep.equal([]);
    // The third close acked 5 (its floor passed it): 5's count goes, 6 reaches the limit.
    a.unacked('shop', 'ann', [6], 5);
    await a.idle(5000);
    expect(moves).to.deep.equal([{ user: 'ann', seq: 6, deliveries: 3 }]);
    expect(events).to.deep.equal([{ type: 'undeliverable', app: 'shop', user: 'ann', seq: 6, deliveries: 3 }]);
    expect(await counts('ann')).to.deep.equal({});
    expect((await metrics.undeliverable.get()).values[0]?.value).to.equal(1);
    expect((await metrics.deliveryCountWrites.get()).values[0]?.value).to.equal(3);
    const ttl = await redis.ttl(subjects.deliveryCountsKey('shop', 'ann'));
    expect(ttl === -2 || (ttl > 0 && ttl <= 600)).to.equal(true);
  });

  it('a failed move keeps the count, so the next unacked close moves it', async function () {
    let fail = true;
    const { a, moves, events, metrics } = guards(2, () =>
      fail ? Promise.reject(new PushError('store_unavailable')) : Promise.resolve('moved'),
    );
    a.unacked('shop', 'bob', [9], 0);
    a.unacked('shop', 'bob', [9], 0);
    await a.idle(5000);
    expect(moves).to.have.length(1);
    expect(events).to.deep.equal([]);
    expect(await counts('bob')).to.deep.equal({ 9: '2' });
    expect((await metrics.errors.get()).values.find((v) => v.labels['code'] === 'delivery_counts')?.value).to.equal(1);
    fail = false;
    a.unacked('shop', 'bob', [9], 0);
    await a.idle(5000);
    expect(moves.map((m) => m.deliveries)).to.deep.equal([2, 3]);
    expect(events).to.have.length(1);
    expect(await counts('bob')).to.deep.equal({});
  });

  it('a message gone from the inbox (acked elsewhere) drops its count without an event', async function () {
    const { a, events } = guards(1, () => Promise.resolve('gone'));
    a.unacked('shop', 'cid', [3], 0);
    await a.idle(5000);
    expect(events).to.deep.equal([]);
    expect(await counts('cid')).to.deep.equal({});
  });

  it('writes nothing when maxDeliveries is 0 or nothing was left unacked', async function () {
    const { a, metrics } = guards(0);
    a.unacked('shop', 'dan', [1, 2], 0);
    const on = guards(5);
    on.a.unacked('shop', 'dan', [], 0);
    await Promise.all([a.idle(5000), on.a.idle(5000)]);
    expect(await counts('dan')).to.deep.equal({});
    expect((await metrics.deliveryCountWrites.get()).values[0]?.value ?? 0).to.equal(0);
    expect((await on.metrics.deliveryCountWrites.get()).values[0]?.value ?? 0).to.equal(0);
  });
});
