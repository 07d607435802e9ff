import { headers } from '@nats-io/nats-core';
import { expect } from 'chai';
import type { NatsConnection } from '@push/nats';
import { Subjects } from '@push/protocol';
import { EdgeProcess } from '../helpers/edge-process.js';
import { Stack, type TestApp } from '../helpers/stack.js';
import { readStream, waitStream, type StoredRecord } from '../helpers/streams.js';
import { TestClient, type Frame } from '../helpers/ws-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Presence lease of this suite, seconds: a killed edge's subscriptions go within 4/3 of it. */
const LEASE = 3;

interface PresenceView {
  topic: string;
  presence: boolean;
  connections: number;
  users: number;
  members?: Array<{ user: string; device: string; conn: string; since: number }>;
}

/** Sends `sub` and waits for its `subscribed` answer. */
async function sub(c: TestClient, topic: string): Promise<void> {
  const before = c.frames.length;
  c.send({ t: 'sub', topic });
  const f = await c.waitFor(
    (x) => c.frames.indexOf(x) >= before && (x.t === 'subscribed' || x.t === 'error') && x['topic'] === topic,
  );
  expect(f.t, JSON.stringify(f)).to.equal('subscribed');
}

const presenceFrames = (c: TestClient, t: 'join' | 'leave', user?: string): Frame[] =>
  c.frames.filter((f) => f.t === t && (user === undefined || f['user'] === user));

describe('topic presence and occupancy (issue 9 item 6)', function () {
  this.timeout(40_000);
  let stack: Stack;
  let nc: NatsConnection;
  let subjects: Subjects;
  let app: TestApp;
  const clients: TestClient[] = [];
  const killable = new EdgeProcess();

  before(async function () {
    stack = await Stack.start({ PUSH_PRESENCE_LEASE: String(LEASE) });
    await stack.startEdge(); // two edges: join/leave and counts are across edges
    subjects = new Subjects(stack.prefix);
    nc = await stack.connectNats('test-topic-presence');
    app = await stack.createApp({ presenceTopics: ['room.*'] });
  });
  after(async function () {
    for (const c of clients) c.terminate();
    await killable.kill();
    await nc?.close();
    await stack?.close();
  });

  async function connect(user: string, device: string, edge = 0): Promise<TestClient> {
    const c = await app.connectWithTopics(user, ['room.*', 'news'], stack.edges[edge], device);
    clients.push(c);
    return c;
  }

  async function view(topic: string, members = true): Promise<PresenceView> {
    const path = `/v1/apps/${app.id}/topics/${encodeURIComponent(topic)}${members ? '/presence' : ''}`;
    const r = await stack.http<PresenceView>('GET', path, app.apiKey);
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
    return r.body;
  }

  /** Polls the HTTP view until `done` holds (Redis is written just after `subscribed`). */
  async function waitView(topic: string, done: (v: PresenceView) => boolean, timeoutMs = 5000): Promise<PresenceView> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await view(topic);
      if (done(v)) return v;
      if (Date.now() > deadline) throw new Error(`presence of ${topic} never matched: ${JSON.stringify(v)}`);
      await sleep(25);
    }
  }

  const events = () => readStream(nc, subjects.eventsStream(app.id));
  const ofType = (records: StoredRecord[], type: string, topic: string, user?: string) =>
    records.filter(
      (r) => r.body['type'] === type && r.body['topic'] === topic && (user === undefined || r.body['user'] === user),
    );
  const waitEvents = (done: (r: StoredRecord[]) => boolean, timeoutMs = 5000) =>
    waitStream(nc, subjects.eventsStream(app.id), done, timeoutMs);

  it('sends join when a user first subscribes on another edge and leave when their last connection goes', async function () {
    const topic = 'room.one';
    const ann = await connect('ann', 'phone', 0);
    await sub(ann, topic);
    const bob = await connect('bob', 'phone', 1);
    await sub(bob, topic);
    const joined = await ann.waitFor((f) => f.t === 'join' && f['user'] === 'bob');
    expect(joined).to.include({ topic, user: 'bob', device: 'phone' });
    expect(joined['since']).to.be.a('number');

    // A second connection of bob is no new member: no second join; closing one of two is no leave.
    const bobLaptop = await connect('bob', 'laptop', 0);
    await sub(bobLaptop, topic);
    await waitView(topic, (v) => v.connections === 3);
    bobLaptop.close();
    await waitView(topic, (v) => v.connections === 2);
    await sleep(200);
    expect(presenceFrames(ann, 'join', 'bob')).to.have.length(1);
    expect(presenceFrames(ann, 'leave', 'bob')).to.have.length(0);

    // bob's last connection leaves with an unsub: ann (other edge) is told once.
    bob.send({ t: 'unsub', topic });
    const left = await ann.waitFor((f) => f.t === 'leave' && f['user'] === 'bob');
    expect(left).to.deep.include({ t: 'leave', topic, user: 'bob' });
    await sleep(200);
    expect(presenceFrames(ann, 'leave', 'bob')).to.have.length(1);
  });

  it('a subscriber never gets the join of its own first connection; others on its edge and elsewhere do (issue 14, defect 2)', async function () {
    const topic = 'room.self';
    // Alone on the topic: the join is announced (the presence_join event says so), and comes back
    // to this edge, which must not send it to its own joiner.
    const solo = await connect('solo', 'phone', 0);
    await sub(solo, topic);
    await waitEvents((r) => ofType(r, 'presence_join', topic, 'solo').length === 1);
    // Joins of others on the same edge and on the other edge reach solo, and the joiner of each
    // gets none of its own.
    const near = await connect('near', 'phone', 0);
    await sub(near, topic);
    const far = await connect('far', 'phone', 1);
    await sub(far, topic);
    await solo.waitFor((f) => f.t === 'join' && f['user'] === 'near');
    await solo.waitFor((f) => f.t === 'join' && f['user'] === 'far');
    await near.waitFor((f) => f.t === 'join' && f['user'] === 'far');
    await far.ping();
    await near.ping();
    await solo.ping();
    await sleep(200);
    expect(presenceFrames(solo, 'join', 'solo')).to.deep.equal([]);
    expect(presenceFrames(near, 'join', 'near')).to.deep.equal([]);
    expect(presenceFrames(far, 'join', 'far')).to.deep.equal([]);
    expect(presenceFrames(solo, 'join')).to.have.length(2);
  });

  it('a user leaving on one edge while coming back on another: every watcher ends with their join (frames in the order presence decided them)', async function () {
    const topic = 'room.move';
    const w0 = await connect('watch0', 'w', 0);
    const w1 = await connect('watch1', 'w', 1);
    await sub(w0, topic);
    await sub(w1, topic);
    for (let i = 0; i < 12; i++) {
      const user = `mover${i}`;
      const a = await connect(user, 'a', i % 2);
      await sub(a, topic);
      await w0.waitFor((f) => f.t === 'join' && f['user'] === user);
      await w1.waitFor((f) => f.t === 'join' && f['user'] === user);
      // The old connection closes around the new one's subscribe on the other edge.
      const next = connect(user, 'b', (i + 1) % 2);
      if (i % 3 === 0) a.close();
      const b = await next;
      if (i % 3 === 1) a.close();
      b.send({ t: 'sub', topic });
      if (i % 3 === 2) a.close();
      await b.waitFor((f) => f.t === 'subscribed' && f['topic'] === topic);
    }
    await sleep(1000);
    const wrong: string[] = [];
    for (let i = 0; i < 12; i++) {
      const user = `mover${i}`;
      for (const [name, w] of [
        ['watch0', w0],
        ['watch1', w1],
      ] as const) {
        const seen = w.frames.filter((f) => (f.t === 'join' || f.t === 'leave') && f['user'] === user).map((f) => f.t);
        if (seen.at(-1) !== 'join') wrong.push(`${user} at ${name}: ${seen.join(',')}`);
      }
    }
    expect(wrong, 'watchers left believing a present user had gone').to.deep.equal([]);
  });

  it('lists the members of a presence topic over HTTP and NATS, with connection and user counts', async function () {
    const topic = 'room.two';
    const cid = await connect('cid', 'phone', 0);
    const cidTab = await connect('cid', 'tablet', 1);
    const dee = await connect('dee', 'laptop', 1);
    for (const c of [cid, cidTab, dee]) await sub(c, topic);
    const v = await waitView(topic, (x) => x.connections === 3);
    expect(v).to.include({ topic, presence: true, connections: 3, users: 2 });
    const members = (v.members ?? []).map((m) => `${m.user}/${m.device}`).sort();
    expect(members).to.deep.equal(['cid/phone', 'cid/tablet', 'dee/laptop']);

    const h = headers();
    h.set('Authorization', `Bearer ${app.apiKey}`);
    const reply = await nc.request(subjects.api('topics.presence'), JSON.stringify({ app: app.id, topic }), {
      timeout: 5000,
      headers: h,
    });
    const overNats = reply.json<PresenceView & { ok: boolean }>();
    expect(overNats).to.include({ ok: true, topic, presence: true, connections: 3, users: 2 });
    expect(overNats.members).to.have.length(3);

    dee.close();
    const after = await waitView(topic, (x) => x.connections === 2);
    expect(after.users).to.equal(1);
    expect((after.members ?? []).every((m) => m.user === 'cid')).to.equal(true);
  });

  it('counts the subscribers of any topic, with no members or join/leave unless it is a presence topic', async function () {
    const topic = 'news';
    const a = await connect('eve', 'phone', 0);
    const b = await connect('fay', 'phone', 1);
    const b2 = await connect('fay', 'laptop', 0);
    for (const c of [a, b, b2]) await sub(c, topic);
    const v = await waitView(topic, (x) => x.connections === 3);
    expect(v).to.deep.equal({ topic, presence: false, connections: 3, users: 2 });
    expect(await view(topic, false)).to.deep.equal({ topic, presence: false, connections: 3, users: 2 });
    b2.send({ t: 'unsub', topic });
    await waitView(topic, (x) => x.connections === 2 && x.users === 2);
    b.close();
    await waitView(topic, (x) => x.connections === 1 && x.users === 1);
    await sleep(200);
    expect(a.frames.filter((f) => f.t === 'join' || f.t === 'leave')).to.have.length(0);
    // `_all` is every connection's and is never counted.
    expect(await view('_all', false)).to.include({ connections: 0, users: 0 });
  });

  it('emits topic_sub/topic_unsub for every subscription and presence_join/presence_leave for members', async function () {
    const topic = 'room.three';
    const gil = await connect('gil', 'phone', 0);
    await sub(gil, topic);
    await sub(gil, 'news');
    const gilTab = await connect('gil', 'tablet', 1);
    await sub(gilTab, topic);
    gilTab.send({ t: 'unsub', topic });
    gil.close();
    const all = await waitEvents((r) => ofType(r, 'presence_leave', topic, 'gil').length === 1);
    expect(ofType(all, 'topic_sub', topic, 'gil')).to.have.length(2);
    expect(ofType(all, 'topic_unsub', topic, 'gil')).to.have.length(2);
    expect(ofType(all, 'topic_sub', 'news', 'gil')).to.have.length(1);
    expect(ofType(all, 'topic_unsub', 'news', 'gil')).to.have.length(1);
    expect(ofType(all, 'presence_join', topic, 'gil')).to.have.length(1);
    expect(ofType(all, 'presence_leave', topic, 'gil')).to.have.length(1);
    expect(ofType(all, 'presence_join', 'news')).to.have.length(0);
    expect(ofType(all, 'topic_sub', '_all')).to.have.length(0);
    expect(ofType(all, 'presence_join', topic, 'gil')[0]?.body).to.include({ device: 'phone' });
  });

  it('leaves no ghost after an edge kill -9: leave sent, members and counts cleared within 4/3 of the lease', async function () {
    const topic = 'room.four';
    await killable.start({
      PUSH_PREFIX: stack.prefix,
      PUSH_NATS_URL: stack.config().natsUrl,
      PUSH_REDIS_URL: stack.config().redisUrl,
      PUSH_PRESENCE_LEASE: String(LEASE),
    });
    const watcher = await connect('hal', 'phone', 0);
    await sub(watcher, topic);
    const doomed = await TestClient.connect(killable.wsUrl, await app.token('ivy', 'phone', 3600, ['room.*']));
    clients.push(doomed);
    await sub(doomed, topic);
    await watcher.waitFor((f) => f.t === 'join' && f['user'] === 'ivy');
    await waitView(topic, (v) => v.connections === 2);

    await killable.kill();
    const killedAt = Date.now();
    const bound = (LEASE * 4000) / 3 + 1500;
    // Hidden from the members list at once (its lease is gone within the lease), and announced.
    await watcher.waitFor((f) => f.t === 'leave' && f['user'] === 'ivy', bound);
    expect(Date.now() - killedAt).to.be.below(bound);
    const v = await waitView(topic, (x) => x.connections === 1, 1000);
    expect(v).to.include({ users: 1 });
    expect((v.members ?? []).map((m) => m.user)).to.deep.equal(['hal']);
    const all = await waitEvents((r) => ofType(r, 'presence_leave', topic, 'ivy').length === 1, 2000);
    expect(ofType(all, 'topic_unsub', topic, 'ivy')).to.have.length(1);
    await sleep(LEASE * 500);
    // Swept once, by one sweeper.
    expect(presenceFrames(watcher, 'leave', 'ivy')).to.have.length(1);
    expect(ofType(await events(), 'presence_leave', topic, 'ivy')).to.have.length(1);
  });
});
