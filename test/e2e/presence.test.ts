import { expect } from 'chai';
import { Redis } from 'ioredis';
import { Subjects } from '@push/protocol';
import { EdgeProcess } from '../helpers/edge-process.js';
import { Stack, type TestApp } from '../helpers/stack.js';
import { TestClient } from '../helpers/ws-client.js';
import { readStream } from '../helpers/streams.js';
import type { NatsConnection } from '@push/nats';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const REDIS_URL = process.env['PUSH_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
/** Short lease so the test waits seconds, not the default 20. */
const LEASE = 2;

describe('presence', function () {
  this.timeout(30_000);
  let stack: Stack;
  let app: TestApp;
  let redis: Redis;
  const clients: TestClient[] = [];
  const edgeA = new EdgeProcess();
  const edgeB = new EdgeProcess();
  let nc: NatsConnection;
  let subjects: Subjects;

  before(async function () {
    stack = await Stack.start({ PUSH_PRESENCE_LEASE: String(LEASE) });
    app = await stack.createApp();
    redis = new Redis(REDIS_URL);
    nc = await stack.connectNats('presence-test');
    subjects = new Subjects(stack.prefix);
  });
  after(async function () {
    await nc?.close();
    for (const c of clients) c.terminate();
    await edgeA.kill();
    await edgeB.kill();
    redis?.disconnect();
    await stack?.close();
  });

  it('a device id cannot forge other presence fields (issue 7, defect 3)', async function () {
    const device = 'tablet|1700000000000|x';
    const before = Date.now();
    const c = await app.connect('mallory', device);
    clients.push(c);
    let connections: Array<{ device: string; since: number; edge: string }> = [];
    const deadline = Date.now() + 5000;
    while (connections.length === 0 && Date.now() < deadline) {
      connections = (await app.user('mallory')).body['connections'] as typeof connections;
      if (connections.length === 0) await sleep(20);
    }
    expect(connections).to.have.length(1);
    expect(connections[0]?.device).to.equal(device);
    expect(connections[0]?.since).to.be.within(before - 1000, Date.now());
    c.close();
  });

  it('removes the entries of an edge killed with SIGKILL within 4/3 of the lease, without a status query', async function () {
    await edgeA.start({
      PUSH_PREFIX: stack.prefix,
      PUSH_NATS_URL: process.env['PUSH_NATS_URL'] ?? 'nats://127.0.0.1:4222',
      PUSH_REDIS_URL: REDIS_URL,
      PUSH_PRESENCE_LEASE: String(LEASE),
    });
    const c = await TestClient.connect(edgeA.wsUrl, await app.token('kim', 'phone'));
    clients.push(c);
    const key = new Subjects(stack.prefix).presenceKey(app.id, 'kim');
    let deadline = Date.now() + 5000;
    while ((await redis.hlen(key)) === 0 && Date.now() < deadline) await sleep(20);
    expect(await redis.hlen(key)).to.equal(1);

    await edgeA.kill();
    const killedAt = Date.now();
    deadline = killedAt + (LEASE * 4000) / 3 + 1000;
    while ((await redis.hlen(key)) > 0 && Date.now() < deadline) await sleep(50);
    expect(await redis.hlen(key), `entries left ${Date.now() - killedAt} ms after the kill`).to.equal(0);
  });

  it('an edge restarted under its fixed id reports what the killed one left at once; a second under a running id is refused', async function () {
    // A lease long enough that the killed process's would still be alive throughout.
    const env = {
      PUSH_PREFIX: stack.prefix,
      PUSH_NATS_URL: process.env['PUSH_NATS_URL'] ?? 'nats://127.0.0.1:4222',
      PUSH_REDIS_URL: REDIS_URL,
      PUSH_PRESENCE_LEASE: '12',
      PUSH_EDGE_ID: `fixed-${stack.prefix}`,
    };
    await edgeA.start(env);
    const first = await TestClient.connect(edgeA.wsUrl, await app.token('kai', 'phone'));
    clients.push(first);
    const key = new Subjects(stack.prefix).presenceKey(app.id, 'kai');
    let deadline = Date.now() + 5000;
    while ((await redis.hlen(key)) === 0 && Date.now() < deadline) await sleep(20);
    await edgeA.kill();
    expect((await app.user('kai')).body['online'], 'the killed edge lease is alive').to.equal(true);

    await edgeA.start(env);
    deadline = Date.now() + 3000;
    while ((await app.user('kai')).body['online'] === true && Date.now() < deadline) await sleep(50);
    expect((await app.user('kai')).body['online'], 'offline once the edge came back under its id').to.equal(false);
    expect(await redis.hlen(key)).to.equal(0);

    const refused = await edgeB.start(env).then(
      () => '',
      (err: Error) => err.message,
    );
    expect(refused).to.contain('is in use').and.contain('PUSH_EDGE_ID');
    await edgeB.kill();
    // The running edge kept its id: a new connection to it is recorded and online, under a
    // connection id the killed process never gave (its `conn_close` was already reported).
    const again = await TestClient.connect(edgeA.wsUrl, await app.token('kai', 'phone'));
    clients.push(again);
    expect(again.hello['conn'])
      .to.be.a('string')
      .and.match(new RegExp(`^fixed-${stack.prefix}-`));
    expect(again.hello['conn']).to.not.equal(first.hello['conn']);
    deadline = Date.now() + 3000;
    while ((await app.user('kai')).body['online'] !== true && Date.now() < deadline) await sleep(50);
    expect((await app.user('kai')).body['online']).to.equal(true);
    await edgeA.kill();
  });

  it('an edge stalled past its lease whose fixed id another process took over stops when it goes on', async function () {
    const env = {
      PUSH_PREFIX: stack.prefix,
      PUSH_NATS_URL: process.env['PUSH_NATS_URL'] ?? 'nats://127.0.0.1:4222',
      PUSH_REDIS_URL: REDIS_URL,
      PUSH_PRESENCE_LEASE: String(LEASE),
      PUSH_EDGE_ID: `stalled-${stack.prefix}`,
    };
    await edgeA.start(env);
    const old = await TestClient.connect(edgeA.wsUrl, await app.token('noa', 'phone'));
    clients.push(old);
    let deadline = Date.now() + 5000;
    while ((await app.user('noa')).body['online'] !== true && Date.now() < deadline) await sleep(50);
    edgeA.pause();
    // Started under the same id while that one is stopped: it takes the id over once the lease
    // lapses (its process still holds its Redis connection, so it cannot tell it died), sweeping
    // the stopped one's connections: the user goes offline.
    await edgeB.start(env);
    expect((await app.user('noa')).body['online'], 'swept by the takeover').to.equal(false);
    const fresh = await TestClient.connect(edgeB.wsUrl, await app.token('noa', 'tablet'));
    clients.push(fresh);
    deadline = Date.now() + 5000;
    while ((await app.user('noa')).body['online'] !== true && Date.now() < deadline) await sleep(50);

    // The stopped one goes on: its next renewal finds the lease another process's, and it stops
    // (exit 1, edge_id_taken), closing its client's socket, and giving up nothing of the new one's.
    edgeA.resume();
    deadline = Date.now() + 4 * LEASE * 1000;
    while (edgeA.exitCode === null && Date.now() < deadline) await sleep(50);
    expect(edgeA.exitCode, edgeA.output).to.equal(1);
    expect(edgeA.output).to.contain('edge_id_taken');
    expect(await old.waitClosed(5000)).to.be.a('number');
    await sleep(LEASE * 1000); // a sweep period and more: nothing of the new process's goes
    const { body } = await app.user('noa');
    expect(body['online']).to.equal(true);
    expect((body['connections'] as Array<{ conn: string }>).map((c) => c.conn)).to.deep.equal([fresh.hello['conn']]);
    await edgeB.kill();
  });

  /** An edge process of its own, a user connected to it, and that user's presence key. */
  async function connectedEdge(user: string): Promise<{ key: string; lease: string }> {
    await edgeB.start({
      PUSH_PREFIX: stack.prefix,
      PUSH_NATS_URL: process.env['PUSH_NATS_URL'] ?? 'nats://127.0.0.1:4222',
      PUSH_REDIS_URL: REDIS_URL,
      PUSH_PRESENCE_LEASE: String(LEASE),
    });
    clients.push(await TestClient.connect(edgeB.wsUrl, await app.token(user, 'phone', 3600, ['stall-room'])));
    const subjects = new Subjects(stack.prefix);
    const key = subjects.presenceKey(app.id, user);
    const deadline = Date.now() + 5000;
    while ((await redis.hlen(key)) === 0 && Date.now() < deadline) await sleep(20);
    expect(await redis.hlen(key)).to.equal(1);
    const [edge] = JSON.parse(Object.values(await redis.hgetall(key))[0] as string) as [string];
    return { key, lease: subjects.edgeAliveKey(edge) };
  }

  it('holds the lease of an edge whose loop stalls past it (SIGSTOP): nothing swept, nothing recorded again, its users online throughout', async function () {
    const { key, lease } = await connectedEdge('lou');
    edgeB.pause();
    // Three leases stalled: past its lease, within the hold (four leases). Also between the
    // lease's lapse and the sweep that holds it, the user reads online.
    let held = false;
    const until = Date.now() + 3 * LEASE * 1000;
    while (Date.now() < until) {
      expect(await redis.hlen(key), 'the stalled edge was swept').to.equal(1);
      const seen = ((await redis.get(lease)) ?? 'none').slice(0, 6);
      held ||= seen === 'stall:';
      expect((await app.user('lou')).body['online'], `read offline (lease: ${seen})`).to.equal(true);
      await sleep(50);
    }
    expect(held, 'a sweeper held the lapsed lease').to.equal(true);
    edgeB.resume();
    // Back: it renews the held lease as its own (no lapse seen, so no second recording).
    const deadline = Date.now() + LEASE * 1000;
    while (((await redis.get(lease)) ?? 'stall:').startsWith('stall:') && Date.now() < deadline) await sleep(50);
    expect(await redis.get(lease)).to.match(/^\d+ [0-9a-f]+$/);
    expect(await redis.hlen(key)).to.equal(1);
    expect((await app.user('lou')).body['online']).to.equal(true);
    await edgeB.kill();
  });

  it('sweeps an edge stalled past the hold, and it records its connections again when it goes on, reporting what the sweep undid', async function () {
    const { key } = await connectedEdge('lia');
    // A topic only this connection holds: the sweep reports it unsubscribed and vacated.
    const [lia] = clients.slice(-1) as [TestClient];
    // Another connection, closed by its client during the stall, after the sweep reported it closed.
    const leo = await TestClient.connect(edgeB.wsUrl, await app.token('leo', 'phone'));
    clients.push(leo);
    const leoKey = subjects.presenceKey(app.id, 'leo');
    for (const until = Date.now() + 5000; (await redis.hlen(leoKey)) === 0 && Date.now() < until;) await sleep(20);
    lia.send({ t: 'sub', topic: 'stall-room' });
    await lia.waitFor((f) => f.t === 'subscribed' && f['topic'] === 'stall-room');
    const topicEvents = async () =>
      (await readStream(nc, subjects.eventsStream(app.id)))
        .filter((r) => r.body['topic'] === 'stall-room')
        .map((r) => String(r.body['type']));
    edgeB.pause();
    const pausedAt = Date.now();
    // The hold: four leases from when a sweeper first saw the lease lapse (one lease in), plus a sweep period.
    const deadline = pausedAt + (5 * LEASE + LEASE / 3) * 1000 + 1500;
    while ((await redis.hlen(key)) > 0 && Date.now() < deadline) await sleep(50);
    const sweptAfter = Date.now() - pausedAt;
    expect(await redis.hlen(key), `entries left ${sweptAfter} ms into the stall`).to.equal(0);
    expect(sweptAfter, 'swept before the hold ran out').to.be.greaterThan(4 * LEASE * 1000);
    leo.terminate();
    await sleep(100);
    edgeB.resume();
    const back = Date.now() + 3 * LEASE * 1000;
    while ((await redis.hlen(key)) === 0 && Date.now() < back) await sleep(50);
    expect(await redis.hlen(key), 'recorded again once it went on').to.equal(1);
    const want = ['topic_sub', 'channel_occupied', 'topic_unsub', 'channel_vacated', 'topic_sub', 'channel_occupied'];
    const until = Date.now() + 5000;
    while ((await topicEvents()).length < want.length && Date.now() < until) await sleep(50);
    expect(await topicEvents(), 'the events a consumer reads end with the topic occupied').to.deep.equal(want);
    const connEvents = (await readStream(nc, subjects.eventsStream(app.id)))
      .filter((r) => r.body['user'] === 'lia' && String(r.body['type']).startsWith('conn_'))
      .map((r) => [r.body['type'], r.body['reason']].filter((x) => typeof x === 'string').join(':'));
    expect(connEvents, 'and the connection open').to.deep.equal(['conn_open', 'conn_close:edge_lost', 'conn_open']);
    const leoEvents = async () =>
      (await readStream(nc, subjects.eventsStream(app.id)))
        .filter((r) => r.body['user'] === 'leo')
        .map((r) => [r.body['type'], r.body['reason']].filter((x) => typeof x === 'string').join(':'));
    await sleep(500);
    expect(await leoEvents(), 'the one that closed during the stall: closed once').to.deep.equal([
      'conn_open',
      'user_online',
      'conn_close:edge_lost',
      'user_offline:edge_lost',
    ]);
    await edgeB.kill();
  });

  it("an edge killed with a connection holding two apps' sessions: each app gets its conn_close, user_offline and topic_unsub", async function () {
    const other = await stack.createApp();
    await edgeA.start({
      PUSH_PREFIX: stack.prefix,
      PUSH_NATS_URL: process.env['PUSH_NATS_URL'] ?? 'nats://127.0.0.1:4222',
      PUSH_REDIS_URL: REDIS_URL,
      PUSH_PRESENCE_LEASE: String(LEASE),
    });
    const c = await TestClient.connect(edgeA.wsUrl, await app.token('mia', 'phone', 3600, ['both']));
    clients.push(c);
    c.send({ t: 'attach', token: await other.token('max', 'phone', 3600, ['both']) });
    await c.waitFor((f) => f.t === 'attached');
    c.send({ t: 'sub', topic: 'both' });
    c.send({ t: 'sub', topic: 'both', app: other.id });
    await c.waitFor((f) => f.t === 'subscribed' && f['app'] === other.id);
    await c.waitFor((f) => f.t === 'subscribed' && f['app'] === app.id);
    await sleep(200);
    await edgeA.kill();
    const typesOf = async (a: TestApp, user: string) =>
      (await readStream(nc, subjects.eventsStream(a.id)))
        .filter((r) => r.body['user'] === user)
        .map((r) => [r.body['type'], r.body['reason']].filter((x) => typeof x === 'string').join(':'));
    const want = [
      'conn_open',
      'user_online',
      'topic_sub',
      'conn_close:edge_lost',
      'user_offline:edge_lost',
      'topic_unsub',
    ];
    const deadline = Date.now() + (LEASE * 4000) / 3 + 3000;
    for (const [a, user] of [
      [app, 'mia'],
      [other, 'max'],
    ] as const) {
      while ((await typesOf(a, user)).length < want.length && Date.now() < deadline) await sleep(100);
      expect([...(await typesOf(a, user))].sort(), `${a.id}'s events of ${user}`).to.deep.equal([...want].sort());
    }
  });
});
