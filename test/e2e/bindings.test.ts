import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { createLogger } from '@push/logger';
import { Subjects } from '@push/protocol';
import { createCenter } from '@push/center';
import { NATS_URL } from '../helpers/nats-server.js';
import { Stack, type HttpAnswer, type TestApp } from '../helpers/stack.js';
import type { Frame, TestClient } from '../helpers/ws-client.js';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Frames of one kind about one topic, in arrival order. */
const about = (c: TestClient, t: string, topic: string): Frame[] =>
  c.frames.filter((f) => f.t === t && f['topic'] === topic);

/** Waits until the client holds `n` frames of kind `t` about the topic. */
async function waitAbout(c: TestClient, t: string, topic: string, n = 1): Promise<Frame[]> {
  await c.waitFor(() => about(c, t, topic).length >= n);
  return about(c, t, topic);
}

/**
 * Topic bindings (issue 9 item 4): the business binds a user to a topic and every connection of
 * the user, on every edge, now and after restarts, is subscribed without a grant.
 */
describe('topic bindings', function () {
  this.timeout(60_000);
  let stack: Stack;
  let app: TestApp;
  let nc: NatsConnection;
  const clients: TestClient[] = [];
  const keep = (c: TestClient) => {
    clients.push(c);
    return c;
  };

  const path_ = (user: string, topic?: string) =>
    `/v1/apps/${encodeURIComponent(app.id)}/users/${encodeURIComponent(user)}/topics` +
    (topic !== undefined ? `/${encodeURIComponent(topic)}` : '');
  const bind = (user: string, topic: string): Promise<HttpAnswer> => stack.http('PUT', path_(user, topic), app.apiKey);
  const unbind = (user: string, topic: string): Promise<HttpAnswer> =>
    stack.http('DELETE', path_(user, topic), app.apiKey);
  const bindings = async (user: string): Promise<string[]> => {
    const r = await stack.http('GET', path_(user), app.apiKey);
    expect(r.status).to.equal(200);
    return r.body['topics'] as string[];
  };

  before(async function () {
    stack = await Stack.start();
    await stack.startEdge(); // two edges
    app = await stack.createApp({ maxTopicsPerConnection: 3 });
    nc = await connect({ servers: NATS_URL });
  });
  after(async function () {
    for (const c of clients) c.terminate();
    await nc?.close();
    await stack?.close();
  });

  it('bind subscribes every connection of the user on both edges at once; unbind makes them leave', async function () {
    // No topic grant in the tokens: a bound topic needs none.
    const a = keep(await app.connect('ann', 'phone', '', stack.edges[0]));
    const b = keep(await app.connect('ann', 'laptop', '', stack.edges[1]));
    const other = keep(await app.connect('otto', 'phone', '', stack.edges[0]));
    const r = await bind('ann', 'room 1.x');
    expect(r.status).to.equal(200);
    expect(r.body).to.deep.equal({ topic: 'room 1.x', created: true, bindings: 1 });
    for (const c of [a, b]) expect((await waitAbout(c, 'subscribed', 'room 1.x'))[0]).to.include({ seq: 0 });
    const seq = await app.publishTopicOk('room 1.x', { n: 1 });
    for (const c of [a, b]) {
      const [m] = await waitAbout(c, 'msg', 'room 1.x');
      expect(m).to.include({ seq });
      expect(m?.['data']).to.deep.equal({ n: 1 });
    }
    expect(await bindings('ann')).to.deep.equal(['room 1.x']);
    // Binding again changes nothing: no second `subscribed` (a late control message of a bind that
    // the connection's read at open already applied is the same case), no message twice.
    expect((await bind('ann', 'room 1.x')).body).to.include({ created: false, bindings: 1 });
    const seq2 = await app.publishTopicOk('room 1.x', { n: 1.5 });
    for (const c of [a, b]) {
      expect((await waitAbout(c, 'msg', 'room 1.x', 2))[1]).to.include({ seq: seq2 });
      expect(about(c, 'subscribed', 'room 1.x')).to.have.length(1);
    }

    const u = await unbind('ann', 'room 1.x');
    expect(u.status).to.equal(200);
    expect(u.body).to.deep.equal({ topic: 'room 1.x', removed: true });
    for (const c of [a, b]) await waitAbout(c, 'unsubscribed', 'room 1.x');
    await app.publishTopicOk('room 1.x', { n: 2 });
    for (const c of [a, b, other]) await c.ping();
    await sleep(150);
    for (const c of [a, b]) expect(about(c, 'msg', 'room 1.x')).to.have.length(2);
    expect(
      other.frames.filter((f) => f['topic'] === 'room 1.x'),
      'another user is not bound',
    ).to.deep.equal([]);
    expect(await bindings('ann')).to.deep.equal([]);
    expect((await unbind('ann', 'room 1.x')).body).to.deep.equal({ topic: 'room 1.x', removed: false });
  });

  it('a client resumes a bound topic with sub since after a reconnect, with no grant in its token', async function () {
    expect((await bind('cal', 'scores')).status).to.equal(200);
    const a = keep(await app.connect('cal', 'phone', '', stack.edges[0]));
    await waitAbout(a, 'subscribed', 'scores');
    const s1 = await app.publishTopicOk('scores', { n: 1 });
    await waitAbout(a, 'msg', 'scores');
    a.close();
    await a.waitClosed();
    const missed = [await app.publishTopicOk('scores', { n: 2 }), await app.publishTopicOk('scores', { n: 3 })];
    const b = keep(await app.connect('cal', 'phone', '', stack.edges[1]));
    // Sent at once: the bind's own `subscribed` may come before the resume, or not at all (the
    // resume holds the topic first).
    b.send({ t: 'sub', topic: 'scores', since: s1 });
    await b.waitFor((f) => f.t === 'subscribed' && f['topic'] === 'scores' && f['seq'] === missed[1]);
    await waitAbout(b, 'msg', 'scores', 2);
    expect(b.frames.filter((f) => f.t === 'error')).to.deep.equal([]);
    expect(about(b, 'msg', 'scores').map((m) => m['seq'])).to.deep.equal(missed);
    const s4 = await app.publishTopicOk('scores', { n: 4 });
    expect((await waitAbout(b, 'msg', 'scores', 3))[2]).to.include({ seq: s4 });
    // Unbound, the topic is the token's again: not granted.
    await unbind('cal', 'scores');
    await waitAbout(b, 'unsubscribed', 'scores');
    b.send({ t: 'sub', topic: 'scores', since: s1 });
    expect(await b.waitFor((f) => f.t === 'error')).to.include({ code: 'topic_forbidden', topic: 'scores' });
  });

  it('connections opening while a bind happens, on two edges, each get one subscribed and each message once', async function () {
    const one = async (user: string, topic: string, delayMs: number): Promise<void> => {
      const opening = Array.from({ length: 20 }, (_, k) => app.connect(user, `d${k}`, '', stack.edges[k % 2]));
      await sleep(delayMs);
      const bound = bind(user, topic);
      const conns = (await Promise.all(opening)).map(keep);
      expect((await bound).status).to.equal(200);
      for (const c of conns) await waitAbout(c, 'subscribed', topic);
      const seq = await app.publishTopicOk(topic, { user });
      for (const c of conns) await waitAbout(c, 'msg', topic);
      for (const c of conns) await c.ping();
      await sleep(150);
      const counts = conns.map((c) => [about(c, 'subscribed', topic).length, about(c, 'msg', topic).length]);
      expect(counts, `${user}: [subscribed, msg] of each connection (msg seq ${seq})`).to.deep.equal(
        conns.map(() => [1, 1]),
      );
      for (const c of conns) c.terminate();
    };
    for (let round = 0; round < 3; round++) {
      await Promise.all(
        Array.from({ length: 5 }, (_, i) => one(`race-${round}-${i}`, `race-topic-${round}-${i}`, i * 3)),
      );
    }
  });

  it('a new connection starts subscribed to its bound topics, also on an edge started after the bind', async function () {
    expect((await bind('bea', 'news')).status).to.equal(200);
    expect((await bind('bea', 'sport')).status).to.equal(200);
    const edge = await stack.startEdge();
    const c = keep(await app.connect('bea', 'phone', '', edge));
    await waitAbout(c, 'subscribed', 'news');
    await waitAbout(c, 'subscribed', 'sport');
    // After hello.
    expect(c.frames[0]?.t).to.equal('hello');
    const seq = await app.publishTopicOk('news', { hi: 'bea' });
    expect((await waitAbout(c, 'msg', 'news'))[0]).to.include({ seq });
    // The edge restarts (a new process in production): the next connection is subscribed again.
    await edge.stop();
    stack.edges.splice(stack.edges.indexOf(edge), 1);
    const again = await stack.startEdge();
    const d = keep(await app.connect('bea', 'tablet', '', again));
    await waitAbout(d, 'subscribed', 'news');
    await waitAbout(d, 'subscribed', 'sport');
    // Unbound: no longer at connect.
    await unbind('bea', 'sport');
    const e = keep(await app.connect('bea', 'watch', '', again));
    await waitAbout(e, 'subscribed', 'news');
    await e.ping();
    await sleep(100);
    expect(about(e, 'subscribed', 'sport')).to.deep.equal([]);
  });

  it('refuses bad topics, reserved names, a bad key and too many bindings; an unknown user is fine', async function () {
    for (const t of ['_all', '_x', 'a'.repeat(10_000), 'tab\there']) {
      const r = await bind('cy', t);
      expect(r.status, t.slice(0, 20)).to.equal(400);
      expect((r.body['error'] as { code: string }).code).to.equal('invalid_topic');
    }
    // Dots, stars, > and spaces are fine in names (encoded as subject tokens).
    for (const t of ['a.b', 'x*', '>']) expect((await bind('cy', t)).status, t).to.equal(200);
    const over = await bind('cy', 'fourth');
    expect(over.status).to.equal(409);
    expect((over.body['error'] as { code: string }).code).to.equal('too_many_bindings');
    expect(await bindings('cy')).to.deep.equal(['>', 'a.b', 'x*'].sort());
    const badKey = await stack.http('PUT', path_('cy', 'news'), 'nope');
    expect(badKey.status).to.equal(401);
    const badUser = await stack.http('PUT', `/v1/apps/${app.id}/users/%ZZ/topics/news`, app.apiKey);
    expect((badUser.body['error'] as { code: string }).code).to.equal('invalid_id');
    // A client's own subscriptions share maxTopicsPerConnection with its bound topics.
    const c = keep(await app.connect('cy', 'phone'));
    for (const t of ['a.b', 'x*', '>']) await waitAbout(c, 'subscribed', t);
    await bind('cy', 'a.b'); // already held: no error
    const wrong = await stack.http('POST', path_('cy', 'x'), app.apiKey);
    expect(wrong.status).to.equal(405);
  });

  it('NATS forms: push.api.topics.bind, .unbind, .bindings', async function () {
    const subjects = new Subjects(stack.prefix);
    const h = headers();
    h.set('Authorization', `Bearer ${app.apiKey}`);
    const call = async (op: string, body: unknown): Promise<Record<string, unknown>> => {
      const m = await nc.request(`${stack.prefix}.api.topics.${op}`, JSON.stringify(body), {
        timeout: 5000,
        headers: h,
      });
      return m.json<Record<string, unknown>>();
    };
    expect(subjects.api('topics.bind')).to.equal(`${stack.prefix}.api.topics.bind`);
    const c = keep(await app.connect('dan', 'phone'));
    expect(await call('bind', { app: app.id, user: 'dan', topic: 'ops' })).to.deep.equal({
      ok: true,
      topic: 'ops',
      created: true,
      bindings: 1,
    });
    await waitAbout(c, 'subscribed', 'ops');
    expect(await call('bindings', { app: app.id, user: 'dan' })).to.deep.equal({ ok: true, topics: ['ops'] });
    expect(await call('unbind', { app: app.id, user: 'dan', topic: 'ops' })).to.deep.equal({
      ok: true,
      topic: 'ops',
      removed: true,
    });
    await waitAbout(c, 'unsubscribed', 'ops');
    const bad = await call('bind', { app: app.id, user: 'dan', topic: '_all' });
    expect(bad['error']).to.include({ code: 'invalid_topic', status: 400 });
    const noTopic = await call('bind', { app: app.id, user: 'dan' });
    expect(noTopic['error']).to.include({ code: 'invalid_topic', status: 400 });
  });

  it('CLI: topics bind, bindings, publish, watch, unbind', async function () {
    const env = { PATH: process.env['PATH'] ?? '', ...stack.env, PUSH_LOG_LEVEL: 'warn' };
    const cliPath = path.join(ROOT, 'apps/center/dist/cli.js');
    const cli = async (...args: string[]): Promise<Record<string, unknown>> => {
      const r = await run(process.execPath, [cliPath, ...args], { cwd: ROOT, env, timeout: 20_000 });
      return JSON.parse(r.stdout) as Record<string, unknown>;
    };
    const c = keep(await app.connect('eve', 'phone'));
    expect(await cli('topics', 'bind', '--app', app.id, '--user', 'eve', '--topic', 'alerts')).to.include({
      topic: 'alerts',
      created: true,
    });
    await waitAbout(c, 'subscribed', 'alerts');
    expect(await cli('topics', 'bindings', '--app', app.id, '--user', 'eve')).to.deep.equal({ topics: ['alerts'] });

    // watch: prints the topic's messages as JSON lines.
    const port = new URL(stack.wsUrl()).port;
    const watcher = spawn(
      process.execPath,
      [
        cliPath,
        'topics',
        'watch',
        '--app',
        app.id,
        '--user',
        'wes',
        '--topic',
        'alerts',
        '--url',
        `ws://127.0.0.1:${port}/ws`,
      ],
      { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    watcher.stdout.on('data', (d: Buffer) => (out += d.toString()));
    watcher.stderr.on('data', (d: Buffer) => (err += d.toString()));
    try {
      const deadline = Date.now() + 15_000;
      while (!err.includes('subscribed to alerts')) {
        if (Date.now() > deadline) throw new Error(`watch did not subscribe: ${err}`);
        await sleep(50);
      }
      const published = await cli('topics', 'publish', '--app', app.id, '--topic', 'alerts', '--data', '{"level":3}');
      expect(published).to.include({ topic: 'alerts', duplicate: false });
      const seq = published['seq'] as number;
      while (!out.includes('\n')) {
        if (Date.now() > deadline) throw new Error(`watch printed nothing: ${err}`);
        await sleep(50);
      }
      const line = JSON.parse(out.split('\n')[0] ?? '') as Record<string, unknown>;
      expect(line).to.include({ t: 'msg', topic: 'alerts', seq });
      expect(line['data']).to.deep.equal({ level: 3 });
      expect((await waitAbout(c, 'msg', 'alerts'))[0]).to.include({ seq });
    } finally {
      watcher.kill('SIGINT');
    }
    expect(await cli('topics', 'unbind', '--app', app.id, '--user', 'eve', '--topic', 'alerts')).to.deep.equal({
      topic: 'alerts',
      removed: true,
    });
    await waitAbout(c, 'unsubscribed', 'alerts');
    const bad = await run(
      process.execPath,
      [cliPath, 'topics', 'bind', '--app', app.id, '--user', 'eve', '--topic', '_all'],
      {
        cwd: ROOT,
        env,
      },
    ).catch((e: { code: number; stderr: string }) => e);
    expect(bad).to.include({ code: 1 });
    expect((bad as { stderr: string }).stderr).to.contain('invalid_topic');
  });

  it('bindings survive a center restart: listed, and a new connection starts subscribed', async function () {
    expect((await bind('fay', 'weather')).status).to.equal(200);
    await stack.center.stop();
    const cfg = stack.config();
    stack.center = createCenter(cfg, { logger: createLogger({ level: cfg.log.level, name: 'center' }) });
    await stack.center.start();
    expect(await bindings('fay')).to.deep.equal(['weather']);
    const c = keep(await app.connect('fay', 'phone'));
    await waitAbout(c, 'subscribed', 'weather');
    const seq = await app.publishTopicOk('weather', { sun: true });
    expect((await waitAbout(c, 'msg', 'weather'))[0]).to.include({ seq });
  });
});
