import { expect } from 'chai';
import { headers } from '@nats-io/nats-core';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Stack, type TestApp } from '../helpers/stack.js';
import type { TestClient } from '../helpers/ws-client.js';
import { NATS_URL } from '../helpers/nats-server.js';

describe('kick', function () {
  let stack: Stack;
  let app: TestApp;
  let other: TestApp;
  let nc: NatsConnection;
  const clients: TestClient[] = [];

  before(async function () {
    stack = await Stack.start();
    app = await stack.createApp();
    other = await stack.createApp();
    await stack.startEdge(); // a second edge: a kick reaches every edge
    nc = await connect({ servers: NATS_URL });
  });
  after(async function () {
    for (const c of clients) c.terminate();
    await nc?.close();
    await stack?.close();
  });

  async function connect1(a: TestApp, user: string, device: string, edge = 0): Promise<TestClient> {
    const c = await a.connect(user, device, '', stack.edges[edge]);
    clients.push(c);
    return c;
  }
  const online = (a: TestApp, user: string, n: number) => a.waitConnections(user, n);
  const kick = (a: TestApp, user: string, body?: unknown, key = a.apiKey) =>
    stack.http('POST', `/v1/apps/${encodeURIComponent(a.id)}/users/${encodeURIComponent(user)}/kick`, key, body);

  it("closes one device's connections with 4004 and the reason, on every edge, and leaves the rest", async function () {
    const phoneA = await connect1(app, 'alice', 'phone', 0);
    const phoneB = await connect1(app, 'alice', 'phone', 1);
    const laptop = await connect1(app, 'alice', 'laptop', 1);
    const bob = await connect1(app, 'bob', 'phone', 0);
    const namesake = await connect1(other, 'alice', 'phone', 0);
    await online(app, 'alice', 3);

    const r = await kick(app, 'alice', { device: 'phone', reason: 'signed out elsewhere' });
    expect(r.status).to.equal(202);
    // The answer says how many connections the kick closes (issue 7: it said sent either way).
    expect(r.body).to.deep.equal({ sent: true, connections: 2 });
    expect(await phoneA.waitClosed()).to.equal(4004);
    expect(await phoneB.waitClosed()).to.equal(4004);
    expect(phoneA.closeReason).to.equal('signed out elsewhere');
    await laptop.ping();
    await bob.ping();
    await namesake.ping();

    await online(app, 'alice', 1);
    const all = await kick(app, 'alice'); // no body: every device
    expect(all.status).to.equal(202);
    expect(all.body).to.deep.equal({ sent: true, connections: 1 });
    await online(app, 'alice', 0);
    expect((await kick(app, 'alice')).body).to.deep.equal({ sent: true, connections: 0 });
    expect(await laptop.waitClosed()).to.equal(4004);
    expect(laptop.closeReason).to.equal('kicked');
    await bob.ping();
    await namesake.ping();
  });

  it('does not drop stored messages: a kicked user who comes back gets what was unacked', async function () {
    const c = await connect1(app, 'carol', 'd', 0);
    const seq = await app.pushOk('carol', 'keep me');
    await c.waitForMessages(1);
    await kick(app, 'carol');
    await c.waitClosed();
    const again = await connect1(app, 'carol', 'd', 1);
    const [m] = await again.waitForMessages(1);
    expect(m?.seq).to.equal(seq);
  });

  it('works over NATS request/reply too', async function () {
    const c = await connect1(app, 'dave', 'd', 1);
    await online(app, 'dave', 1);
    const h = headers();
    h.set('Authorization', `Bearer ${app.apiKey}`);
    const reply = await nc.request(`${stack.prefix}.api.kick`, JSON.stringify({ app: app.id, user: 'dave' }), {
      timeout: 5000,
      headers: h,
    });
    expect(reply.json()).to.deep.equal({ ok: true, sent: true, connections: 1 });
    expect(await c.waitClosed()).to.equal(4004);
  });

  it('refuses bad input and bad keys with the documented codes', async function () {
    const cases: Array<[unknown, number, string, string?]> = [
      [{ device: '' }, 400, 'invalid_id'],
      [{ device: 'a\nb' }, 400, 'invalid_id'],
      [{ reason: 'x'.repeat(101) }, 400, 'bad_request'],
      [{ reason: 42 }, 400, 'bad_request'],
      [[1], 400, 'bad_request'],
      [null, 400, 'bad_request'], // not an object: refused, nobody kicked
      [{}, 401, 'api_key_invalid', 'pk_wrong'],
      [{}, 403, 'wrong_app', other.apiKey],
    ];
    for (const [body, status, code, key] of cases) {
      const r = await kick(app, 'erin', body, key ?? app.apiKey);
      expect(r.status, JSON.stringify(body)).to.equal(status);
      expect((r.body['error'] as { code: string }).code).to.equal(code);
    }
    const bad = await stack.http('POST', `/v1/apps/${app.id}/users/erin/kick`, app.apiKey, undefined, '{nope');
    expect(bad.status).to.equal(400);
    expect((bad.body['error'] as { code: string }).code).to.equal('bad_json');
  });
});
