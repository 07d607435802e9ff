import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { NatsConnection } from '@push/nats';
import { Subjects } from '@push/protocol';
import { PrivateRedisServer, hasRedisServer } from '../helpers/redis-server.js';
import { Stack, type TestApp } from '../helpers/stack.js';
import { readStream, waitStream, type StoredRecord } from '../helpers/streams.js';
import type { TestClient } from '../helpers/ws-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Presence lease of this suite, seconds: what comes back after Redis lost its data, within it. */
const LEASE = 2;
/** Slack on top of the lease for the Redis client's own reconnect delay, ms. */
const RECONNECT_SLACK_MS = 1000;

/**
 * Issue 15, Redis loss: a private redis-server without persistence is killed (SIGKILL) and
 * started again empty on the same port while clients stay connected to two real edges.
 */
describe('Redis restarted empty (issue 15)', function () {
  this.timeout(60_000);
  const redisServer = new PrivateRedisServer();
  let stack: Stack;
  let app: TestApp;
  let nc: NatsConnection;
  let redis: Redis;
  const clients: TestClient[] = [];
  const keep = (c: TestClient) => {
    clients.push(c);
    return c;
  };

  before(async function () {
    if (!hasRedisServer()) this.skip(); // the shared Redis must not be killed
    await redisServer.start();
    stack = await Stack.start({ PUSH_REDIS_URL: redisServer.url, PUSH_PRESENCE_LEASE: String(LEASE) });
    await stack.startEdge(); // two edges: presence and events are across every edge
    app = await stack.createApp();
    nc = await stack.connectNats('test-redis-loss');
    redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
    redis.on('error', () => undefined); // down on purpose during the test
  });
  after(async function () {
    for (const c of clients) c.terminate();
    redis?.disconnect();
    await nc?.close();
    await stack?.close();
    await redisServer.stop();
  });

  const events = () => readStream(nc, new Subjects(stack.prefix).eventsStream(app.id));
  const ofType = (records: StoredRecord[], type: string, user: string) =>
    records.filter((r) => r.body['type'] === type && r.body['user'] === user);
  const waitEvents = (done: (r: StoredRecord[]) => boolean, timeoutMs = 5000) =>
    waitStream(nc, new Subjects(stack.prefix).eventsStream(app.id), done, timeoutMs);
  const devices = async (user: string): Promise<string[]> => {
    const r = await app.user(user);
    const conns = (r.body['connections'] ?? []) as Array<{ device: string }>;
    return conns.map((c) => c.device).sort();
  };
  const bind = (user: string, topic: string) =>
    stack.http('PUT', `/v1/apps/${app.id}/users/${user}/topics/${topic}`, app.apiKey);

  it('brings presence and bindings back within one lease, with the offline of who left meanwhile and no spurious events', async function () {
    expect((await bind('ann', 'news')).status).to.equal(200);
    const ann = keep(await app.connect('ann', 'phone', '', stack.edges[0]));
    keep(await app.connect('bob', 'phone', '', stack.edges[1]));
    const cid = keep(await app.connect('cid', 'phone', '', stack.edges[0]));
    await waitEvents((r) => ['ann', 'bob', 'cid'].every((u) => ofType(r, 'user_online', u).length === 1));
    await ann.waitFor((f) => f.t === 'subscribed' && f['topic'] === 'news');

    await redisServer.kill();
    cid.close(); // leaves while Redis is down
    await waitEvents((r) => ofType(r, 'conn_close', 'cid').length === 1);
    // Comes while Redis is down: its presence write fails and is tried again.
    keep(await app.connect('dan', 'phone', '', stack.edges[1]));
    await sleep(300); // the edges' Redis commands fail meanwhile
    await redisServer.start(); // empty: no persistence
    const restartedAt = Date.now();
    // Comes right after, possibly before the bindings mirror is whole again.
    const tablet = keep(await app.connect('ann', 'tablet', '', stack.edges[1]));

    const bound = restartedAt + LEASE * 1000 + RECONNECT_SLACK_MS;
    const settled = async (): Promise<boolean> => {
      const [a, b, c, d] = await Promise.all(['ann', 'bob', 'cid', 'dan'].map((u) => devices(u)));
      const all = await events();
      return (
        a?.join() === 'phone,tablet' &&
        b?.length === 1 &&
        c?.length === 0 &&
        d?.length === 1 &&
        ofType(all, 'user_offline', 'cid').length === 1 &&
        ofType(all, 'user_online', 'dan').length === 1
      );
    };
    while (!(await settled()) && Date.now() < bound) await sleep(50);
    const took = Date.now() - restartedAt;
    expect(await devices('ann'), 'ann').to.deep.equal(['phone', 'tablet']);
    expect(await devices('bob'), 'bob').to.have.length(1);
    expect(await devices('dan'), 'dan (connected while Redis was down)').to.have.length(1);
    expect(await devices('cid'), 'cid (left while Redis was down)').to.deep.equal([]);

    const all = await events();
    const offline = ofType(all, 'user_offline', 'cid');
    expect(offline, 'the offline of cid').to.have.length(1);
    expect(offline[0]?.body).to.include({ device: 'phone', reason: 'client', edge: stack.edges[0]?.edgeId });
    expect(ofType(all, 'user_online', 'dan'), 'the online of dan').to.have.length(1);
    expect(took, `settled ${took} ms after the restart`).to.be.at.most(bound - restartedAt);
    // Those who stayed connected saw no offline/online pair.
    for (const u of ['ann', 'bob']) {
      expect(ofType(all, 'user_offline', u), `offline of ${u}`).to.have.length(0);
      expect(ofType(all, 'user_online', u), `online of ${u}`).to.have.length(1);
    }

    // Topic occupancy is recorded again (ann's phone; the tablet once it subscribed).
    await tablet.waitFor((f) => f.t === 'subscribed' && f['topic'] === 'news', LEASE * 1000 + 3000);
    const occupancy = await stack.http('GET', `/v1/apps/${app.id}/topics/news`, app.apiKey);
    expect(occupancy.body).to.include({ connections: 2, users: 1 });

    // The mirror is back from Postgres, and the binding delivers to both of ann's connections.
    expect(await redis.smembers(new Subjects(stack.prefix).bindingsKey(app.id, 'ann'))).to.deep.equal(['news']);
    const seq = await app.publishTopicOk('news', { n: 1 });
    for (const c of [ann, tablet]) {
      await c.waitFor((f) => f.t === 'msg' && f['topic'] === 'news' && f['seq'] === seq);
    }
  });

  it('comes back within one lease from a FLUSHALL, which no reconnect reveals', async function () {
    app = await stack.createApp(); // events of this test only
    expect((await bind('fay', 'alerts')).status).to.equal(200);
    const fay = keep(await app.connect('fay', 'phone', '', stack.edges[1]));
    const gus = keep(await app.connect('gus', 'phone', '', stack.edges[0]));
    await waitEvents((r) => ['fay', 'gus'].every((u) => ofType(r, 'user_online', u).length === 1));
    await fay.waitFor((f) => f.t === 'subscribed' && f['topic'] === 'alerts');

    await redis.flushall();
    const flushedAt = Date.now();
    gus.close(); // leaves while Redis is empty
    const bound = flushedAt + LEASE * 1000 + 300; // the timers' own lateness
    const settled = async (): Promise<boolean> =>
      (await devices('fay')).length === 1 &&
      (await devices('gus')).length === 0 &&
      ofType(await events(), 'user_offline', 'gus').length === 1 &&
      (await redis.smembers(new Subjects(stack.prefix).bindingsKey(app.id, 'fay'))).length === 1;
    while (!(await settled()) && Date.now() < bound) await sleep(50);
    const took = Date.now() - flushedAt;
    expect(await devices('fay'), 'fay').to.deep.equal(['phone']);
    expect(await devices('gus'), 'gus (left after the flush)').to.deep.equal([]);
    const all = await events();
    expect(ofType(all, 'user_offline', 'gus'), 'the offline of gus').to.have.length(1);
    expect(ofType(all, 'user_offline', 'fay'), 'offline of fay').to.have.length(0);
    expect(ofType(all, 'user_online', 'fay'), 'online of fay').to.have.length(1);
    expect(await redis.smembers(new Subjects(stack.prefix).bindingsKey(app.id, 'fay'))).to.deep.equal(['alerts']);
    expect(took, `settled ${took} ms after the flush`).to.be.at.most(bound - flushedAt);
  });
});
