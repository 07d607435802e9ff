import { jetstreamManager } from '@nats-io/jetstream';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { encodePresence } from '@push/presence';
import type { NatsConnection } from '@push/nats';
import { Subjects } from '@push/protocol';
import { EdgeProcess } from '../helpers/edge-process.js';
import { Stack, type TestApp } from '../helpers/stack.js';
import { readStream, waitStream, type StoredRecord } from '../helpers/streams.js';
import { TestClient } from '../helpers/ws-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Presence lease of this suite, seconds: a killed edge's users go offline within 4/3 of it. */
const LEASE = 3;

describe('events: online/offline, connections, kicks, deliveries (issue 10)', function () {
  let stack: Stack;
  let nc: NatsConnection;
  let subjects: Subjects;
  const clients: TestClient[] = [];
  const killable = new EdgeProcess();

  before(async function () {
    stack = await Stack.start({ PUSH_PRESENCE_LEASE: String(LEASE) });
    await stack.startEdge(); // two edges: online/offline are across every edge
    subjects = new Subjects(stack.prefix);
    nc = await stack.connectNats('test-events');
  });
  after(async function () {
    for (const c of clients) c.terminate();
    await killable.kill();
    await nc?.close();
    await stack?.close();
  });

  async function connect(a: TestApp, user: string, device = 'default', edge = stack.edges[0]): Promise<TestClient> {
    const c = await a.connect(user, device, '', edge);
    clients.push(c);
    return c;
  }

  const events = (a: TestApp) => readStream(nc, subjects.eventsStream(a.id));
  const ofType = (records: StoredRecord[], type: string, user?: string) =>
    records.filter((r) => r.body['type'] === type && (user === undefined || r.body['user'] === user));
  const waitEvents = (a: TestApp, done: (r: StoredRecord[]) => boolean, timeoutMs = 5000) =>
    waitStream(nc, subjects.eventsStream(a.id), done, timeoutMs);

  it('emits user_online for the first connection across edges and user_offline when the last one closes', async function () {
    const app = await stack.createApp();
    const phone = await connect(app, 'ann', 'phone', stack.edges[0]);
    await waitEvents(app, (r) => ofType(r, 'user_online', 'ann').length === 1);
    const laptop = await connect(app, 'ann', 'laptop', stack.edges[1]);
    await waitEvents(app, (r) => ofType(r, 'conn_open', 'ann').length === 2);
    phone.close();
    await waitEvents(app, (r) => ofType(r, 'conn_close', 'ann').length === 1);
    await sleep(200); // an offline event would have been emitted with the close
    let all = await events(app);
    expect(ofType(all, 'user_online', 'ann')).to.have.length(1);
    expect(ofType(all, 'user_offline', 'ann')).to.have.length(0);
    laptop.close();
    all = await waitEvents(app, (r) => ofType(r, 'user_offline', 'ann').length === 1);

    const online = ofType(all, 'user_online', 'ann')[0]?.body;
    expect(online).to.include({ app: app.id, device: 'phone', edge: stack.edges[0]?.edgeId });
    const offline = ofType(all, 'user_offline', 'ann')[0]?.body;
    expect(offline).to.include({ app: app.id, device: 'laptop', edge: stack.edges[1]?.edgeId, reason: 'client' });
    const close = ofType(all, 'conn_close', 'ann')[0]?.body;
    expect(close).to.include({ device: 'phone', reason: 'client', conn: phone.hello['conn'] });
    expect(close?.['code']).to.be.oneOf([1000, 1005]); // a close frame with no code is 1005
    for (const r of all) {
      // Every event: an id (also its Nats-Msg-Id), a time, the app, on the subject of its type.
      expect(r.msgId).to.equal(r.body['id']);
      expect(String(r.body['id'])).to.match(/^evt_/);
      expect(r.body['time']).to.be.a('number');
      expect(r.subject).to.equal(`${stack.prefix}.evt.${app.id}.${String(r.body['type'])}`);
    }
    expect(new Set(all.map((r) => r.body['id'])).size).to.equal(all.length);
  });

  it('pairs user_online and user_offline for connections closed as they open, also racing one that stays on the other edge', async function () {
    const app = await stack.createApp();
    const transitions = (records: StoredRecord[], user: string) =>
      records
        .filter(
          (r) => r.body['user'] === user && (r.body['type'] === 'user_online' || r.body['type'] === 'user_offline'),
        )
        .map((r) => String(r.body['type']));
    const openAndClose = async (user: string, device: string, edge = stack.edges[0]): Promise<void> => {
      const ws = new WebSocket(`${stack.wsUrl(edge)}?token=${encodeURIComponent(await app.token(user, device))}`);
      ws.on('error', () => undefined);
      await new Promise<void>((resolve) => {
        ws.on('open', () => ws.close());
        ws.on('close', () => resolve());
      });
    };
    // The app held on both edges (a connection that never greeted is no connection to report).
    await connect(app, 'holder', 'h', stack.edges[0]);
    await connect(app, 'holder', 'h', stack.edges[1]);
    // Closed as soon as the upgrade completes (its hello went out), one after another: online
    // then offline each time.
    for (let i = 0; i < 5; i++) await openAndClose('brief', 'p');
    // One closed at once on edge 0 while another opens on edge 1 and stays: online at the end.
    const stayers: string[] = [];
    for (let i = 0; i < 5; i++) {
      const user = `stays-${i}`;
      stayers.push(user);
      await Promise.all([openAndClose(user, 'a'), connect(app, user, 'b', stack.edges[1])]);
    }
    await sleep(1000);
    const records = await events(app);
    expect(transitions(records, 'brief')).to.deep.equal(Array(5).fill(['user_online', 'user_offline']).flat());
    expect((await app.user('brief')).body['online']).to.equal(false);
    for (const user of stayers) {
      expect((await app.user(user)).body['online'], user).to.equal(true);
      expect(transitions(records, user).at(-1), `${user}: ${JSON.stringify(transitions(records, user))}`).to.equal(
        'user_online',
      );
    }
  });

  it('emits kicked and a conn_close with reason kicked', async function () {
    const app = await stack.createApp();
    const c = await connect(app, 'ben', 'tablet');
    await waitEvents(app, (r) => ofType(r, 'user_online', 'ben').length === 1);
    const r = await stack.http('POST', `/v1/apps/${app.id}/users/ben/kick`, app.apiKey, { reason: 'banned' });
    expect(r.status).to.be.below(300);
    await c.waitClosed();
    const all = await waitEvents(app, (rs) => ofType(rs, 'user_offline', 'ben').length === 1);
    expect(ofType(all, 'kicked', 'ben')[0]?.body).to.include({ device: 'tablet', reason: 'banned' });
    expect(ofType(all, 'conn_close', 'ben')[0]?.body).to.include({ code: 4004, reason: 'kicked' });
    expect(ofType(all, 'user_offline', 'ben')[0]?.body).to.include({ reason: 'kicked' });
  });

  it('emits delivered and acked per message only for an app that opted in (deliveryEvents)', async function () {
    const on = await stack.createApp({ deliveryEvents: true });
    const off = await stack.createApp();
    for (const a of [on, off]) {
      const c = await connect(a, 'cleo');
      const seq = await a.pushOk('cleo', { n: 1 });
      await c.waitForMessages(1);
      c.ack([seq]);
      await a.waitPending('cleo', 0);
    }
    const all = await waitEvents(on, (r) => ofType(r, 'acked', 'cleo').length === 1);
    expect(ofType(all, 'delivered', 'cleo')).to.have.length(1);
    expect(ofType(all, 'delivered', 'cleo')[0]?.body['seq']).to.equal(ofType(all, 'acked', 'cleo')[0]?.body['seq']);
    await sleep(300);
    const quiet = await events(off);
    expect(ofType(quiet, 'delivered')).to.have.length(0);
    expect(ofType(quiet, 'acked')).to.have.length(0);
    expect(ofType(quiet, 'user_online', 'cleo')).to.have.length(1); // the app still gets the others
  });

  it('emits the offline events of the users of an edge killed with SIGKILL within 4/3 of the lease', async function () {
    const app = await stack.createApp();
    await killable.start({
      PUSH_PREFIX: stack.prefix,
      PUSH_NATS_URL: stack.config().natsUrl,
      PUSH_REDIS_URL: stack.config().redisUrl,
      PUSH_PRESENCE_LEASE: String(LEASE),
    });
    const doomed = await TestClient.connect(killable.wsUrl, await app.token('dora', 'phone'));
    clients.push(doomed);
    // Another user is also on a surviving edge: only the killed edge's connection goes offline for them.
    const both = await TestClient.connect(killable.wsUrl, await app.token('eli', 'phone'));
    clients.push(both);
    await connect(app, 'eli', 'laptop');
    await waitEvents(app, (r) => ofType(r, 'conn_open').length === 3 && ofType(r, 'user_online').length === 2);
    await sleep(200); // presence written
    await killable.kill();
    const killedAt = Date.now();
    const bound = (LEASE * 4000) / 3 + 1500;
    const all = await waitEvents(app, (r) => ofType(r, 'user_offline', 'dora').length === 1, bound);
    const offline = ofType(all, 'user_offline', 'dora')[0]?.body;
    expect(offline).to.include({ reason: 'edge_lost', device: 'phone' });
    expect(Number(offline?.['time']) - killedAt).to.be.below(bound);
    const closes = await waitEvents(app, (r) => ofType(r, 'conn_close', 'eli').length === 1, 2000);
    expect(ofType(closes, 'conn_close', 'eli')[0]?.body).to.include({ reason: 'edge_lost', code: 0 });
    await sleep(500);
    // Swept once, by one sweeper; eli still has the laptop.
    const after = await events(app);
    expect(ofType(after, 'user_offline', 'dora')).to.have.length(1);
    expect(ofType(after, 'user_offline', 'eli')).to.have.length(0);
  });

  it('stores the offline events of every connection of a dead edge that held thousands, none dropped', async function () {
    this.timeout(60_000);
    const app = await stack.createApp();
    // A dead edge's presence as it left it (no lease): 6,000 connections of 6,000 users, so its
    // sweep emits 12,000 events at once, more than a publisher's queue used to hold (10,000).
    const n = 6000;
    const dead = `dead-${process.pid}`;
    const redis = new Redis(stack.config().redisUrl);
    try {
      const m = redis.multi();
      for (let i = 0; i < n; i++) {
        const key = subjects.presenceKey(app.id, `u${i}`);
        m.hset(key, `${dead}-${i}`, encodePresence(dead, 'phone', Date.now()));
        m.hset(subjects.edgeConnectionsKey(dead), `${dead}-${i}`, key);
      }
      m.sadd(subjects.edgesKey, dead);
      await m.exec();
    } finally {
      redis.disconnect();
    }
    const jsm = await jetstreamManager(nc);
    const count = async (type: string): Promise<number> => {
      const subject = `${stack.prefix}.evt.${app.id}.${type}`;
      const info = await jsm.streams.info(subjects.eventsStream(app.id), { subjects_filter: subject });
      return info.state.subjects?.[subject] ?? 0;
    };
    // Swept within 4/3 of the lease, then stored at the store's pace.
    const deadline = Date.now() + 40_000;
    while (((await count('user_offline')) < n || (await count('conn_close')) < n) && Date.now() < deadline)
      await sleep(250);
    expect(await count('user_offline')).to.equal(n);
    expect(await count('conn_close')).to.equal(n);
  });

  it('keeps delivering when events cannot be stored, counting them as failed', async function () {
    const app = await stack.createApp();
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(subjects.eventsStream(app.id));
    const edge = stack.edges[0];
    if (edge === undefined) throw new Error('no edge');
    const failed = async () =>
      (await edge.registry.getSingleMetric('push_edge_events_total')?.get())?.values.find(
        (v) => v.labels['outcome'] === 'failed',
      )?.value ?? 0;
    const before = await failed();
    const c = await connect(app, 'fia', 'phone', edge);
    const seq = await app.pushOk('fia', { hello: 1 });
    const [m] = await c.waitForMessages(1);
    expect(m?.seq).to.equal(seq);
    // conn_open and user_online were each tried 3 times (about a second of backoff), then counted.
    const deadline = Date.now() + 5000;
    while ((await failed()) < before + 2 && Date.now() < deadline) await sleep(50);
    expect(await failed()).to.be.at.least(before + 2);
  });
});
