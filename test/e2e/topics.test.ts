import { expect } from 'chai';
import { headers } from '@nats-io/nats-core';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { signTopicToken } from '@push/apps';
import { Subjects, encodeTopicMessage } from '@push/protocol';
import { NATS_URL } from '../helpers/nats-server.js';
import { Stack, type TestApp } from '../helpers/stack.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { TestClient, type Frame } from '../helpers/ws-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The topic messages a client got for one topic, in arrival order. */
function topicMsgs(c: TestClient, topic: string): Frame[] {
  return c.frames.filter((f) => f.t === 'msg' && f['topic'] === topic);
}

/** Waits until the client holds `n` messages of the topic. */
async function waitTopic(c: TestClient, topic: string, n: number, timeoutMs = 5000): Promise<Frame[]> {
  await c.waitFor(() => topicMsgs(c, topic).length >= n, timeoutMs);
  return topicMsgs(c, topic);
}

/** Sends `sub` and waits for its `subscribed` or `error` answer. */
async function sub(c: TestClient, frame: Record<string, unknown>): Promise<Frame> {
  const before = c.frames.length;
  c.send({ t: 'sub', ...frame });
  return c.waitFor(
    (f) => c.frames.indexOf(f) >= before && (f.t === 'subscribed' || f.t === 'error') && f['topic'] === frame['topic'],
  );
}

/** A gauge or counter of an edge's registry. */
async function metric(stack: Stack, name: string, edge = 0): Promise<number> {
  const m = await stack.edges[edge]?.registry.getSingleMetric(name)?.get();
  return m?.values[0]?.value ?? 0;
}

describe('topics', function () {
  this.timeout(30_000);
  let stack: Stack;
  let app: TestApp;
  let nc: NatsConnection;
  const clients: TestClient[] = [];
  const keep = (c: TestClient) => {
    clients.push(c);
    return c;
  };

  before(async function () {
    stack = await Stack.start();
    await stack.startEdge(); // two edges: fan-out happens on each
    app = await stack.createApp();
    nc = await connect({ servers: NATS_URL });
  });
  after(async function () {
    for (const c of clients) c.terminate();
    await nc?.close();
    await stack?.close();
  });

  it('subscribe, receive in order with topic, seq and prev, need no ack, unsubscribe', async function () {
    const c = keep(await app.connectWithTopics('alice', ['news']));
    const s = await sub(c, { topic: 'news' });
    expect(s).to.deep.equal({ t: 'subscribed', topic: 'news', seq: 0 });
    const s1 = await app.publishTopicOk('news', { n: 1 });
    const r2 = await app.publishTopic('news', { data: { n: 2 }, id: 'n2' });
    expect(r2.status).to.equal(200);
    expect(r2.body).to.include({ topic: 'news', duplicate: false });
    const s2 = r2.body['seq'] as number;
    const msgs = await waitTopic(c, 'news', 2);
    expect(msgs.map((m) => [m['seq'], m['prev'], m['data']])).to.deep.equal([
      [s1, 0, { n: 1 }],
      [s2, s1, { n: 2 }],
    ]);
    // The same idempotency id again: stored once, answered as a duplicate, not delivered twice.
    const again = await app.publishTopic('news', { data: { n: 2 }, id: 'n2' });
    expect(again.body).to.include({ seq: s2, duplicate: true });
    // Acking a topic message is not needed; it answers ack_unknown and changes nothing.
    c.ack([s1]);
    const err = await c.waitFor((f) => f.t === 'error');
    expect(err['code']).to.equal('ack_unknown');
    c.send({ t: 'unsub', topic: 'news' });
    await c.waitFor((f) => f.t === 'unsubscribed' && f['topic'] === 'news');
    await app.publishTopicOk('news', { n: 3 });
    await c.ping();
    await sleep(100);
    expect(topicMsgs(c, 'news')).to.have.length(2);
  });

  it('refuses topics the token does not grant; a topic token grants one; expired and foreign tokens are refused', async function () {
    const c = keep(await app.connectWithTopics('bob', ['room-*']));
    expect(await sub(c, { topic: 'room-1' })).to.include({ t: 'subscribed' });
    const forbidden = await sub(c, { topic: 'roomx' });
    expect(forbidden).to.include({ t: 'error', code: 'topic_forbidden', topic: 'roomx' });
    const plain = keep(await app.connect('bob2')); // no topics claim: nothing granted
    expect(await sub(plain, { topic: 'room-1' })).to.include({ code: 'topic_forbidden' });

    const secret = app.record.secrets[0]!;
    const ok = await signTopicToken(secret, { app: app.id, user: 'bob', topic: 'private-7', ttlSeconds: 60 });
    expect(await sub(c, { topic: 'private-7', token: ok })).to.include({ t: 'subscribed', topic: 'private-7' });
    const otherTopic = await signTopicToken(secret, { app: app.id, user: 'bob', topic: 'private-8', ttlSeconds: 60 });
    expect(await sub(c, { topic: 'private-9', token: otherTopic })).to.include({
      code: 'topic_token_invalid',
      topic: 'private-9',
    });
    const otherUser = await signTopicToken(secret, { app: app.id, user: 'eve', topic: 'private-8', ttlSeconds: 60 });
    expect(await sub(c, { topic: 'private-8', token: otherUser })).to.include({ code: 'topic_token_invalid' });
    const expired = await signTopicToken(
      secret,
      { app: app.id, user: 'bob', topic: 'private-8', ttlSeconds: 10 },
      Math.floor(Date.now() / 1000) - 60,
    );
    expect(await sub(c, { topic: 'private-8', token: expired })).to.include({ code: 'topic_token_expired' });
    expect(await sub(c, { topic: 'private-8', token: 'not.a.jwt' })).to.include({ code: 'topic_token_invalid' });
    // A topic token cannot open a connection as its user.
    const r = await TestClient.refused(stack.wsUrl(), ok);
    expect(r.body.error?.code).to.equal('token_invalid');
    // The connection stayed usable, and the granted topics deliver.
    await c.ping();
    const seq = await app.publishTopicOk('private-7', 'hi');
    const got = await waitTopic(c, 'private-7', 1);
    expect(got[0]).to.include({ seq, data: 'hi' });
  });

  it('resumes exactly after a reconnect: the missed messages, then subscribed, then live; no gap, no duplicate', async function () {
    const c1 = keep(await app.connectWithTopics('carol', ['scores']));
    await sub(c1, { topic: 'scores' });
    const first: number[] = [];
    for (let i = 0; i < 3; i++) first.push(await app.publishTopicOk('scores', { i }));
    const seen = await waitTopic(c1, 'scores', 3);
    const last = seen[2]!['seq'] as number;
    c1.terminate();
    const missed: number[] = [];
    for (let i = 3; i < 8; i++) missed.push(await app.publishTopicOk('scores', { i }));
    const c2 = keep(await app.connectWithTopics('carol', ['scores'], stack.edges[1]));
    const s = await sub(c2, { topic: 'scores', since: last });
    expect(s).to.include({ t: 'subscribed', seq: missed[missed.length - 1] });
    const live = await app.publishTopicOk('scores', { i: 8 });
    const got = await waitTopic(c2, 'scores', 6);
    expect(got.map((m) => m['seq'])).to.deep.equal([...missed, live]);
    expect(got.map((m) => (m['data'] as { i: number }).i)).to.deep.equal([3, 4, 5, 6, 7, 8]);
    // The prev chain lets a client check it missed nothing.
    let prev = last;
    for (const m of got) {
      expect(m['prev']).to.equal(prev);
      prev = m['seq'] as number;
    }
    expect(c2.frames.filter((f) => f.t === 'lost')).to.have.length(0);
    // The resumed messages came before `subscribed`, the live one after.
    const order = c2.frames.filter((f) => f['topic'] === 'scores').map((f) => f.t);
    expect(order).to.deep.equal(['msg', 'msg', 'msg', 'msg', 'msg', 'subscribed', 'msg']);
    await c2.ping();
    await sleep(50);
    expect(topicMsgs(c2, 'scores')).to.have.length(6);
  });

  it('says history was lost when it no longer reaches back, then sends what it holds', async function () {
    const small = await stack.createApp({ topicHistory: 2 });
    const seqs: number[] = [];
    for (let i = 0; i < 5; i++) seqs.push(await small.publishTopicOk('t', i));
    const c = keep(await small.connectWithTopics('dan', ['*']));
    const s = await sub(c, { topic: 't', since: seqs[0] });
    expect(s).to.include({ t: 'subscribed', seq: seqs[4] });
    const frames = c.frames.filter((f) => f['topic'] === 't');
    expect(frames[0]).to.deep.equal({ t: 'lost', topic: 't', first: seqs[3] });
    expect(frames.slice(1, 3).map((f) => f['data'])).to.deep.equal([3, 4]);
    // Since 0: all that is held, no lost.
    const c0 = keep(await small.connectWithTopics('dan', ['*']));
    await sub(c0, { topic: 't', since: 0 });
    expect(c0.frames.filter((f) => f.t === 'lost')).to.have.length(0);
    expect(topicMsgs(c0, 't').map((f) => f['data'])).to.deep.equal([3, 4]);
  });

  it('fills the gap after the edge lost its NATS connection: every message, in order, once', async function () {
    const u = new URL(NATS_URL);
    const proxy = new TcpProxy(u.hostname, Number(u.port || 4222));
    await proxy.start();
    const edge = await stack.startEdge({ PUSH_NATS_URL: proxy.url });
    try {
      const a = await stack.createApp();
      const c = keep(await a.connectWithTopics('erin', ['feed'], edge));
      await sub(c, { topic: 'feed' });
      const seqs = [await a.publishTopicOk('feed', 0)];
      await waitTopic(c, 'feed', 1);
      proxy.dropAll(); // the edge's NATS connections are cut: live messages are lost meanwhile
      for (let i = 1; i < 6; i++) seqs.push(await a.publishTopicOk('feed', i));
      const got = await waitTopic(c, 'feed', 6, 10_000);
      seqs.push(await a.publishTopicOk('feed', 6));
      await waitTopic(c, 'feed', 7);
      await sleep(100);
      expect(topicMsgs(c, 'feed').map((m) => m['seq'])).to.deep.equal(seqs);
      expect(got.length).to.be.at.least(6);
      expect(await metric(stack, 'push_edge_topic_messages_out_total', stack.edges.indexOf(edge))).to.be.at.least(7);
    } finally {
      await edge.stop();
      stack.edges.splice(stack.edges.indexOf(edge), 1);
      await proxy.stop();
    }
  });

  it('RePublish carries the previous sequence of the same subject in Nats-Last-Sequence (gap detection relies on it)', async function () {
    const a = await stack.createApp();
    const subjects = new Subjects(stack.prefix);
    const got: Array<[string, string]> = [];
    const s = nc.subscribe(subjects.liveTopic(a.id, 'x'), {
      callback: (_e, m) => {
        got.push([m.headers?.get('Nats-Sequence') ?? '', m.headers?.get('Nats-Last-Sequence') ?? '']);
      },
    });
    await nc.flush();
    const x1 = await a.publishTopicOk('x', 1);
    await a.publishTopicOk('y', 2); // another topic in between
    const x2 = await a.publishTopicOk('x', 3);
    const deadline = Date.now() + 5000;
    while (got.length < 2 && Date.now() < deadline) await sleep(10);
    s.unsubscribe();
    expect(got).to.deep.equal([
      [String(x1), '0'],
      [String(x2), String(x1)],
    ]);
  });

  it('_all reaches a connection from its open: a broadcast stored the moment the client has hello arrives (fresh apps, both edges)', async function () {
    const subjects = new Subjects(stack.prefix);
    const enc = encodeTopicMessage({ data: 'at hello' }, { ttlSeconds: 60 });
    const h = headers();
    for (const [k, v] of Object.entries(enc.headers)) h.set(k, v);
    for (let i = 0; i < 6; i++) {
      // A fresh app: its _all channel is not open on the edge yet, so the connection's join reads
      // the topic's last sequence while the broadcast is stored.
      const fresh = await stack.createApp();
      const c = keep(await fresh.connect('ivy', 'p', '', stack.edges[i % 2]));
      const ack = await nc.request(subjects.topic(fresh.id, '_all'), enc.payload, { headers: h, timeout: 5000 });
      const stored = JSON.parse(new TextDecoder().decode(ack.data)) as { seq: number };
      const [m] = await waitTopic(c, '_all', 1);
      expect(m).to.include({ seq: stored.seq, data: 'at hello' });
    }
  });

  it('_all reaches a connection from its hello when the store failed its first join: the hello waits for a later one', async function () {
    const fresh = await stack.createApp();
    const jsm = await jetstreamManager(nc);
    const stream = new Subjects(stack.prefix).topicStream(fresh.id);
    const { config } = await jsm.streams.info(stream);
    // Without its topic stream the app's _all channel cannot learn its last sequence: the join fails.
    await jsm.streams.delete(stream);
    const connecting = fresh.connect('ian', 'p');
    await sleep(300);
    await jsm.streams.add(config);
    const c = keep(await connecting);
    // Stored right after the hello (before the edge's next attempt, in the code before this test):
    const seq = await fresh.publishTopicOk('_all', 'after hello');
    const [m] = await waitTopic(c, '_all', 1);
    expect(m).to.include({ seq, data: 'after hello' });
    // The first attempt did fail (the store's answer for a missing stream), and was counted.
    const errors = await stack.edges[0]?.registry.getSingleMetric('push_edge_errors_total')?.get();
    const unavailable = errors?.values.find((v) => v.labels['code'] === 'store_unavailable')?.value ?? 0;
    expect(unavailable).to.be.greaterThan(0);
  });

  it('_all joined after a hello that could wait no longer sends first the broadcasts stored since the hello', async function () {
    this.timeout(60_000);
    const fresh = await stack.createApp();
    const jsm = await jetstreamManager(nc);
    const stream = new Subjects(stack.prefix).topicStream(fresh.id);
    const { config } = await jsm.streams.info(stream);
    await jsm.streams.delete(stream);
    // The store fails every join for longer than the hello waits (10 s): the hello comes without _all.
    const c = keep(await TestClient.connect(stack.wsUrl(), await fresh.token('ivo', 'p'), '', 20_000));
    await jsm.streams.add(config);
    // Stored once the client has its hello, before the edge's next attempt joins (1-2 s and more later):
    const first = await fresh.publishTopicOk('_all', 'after the late hello');
    const [m] = await waitTopic(c, '_all', 1, 30_000);
    expect(m).to.include({ seq: first, data: 'after the late hello' });
    // Then live, with no gap and no duplicate.
    const second = await fresh.publishTopicOk('_all', 'live');
    const got = await waitTopic(c, '_all', 2);
    expect(got.map((f) => f['seq'])).to.deep.equal([first, second]);
    expect(c.frames.filter((f) => f.t === 'lost')).to.have.length(0);
  });

  it('_all reaches every connection of the app on every edge without a sub, and no other app', async function () {
    const b = await stack.createApp();
    const c0 = keep(await app.connect('fay', 'p', '', stack.edges[0]));
    const c1 = keep(await app.connect('gus', 'p', '', stack.edges[1]));
    const other = keep(await b.connect('fay', 'p', '', stack.edges[0]));
    await sleep(100); // the _all subscription is made as the socket opens
    const seq = await app.publishTopicOk('_all', { hello: 'everyone' });
    for (const c of [c0, c1]) {
      const [m] = await waitTopic(c, '_all', 1);
      expect(m).to.include({ seq });
      expect(m!['data']).to.deep.equal({ hello: 'everyone' });
    }
    await other.ping();
    await sleep(100);
    expect(topicMsgs(other, '_all')).to.have.length(0);
    // It cannot be left; a sub of it resumes it after a reconnect, with no grant needed.
    c0.send({ t: 'unsub', topic: '_all' });
    await c0.waitFor((f) => f.t === 'error' && f['code'] === 'invalid_topic' && f['topic'] === '_all');
    c0.terminate();
    const missed = [await app.publishTopicOk('_all', 'm1'), await app.publishTopicOk('_all', 'm2')];
    const back = keep(await app.connect('fay', 'p', '', stack.edges[0]));
    expect(await sub(back, { topic: '_all', since: seq })).to.include({ t: 'subscribed', seq: missed[1] });
    const live = await app.publishTopicOk('_all', 'm3');
    const got = await waitTopic(back, '_all', 3);
    expect(got.map((m) => m['seq'])).to.deep.equal([...missed, live]);
    expect(got.map((m) => m['data'])).to.deep.equal(['m1', 'm2', 'm3']);
  });

  it('rate-limits topic publishing and broadcast per app with 429 and Retry-After', async function () {
    const limited = await stack.createApp({ topicRateLimit: 2 });
    expect((await limited.publishTopic('_all', { data: 1 })).status).to.equal(200);
    expect((await limited.publishTopic('t', { data: 2 })).status).to.equal(200);
    const r = await limited.publishTopic('t', { data: 3 });
    expect(r.status).to.equal(429);
    expect((r.body['error'] as { code: string }).code).to.equal('rate_limited');
    expect(Number(r.headers.get('retry-after'))).to.be.at.least(1);
  });

  it('refuses bad topic names and keeps names with . * > and spaces apart from others', async function () {
    const c = keep(await app.connectWithTopics('hal', ['*']));
    for (const topic of ['a.b', '*', '>', 'a b']) {
      expect(await sub(c, { topic })).to.include({ t: 'subscribed', topic });
    }
    expect(await sub(c, { topic: 'a' })).to.include({ t: 'subscribed' });
    for (const topic of ['a.b', '*', '>', 'a b']) await app.publishTopicOk(topic, topic);
    await app.publishTopicOk('a', 'a');
    await c.waitFor(() => c.frames.filter((f) => f.t === 'msg').length >= 5);
    await sleep(100);
    for (const topic of ['a.b', '*', '>', 'a b', 'a']) {
      expect(topicMsgs(c, topic).map((m) => m['data'])).to.deep.equal([topic]);
    }
    const long = 'x'.repeat(10_000);
    expect(await sub(c, { topic: long })).to.include({ code: 'invalid_topic' });
    expect(await sub(c, { topic: '_secret' })).to.include({ code: 'invalid_topic' });
    expect(await sub(c, { topic: '' })).to.include({ code: 'invalid_topic' });
    c.send({ t: 'sub', topic: 5 });
    await c.waitFor((f) => f.t === 'error' && f['code'] === 'invalid_topic' && f['topic'] === undefined);
    c.send({ t: 'sub', topic: 'ok', since: -1 });
    await c.waitFor((f) => f.t === 'error' && f['code'] === 'bad_frame' && f['topic'] === 'ok');
    for (const topic of [long, '_secret']) {
      const r = await app.publishTopic(topic, { data: 1 });
      expect(r.status).to.equal(400);
      expect((r.body['error'] as { code: string }).code).to.equal('invalid_topic');
    }
    const batch = await stack.http('POST', `/v1/apps/${app.id}/topics/messages`, app.apiKey, {
      messages: [
        { topic: 'ok', data: 1 },
        { topic: long, data: 2 },
      ],
    });
    expect(batch.status).to.equal(400);
    expect((batch.body['error'] as { message: string }).message).to.match(/^messages\[1\]/);
    await c.ping();
  });

  it('publishes a batch to many topics with per-item results', async function () {
    const c = keep(await app.connectWithTopics('ivy', ['b-*']));
    await sub(c, { topic: 'b-1' });
    await sub(c, { topic: 'b-2' });
    const r = await stack.http('POST', `/v1/apps/${app.id}/topics/messages`, app.apiKey, {
      messages: [
        { topic: 'b-1', data: 'one' },
        { topic: 'b-2', b64: Buffer.from('two').toString('base64') },
      ],
    });
    expect(r.status).to.equal(200);
    const results = r.body['results'] as Array<{ topic: string; seq: number }>;
    expect(results.map((x) => x.topic)).to.deep.equal(['b-1', 'b-2']);
    const [m1] = await waitTopic(c, 'b-1', 1);
    const [m2] = await waitTopic(c, 'b-2', 1);
    expect(m1).to.include({ seq: results[0]!.seq, data: 'one' });
    expect(m2).to.include({ seq: results[1]!.seq, b64: Buffer.from('two').toString('base64') });
  });

  it('publishes over NATS request/reply and straight to the topic subject from a trusted service', async function () {
    const c = keep(await app.connectWithTopics('jay', ['nats-*']));
    await sub(c, { topic: 'nats-api' });
    await sub(c, { topic: 'nats-direct' });
    const h = headers();
    h.set('Authorization', `Bearer ${app.apiKey}`);
    const subjects = new Subjects(stack.prefix);
    const reply = await nc.request(
      subjects.api('topics.publish'),
      JSON.stringify({ app: app.id, topic: 'nats-api', data: { via: 'api' } }),
      { headers: h, timeout: 5000 },
    );
    const answer = JSON.parse(new TextDecoder().decode(reply.data)) as Record<string, unknown>;
    expect(answer).to.include({ ok: true, topic: 'nats-api', duplicate: false });
    const [m] = await waitTopic(c, 'nats-api', 1);
    expect(m).to.include({ seq: answer['seq'] });

    const enc = encodeTopicMessage({ data: { via: 'direct' } }, { ttlSeconds: 60, id: 'd1' });
    const dh = headers();
    for (const [k, v] of Object.entries(enc.headers)) dh.set(k, v);
    const ack = await nc.request(subjects.topic(app.id, 'nats-direct'), enc.payload, { headers: dh, timeout: 5000 });
    const stored = JSON.parse(new TextDecoder().decode(ack.data)) as { seq: number };
    const [d] = await waitTopic(c, 'nats-direct', 1);
    expect(d).to.include({ seq: stored.seq });
    expect(d!['data']).to.deep.equal({ via: 'direct' });
  });

  it('drops a message published straight to the subject that is not an envelope, without a gap or a stall', async function () {
    const c = keep(await app.connectWithTopics('kim', ['raw']));
    await sub(c, { topic: 'raw' });
    const first = await app.publishTopicOk('raw', 'before');
    const subjects = new Subjects(stack.prefix);
    await nc.request(subjects.topic(app.id, 'raw'), 'not an envelope', { timeout: 5000 });
    const after = await app.publishTopicOk('raw', 'after');
    const got = await waitTopic(c, 'raw', 2);
    expect(got.map((m) => [m['seq'], m['data']])).to.deep.equal([
      [first, 'before'],
      [after, 'after'],
    ]);
    expect(c.frames.filter((f) => f.t === 'lost')).to.have.length(0);
    // A resume from before it skips it too.
    const again = keep(await app.connectWithTopics('kim', ['raw']));
    await sub(again, { topic: 'raw', since: first });
    expect(topicMsgs(again, 'raw').map((m) => m['data'])).to.deep.equal(['after']);
    expect(again.frames.filter((f) => f.t === 'lost')).to.have.length(0);
  });

  it('holds one NATS subscription per topic per edge, following its subscribers', async function () {
    const a = await stack.createApp();
    const base = await metric(stack, 'push_edge_topic_channels');
    const c1 = keep(await a.connectWithTopics('k1', ['*'], stack.edges[0]));
    const c2 = keep(await a.connectWithTopics('k2', ['*'], stack.edges[0]));
    await sleep(100);
    expect(await metric(stack, 'push_edge_topic_channels')).to.equal(base + 1); // the app's _all
    await sub(c1, { topic: 'm1' });
    await sub(c2, { topic: 'm1' });
    await sub(c2, { topic: 'm2' });
    expect(await metric(stack, 'push_edge_topic_channels')).to.equal(base + 3);
    c2.send({ t: 'unsub', topic: 'm2' });
    await c2.waitFor((f) => f.t === 'unsubscribed');
    expect(await metric(stack, 'push_edge_topic_channels')).to.equal(base + 2);
    c1.close();
    await c1.waitClosed();
    await sleep(50);
    expect(await metric(stack, 'push_edge_topic_channels')).to.equal(base + 2); // c2 still holds m1 and _all
    c2.close();
    await c2.waitClosed();
    await sleep(50);
    expect(await metric(stack, 'push_edge_topic_channels')).to.equal(base);
  });

  it('refuses a sub past the per-connection topic limit with too_many_topics', async function () {
    const a = await stack.createApp({ maxTopicsPerConnection: 2 });
    const c = keep(await a.connectWithTopics('lee', ['*']));
    await sub(c, { topic: 'l1' });
    await sub(c, { topic: 'l2' });
    expect(await sub(c, { topic: 'l3' })).to.include({ code: 'too_many_topics', topic: 'l3' });
    c.send({ t: 'unsub', topic: 'l1' });
    await c.waitFor((f) => f.t === 'unsubscribed');
    expect(await sub(c, { topic: 'l3' })).to.include({ t: 'subscribed' });
  });

  it('creates the topic stream with the app and deletes it with the app', async function () {
    const a = await stack.createApp({ topicHistory: 7, topicHistorySeconds: 120 });
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(new Subjects(stack.prefix).topicStream(a.id));
    expect(info.config.max_msgs_per_subject).to.equal(7);
    expect(info.config.max_age).to.equal(120 * 1e9);
    const del = await stack.http('DELETE', `/v1/admin/apps/${a.id}`, stack.adminKey);
    expect(del.status).to.equal(204);
    const gone = await jsm.streams.info(new Subjects(stack.prefix).topicStream(a.id)).catch((e: Error) => e);
    expect(gone).to.be.instanceOf(Error);
  });
});
