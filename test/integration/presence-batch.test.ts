import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { PresenceRegistry, TurnBatch } from '@push/presence';
import { Subjects } from '@push/protocol';
import { BindingsReader } from '../../apps/edge/src/bindings.js';

/** A real Redis client that counts the script calls made through it. */
function counting(redis: Redis): { redis: Redis; calls: () => number } {
  let n = 0;
  const proxy = new Proxy(redis, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if ((prop === 'evalsha' || prop === 'eval') && typeof v === 'function') {
        return (...args: unknown[]) => {
          n++;
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { redis: proxy, calls: () => n };
}

/**
 * Issue 16: the Redis work of a connect is batched per event-loop turn (presence writes in one
 * script call, bindings reads in another), on a real Redis: what each connection is answered
 * stays what it was one call each.
 */
describe('presence and bindings batched per turn (real Redis)', function () {
  this.timeout(15_000);
  const subjects = new Subjects(`pb${randomBytes(3).toString('hex')}`);
  let raw: Redis;

  before(async function () {
    raw = new Redis(process.env['PUSH_REDIS_URL'] ?? 'redis://127.0.0.1:6379');
    await raw.ping();
  });
  after(async function () {
    const keys = await raw.keys(`${subjects.prefix}:*`);
    if (keys.length > 0) await raw.del(...keys);
    raw.disconnect();
  });

  /** Runs `fn` with a started registry of edge `edge` (on `redis`, the real one by default), stopped after. */
  async function withRegistry(edge: string, fn: (reg: PresenceRegistry) => Promise<void>, redis = raw): Promise<void> {
    const reg = new PresenceRegistry(redis, subjects, edge);
    await reg.start();
    try {
      await fn(reg);
    } finally {
      await reg.stop();
    }
  }

  it('writes 300 connects of one turn in one call, with the first of each user told apart', async function () {
    const { redis, calls } = counting(raw);
    await withRegistry(
      'edge-a',
      async (reg) => {
        const before = calls();
        // 200 users; the first 100 connect twice in the same turn.
        const made = [];
        for (let i = 0; i < 300; i++) made.push(reg.connected('shop', `u${i % 200}`, `c${i}`, 'phone'));
        const outcomes = await Promise.all(made);
        expect(calls() - before).to.equal(1);
        for (let i = 0; i < 300; i++) expect(outcomes[i], `c${i}`).to.equal(i < 200 ? 'first' : 'more');
        expect((await reg.lookup('shop', 'u5')).map((e) => e.conn).sort()).to.deep.equal(['c205', 'c5']);
        expect((await reg.lookup('shop', 'u150')).map((e) => e.conn)).to.deep.equal(['c150']);

        const mark = calls();
        const gone = [];
        for (let i = 0; i < 300; i++) gone.push(reg.disconnected('shop', `u${i % 200}`, `c${i}`));
        const left = await Promise.all(gone);
        expect(calls() - mark).to.equal(1);
        for (let i = 0; i < 300; i++) expect(left[i], `c${i}`).to.equal(i < 100 ? 'more' : 'last');
        expect(await reg.lookup('shop', 'u5')).to.deep.equal([]);
      },
      redis,
    );
  });

  it('applies a connect and a disconnect of one connection in one turn in the order they were made', async function () {
    await withRegistry('edge-b', async (reg) => {
      const [opened, closed, again] = await Promise.all([
        reg.connected('shop', 'flash', 'f1', 'phone'),
        reg.disconnected('shop', 'flash', 'f1'),
        reg.disconnected('shop', 'flash', 'f1'),
      ]);
      expect([opened, closed, again]).to.deep.equal(['first', 'last', 'gone']);
      expect(await reg.lookup('shop', 'flash')).to.deep.equal([]);
    });
  });

  it('answers `lost` for every write of a batch after Redis lost the epoch, writing none', async function () {
    await withRegistry('edge-c', async (reg) => {
      await raw.del(subjects.presenceEpochKey);
      const outcomes = await Promise.all([
        reg.connected('shop', 'x', 'x1', 'phone'),
        reg.connected('shop', 'y', 'y1', 'phone'),
      ]);
      expect(outcomes).to.deep.equal(['lost', 'lost']);
      expect(await raw.hlen(subjects.presenceKey('shop', 'x'))).to.equal(0);
    });
  });

  it('still runs after Redis forgot its scripts (SCRIPT FLUSH)', async function () {
    await withRegistry('edge-d', async (reg) => {
      expect(await reg.connected('shop', 'z', 'z1', 'phone')).to.equal('first');
      await raw.script('FLUSH');
      expect(await reg.connected('shop', 'z', 'z2', 'phone')).to.equal('more');
    });
  });

  it('reads the bindings of every connection of one turn in one call, each its own, with the marker', async function () {
    const { redis, calls } = counting(raw);
    const reader = new BindingsReader(redis, subjects);
    await raw.sadd(subjects.bindingsKey('shop', 'ann'), 'news', 'sport');
    await raw.sadd(subjects.bindingsKey('shop', 'bob'), 'chess');
    await raw.set(subjects.bindingsMirrorKey, 'done');
    await reader.read('shop', 'nobody'); // loads the script, were it flushed
    const before = calls();
    const [ann, bob, cy] = await Promise.all([
      reader.read('shop', 'ann'),
      reader.read('shop', 'bob'),
      reader.read('shop', 'cy'),
    ]);
    expect(calls() - before).to.equal(1);
    expect(ann.topics.sort()).to.deep.equal(['news', 'sport']);
    expect(bob).to.deep.equal({ topics: ['chess'], whole: true });
    expect(cy).to.deep.equal({ topics: [], whole: true });
    await raw.del(subjects.bindingsMirrorKey);
    expect(await reader.read('shop', 'bob')).to.deep.equal({ topics: ['chess'], whole: false });
  });

  it('a full batch goes out at once; a failed one fails each of its calls', async function () {
    const runs: number[][] = [];
    const batch = new TurnBatch<number, number>((items) => {
      runs.push(items);
      return items[0] === 99 ? Promise.reject(new Error('down')) : Promise.resolve(items.map((i) => i * 2));
    }, 3);
    const first = [batch.add(1), batch.add(2), batch.add(3)];
    expect(runs).to.deep.equal([[1, 2, 3]]); // full: sent during the turn
    const rest = batch.add(4);
    expect(runs).to.have.length(1); // not full: waits for the turn's end
    expect(await Promise.all([...first, rest])).to.deep.equal([2, 4, 6, 8]);
    const failed = await Promise.allSettled([batch.add(99), batch.add(100)]);
    expect(failed.map((r) => r.status)).to.deep.equal(['rejected', 'rejected']);
  });
});
