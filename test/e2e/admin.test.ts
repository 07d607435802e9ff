import { expect } from 'chai';
import { signClientToken } from '@push/apps';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { Subjects, type AppRecord, type AppSecret } from '@push/protocol';
import { Stack } from '../helpers/stack.js';
import { TestClient, type Frame } from '../helpers/ws-client.js';
import { NATS_URL } from '../helpers/nats-server.js';
import { runCli, type CliResult } from '../helpers/cli.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type AdminApp = Omit<AppRecord, 'apiKeys'> & { apiKeys: Array<{ id: string; hash?: string }> };

/** Retries `attempt` until it returns a value (not undefined) or the deadline passes. */
async function eventually<T>(what: string, attempt: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await attempt();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(25);
  }
}

describe('admin API and CLI', function () {
  this.timeout(30_000);
  let stack: Stack;
  const clients: TestClient[] = [];

  before(async function () {
    stack = await Stack.start();
  });
  after(async function () {
    for (const c of clients) c.terminate();
    await stack?.close();
  });

  const admin = <T = Record<string, unknown>>(
    method: string,
    p: string,
    body?: unknown,
    key: string | undefined = stack.adminKey,
  ) => stack.http<T>(method, p, key, body);

  async function create(body: Record<string, unknown>): Promise<{ app: AdminApp; apiKey: string; apiKeyId: string }> {
    const r = await admin<{ app: AdminApp; apiKey: string; apiKeyId: string }>('POST', '/v1/admin/apps', body);
    expect(r.status, JSON.stringify(r.body)).to.equal(201);
    return r.body;
  }

  async function connectWith(token: string): Promise<TestClient> {
    const c = await TestClient.connect(stack.wsUrl(), token);
    clients.push(c);
    return c;
  }

  function tokenFor(appId: string, secret: AppSecret, user: string): Promise<string> {
    return signClientToken(secret, { app: appId, user, ttlSeconds: 600 });
  }

  /** Connects or returns the refusal's error code. */
  async function tryConnect(token: string): Promise<TestClient | string> {
    try {
      return await connectWith(token);
    } catch (err) {
      const code = (err as { refusal?: { body: { error?: { code: string } } } }).refusal?.body.error?.code;
      if (code === undefined) throw err;
      return code;
    }
  }

  function pushWith(appId: string, key: string, body: unknown) {
    return stack.http('POST', `/v1/apps/${encodeURIComponent(appId)}/push`, key, body);
  }

  it('refuses every admin route without the admin key or with a wrong one (401 admin_key_invalid)', async function () {
    const a = await create({});
    const routes: Array<[string, string, unknown?]> = [
      ['GET', '/v1/admin/apps'],
      ['POST', '/v1/admin/apps', { id: 'sneaky' }],
      ['GET', `/v1/admin/apps/${a.app.id}`],
      ['PATCH', `/v1/admin/apps/${a.app.id}`, { disabled: true }],
      ['POST', `/v1/admin/apps/${a.app.id}/secrets`],
      ['POST', `/v1/admin/apps/${a.app.id}/keys`],
      ['DELETE', `/v1/admin/apps/${a.app.id}/keys/${a.apiKeyId}`],
    ];
    for (const [method, p, body] of routes) {
      for (const key of [undefined, 'wrong-admin-key-0123456789', `${stack.adminKey}x`, a.apiKey]) {
        const r = await stack.http(method, p, key, body);
        expect(r.status, `${method} ${p} with ${String(key)}`).to.equal(401);
        expect((r.body['error'] as { code: string }).code).to.equal('admin_key_invalid');
      }
    }
    // Nothing of the above took effect.
    const after = await admin<{ app: AdminApp }>('GET', `/v1/admin/apps/${a.app.id}`);
    expect(after.body.app.disabled).to.equal(false);
    expect(after.body.app.secrets).to.deep.equal(a.app.secrets);
    expect(after.body.app.apiKeys).to.deep.equal(a.app.apiKeys);
    expect((await admin('GET', '/v1/admin/apps/sneaky')).status).to.equal(404);
  });

  it('creates, lists and gets apps; a duplicate id gets 409 app_exists; an unknown one 404 app_not_found', async function () {
    const r = await create({
      id: 'shop',
      name: 'The Shop',
      settings: { clientMessaging: true, defaultTtlSeconds: 3600 },
    });
    expect(r.apiKey).to.match(/^pk_/);
    expect(r.app).to.include({ id: 'shop', name: 'The Shop', disabled: false });
    expect(r.app.settings).to.include({ clientMessaging: true, defaultTtlSeconds: 3600 });
    expect(r.app.secrets).to.have.length(1);
    // API keys are shown by id only, never their hash.
    expect(r.app.apiKeys).to.deep.equal([{ id: r.apiKeyId }]);

    const dup = await admin('POST', '/v1/admin/apps', { id: 'shop' });
    expect(dup.status).to.equal(409);
    expect((dup.body['error'] as { code: string }).code).to.equal('app_exists');

    const list = await admin<{ apps: AdminApp[] }>('GET', '/v1/admin/apps');
    expect(list.status).to.equal(200);
    const shop = list.body.apps.find((x) => x.id === 'shop');
    expect(shop?.name).to.equal('The Shop');
    for (const x of list.body.apps) for (const k of x.apiKeys) expect(k).to.have.keys('id');

    const got = await admin<{ app: AdminApp }>('GET', '/v1/admin/apps/shop');
    expect(got.status).to.equal(200);
    expect(got.body.app).to.deep.equal(r.app);

    const missing = await admin('GET', '/v1/admin/apps/no-such-app');
    expect(missing.status).to.equal(404);
    expect((missing.body['error'] as { code: string }).code).to.equal('app_not_found');

    const badId = await admin('POST', '/v1/admin/apps', { id: 'bad\nid' });
    expect(badId.status).to.equal(400);
    expect((badId.body['error'] as { code: string }).code).to.equal('invalid_id');

    // The new app works end to end with its key and secret.
    const c = await connectWith(await tokenFor('shop', r.app.secrets[0]!, 'first-customer'));
    const pushed = await pushWith('shop', r.apiKey, { user: 'first-customer', data: 'welcome' });
    expect(pushed.status).to.equal(200);
    expect((await c.waitForMessages(1))[0]?.data).to.equal('welcome');
  });

  it('updates settings by merging; bad settings get 400 bad_request and change nothing', async function () {
    const a = await create({ settings: { maxMessageBytes: 1000 } });
    const id = a.app.id;
    const before = a.app.settings;

    for (const body of [
      { settings: { maxMessageBytes: 0 } },
      { settings: { defaultTtlSeconds: 'long' } },
      { settings: { noSuchSetting: 1 } },
      { settings: 'big' },
      { disabled: 'yes' },
      { name: '' },
    ]) {
      const r = await admin('PATCH', `/v1/admin/apps/${id}`, body);
      expect(r.status, JSON.stringify(body)).to.equal(400);
      expect((r.body['error'] as { code: string }).code).to.equal('bad_request');
    }
    const notJson = await stack.http('PATCH', `/v1/admin/apps/${id}`, stack.adminKey, undefined, '{"settings":');
    expect(notJson.status).to.equal(400);
    expect((notJson.body['error'] as { code: string }).code).to.equal('bad_json');
    expect((await admin<{ app: AdminApp }>('GET', `/v1/admin/apps/${id}`)).body.app.settings).to.deep.equal(before);

    // A push of 1,500 bytes is too large for this app ...
    const big = { user: 'u', data: 'x'.repeat(1500) };
    const refused = await pushWith(id, a.apiKey, big);
    expect(refused.status).to.equal(413);
    expect((refused.body['error'] as { code: string }).code).to.equal('payload_too_large');

    // ... until the limit is raised; other settings stay as they were.
    const up = await admin<{ app: AdminApp }>('PATCH', `/v1/admin/apps/${id}`, {
      name: 'renamed',
      settings: { maxMessageBytes: 4000 },
    });
    expect(up.status).to.equal(200);
    expect(up.body.app.name).to.equal('renamed');
    expect(up.body.app.settings).to.deep.equal({ ...before, maxMessageBytes: 4000 });
    expect((await pushWith(id, a.apiKey, big)).status).to.equal(200);
    // Edges hear it too: the hello frame tells the client the new limit.
    const c = await eventually('edge hears maxMessageBytes', async () => {
      const x = await connectWith(await tokenFor(id, a.app.secrets[0]!, 'u'));
      if (x.hello['maxMessageBytes'] === 4000) return x;
      x.close();
      return undefined;
    });
    expect((await c.waitForMessages(1))[0]?.data).to.equal(big.data);

    const unknown = await admin('PATCH', '/v1/admin/apps/no-such-app', { name: 'x' });
    expect(unknown.status).to.equal(404);

    // "1 to 200 characters" counts characters as a reader does: 200 emoji fit, 201 do not.
    const emoji = await admin<{ app: AdminApp }>('PATCH', `/v1/admin/apps/${id}`, { name: '😀'.repeat(200) });
    expect(emoji.status).to.equal(200);
    expect(emoji.body.app.name).to.equal('😀'.repeat(200));
    const tooLong = await admin('PATCH', `/v1/admin/apps/${id}`, { name: '😀'.repeat(201) });
    expect(tooLong.status).to.equal(400);
    expect((tooLong.body['error'] as { code: string }).code).to.equal('bad_request');
  });

  it('rotating the secret keeps the previous one valid and refuses tokens of the one before (token_invalid)', async function () {
    const a = await create({});
    const id = a.app.id;
    const s0 = a.app.secrets[0]!;
    const t0 = await tokenFor(id, s0, 'rot');

    const r1 = await admin<{ app: AdminApp }>('POST', `/v1/admin/apps/${id}/secrets`);
    expect(r1.status).to.equal(200);
    expect(r1.body.app.secrets).to.have.length(2);
    const s1 = r1.body.app.secrets[0]!;
    expect(r1.body.app.secrets[1]).to.deep.equal(s0);
    const t1 = await tokenFor(id, s1, 'rot');
    // The edge learns the new secret; the old one keeps working.
    await eventually('edge accepts the new secret', async () => {
      const x = await tryConnect(t1);
      return typeof x === 'string' ? undefined : x;
    });
    expect(await tryConnect(t0)).to.be.instanceOf(TestClient);

    const r2 = await admin<{ app: AdminApp }>('POST', `/v1/admin/apps/${id}/secrets`);
    expect(r2.body.app.secrets.map((s) => s.kid)).to.deep.equal([r2.body.app.secrets[0]!.kid, s1.kid]);
    const t2 = await tokenFor(id, r2.body.app.secrets[0]!, 'rot');
    await eventually('edge refuses the oldest secret', async () => {
      const x = await tryConnect(t0);
      if (typeof x === 'string') return x;
      x.close();
      return undefined;
    }).then((code) => expect(code).to.equal('token_invalid'));
    expect(await tryConnect(t1)).to.be.instanceOf(TestClient);
    expect(await tryConnect(t2)).to.be.instanceOf(TestClient);
  });

  it('adds an API key that pushes; a revoked key gets 401 api_key_invalid while the other still works', async function () {
    const a = await create({});
    const id = a.app.id;
    const added = await admin<{ apiKey: string; apiKeyId: string; app: AdminApp }>('POST', `/v1/admin/apps/${id}/keys`);
    expect(added.status).to.equal(201);
    expect(added.body.apiKey).to.not.equal(a.apiKey);
    expect(added.body.app.apiKeys.map((k) => k.id)).to.deep.equal([a.apiKeyId, added.body.apiKeyId]);
    expect((await pushWith(id, added.body.apiKey, { user: 'k', data: 1 })).status).to.equal(200);

    const del = await stack.http('DELETE', `/v1/admin/apps/${id}/keys/${added.body.apiKeyId}`, stack.adminKey);
    expect(del.status).to.equal(204);
    const refused = await pushWith(id, added.body.apiKey, { user: 'k', data: 2 });
    expect(refused.status).to.equal(401);
    expect((refused.body['error'] as { code: string }).code).to.equal('api_key_invalid');
    const status = await stack.http('GET', `/v1/apps/${id}/users/k`, added.body.apiKey);
    expect(status.status).to.equal(401);
    expect((await pushWith(id, a.apiKey, { user: 'k', data: 3 })).status).to.equal(200);
    expect((await stack.http('GET', `/v1/apps/${id}/users/k`, a.apiKey)).body['pending']).to.equal(2);

    const again = await stack.http('DELETE', `/v1/admin/apps/${id}/keys/${added.body.apiKeyId}`, stack.adminKey);
    expect(again.status).to.equal(404);
    // The app exists; the key does not (any more): a code that says which.
    expect((again.body['error'] as { code: string }).code).to.equal('api_key_not_found');
    const noApp = await stack.http('DELETE', `/v1/admin/apps/no-such-app/keys/${added.body.apiKeyId}`, stack.adminKey);
    expect((noApp.body['error'] as { code: string }).code).to.equal('app_not_found');
  });

  it('disabling an app closes its connections with 4003 and refuses it (app_disabled); other apps keep working', async function () {
    const a = await create({});
    const b = await create({});
    const ca = await connectWith(await tokenFor(a.app.id, a.app.secrets[0]!, 'ann'));
    const ca2 = await connectWith(await tokenFor(a.app.id, a.app.secrets[0]!, 'andy'));
    const cb = await connectWith(await tokenFor(b.app.id, b.app.secrets[0]!, 'ben'));

    const off = await admin<{ app: AdminApp }>('PATCH', `/v1/admin/apps/${a.app.id}`, { disabled: true });
    expect(off.status).to.equal(200);
    expect(off.body.app.disabled).to.equal(true);
    expect(await ca.waitClosed()).to.equal(4003);
    expect(await ca2.waitClosed()).to.equal(4003);

    expect(await tryConnect(await tokenFor(a.app.id, a.app.secrets[0]!, 'ann'))).to.equal('app_disabled');
    const refusal = await TestClient.refused(stack.wsUrl(), await tokenFor(a.app.id, a.app.secrets[0]!, 'ann'));
    expect(refusal.status).to.equal(403);
    const push = await pushWith(a.app.id, a.apiKey, { user: 'ann', data: 'no' });
    expect(push.status).to.equal(403);
    expect((push.body['error'] as { code: string }).code).to.equal('app_disabled');

    // The other app is untouched.
    await cb.ping();
    const seq = (await pushWith(b.app.id, b.apiKey, { user: 'ben', data: 'still here' })).body['seq'];
    expect((await cb.waitForMessages(1))[0]?.seq).to.equal(seq);

    // Enabled again: connections and pushes work.
    await admin('PATCH', `/v1/admin/apps/${a.app.id}`, { disabled: false });
    const back = await eventually('edge accepts the re-enabled app', async () => {
      const x = await tryConnect(await tokenFor(a.app.id, a.app.secrets[0]!, 'ann'));
      return typeof x === 'string' ? undefined : x;
    });
    expect((await pushWith(a.app.id, a.apiKey, { user: 'ann', data: 'yes' })).status).to.equal(200);
    expect((await back.waitForMessages(1))[0]?.data).to.equal('yes');
  });

  it('an app created with disabled: true is disabled from the start; a non-boolean disabled gets 400 bad_request', async function () {
    const a = await create({ disabled: true });
    expect(a.app.disabled).to.equal(true);
    expect((await admin<{ app: AdminApp }>('GET', `/v1/admin/apps/${a.app.id}`)).body.app.disabled).to.equal(true);
    const refusal = await TestClient.refused(stack.wsUrl(), await tokenFor(a.app.id, a.app.secrets[0]!, 'ann'));
    expect(refusal.status).to.equal(403);
    const push = await pushWith(a.app.id, a.apiKey, { user: 'ann', data: 'no' });
    expect((push.body['error'] as { code: string }).code).to.equal('app_disabled');

    const bad = await admin('POST', '/v1/admin/apps', { disabled: 'yes' });
    expect(bad.status).to.equal(400);
    expect((bad.body['error'] as { code: string }).code).to.equal('bad_request');
  });

  /** Whether the app's inbox stream exists on the stack's NATS server. */
  async function inboxStreamExists(appId: string): Promise<boolean> {
    const nc = await connect({ servers: stack.config().natsUrl });
    try {
      const jsm = await jetstreamManager(nc);
      const name = new Subjects(stack.prefix).inboxStream(appId);
      return await jsm.streams.info(name).then(
        () => true,
        (err: unknown) => {
          if (/stream not found/i.test(String(err))) return false;
          throw err;
        },
      );
    } finally {
      await nc.close();
    }
  }

  it('deleting an app closes its connections, removes its record, keys and stream; a second delete is 404', async function () {
    const a = await create({});
    const b = await create({});
    const ca = await connectWith(await tokenFor(a.app.id, a.app.secrets[0]!, 'dora'));
    const cb = await connectWith(await tokenFor(b.app.id, b.app.secrets[0]!, 'dan'));
    expect((await pushWith(a.app.id, a.apiKey, { user: 'offline', data: 'kept until deleted' })).status).to.equal(200);
    expect(await inboxStreamExists(a.app.id)).to.equal(true);

    const del = await admin('DELETE', `/v1/admin/apps/${a.app.id}`);
    expect(del.status, JSON.stringify(del.body)).to.equal(204);
    expect(await ca.waitClosed()).to.equal(4003);
    expect(await inboxStreamExists(a.app.id)).to.equal(false);
    const got = await admin('GET', `/v1/admin/apps/${a.app.id}`);
    expect(got.status).to.equal(404);
    expect((got.body['error'] as { code: string }).code).to.equal('app_not_found');
    // Its API key opens nothing any more; its tokens are refused.
    expect((await pushWith(a.app.id, a.apiKey, { user: 'x', data: 1 })).status).to.equal(401);
    expect(await tryConnect(await tokenFor(a.app.id, a.app.secrets[0]!, 'dora'))).to.equal('app_not_found');

    const again = await admin('DELETE', `/v1/admin/apps/${a.app.id}`);
    expect(again.status).to.equal(404);
    expect((again.body['error'] as { code: string }).code).to.equal('app_not_found');
    expect((await admin('DELETE', `/v1/admin/apps/${a.app.id}`, undefined, 'wrong')).status).to.equal(401);

    // The other app is untouched.
    const seq = (await pushWith(b.app.id, b.apiKey, { user: 'dan', data: 'still here' })).body['seq'];
    expect((await cb.waitForMessages(1))[0]?.seq).to.equal(seq);

    // The id is free again: a new app of the same id starts empty.
    const reborn = await create({ id: a.app.id });
    const status = await stack.http('GET', `/v1/apps/${a.app.id}/users/offline`, reborn.apiKey);
    expect(status.body['pending']).to.equal(0);
  });

  it('writes in flight while an app is deleted never land in a new app given its id', async function () {
    this.timeout(60_000);
    const nc = await connect({ servers: NATS_URL });
    const jsm = await jetstreamManager(nc);
    const subjects = new Subjects(stack.prefix);
    try {
      // Four rounds: each a burst of client sends (queued behind the edge's store pipeline),
      // pushes and topic publishes going on through the delete and an at-once re-create.
      for (let round = 0; round < 4; round++) {
        const old = await create({
          settings: { clientMessaging: true, sendRatePerConnection: 100_000, sendRatePerUser: 100_000 },
        });
        const id = old.app.id;
        const senders = await Promise.all(
          Array.from({ length: 20 }, async (_, i) => connectWith(await tokenFor(id, old.app.secrets[0]!, `s${i}`))),
        );
        let going = true;
        const flows = [
          ...senders.map(async (c, i) => {
            for (let n = 0; going; n++) {
              c.send({ t: 'send', to: `r${i}`, id: `m${n}`, data: n });
              if (n % 20 === 19) await sleep(1);
            }
          }),
          ...Array.from({ length: 4 }, async (_, i) => {
            for (let n = 0; going; n++) {
              await Promise.all([
                pushWith(id, old.apiKey, { user: `u${i}`, data: n }),
                stack.http('POST', `/v1/apps/${id}/topics/news${i}`, old.apiKey, { data: n }),
              ]);
            }
          }),
        ];
        await sleep(300);
        expect((await admin('DELETE', `/v1/admin/apps/${id}`)).status).to.equal(204);
        const reborn = await create({ id });
        going = false;
        await Promise.all(flows);
        await sleep(5500); // past the store deadline of any write held through the delete
        const inbox = await jsm.streams.info(subjects.inboxStream(id));
        const topics = await jsm.streams.info(subjects.topicStream(id));
        expect(inbox.state.messages, "the deleted app's messages in the new app's inboxes").to.equal(0);
        expect(topics.state.messages, "the deleted app's publishes in the new app's topics").to.equal(0);
        expect((await stack.http('GET', `/v1/apps/${id}/users/r0`, reborn.apiKey)).body['pending']).to.equal(0);
      }
    } finally {
      await nc.close();
    }
  });

  it('changes racing each other or a delete apply one at a time: every merged setting kept, a deleted app never back', async function () {
    this.timeout(60_000);
    // Concurrent PATCHes of different settings: each merged into what the one before wrote.
    const one = await create({});
    const patches: Array<Record<string, unknown>> = [
      { pushRateLimit: 7 },
      { topicRateLimit: 9 },
      { maxMessageBytes: 1234 },
      { clientMessaging: true },
      { rpcTimeoutMs: 4321 },
      { fanoutRate: 77 },
      { webhookMaxAttempts: 3 },
      { maxDeliveries: 5 },
    ];
    const answers = await Promise.all(
      patches.map((settings) => admin('PATCH', `/v1/admin/apps/${one.app.id}`, { settings })),
    );
    for (const r of answers) expect(r.status).to.equal(200);
    const kept = (await admin<{ app: AdminApp }>('GET', `/v1/admin/apps/${one.app.id}`)).body.app.settings;
    for (const p of patches) expect(kept).to.include(p);

    // Changes racing a delete: each applied before it, or answered app_not_found; never the app back.
    for (let round = 0; round < 4; round++) {
      const app = await create({});
      const ops = [
        admin('PATCH', `/v1/admin/apps/${app.app.id}`, { name: 'renamed' }),
        admin('POST', `/v1/admin/apps/${app.app.id}/keys`),
        admin('POST', `/v1/admin/apps/${app.app.id}/secrets`),
        admin('PATCH', `/v1/admin/apps/${app.app.id}`, { settings: { pushRateLimit: 5 } }),
      ];
      await sleep(round * 3);
      const [del, ...rest] = await Promise.all([admin('DELETE', `/v1/admin/apps/${app.app.id}`), ...ops]);
      expect(del.status, `round ${round}`).to.equal(204);
      for (const r of rest) expect(r.status, `round ${round}: ${JSON.stringify(r.body)}`).to.be.oneOf([200, 201, 404]);
      await sleep(200);
      expect((await admin('GET', `/v1/admin/apps/${app.app.id}`)).status).to.equal(404);
      const push = await pushWith(app.app.id, app.apiKey, { user: 'u', data: 1 });
      expect(push.status, `round ${round}: the deleted app's key still pushes`).to.equal(401);
      expect(await inboxStreamExists(app.app.id), `round ${round}: its stream made again`).to.equal(false);
    }
  });

  it('the edge hears clientMessaging being turned on and off', async function () {
    const a = await create({ settings: { clientMessaging: false } });
    const token = (u: string) => tokenFor(a.app.id, a.app.secrets[0]!, u);
    const sender = await connectWith(await token('sam'));
    const receiver = await connectWith(await token('rita'));
    let n = 0;
    const send = async (): Promise<Frame> => {
      const id = `s${++n}`;
      sender.send({ t: 'send', to: 'rita', id, data: { n } });
      return sender.waitFor((f) => (f.t === 'sent' || f.t === 'error') && f['id'] === id);
    };

    const refused = await send();
    expect(refused).to.include({ t: 'error', code: 'client_messaging_disabled' });

    await admin('PATCH', `/v1/admin/apps/${a.app.id}`, { settings: { clientMessaging: true } });
    const sent = await eventually('edge allows sends', async () => {
      const f = await send();
      return f.t === 'sent' ? f : undefined;
    });
    const [m] = await receiver.waitForMessages(1);
    expect(m).to.include({ seq: sent['seq'], from: 'sam' });

    await admin('PATCH', `/v1/admin/apps/${a.app.id}`, { settings: { clientMessaging: false } });
    const off = await eventually('edge refuses sends again', async () => {
      const f = await send();
      return f.t === 'error' ? f : undefined;
    });
    expect(off['code']).to.equal('client_messaging_disabled');
    // The socket stays usable after the refusals.
    await sender.ping();
  });

  describe('CLI', function () {
    const cli = (...args: string[]): Promise<CliResult> =>
      runCli(args, {
        PUSH_PREFIX: stack.prefix,
        PUSH_DATABASE_URL: stack.databaseUrl,
        PUSH_NATS_URL: NATS_URL,
        PUSH_REDIS_URL: 'redis://127.0.0.1:6379',
      });

    it('creates an app, signs tokens the edge accepts, and its API key pushes through the center', async function () {
      const created = await cli(
        'apps',
        'create',
        '--id',
        'cli-app',
        '--name',
        'From CLI',
        '--settings',
        '{"clientMessaging":true}',
      );
      expect(created.code, created.stderr).to.equal(0);
      const out = JSON.parse(created.stdout) as { app: AdminApp; apiKey: string; apiKeyId: string };
      expect(out.app).to.include({ id: 'cli-app', name: 'From CLI', disabled: false });
      expect(out.app.settings.clientMessaging).to.equal(true);
      expect(out.apiKey).to.match(/^pk_/);

      // The center's admin API sees what the CLI wrote.
      const got = await admin<{ app: AdminApp }>('GET', '/v1/admin/apps/cli-app');
      expect(got.body.app.secrets).to.deep.equal(out.app.secrets);
      const listed = await cli('apps', 'list');
      expect((JSON.parse(listed.stdout) as { apps: AdminApp[] }).apps.map((x) => x.id)).to.include('cli-app');
      const shown = await cli('apps', 'get', 'cli-app');
      expect((JSON.parse(shown.stdout) as { app: AdminApp }).app.id).to.equal('cli-app');

      const tok = await cli('token', '--app', 'cli-app', '--user', 'carl', '--device', 'pc', '--ttl', '600');
      expect(tok.code, tok.stderr).to.equal(0);
      const token = tok.stdout.trim();
      const c = await eventually('edge knows the CLI app', async () => {
        const x = await tryConnect(token);
        return typeof x === 'string' ? undefined : x;
      });
      expect(c.hello).to.include({ app: 'cli-app', user: 'carl', device: 'pc' });

      const pushed = await eventually('center knows the CLI key', async () => {
        const r = await pushWith('cli-app', out.apiKey, { user: 'carl', data: 'via cli key' });
        return r.status === 200 ? r : undefined;
      });
      expect((await c.waitForMessages(1))[0]?.seq).to.equal(pushed.body['seq']);

      // Disabling through the CLI reaches the edge like the admin API does.
      const disabled = await cli('apps', 'update', 'cli-app', '--disable');
      expect(disabled.code, disabled.stderr).to.equal(0);
      expect(await c.waitClosed()).to.equal(4003);
    });

    it('deletes an app: its clients are closed and a second delete fails with app_not_found', async function () {
      const a = await create({});
      const c = await connectWith(await tokenFor(a.app.id, a.app.secrets[0]!, 'cli-del'));
      const deleted = await cli('apps', 'delete', a.app.id);
      expect(deleted.code, deleted.stderr).to.equal(0);
      expect(JSON.parse(deleted.stdout)).to.deep.equal({ deleted: a.app.id });
      expect(await c.waitClosed()).to.equal(4003);
      expect(await inboxStreamExists(a.app.id)).to.equal(false);
      expect((await admin('GET', `/v1/admin/apps/${a.app.id}`)).status).to.equal(404);
      const again = await cli('apps', 'delete', a.app.id);
      expect(again.code).to.equal(1);
      expect(again.stderr).to.include('app_not_found');
    });

    it('fails with a non-zero exit and the error code for a bad request', async function () {
      const missing = await cli('apps', 'get', 'no-such-app');
      expect(missing.code).to.equal(1);
      expect(missing.stderr).to.include('app_not_found');
      // An id no app can have is invalid (as the HTTP route answers), not missing.
      const invalid = await cli('apps', 'get', 'x'.repeat(65));
      expect([invalid.code, invalid.stderr]).to.satisfy(
        ([code, err]: [number, string]) => code === 1 && err.includes('invalid_id'),
      );
      const off = await cli('apps', 'create', '--disable');
      expect(off.code, off.stderr).to.equal(0);
      expect((JSON.parse(off.stdout) as { app: AdminApp }).app.disabled).to.equal(true);
      const existing = await create({});
      const dup = await cli('apps', 'create', '--id', existing.app.id);
      expect(dup.code).to.equal(1);
      expect(dup.stderr).to.include('app_exists');
      const bad = await cli('apps', 'create', '--settings', '{"maxMessageBytes":-1}');
      expect(bad.code).to.equal(1);
      expect(bad.stderr).to.include('bad_request');
      const usage = await cli('nonsense');
      expect(usage.code).to.equal(2);
    });
  });
});
