import { expect } from 'chai';
import { Stack, type TestApp } from '../helpers/stack.js';
import type { TestClient } from '../helpers/ws-client.js';

type Err = { error: { code: string; message: string } };
interface AppFigures {
  id: string;
  connections: number;
  pending: number;
  inboxStored: number;
  topicStored: number;
  webhooks: unknown[];
}
interface Summary {
  scope: string;
  edges: Array<Record<string, unknown> & { edge: string; connections: number }>;
  edgesSilent: number;
  apps: AppFigures[];
  health: Record<string, { ok: boolean }>;
}

/**
 * The console's summary API (docs/api.md "Console summary"): the admin sees every app and every
 * edge's figures; an app's API key sees its own app and nothing of another, the admin key also
 * opens the business routes the console uses.
 */
describe('console summary API (issue 19)', function () {
  this.timeout(60_000);
  let stack: Stack;
  let a: TestApp;
  let b: TestApp;
  const clients: TestClient[] = [];

  before(async function () {
    stack = await Stack.start();
    await stack.startEdge(); // two edges: figures per edge
    a = await stack.createApp({ deliveryEvents: true });
    b = await stack.createApp();
  });
  afterEach(function () {
    for (const c of clients.splice(0)) c.close();
  });
  after(async function () {
    for (const c of clients) c.close();
    await stack?.close();
  });

  const appPath = (app: TestApp) => `/v1/apps/${encodeURIComponent(app.id)}`;

  /** Reads the summary until `ok` holds of it (edges report connections as they happen). */
  async function summaryUntil(path: string, key: string, ok: (s: Summary) => boolean): Promise<Summary> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = await stack.http<Summary>('GET', path, key);
      expect(r.status, JSON.stringify(r.body)).to.equal(200);
      if (ok(r.body)) return r.body;
      if (Date.now() > deadline) throw new Error(`summary never matched: ${JSON.stringify(r.body)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  it("gives the admin every app's connections, pending and stored counts, every edge's figures and the health of NATS, Redis and Postgres", async function () {
    clients.push(await a.connect('alice', 'phone', '', stack.edges[0]));
    clients.push(await a.connect('alice', 'laptop', '', stack.edges[1]));
    clients.push(await b.connect('bob', 'phone', '', stack.edges[1]));
    await a.pushOk('carol', { n: 1 }); // offline: stays pending
    const s = await summaryUntil('/v1/admin/summary', stack.adminKey, (x) =>
      x.apps.some((p) => p.id === a.id && p.connections === 2 && p.pending === 1),
    );
    expect(s.scope).to.equal('all');
    expect(s.edges).to.have.length(2);
    expect(s.edgesSilent).to.equal(0);
    const figA = s.apps.find((p) => p.id === a.id);
    const figB = s.apps.find((p) => p.id === b.id);
    expect(figA).to.include({ connections: 2, pending: 1, inboxStored: 1 });
    expect(figB).to.include({ connections: 1, pending: 0 });
    const byEdge = new Map(s.edges.map((e) => [e.edge, e]));
    const e0 = byEdge.get(stack.edges[0]?.edgeId ?? '');
    const e1 = byEdge.get(stack.edges[1]?.edgeId ?? '');
    expect(e0?.['apps']).to.deep.equal({ [a.id]: 1 });
    expect(e1?.['apps']).to.deep.equal({ [a.id]: 1, [b.id]: 1 });
    for (const k of ['messagesOut', 'acks', 'topicFramesOut', 'eventLoopDelayMs', 'startedAt'])
      expect(e0, k).to.have.property(k);
    expect(s.health['nats']?.ok).to.equal(true);
    expect(s.health['redis']?.ok).to.equal(true);
    expect(s.health['postgres']?.ok).to.equal(true);
  });

  it("shows an app's API key its own app only: no other app, and no edge totals over all apps", async function () {
    clients.push(await a.connect('alice'));
    clients.push(await b.connect('bob'));
    clients.push(await b.connect('bob', 'second'));
    const s = await summaryUntil(`${appPath(b)}/summary`, b.apiKey, (x) => x.apps[0]?.connections === 2);
    expect(s.scope).to.equal('app');
    expect(s.apps.map((p) => p.id)).to.deep.equal([b.id]);
    for (const e of s.edges) expect(Object.keys(e).sort()).to.deep.equal(['connections', 'edge']);
    expect(s.edges.reduce((n, e) => n + e.connections, 0)).to.equal(2);
    expect(JSON.stringify(s)).to.not.contain(a.id);

    const other = await stack.http<Err>('GET', `${appPath(a)}/summary`, b.apiKey);
    expect(other.status).to.equal(403);
    expect(other.body.error.code).to.equal('wrong_app');
    const all = await stack.http<Err>('GET', '/v1/admin/summary', b.apiKey);
    expect(all.status).to.equal(401);
    expect(all.body.error.code).to.equal('admin_key_invalid');
    const events = await stack.http<Err>('GET', `${appPath(a)}/users/alice/events`, b.apiKey);
    expect(events.body.error.code).to.equal('wrong_app');
    const none = await stack.http<Err>('GET', '/v1/apps/nope/summary', stack.adminKey);
    expect([none.status, none.body.error.code]).to.deep.equal([404, 'app_not_found']);
    const noKey = await stack.http<Err>('GET', `${appPath(a)}/summary`);
    expect([noKey.status, noKey.body.error.code]).to.deep.equal([401, 'api_key_missing']);
  });

  it("tells whether a pushed message is still in the user's inbox, and lists the user's recent events", async function () {
    const alice = await a.connect('alice', 'phone');
    clients.push(alice);
    const seq = await a.pushOk('alice', { hi: 1 });
    const stored = await stack.http<{ stored: boolean }>('GET', `${appPath(a)}/users/alice/inbox/${seq}`, a.apiKey);
    expect(stored.body).to.deep.equal({ user: 'alice', seq, stored: true });
    await alice.waitForMessages(1);
    alice.ack([seq]);
    await a.waitPending('alice', 0);
    const gone = await stack.http<{ stored: boolean }>('GET', `${appPath(a)}/users/alice/inbox/${seq}`, a.apiKey);
    expect(gone.body.stored).to.equal(false);
    // Another user's message is not alice's.
    const bobSeq = await a.pushOk('bob', { hi: 2 });
    const notHers = await stack.http<{ stored: boolean }>('GET', `${appPath(a)}/users/alice/inbox/${bobSeq}`, a.apiKey);
    expect(notHers.body.stored).to.equal(false);
    const bad = await stack.http<Err>('GET', `${appPath(a)}/users/alice/inbox/zero`, a.apiKey);
    expect([bad.status, bad.body.error.code]).to.deep.equal([400, 'bad_request']);

    const deadline = Date.now() + 10_000;
    let types: string[] = [];
    while (Date.now() < deadline) {
      const r = await stack.http<{ events: Array<{ type: string; user: string; seq?: number }> }>(
        'GET',
        `${appPath(a)}/users/alice/events?limit=50`,
        a.apiKey,
      );
      expect(r.status).to.equal(200);
      expect(r.body.events.every((e) => e.user === 'alice')).to.equal(true);
      types = r.body.events.map((e) => e.type);
      if (types.includes('acked')) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(types).to.include.members(['conn_open', 'delivered', 'acked']);
  });

  it('tails a topic: its last sequence first, then the messages stored after it, in order; bad input gets its code', async function () {
    type Tail = { topic: string; last: number; messages: Array<{ seq: number; data?: unknown; b64?: string }> };
    const path = `${appPath(a)}/topics/room-1/messages`;
    await a.publishTopicOk('room-1', { n: 0 });
    const start = await stack.http<Tail>('GET', path, a.apiKey);
    expect(start.status).to.equal(200);
    expect(start.body.messages).to.deep.equal([]);
    expect(start.body.last).to.be.greaterThan(0);
    const s1 = await a.publishTopicOk('room-1', { n: 1 });
    await a.publishTopicOk('other', { n: 'not this topic' });
    const s2 = await a.publishTopicOk('room-1', { n: 2 });
    const next = await stack.http<Tail>('GET', `${path}?after=${start.body.last}`, a.apiKey);
    expect(next.body.messages.map((m) => [m.seq, m.data])).to.deep.equal([
      [s1, { n: 1 }],
      [s2, { n: 2 }],
    ]);
    expect(next.body.last).to.equal(s2);
    const none = await stack.http<Tail>('GET', `${path}?after=${s2}`, a.apiKey);
    expect([none.body.messages, none.body.last]).to.deep.equal([[], s2]);
    // Only decimal digits: an empty or spelled-otherwise value is no sequence (never read as 0).
    for (const q of ['-1', '', '%20', '1e1', '0x1']) {
      const bad = await stack.http<Err>('GET', `${path}?after=${q}`, a.apiKey);
      expect([bad.status, bad.body.error.code], q).to.deep.equal([400, 'bad_request']);
    }
    // The broadcast topic tails like any other; other names starting with _ are reserved.
    const all = await stack.http<Tail>('GET', `${appPath(a)}/topics/_all/messages?after=0`, a.apiKey);
    expect(all.status).to.equal(200);
    const reserved = await stack.http<Err>('GET', `${appPath(a)}/topics/_other/messages`, a.apiKey);
    expect([reserved.status, reserved.body.error.code]).to.deep.equal([400, 'invalid_topic']);
    const other = await stack.http<Err>('GET', path, b.apiKey);
    expect(other.body.error.code).to.equal('wrong_app');
  });

  it('lets the admin key act on an app as its API key does (the console pushes and looks users up with it), not on a disabled app', async function () {
    const r = await stack.http<{ seq: number }>('POST', `${appPath(b)}/push`, stack.adminKey, { user: 'zed', data: 1 });
    expect(r.status).to.equal(200);
    const u = await stack.http<{ pending: number }>('GET', `${appPath(b)}/users/zed`, stack.adminKey);
    expect(u.body.pending).to.equal(1);
    const off = await stack.createApp();
    await stack.http('PATCH', `/v1/admin/apps/${off.id}`, stack.adminKey, { disabled: true });
    const refused = await stack.http<Err>('POST', `${appPath(off)}/push`, stack.adminKey, { user: 'zed', data: 1 });
    expect([refused.status, refused.body.error.code]).to.deep.equal([403, 'app_disabled']);
  });

  it('serves the console at /console/ with a strict content security policy; /console redirects there', async function () {
    const page = await fetch(`${stack.httpUrl}/console/`);
    expect(page.status).to.equal(200);
    expect(page.headers.get('content-type')).to.contain('text/html');
    expect(page.headers.get('content-security-policy')).to.contain("default-src 'self'");
    expect(page.headers.get('x-content-type-options')).to.equal('nosniff');
    expect(await page.text()).to.contain('console.js');
    const js = await fetch(`${stack.httpUrl}/console/console.js`);
    expect(js.headers.get('content-type')).to.contain('javascript');
    const redirect = await fetch(`${stack.httpUrl}/console`, { redirect: 'manual' });
    expect([redirect.status, redirect.headers.get('location')]).to.deep.equal([301, '/console/']);
    const missing = await fetch(`${stack.httpUrl}/console/nope.js`);
    expect(missing.status).to.equal(404);
    expect(((await missing.json()) as Err).error.code).to.equal('not_found');
  });
});
