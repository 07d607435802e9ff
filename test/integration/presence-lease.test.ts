import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import {
  EdgeIdInUseError,
  EdgeIdTakenError,
  PresenceRegistry,
  presenceClientName,
  type SweptEntry,
} from '@push/presence';
import { Subjects } from '@push/protocol';

const REDIS_URL = process.env['PUSH_REDIS_URL'] ?? 'redis://127.0.0.1:6379';

/** A Redis client named as the edge `edge` names its own (what sweepers look for in CLIENT LIST). */
function edgeRedis(edge: string): Redis {
  return new Redis(REDIS_URL, { connectionName: presenceClientName(edge) });
}

/** `redis`, with CLIENT refused (as some managed services disable it). */
function withoutClientCommand(redis: Redis): Redis {
  return new Proxy(redis, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (prop === 'call') {
        return (cmd: string, ...args: unknown[]) =>
          cmd.toUpperCase() === 'CLIENT'
            ? Promise.reject(new Error("ERR unknown command 'CLIENT'"))
            : target.call(cmd, ...(args as string[]));
      }
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/**
 * A presence lease's life across processes, on a real Redis: an edge id taken again after its
 * process died (a fixed PUSH_EDGE_ID restarted), refused while another process runs under it, and
 * a lapse that nobody swept told apart from one that was.
 */
describe('presence lease: an edge id taken again, a lapse nobody swept (real Redis)', function () {
  this.timeout(20_000);
  const subjects = new Subjects(`pl${randomBytes(3).toString('hex')}`);
  const opened: Redis[] = [];
  const registries: PresenceRegistry[] = [];
  let raw: Redis;

  function client(edge?: string): Redis {
    const r = edge === undefined ? new Redis(REDIS_URL) : edgeRedis(edge);
    opened.push(r);
    return r;
  }

  function registry(redis: Redis, edge: string, opts: ConstructorParameters<typeof PresenceRegistry>[3] = {}) {
    const reg = new PresenceRegistry(redis, subjects, edge, opts);
    registries.push(reg);
    return reg;
  }

  before(async function () {
    raw = client();
    await raw.ping();
  });
  afterEach(async function () {
    for (const reg of registries.splice(0)) await reg.stop().catch(() => undefined);
  });
  after(async function () {
    const keys = await raw.keys(`${subjects.prefix}:*`);
    if (keys.length > 0) await raw.del(...keys);
    for (const r of opened) r.disconnect();
  });

  it('an edge started under the id of one that died sweeps and reports what it left, at once', async function () {
    const dead = client('fixed-a');
    const before = registry(dead, 'fixed-a', { leaseSeconds: 30 });
    await before.start();
    expect(await before.connected('app1', 'ann', 'fixed-a-1', 'phone')).to.equal('first');
    expect(await before.connected('app1', 'bob', 'fixed-a-2', 'phone')).to.equal('first');
    // The process dies: its Redis connection closes, its lease (30 s) is still alive.
    dead.disconnect();
    const annKey = subjects.presenceKey('app1', 'ann');
    expect(await raw.hlen(annKey)).to.equal(1);

    const swept: SweptEntry[] = [];
    const started = Date.now();
    const again = registry(client('fixed-a'), 'fixed-a', { leaseSeconds: 30, onSwept: (e) => swept.push(...e) });
    await again.start();
    expect(Date.now() - started, 'took over without waiting for the lease').to.be.below(3000);
    expect(swept.map((e) => [e.user, e.conn, e.last]).sort()).to.deep.equal([
      ['ann', 'fixed-a-1', true],
      ['bob', 'fixed-a-2', true],
    ]);
    expect(await raw.hlen(annKey)).to.equal(0);
    // A connection id the dead one used (edges give new ones since ids carry the start) is the user's first.
    expect(await again.connected('app1', 'ann', 'fixed-a-1', 'tablet')).to.equal('first');
    expect(await again.lookup('app1', 'ann')).to.have.length(1);
  });

  for (const clientCommand of [true, false]) {
    it(`refuses an id a running edge holds${clientCommand ? '' : ', with CLIENT refused'}, touching none of its entries`, async function () {
      const edge = `fixed-b${clientCommand ? 1 : 2}`;
      const running = registry(client(edge), edge, { leaseSeconds: 1 });
      await running.start();
      await running.connected('app1', 'cid', `${edge}-1`, 'phone');
      const second = client(edge);
      const dup = registry(clientCommand ? second : withoutClientCommand(second), edge, { leaseSeconds: 1 });
      const err = await dup.start().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(EdgeIdInUseError);
      expect((err as EdgeIdInUseError).code).to.equal('edge_id_in_use');
      expect((err as Error).message)
        .to.contain(`"${edge}"`)
        .and.contain('PUSH_EDGE_ID');
      await dup.stop(); // as a failed start's cleanup would: the lease and entries stay the running edge's
      expect(await raw.get(subjects.edgeAliveKey(edge))).to.match(/^\d+ [0-9a-f]+$/);
      expect(await raw.hlen(subjects.presenceKey('app1', 'cid'))).to.equal(1);
      expect(await running.lookup('app1', 'cid')).to.have.length(1);
    });
  }

  it('with CLIENT refused, takes over a dead edge once its lease lapses', async function () {
    const dead = client('fixed-c');
    const before = registry(dead, 'fixed-c', { leaseSeconds: 1 });
    await before.start();
    await before.connected('app1', 'dee', 'fixed-c-1', 'phone');
    dead.disconnect();
    const swept: SweptEntry[] = [];
    const again = registry(withoutClientCommand(client('fixed-c')), 'fixed-c', {
      leaseSeconds: 1,
      onSwept: (e) => swept.push(...e),
    });
    await again.start();
    expect(swept.map((e) => e.conn)).to.deep.equal(['fixed-c-1']);
    expect(await raw.hlen(subjects.presenceKey('app1', 'dee'))).to.equal(0);
  });

  it('an edge whose id was taken over while it stalled stops at its next renewal, giving up nothing', async function () {
    const stalledRedis = client('fixed-e');
    const taken: EdgeIdTakenError[] = [];
    let renewed = 0;
    const stalled = registry(stalledRedis, 'fixed-e', {
      leaseSeconds: 30,
      onTakenOver: (err) => taken.push(err),
      onRenewed: () => renewed++,
    });
    await stalled.start();
    await stalled.connected('app1', 'fay', 'fixed-e-old-1', 'phone');
    // It stalls past its lease (SIGSTOP): a sweeper holds the lease for it (its connection is
    // open), and a process started under the same id takes the id over, sweeping its entries.
    const lease = subjects.edgeAliveKey('fixed-e');
    await raw.set(lease, `stall:${Date.now()}`, 'EX', 30);
    const swept: SweptEntry[] = [];
    const next = registry(client('fixed-e'), 'fixed-e', { leaseSeconds: 30, onSwept: (e) => swept.push(...e) });
    await next.start();
    expect(swept.map((e) => e.conn)).to.deep.equal(['fixed-e-old-1']);
    await next.connected('app1', 'fay', 'fixed-e-new-1', 'tablet');
    const held = await raw.get(lease);

    // The stalled process goes on: its renewal finds the lease another's, and it stops.
    stalledRedis.emit('ready');
    await until(() => taken.length === 1);
    expect(taken).to.have.length(1);
    expect(taken[0]).to.be.instanceOf(EdgeIdTakenError);
    expect(taken[0]?.code).to.equal('edge_id_taken');
    expect(taken[0]?.message).to.contain('"fixed-e"');
    expect(renewed, 'no renewal went through').to.equal(0);
    await stalled.stop();
    // The new process's lease and entries are untouched, and it renews as before.
    expect(await raw.get(lease)).to.equal(held);
    expect((await next.lookup('app1', 'fay')).map((e) => e.conn)).to.deep.equal(['fixed-e-new-1']);
    expect(
      await raw.hexists(
        subjects.edgeConnectionsKey('fixed-e'),
        `fixed-e-new-1\n${subjects.presenceKey('app1', 'fay')}`,
      ),
    ).to.equal(1);
  });

  /** Waits until `cond` holds, polling. */
  async function until(cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!(await cond()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }

  it('a lapsed lease nobody swept is taken again silently; one that was swept is reported', async function () {
    // An unnamed client: a sweeper takes the edge for dead once its lease lapses (no stall hold).
    const redis = client();
    let lost = 0;
    let renewed = 0;
    const edge = registry(redis, 'lapse-d', {
      leaseSeconds: 30,
      onLeaseLost: () => lost++,
      onRenewed: () => renewed++,
    });
    await edge.start();
    await edge.connected('app1', 'eve', 'lapse-d-1', 'phone');
    const lease = subjects.edgeAliveKey('lapse-d');

    // Lapsed (as when the process stalled and every sweeper with it), nobody swept: renewal (a
    // reconnect renews at once) takes the lease again and keeps the entries, nothing to record.
    await raw.del(lease);
    redis.emit('ready');
    await until(() => renewed === 1);
    expect(renewed).to.equal(1);
    expect(lost, 'told to record every connection again').to.equal(0);
    expect(await raw.get(lease)).to.match(/^\d+ [0-9a-f]+$/);

    // Lapsed and swept by another: the renewal reports it, once.
    await raw.del(lease);
    const swept: SweptEntry[] = [];
    const sweeper = registry(client(), 'sweeper-d', { onSwept: (e) => swept.push(...e) });
    expect(await sweeper.sweep()).to.equal(1);
    expect(swept.map((e) => [e.user, e.last])).to.deep.equal([['eve', true]]);
    redis.emit('ready');
    await until(() => renewed === 2);
    expect(lost).to.equal(1);
    redis.emit('ready');
    await until(() => renewed === 3);
    expect(lost, 'the sweep reported once').to.equal(1);
  });
});
