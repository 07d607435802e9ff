import { expect } from 'chai';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { createCenter, type Center } from '@push/center';
import { createLogger } from '@push/logger';
import { badPushItems, badTopicItems } from '../helpers/batch-errors.js';
import { Stack, type TestApp } from '../helpers/stack.js';
import type { TestClient } from '../helpers/ws-client.js';
import { NATS_URL } from '../helpers/nats-server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Answer = { ok?: true; error?: { code: string; message: string; status: number } } & Record<string, unknown>;

describe('center API over NATS request/reply', function () {
  let stack: Stack;
  let app: TestApp;
  let other: TestApp;
  let nc: NatsConnection;
  const clients: TestClient[] = [];

  before(async function () {
    stack = await Stack.start();
    app = await stack.createApp();
    other = await stack.createApp();
    nc = await connect({ servers: NATS_URL });
  });
  after(async function () {
    for (const c of clients) c.terminate();
    await nc?.close();
    await stack?.close();
  });

  async function connectClient(user: string, device = 'default'): Promise<TestClient> {
    const c = await app.connect(user, device);
    clients.push(c);
    return c;
  }

  /** Sends a request to `<prefix>.api.<op>`; `authorization` is the raw header (none when undefined). */
  async function call(
    op: 'push' | 'topics.publish' | 'topics.presence' | 'user' | 'apps.delete',
    body: unknown,
    authorization?: string,
  ): Promise<Answer> {
    const h = headers();
    if (authorization !== undefined) h.set('Authorization', authorization);
    const payload = typeof body === 'string' ? body : JSON.stringify(body);
    const reply = await nc.request(`${stack.prefix}.api.${op}`, payload, { timeout: 5000, headers: h });
    return reply.json<Answer>();
  }
  const key = (a: TestApp = app) => `Bearer ${a.apiKey}`;

  it('push: stores the message and answers { ok, seq }; the connected client receives it', async function () {
    const c = await connectClient('nina');
    const r = await call('push', { app: app.id, user: 'nina', data: { via: 'nats' } }, key());
    expect(r).to.include({ ok: true, duplicate: false });
    expect(r['seq']).to.be.a('number');
    expect(r.error).to.equal(undefined);
    const [m] = await c.waitForMessages(1);
    expect(m?.seq).to.equal(r['seq']);
    expect(m?.data).to.deep.equal({ via: 'nats' });
  });

  it('push: a batch answers every sequence, each user gets their own message', async function () {
    const o = await connectClient('olga');
    const p = await connectClient('pete');
    const r = await call(
      'push',
      {
        app: app.id,
        messages: [
          { user: 'olga', data: 'for olga' },
          { user: 'pete', b64: Buffer.from([1, 2, 3]).toString('base64') },
        ],
      },
      key(),
    );
    expect(r.ok).to.equal(true);
    const results = r['results'] as Array<{ user: string; seq: number; duplicate: boolean }>;
    expect(results.map((x) => x.user)).to.deep.equal(['olga', 'pete']);
    const [om] = await o.waitForMessages(1);
    const [pm] = await p.waitForMessages(1);
    expect(om).to.include({ seq: results[0]?.seq, data: 'for olga' });
    expect(pm?.seq).to.equal(results[1]?.seq);
    expect(Buffer.from(pm?.b64 ?? '', 'base64')).to.deep.equal(Buffer.from([1, 2, 3]));
  });

  it('user: answers pending count and presence', async function () {
    await call('push', { app: app.id, user: 'quinn', data: 1 }, key());
    await call('push', { app: app.id, user: 'quinn', data: 2 }, key());
    const offline = await call('user', { app: app.id, user: 'quinn' }, key());
    expect(offline).to.deep.equal({ ok: true, user: 'quinn', pending: 2, online: false, connections: [] });

    const c = await connectClient('quinn', 'watch');
    const ms = await c.waitForMessages(2);
    c.ack(ms.map((m) => m.seq));
    const deadline = Date.now() + 5000;
    let r = await call('user', { app: app.id, user: 'quinn' }, key());
    while ((r['pending'] !== 0 || r['online'] !== true) && Date.now() < deadline) {
      await sleep(25);
      r = await call('user', { app: app.id, user: 'quinn' }, key());
    }
    expect(r).to.include({ ok: true, pending: 0, online: true });
    const conns = r['connections'] as Array<{ device: string; edge: string }>;
    expect(conns.map((x) => [x.device, x.edge])).to.deep.equal([['watch', stack.edge.edgeId]]);
  });

  it('refuses a missing, malformed, wrong or foreign API key with the HTTP codes and stores nothing', async function () {
    const cases: Array<[string | undefined, string, number]> = [
      [undefined, 'api_key_missing', 401],
      ['', 'api_key_missing', 401],
      [app.apiKey, 'api_key_missing', 401], // not "Bearer <key>"
      ['Bearer pk_not-a-real-key', 'api_key_invalid', 401],
      [key(other), 'wrong_app', 403],
    ];
    for (const [auth, code, status] of cases) {
      for (const op of ['push', 'user'] as const) {
        const body = op === 'push' ? { app: app.id, user: 'rob', data: 'no' } : { app: app.id, user: 'rob' };
        const r = await call(op, body, auth);
        expect(r.ok, `${op} with ${String(auth)}`).to.equal(undefined);
        expect(r.error, `${op} with ${String(auth)}`).to.include({ code, status });
        expect(r.error?.message).to.be.a('string').and.not.equal('');
      }
    }
    const unknown = await call('push', { app: 'no-such-app', user: 'rob', data: 'no' }, key());
    expect(unknown.error).to.include({ code: 'app_not_found', status: 404 });
    expect((await app.user('rob')).body['pending']).to.equal(0);
  });

  it('refuses bad bodies with bad_json, bad_request, invalid_id, invalid_data and invalid_ttl', async function () {
    const cases: Array<['push' | 'user', unknown, string]> = [
      ['push', '{"app":', 'bad_json'],
      ['push', '', 'bad_json'],
      ['push', '[1,2]', 'bad_request'],
      ['push', 'null', 'bad_request'],
      ['push', { user: 'sue', data: 1 }, 'invalid_id'],
      ['push', { app: 7, user: 'sue', data: 1 }, 'invalid_id'],
      ['push', { app: app.id, data: 1 }, 'invalid_id'],
      ['push', { app: app.id, user: 'sue' }, 'invalid_data'],
      ['push', { app: app.id, user: 'sue', data: 1, b64: 'AA==' }, 'invalid_data'],
      ['push', { app: app.id, user: 'sue', data: 1, ttl: -5 }, 'invalid_ttl'],
      ['push', { app: app.id, messages: [] }, 'bad_request'],
      ['push', { app: app.id, messages: [{ user: 'sue', data: 1 }, { user: 'sue' }] }, 'invalid_data'],
      ['user', { app: app.id }, 'invalid_id'],
      ['user', '{{', 'bad_json'],
    ];
    for (const [op, body, code] of cases) {
      const r = await call(op, body, key());
      expect(r.error, `${op} ${JSON.stringify(body)}`).to.include({ code, status: 400 });
    }
    // Nothing of a half-bad batch was stored.
    expect((await app.user('sue')).body['pending']).to.equal(0);
    // The service still answers.
    expect((await call('push', { app: app.id, user: 'sue', data: 'fine' }, key())).ok).to.equal(true);
  });

  it('names the bad message of a push or topic batch by its index, for every kind of per-message error (issue 14)', async function () {
    const small = await stack.createApp({ maxMessageBytes: 1024 });
    const ops = [
      { op: 'push', good: { user: 'u', data: 1 }, bad: badPushItems },
      { op: 'topics.publish', good: { topic: 't', data: 1 }, bad: badTopicItems },
    ] as const;
    for (const { op, good, bad } of ops) {
      for (const { item, code, status, message } of bad) {
        const r = await call(op, { app: small.id, messages: [good, item] }, key(small));
        const what = `${op} ${JSON.stringify(item)}`;
        expect(r.error, what).to.include({ code, status });
        expect(r.error?.message, what).to.match(/^messages\[1\]: /);
        if (message !== undefined) expect(r.error?.message, what).to.equal(message);
      }
    }
    expect((await small.user('u')).body['pending']).to.equal(0);
  });

  it('apps.delete: with the admin key deletes the app and closes its clients; again answers app_not_found', async function () {
    const doomed = await stack.createApp();
    const c = await doomed.connect('vic');
    clients.push(c);
    const refused = await call('apps.delete', { app: doomed.id }, key(doomed)); // an API key is not the admin key
    expect(refused.error).to.include({ code: 'admin_key_invalid', status: 401 });
    const r = await call('apps.delete', { app: doomed.id }, `Bearer ${stack.adminKey}`);
    expect(r, JSON.stringify(r)).to.deep.equal({ ok: true });
    expect(await c.waitClosed()).to.equal(4003);
    expect((await stack.http('GET', `/v1/admin/apps/${doomed.id}`, stack.adminKey)).status).to.equal(404);
    const again = await call('apps.delete', { app: doomed.id }, `Bearer ${stack.adminKey}`);
    expect(again.error).to.include({ code: 'app_not_found', status: 404 });
    const bad = await call('apps.delete', { app: '' }, `Bearer ${stack.adminKey}`);
    expect(bad.error).to.include({ code: 'invalid_id', status: 400 });
    // As every operation: a bad `app` answers invalid_id before the key is checked.
    expect((await call('apps.delete', {})).error).to.include({ code: 'invalid_id', status: 400 });
    // Reserved topic names answer invalid_topic, as the HTTP route does.
    const reserved = await call('topics.presence', { app: app.id, topic: '_x' }, key());
    expect(reserved.error).to.include({ code: 'invalid_topic', status: 400 });
  });

  it('answers a rate-limited push with rate_limited and when to retry', async function () {
    const limited = await stack.createApp({ pushRateLimit: 2 });
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => call('push', { app: limited.id, user: 'u', data: i }, key(limited))),
    );
    const refused = answers.filter((a) => a.error !== undefined);
    expect(answers.filter((a) => a['ok'] === true)).to.have.length.greaterThan(0);
    expect(refused).to.have.length.greaterThan(0);
    for (const r of refused) {
      expect(r.error).to.include({ code: 'rate_limited', status: 429 });
      expect((r.error as unknown as { retryAfter: number }).retryAfter)
        .to.be.a('number')
        .greaterThan(0);
    }
  });

  it('dedupes by idempotency id over NATS, and across NATS and HTTP', async function () {
    const c = await connectClient('tess');
    const a = await call('push', { app: app.id, user: 'tess', data: 'once', id: 'invoice-9' }, key());
    const b = await call('push', { app: app.id, user: 'tess', data: 'once', id: 'invoice-9' }, key());
    expect(a).to.include({ ok: true, duplicate: false });
    expect(b).to.include({ ok: true, duplicate: true, seq: a['seq'] });
    const viaHttp = await app.push({ user: 'tess', data: 'once', id: 'invoice-9' });
    expect(viaHttp.body).to.include({ duplicate: true, seq: a['seq'] });
    // The same id for another user is another message.
    const forOther = await call('push', { app: app.id, user: 'uma', data: 'once', id: 'invoice-9' }, key());
    expect(forOther).to.include({ ok: true, duplicate: false });
    expect(forOther['seq']).to.not.equal(a['seq']);

    await c.waitForMessages(1);
    await c.ping();
    await sleep(100);
    expect(c.messages.map((m) => m.seq)).to.deep.equal([a['seq']]);
  });

  it('is served once per request by a queue group of several centers', async function () {
    const cfg = stack.config();
    const second: Center = createCenter(cfg, { logger: createLogger({ level: cfg.log.level, name: 'center-2' }) });
    await second.start();
    try {
      const served = async (c: Center) =>
        (await c.registry.getSingleMetricAsString('push_center_requests_total'))
          .split('\n')
          .filter((l) => l.includes('transport="nats"') && l.includes('op="push"'))
          .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
      // Push in rounds until the second center has served some (its subscription reaches the
      // server shortly after start() returns): both centers take part.
      const answers: Answer[] = [];
      const deadline = Date.now() + 5000;
      while ((await served(second)) === 0 || answers.length < 30) {
        if (Date.now() > deadline) throw new Error('the second center never served a request');
        const round = await Promise.all(
          Array.from({ length: 10 }, () => call('push', { app: app.id, user: 'vic', data: answers.length }, key())),
        );
        answers.push(...round);
      }
      expect(answers.every((a) => a.ok === true)).to.equal(true);
      expect(new Set(answers.map((a) => a['seq'])).size).to.equal(answers.length);
      // Each request stored once: two centers both handling one would store it twice.
      expect((await app.user('vic')).body['pending']).to.equal(answers.length);
    } finally {
      await second.stop();
    }
  });
});
