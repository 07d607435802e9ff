import { expect } from 'chai';
import WebSocket from 'ws';
import { PushClient, type PushClientOptions, type Subscription, type TopicMessage } from '@push/client';
import { signTopicToken } from '@push/apps';
import type { NatsConnection } from '@push/nats';
import { Subjects } from '@push/protocol';
import { EdgeProcess } from '../helpers/edge-process.js';
import { NATS_URL } from '../helpers/nats-server.js';
import { Stack, type TestApp } from '../helpers/stack.js';
import { readStream } from '../helpers/streams.js';

/** Polls `check` until it holds, or fails with `what` after `timeoutMs`. */
async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** What a subscription delivered and said. */
function record(sub: Subscription): { messages: TopicMessage[]; events: string[] } {
  const seen = { messages: [] as TopicMessage[], events: [] as string[] };
  sub.on('message', (m) => seen.messages.push(m));
  sub.on('subscribed', () => seen.events.push('subscribed'));
  sub.on('lost', ({ first }) => seen.events.push(`lost ${first}`));
  sub.on('unsubscribed', () => seen.events.push('unsubscribed'));
  sub.on('error', (e) => seen.events.push(`error ${e.code}`));
  return seen;
}

const rejection = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'resolved',
    (e: unknown) => (e as { code: string }).code,
  );

describe('SDK (@push/client) topics, up and rpc against the real stack', function () {
  this.timeout(60_000);
  let stack: Stack;
  let app: TestApp;
  let nc: NatsConnection;
  let subjects: Subjects;
  const clients: PushClient[] = [];
  const client = (opts: Omit<PushClientOptions, 'WebSocket'>): PushClient => {
    const c = new PushClient({ WebSocket, backoff: { baseMs: 50, capMs: 200 }, ...opts });
    clients.push(c);
    return c;
  };

  before(async function () {
    stack = await Stack.start();
    subjects = new Subjects(stack.prefix);
    app = await stack.createApp({ upstream: true, rpcTimeoutMs: 300 });
    nc = await stack.connectNats('test-sdk-topics');
  });
  afterEach(function () {
    for (const c of clients.splice(0)) c.disconnect();
  });
  after(async function () {
    await nc?.close();
    await stack?.close();
  });

  it('subscribe receives in order without acks; unsubscribe stops the topic; _all arrives without subscribing', async function () {
    const c = client({ edges: [stack.wsUrl()], token: () => app.token('sue', 'default', 3600, ['news']) });
    const news = record(c.subscribe('news'));
    const all = record(c.broadcasts);
    c.connect();
    await until('subscribed', () => news.events.includes('subscribed'));
    const seqs = [await app.publishTopicOk('news', 1), await app.publishTopicOk('news', 2)];
    const b = await app.publishTopicOk('_all', 'to everyone');
    await until('2 news and a broadcast', () => news.messages.length === 2 && all.messages.length === 1);
    expect(news.messages.map((m) => [m.topic, m.seq, m.data])).to.deep.equal([
      ['news', seqs[0], 1],
      ['news', seqs[1], 2],
    ]);
    expect(all.messages.map((m) => [m.topic, m.seq, m.data])).to.deep.equal([['_all', b, 'to everyone']]);
    await app.waitPending('sue', 0); // nothing stored per user, nothing to ack

    c.subscribe('news').unsubscribe();
    await until('unsubscribed', () => news.events.includes('unsubscribed'));
    await app.publishTopicOk('news', 3);
    await app.publishTopicOk('_all', 'marker');
    await until('the marker', () => all.messages.length === 2);
    expect(news.messages).to.have.length(2);
  });

  it('a live-only subscribe() right after unsubscribe() of the topic gets nothing the one that left was sent', async function () {
    // The client's socket is not read while 30 messages reach it, so that they are still coming
    // when the subscription is left and made again.
    const sockets: WebSocket[] = [];
    class Tracked extends WebSocket {
      constructor(url: string) {
        super(url);
        sockets.push(this);
      }
    }
    const paused = (on: boolean): void => {
      for (const ws of sockets) {
        const raw = (ws as unknown as { _socket?: { pause(): void; resume(): void } })._socket;
        if (on) raw?.pause();
        else raw?.resume();
      }
    };
    const c = new PushClient({
      WebSocket: Tracked,
      edges: [stack.wsUrl()],
      token: () => app.token('resub', 'default', 3600, ['resub']),
    });
    clients.push(c);
    const first = record(c.subscribe('resub'));
    c.connect();
    await until('subscribed', () => first.events.includes('subscribed'));
    paused(true);
    const before: number[] = [];
    for (let i = 0; i < 30; i++) before.push(await app.publishTopicOk('resub', i));
    await new Promise((r) => setTimeout(r, 300)); // they wait in this process's socket
    c.subscribe('resub').unsubscribe();
    const again = record(c.subscribe('resub'));
    paused(false);
    await until('subscribed again', () => again.events.includes('subscribed'));
    const next = await app.publishTopicOk('resub', 'after');
    await until('the next one', () => again.messages.some((m) => m.seq === next));
    expect(again.messages.map((m) => m.seq)).to.deep.equal([next]);
    expect(first.messages.filter((m) => !before.includes(m.seq))).to.deep.equal([]);
  });

  it("a resume past the topic's newest message (its app was created again) says lost and delivers what is new", async function () {
    const id = `again-${Date.now()}`;
    let again = await stack.createApp({}, id);
    const c = client({ edges: [stack.wsUrl()], token: () => again.token('ag', 'default', 3600, ['news']) });
    const news = record(c.subscribe('news'));
    c.connect();
    await until('subscribed', () => news.events.includes('subscribed'));
    for (let i = 0; i < 5; i++) await again.publishTopicOk('news', i);
    await until('5 messages', () => news.messages.length === 5);
    expect((await stack.http('DELETE', `/v1/admin/apps/${id}`, stack.adminKey)).status).to.equal(204);
    await until('closed: app gone', () => c.state === 'disconnected');
    again = await stack.createApp({}, id);
    c.connect();
    await until('subscribed again', () => news.events.filter((e) => e === 'subscribed').length === 2);
    const fresh = [await again.publishTopicOk('news', 'new 1'), await again.publishTopicOk('news', 'new 2')];
    await until('the new ones', () => news.messages.length === 7);
    expect(news.messages.slice(5).map((m) => m.seq)).to.deep.equal(fresh);
    expect(news.events).to.include('lost 1');
    expect(c.subscribe('news').lastSeq).to.equal(fresh[1]);
  });

  it('a subscription of a bound topic ends (unsubscribed) when the business unbinds it', async function () {
    const path = `/v1/apps/${app.id}/users/ubu/topics/bound`;
    expect((await stack.http('PUT', path, app.apiKey)).status).to.equal(200);
    const c = client({ edges: [stack.wsUrl()], token: () => app.token('ubu') });
    const sub = c.subscribe('bound');
    const bound = record(sub);
    c.connect();
    await until('subscribed', () => bound.events.includes('subscribed'));
    expect((await stack.http('DELETE', path, app.apiKey)).status).to.equal(200);
    await until('unsubscribed', () => bound.events.includes('unsubscribed'));
    expect(sub.state).to.equal('unsubscribed');
    // Not subscribed again on the next connection (the token does not grant it).
    c.disconnect();
    c.connect();
    await until('connected', () => c.state === 'connected');
    await new Promise((r) => setTimeout(r, 300));
    expect(bound.events.filter((e) => e.startsWith('error'))).to.deep.equal([]);
  });

  it('a sub the token does not grant ends with error topic_forbidden; a topic token grants it', async function () {
    const c = client({ edges: [stack.wsUrl()], token: () => app.token('tom') });
    const denied = record(c.subscribe('vip'));
    c.connect();
    await until('refused', () => denied.events.length === 1);
    expect(denied.events).to.deep.equal(['error topic_forbidden']);
    const secret = app.record.secrets[0]!;
    const token = await signTopicToken(secret, { app: app.id, user: 'tom', topic: 'vip', ttlSeconds: 60 });
    const granted = record(c.subscribe('vip', { token }));
    await until('subscribed', () => granted.events.includes('subscribed'));
  });

  it('surfaces lost when history no longer reaches back to since, then delivers what is held', async function () {
    const small = await stack.createApp({ topicHistory: 2 });
    const seqs: number[] = [];
    for (let i = 0; i < 5; i++) seqs.push(await small.publishTopicOk('t', i));
    const c = client({ edges: [stack.wsUrl()], token: () => small.token('lu', 'default', 3600, ['t']) });
    const t = record(c.subscribe('t', { since: seqs[0] }));
    c.connect();
    await until('subscribed', () => t.events.includes('subscribed'));
    expect(t.events).to.deep.equal([`lost ${seqs[3]}`, 'subscribed']);
    expect(t.messages.map((m) => m.seq)).to.deep.equal(seqs.slice(3));
  });

  it('presence: two users see each other in members, a join when the other arrives and a leave when it disconnects', async function () {
    const room = await stack.createApp({ presenceTopics: ['room-*'] });
    // Plays the app's backend, which reads the occupancy route with its API key.
    const fetchMembers = async (topic: string): Promise<unknown> =>
      (await stack.http('GET', `/v1/apps/${room.id}/topics/${encodeURIComponent(topic)}/presence`, room.apiKey)).body;
    const join = (user: string): { client: PushClient; sub: Subscription; seen: string[] } => {
      const c = client({
        edges: [stack.wsUrl()],
        token: () => room.token(user, 'node', 3600, ['room-*']),
        fetchMembers,
      });
      const sub = c.subscribe('room-1', { presence: true });
      const seen: string[] = [];
      sub.on('members', (list) =>
        seen.push(
          `members ${list
            .map((m) => m.user)
            .sort()
            .join(',')}`,
        ),
      );
      sub.on('join', (m) => seen.push(`join ${m.user}`));
      sub.on('leave', ({ user: u }) => seen.push(`leave ${u}`));
      c.connect();
      return { client: c, sub, seen };
    };
    const ann = join('ann');
    await until('ann has members', () => ann.seen.length > 0);
    expect(ann.seen).to.deep.equal(['members ann']);
    // The edge records ann's subscription just after `subscribed`: wait for the route to list her.
    while (!JSON.stringify(await fetchMembers('room-1')).includes('"ann"')) await new Promise((r) => setTimeout(r, 20));

    const bob = join('bob');
    await until('bob has members', () => bob.seen.length > 0);
    expect(bob.seen).to.deep.equal(['members ann,bob']);
    await until('ann told of bob', () => ann.seen.length === 2);
    expect(ann.seen).to.deep.equal(['members ann', 'join bob']);
    expect(ann.sub.members().map((m) => m.user)).to.have.members(['ann', 'bob']);
    expect(ann.sub.members().find((m) => m.user === 'bob')).to.include({ device: 'node' });

    bob.client.disconnect();
    await until('ann told bob left', () => ann.seen.length === 3);
    expect(ann.seen[2]).to.equal('leave bob');
    expect(ann.sub.members().map((m) => m.user)).to.deep.equal(['ann']);
  });

  it('up is stored once across a reconnect (the retry with its id answers dup)', async function () {
    const c = client({ edges: [stack.wsUrl()], token: () => app.token('uma') });
    c.connect();
    const first = await c.up({ text: 'hello business' }, { kind: 'chat', id: 'up-once' });
    expect(first.dup).to.equal(false);
    c.disconnect();
    c.connect(); // as after a lost answer: the same id again
    const again = await c.up({ text: 'hello business' }, { kind: 'chat', id: 'up-once' });
    expect(again).to.deep.equal({ id: 'up-once', seq: first.seq, dup: true });
    const stored = (await readStream(nc, subjects.upstreamStream(app.id))).filter((r) => r.body['user'] === 'uma');
    expect(stored.map((r) => r.seq)).to.deep.equal([first.seq]);
    expect(await rejection(c.up('x', { kind: 'no spaces' }))).to.equal('invalid_kind');
  });

  it('rpc resolves with the reply of a NATS responder; rpc_unavailable with none; rpc_timeout when it is silent', async function () {
    const c = client({ edges: [stack.wsUrl()], token: () => app.token('rae') });
    c.connect();
    expect(await rejection(c.rpc('math.sum', [1, 2]))).to.equal('rpc_unavailable');
    let answer = true;
    const sub = nc.subscribe(subjects.rpc(app.id), {
      queue: subjects.rpcQueue,
      callback: (err, msg) => {
        if (err !== null || !answer) return;
        const req = msg.json<{ method: string; data: number[]; user: string }>();
        msg.respond(JSON.stringify({ data: { sum: req.data.reduce((a, b) => a + b, 0), user: req.user } }));
      },
    });
    await nc.flush();
    expect(await c.rpc('math.sum', [1, 2, 3])).to.deep.equal({ sum: 6, user: 'rae' });
    answer = false;
    expect(await rejection(c.rpc('math.sum', [1]))).to.equal('rpc_timeout');
    sub.unsubscribe();
  });

  describe('with an edge in its own process', function () {
    const edgeA = new EdgeProcess();
    before(async function () {
      await edgeA.start({
        PUSH_PREFIX: stack.prefix,
        PUSH_NATS_URL: NATS_URL,
        PUSH_REDIS_URL: 'redis://127.0.0.1:6379',
      });
    });
    after(async function () {
      await edgeA.kill();
    });

    it('a subscription resumes after the edge is killed (SIGKILL): every message once, in order, no gap', async function () {
      const c = client({
        edges: [edgeA.wsUrl, stack.wsUrl()],
        token: () => app.token('kim', 'default', 3600, ['live']),
      });
      const live = record(c.subscribe('live'));
      const edges: string[] = [];
      c.on('connected', (i) => edges.push(i.edge));
      c.connect();
      await until('subscribed on A', () => live.events.includes('subscribed'));
      const seqs: number[] = [];
      for (let i = 0; i < 5; i++) seqs.push(await app.publishTopicOk('live', i));
      await until('5 messages', () => live.messages.length === 5);
      await edgeA.kill();
      // Published while the client has no connection: it gets them from history on the resume.
      for (let i = 5; i < 10; i++) seqs.push(await app.publishTopicOk('live', i));
      await until('resubscribed on the other edge', () => live.events.filter((e) => e === 'subscribed').length === 2);
      for (let i = 10; i < 12; i++) seqs.push(await app.publishTopicOk('live', i));
      await until('all 12', () => live.messages.length >= 12);
      await new Promise((r) => setTimeout(r, 200));
      expect(edges).to.deep.equal([edgeA.wsUrl, stack.wsUrl()]);
      expect(live.messages.map((m) => m.seq)).to.deep.equal(seqs);
      expect(live.messages.map((m) => m.data)).to.deep.equal([...Array(12).keys()]);
      expect(live.events).to.deep.equal(['subscribed', 'subscribed']); // nothing lost
    });
  });
});
