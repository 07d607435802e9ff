import { headers } from '@nats-io/nats-core';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import type { Edge } from '@push/edge';
import type { NatsConnection } from '@push/nats';
import { Subjects } from '@push/protocol';
import { runCli } from '../helpers/cli.js';
import { Stack, type TestApp } from '../helpers/stack.js';
import { waitStream } from '../helpers/streams.js';
import type { TestClient } from '../helpers/ws-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function counter(edge: Edge, name: string): Promise<number> {
  const m = await edge.registry.getSingleMetric(name)?.get();
  return m?.values.reduce((sum, v) => sum + v.value, 0) ?? 0;
}

interface Listed {
  seq: number;
  user: string;
  inboxSeq: number;
  deliveries: number;
  movedAt: number;
  data?: unknown;
}

/**
 * Never-ack loops (issue 17 part 3): a message delivered `maxDeliveries` times without an ack
 * leaves the user's inbox for the app's undeliverable list, across reconnects and edges; the
 * list is listed, replayed and purged over HTTP, NATS and the CLI.
 */
describe('never-ack loops: maxDeliveries and the undeliverable list (issue 17 part 3)', function () {
  this.timeout(60_000);
  let stack: Stack;
  let app: TestApp;
  let nc: NatsConnection;
  let subjects: Subjects;
  const clients: TestClient[] = [];

  before(async function () {
    stack = await Stack.start();
    await stack.startEdge(); // two edges: the count holds across them
    app = await stack.createApp({ maxDeliveries: 3 });
    subjects = new Subjects(stack.prefix);
    nc = await stack.connectNats('test-never-ack');
  });
  after(async function () {
    for (const c of clients) c.terminate();
    await nc?.close();
    await stack?.close();
  });

  async function connect(a: TestApp, user: string, edge: Edge): Promise<TestClient> {
    const c = await a.connect(user, 'phone', '', edge);
    clients.push(c);
    return c;
  }

  /** Connects to `edge`, waits for the one message, and leaves without acking it. */
  async function receiveAndDrop(a: TestApp, user: string, edge: Edge, seq: number): Promise<void> {
    const c = await connect(a, user, edge);
    const [m] = await c.waitForMessages(1);
    expect(m?.seq).to.equal(seq);
    c.close();
    await c.waitClosed();
  }

  const path = (a: TestApp, rest = '') => `/v1/apps/${encodeURIComponent(a.id)}/undeliverable${rest}`;
  const list = async (a: TestApp, query = '') => {
    const r = await stack.http<{ undeliverable: Listed[] }>('GET', path(a, query), a.apiKey);
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
    return r.body.undeliverable;
  };
  async function waitListed(a: TestApp, n: number, query = ''): Promise<Listed[]> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const l = await list(a, query);
      if (l.length === n) return l;
      if (Date.now() > deadline) throw new Error(`undeliverable list holds ${JSON.stringify(l)}, wanted ${n}`);
      await sleep(25);
    }
  }

  it('a client that reconnects (alternately to two edges) and never acks stops getting the message after maxDeliveries', async function () {
    const [e0, e1] = stack.edges as [Edge, Edge];
    const before =
      (await counter(e0, 'push_edge_undeliverable_total')) + (await counter(e1, 'push_edge_undeliverable_total'));
    const seq = await app.pushOk('ann', { text: 'never acked' });
    await receiveAndDrop(app, 'ann', e0, seq);
    await receiveAndDrop(app, 'ann', e1, seq);
    expect(await list(app)).to.deep.equal([]); // two unacked deliveries: still in the inbox
    await receiveAndDrop(app, 'ann', e0, seq);
    const [listed] = await waitListed(app, 1);
    expect(listed).to.include({ user: 'ann', inboxSeq: seq, deliveries: 3 });
    expect(listed?.data).to.deep.equal({ text: 'never acked' });
    await app.waitPending('ann', 0);
    // The fourth connection, on either edge, gets nothing.
    for (const edge of [e1, e0]) {
      const c = await connect(app, 'ann', edge);
      await c.ping();
      await sleep(300);
      expect(c.messages).to.have.length(0);
      c.close();
      await c.waitClosed();
    }
    const after =
      (await counter(e0, 'push_edge_undeliverable_total')) + (await counter(e1, 'push_edge_undeliverable_total'));
    expect(after - before).to.equal(1);
    const events = await waitStream(nc, subjects.eventsStream(app.id), (r) =>
      r.some((e) => e.body['type'] === 'undeliverable'),
    );
    const evt = events.find((e) => e.body['type'] === 'undeliverable');
    expect(evt?.body).to.include({ app: app.id, user: 'ann', seq, deliveries: 3 });
  });

  it('replay puts the message back into the inbox (delivered again), and the list is empty after', async function () {
    const r = await stack.http('POST', path(app, '/replay?user=ann'), app.apiKey);
    expect(r.status).to.equal(200);
    expect(r.body).to.deep.equal({ replayed: 1, expired: 0 });
    expect(await list(app)).to.deep.equal([]);
    const c = await connect(app, 'ann', stack.edges[1] as Edge);
    const [m] = await c.waitForMessages(1);
    expect(m?.data).to.deep.equal({ text: 'never acked' });
    c.ack([m?.seq as number]);
    await app.waitPending('ann', 0);
    c.close();
    await c.waitClosed();
  });

  it('a client that acks late (after two unacked deliveries) is unaffected', async function () {
    const [e0, e1] = stack.edges as [Edge, Edge];
    const seq = await app.pushOk('bob', { text: 'acked late' });
    await receiveAndDrop(app, 'bob', e0, seq);
    await receiveAndDrop(app, 'bob', e1, seq);
    const c = await connect(app, 'bob', e0);
    const [m] = await c.waitForMessages(1);
    expect(m?.seq).to.equal(seq);
    c.ack([seq]);
    await app.waitPending('bob', 0);
    c.close();
    await c.waitClosed();
    // A newer message of the same user starts its own count: two unacked deliveries keep it.
    const next = await app.pushOk('bob', { text: 'second' });
    await receiveAndDrop(app, 'bob', e1, next);
    await receiveAndDrop(app, 'bob', e0, next);
    await sleep(300);
    expect(await list(app, '?user=bob')).to.deep.equal([]);
    const again = await connect(app, 'bob', e1);
    const [n] = await again.waitForMessages(1);
    expect(n?.seq).to.equal(next);
    again.ack([next]);
    await app.waitPending('bob', 0);
  });

  it('purge empties the list; maxDeliveries 0 moves nothing', async function () {
    const [e0, e1] = stack.edges as [Edge, Edge];
    const seq = await app.pushOk('cid', { text: 'to purge' });
    for (const edge of [e0, e1, e0]) await receiveAndDrop(app, 'cid', edge, seq);
    await waitListed(app, 1, '?user=cid');
    const r = await stack.http('DELETE', path(app, '?user=cid'), app.apiKey);
    expect(r.status).to.equal(200);
    expect(r.body).to.deep.equal({ purged: 1 });
    expect(await list(app)).to.deep.equal([]);
    await app.waitPending('cid', 0);

    const off = await stack.createApp({ maxDeliveries: 0 });
    const kept = await off.pushOk('dan', { text: 'loops on' });
    for (const edge of [e0, e1, e0, e1]) await receiveAndDrop(off, 'dan', edge, kept);
    expect(await list(off)).to.deep.equal([]);
    expect((await off.user('dan')).body['pending']).to.equal(1);
  });

  it('two devices on two edges at once each count one delivery', async function () {
    const [e0, e1] = stack.edges as [Edge, Edge];
    const seq = await app.pushOk('gus', { text: 'two devices' });
    const phone = await app.connect('gus', 'phone', '', e0);
    const laptop = await app.connect('gus', 'laptop', '', e1);
    clients.push(phone, laptop);
    await Promise.all([phone.waitForMessages(1), laptop.waitForMessages(1)]);
    phone.close();
    laptop.close();
    await Promise.all([phone.waitClosed(), laptop.waitClosed()]);
    await sleep(300);
    expect(await list(app, '?user=gus')).to.deep.equal([]);
    await receiveAndDrop(app, 'gus', e1, seq); // the third delivery without an ack
    const [listed] = await waitListed(app, 1, '?user=gus');
    expect(listed).to.include({ inboxSeq: seq, deliveries: 3 });
    expect((await stack.http('DELETE', path(app, '?user=gus'), app.apiKey)).body).to.deep.equal({ purged: 1 });
  });

  it('deleting the app drops its counts: the same id made again starts from none', async function () {
    const id = `recreated-${stack.prefix}`;
    const first = await stack.createApp({ maxDeliveries: 3 }, id);
    const seq = await first.pushOk('hal', { text: 'old' });
    await receiveAndDrop(first, 'hal', stack.edge, seq);
    await receiveAndDrop(first, 'hal', stack.edge, seq);
    const redis = new Redis(stack.env['PUSH_REDIS_URL'] ?? 'redis://127.0.0.1:6379');
    try {
      // Sync point only: the second close's count is written before the app goes.
      const key = subjects.deliveryCountsKey(id, 'hal');
      const deadline = Date.now() + 5000;
      while ((await redis.hget(key, String(seq))) !== '2') {
        if (Date.now() > deadline) throw new Error('the count never reached 2');
        await sleep(25);
      }
      const del = await stack.http('DELETE', `/v1/admin/apps/${id}`, stack.adminKey);
      expect(del.status).to.equal(204);
      expect(await redis.exists(key)).to.equal(0);
    } finally {
      redis.disconnect();
    }
    const again = await stack.createApp({ maxDeliveries: 3 }, id);
    const fresh = await again.pushOk('hal', { text: 'new' });
    expect(fresh).to.equal(seq); // a new stream numbers from 1 again
    await receiveAndDrop(again, 'hal', stack.edge, fresh);
    await sleep(300);
    expect(await list(again)).to.deep.equal([]);
    expect((await again.user('hal')).body['pending']).to.equal(1);
  });

  it('answers bad input on the routes with clear codes, and an app key of another app sees nothing', async function () {
    const other = await stack.createApp();
    const cases: Array<[string, string, string | undefined, number, string]> = [
      ['GET', path(app, '?limit=0'), app.apiKey, 400, 'bad_request'],
      ['GET', path(app, '?limit=abc'), app.apiKey, 400, 'bad_request'],
      ['GET', path(app, '?after=-1'), app.apiKey, 400, 'bad_request'],
      ['GET', path(app, '?user='), app.apiKey, 400, 'invalid_id'],
      ['POST', path(app, '/replay?user='), app.apiKey, 400, 'invalid_id'],
      ['DELETE', path(app, '?user=%00'), app.apiKey, 400, 'invalid_id'],
      ['GET', path(app), undefined, 401, 'api_key_missing'],
      ['GET', path(app), 'not-a-key', 401, 'api_key_invalid'],
      ['GET', path(app), other.apiKey, 403, 'wrong_app'],
      ['POST', path(app, '/replay'), other.apiKey, 403, 'wrong_app'],
      ['DELETE', path(app), other.apiKey, 403, 'wrong_app'],
      ['GET', '/v1/apps/nope/undeliverable', stack.adminKey, 404, 'app_not_found'],
      ['PUT', path(app), app.apiKey, 405, 'method_not_allowed'],
    ];
    for (const [method, p, key, status, code] of cases) {
      const r = await stack.http<{ error?: { code: string } }>(method, p, key);
      expect([r.status, r.body.error?.code], `${method} ${p}`).to.deep.equal([status, code]);
    }
    // The admin key opens any app's list.
    const admin = await stack.http('GET', path(app), stack.adminKey);
    expect(admin.status).to.equal(200);
    // A setting out of range is refused when the app is saved.
    const bad = await stack.http<{ error?: { code: string } }>('POST', '/v1/admin/apps', stack.adminKey, {
      settings: { maxDeliveries: -1 },
    });
    expect([bad.status, bad.body.error?.code]).to.deep.equal([400, 'bad_request']);
  });

  it('replays at once put each message back once, and each is counted in one answer', async function () {
    const once = await stack.createApp({ maxDeliveries: 1 });
    const [e0] = stack.edges as [Edge];
    for (let i = 0; i < 20; i++) await once.pushOk('rho', { i });
    const c = await connect(once, 'rho', e0);
    await c.waitForMessages(20);
    c.close();
    await c.waitClosed();
    await waitListed(once, 20);
    const answers = await Promise.all(
      [1, 2, 3].map(() =>
        stack.http<{ replayed: number; expired: number }>('POST', path(once, '/replay'), once.apiKey),
      ),
    );
    expect(answers.map((a) => a.status)).to.deep.equal([200, 200, 200]);
    expect(
      answers.reduce((n, a) => n + a.body.replayed, 0),
      'replayed, summed over the answers',
    ).to.equal(20);
    expect(await list(once)).to.deep.equal([]);
    await once.waitPending('rho', 20);
  });

  it('lists, replays and purges over NATS request/reply, with the same codes', async function () {
    const [e0, e1] = stack.edges as [Edge, Edge];
    const seq = await app.pushOk('eve', { text: 'over nats' });
    for (const edge of [e1, e0, e1]) await receiveAndDrop(app, 'eve', edge, seq);
    await waitListed(app, 1, '?user=eve');
    const call = async (op: string, body: unknown, key = app.apiKey) => {
      const h = headers();
      h.set('Authorization', `Bearer ${key}`);
      const m = await nc.request(`${stack.prefix}.api.undeliverable.${op}`, JSON.stringify(body), {
        headers: h,
        timeout: 5000,
      });
      return m.json<Record<string, unknown> & { error?: { code: string; status: number } }>();
    };
    const listed = await call('list', { app: app.id, user: 'eve', limit: 10 });
    expect(listed['ok']).to.equal(true);
    expect((listed['undeliverable'] as Listed[]).map((l) => [l.user, l.inboxSeq])).to.deep.equal([['eve', seq]]);
    expect((await call('list', { app: app.id, limit: 0 })).error).to.include({ code: 'bad_request', status: 400 });
    // A JSON request takes numbers as numbers (a query string's digits are an HTTP thing).
    expect((await call('list', { app: app.id, limit: '5' })).error).to.include({ code: 'bad_request', status: 400 });
    expect((await call('list', { app: app.id, after: '0' })).error).to.include({ code: 'bad_request' });
    expect((await call('list', { app: app.id, users: 'eve' })).error).to.include({ code: 'bad_request' });
    expect((await call('list', { app: app.id, user: 7 })).error).to.include({ code: 'invalid_id' });
    const other = await stack.createApp();
    expect((await call('list', { app: app.id }, other.apiKey)).error).to.include({ code: 'wrong_app', status: 403 });
    expect((await call('purge', { app: app.id }, other.apiKey)).error).to.include({ code: 'wrong_app' });
    expect(await call('replay', { app: app.id, user: 'eve' })).to.deep.equal({ ok: true, replayed: 1, expired: 0 });
    const c = await connect(app, 'eve', e0);
    const [m] = await c.waitForMessages(1);
    expect(m?.data).to.deep.equal({ text: 'over nats' });
    c.close();
    await c.waitClosed();
    for (const edge of [e1, e0]) await receiveAndDrop(app, 'eve', edge, m?.seq as number);
    await waitListed(app, 1, '?user=eve');
    expect(await call('purge', { app: app.id })).to.deep.equal({ ok: true, purged: 1 });
    expect(await list(app)).to.deep.equal([]);
  });

  it('lists, replays and purges from the CLI', async function () {
    const [e0, e1] = stack.edges as [Edge, Edge];
    const seq = await app.pushOk('fay', { text: 'from the cli' });
    for (const edge of [e0, e1, e0]) await receiveAndDrop(app, 'fay', edge, seq);
    await waitListed(app, 1, '?user=fay');
    const env = { ...stack.env, PUSH_REDIS_URL: stack.env['PUSH_REDIS_URL'] ?? 'redis://127.0.0.1:6379' };
    const cli = (...args: string[]) => runCli(args, env);
    const l = await cli('undeliverable', 'list', app.id, '--user', 'fay');
    expect(l.code, l.stderr).to.equal(0);
    const printed = JSON.parse(l.stdout) as { undeliverable: Listed[] };
    expect(printed.undeliverable.map((u) => [u.user, u.inboxSeq, u.deliveries])).to.deep.equal([['fay', seq, 3]]);
    const bad = await cli('undeliverable', 'list', app.id, '--limit', 'x');
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.contain('bad_request');
    expect((await cli('undeliverable', 'list', 'no-such-app')).stderr).to.contain('app_not_found');
    expect((await cli('undeliverable')).code).to.equal(2);
    const rp = await cli('undeliverable', 'replay', app.id, '--user', 'fay');
    expect(JSON.parse(rp.stdout)).to.deep.equal({ replayed: 1, expired: 0 });
    await app.waitPending('fay', 1);
    const c = await connect(app, 'fay', e1);
    const [m] = await c.waitForMessages(1);
    c.close();
    await c.waitClosed();
    for (const edge of [e0, e1]) await receiveAndDrop(app, 'fay', edge, m?.seq as number);
    await waitListed(app, 1, '?user=fay');
    const pg = await cli('undeliverable', 'purge', app.id);
    expect(JSON.parse(pg.stdout)).to.deep.equal({ purged: 1 });
    expect(await list(app)).to.deep.equal([]);
  });
});
