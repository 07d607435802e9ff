import { expect } from 'chai';
import WebSocket from 'ws';
import { PushClient, type AppSession, type AppSessionMessage, type PushMessage } from '@push/client';
import { Stack, type TestApp } from '../helpers/stack.js';

/** Polls `check` until it holds, or fails with `what` after `timeoutMs`. */
async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * The SDK with several apps on one connection (issue 17, part 1): one PushClient, its first app
 * and AppSessions attached with their own tokens, in Node against the real edge, center and NATS.
 */
describe('SDK: several apps on one PushClient', function () {
  this.timeout(60_000);
  let stack: Stack;
  let a: TestApp;
  let b: TestApp;
  let c: TestApp;
  const clients: PushClient[] = [];

  before(async function () {
    stack = await Stack.start();
    a = await stack.createApp();
    b = await stack.createApp();
    c = await stack.createApp({ upstream: true, clientMessaging: true, sendRatePerConnection: 1 });
  });
  after(async function () {
    for (const x of clients) x.disconnect();
    await stack?.close();
  });

  function client(user: string): { client: PushClient; messages: PushMessage[] } {
    const x = new PushClient({ WebSocket, edges: [stack.wsUrl()], token: () => a.token(user) });
    clients.push(x);
    const messages: PushMessage[] = [];
    x.on('message', (m) => messages.push(m));
    x.connect();
    return { client: x, messages };
  }
  function watch(s: AppSession): { messages: AppSessionMessage[]; detached: string[]; errors: string[] } {
    const w = { messages: [] as AppSessionMessage[], detached: [] as string[], errors: [] as string[] };
    s.on('message', (m) => w.messages.push(m));
    s.on('detached', (d) => w.detached.push(d.reason));
    s.on('error', (e) => w.errors.push(e.code));
    return w;
  }

  it('delivers each app its own messages on one connection, acks each in its own app, and attaches again after a reconnect', async function () {
    const { client: x, messages } = client('sam');
    const sb = x.attach({ app: b.id, token: () => b.token('sam-b') });
    const sc = x.attach({ app: c.id, token: await c.token('sam-c') });
    const wb = watch(sb);
    const wc = watch(sc);
    let attachedB = 0;
    sb.on('attached', (i) => {
      attachedB++;
      expect(i.user).to.equal('sam-b');
    });
    await until('both attached', () => sb.state === 'attached' && sc.state === 'attached');

    await a.pushOk('sam', 'to a');
    await b.pushOk('sam-b', 'to b');
    await c.pushOk('sam-c', 'to c');
    await until('three messages', () => messages.length === 1 && wb.messages.length === 1 && wc.messages.length === 1);
    expect([messages[0]?.data, wb.messages[0]?.data, wc.messages[0]?.data]).to.deep.equal(['to a', 'to b', 'to c']);
    // Auto acks went to each app: nothing pending anywhere.
    await a.waitPending('sam', 0);
    await b.waitPending('sam-b', 0);
    await c.waitPending('sam-c', 0);

    // Upstream frames of an attached app go to that app.
    const r = await sc.up({ hello: 'business c' });
    expect(r.seq).to.be.a('number');
    // Sends past the app's rate (1/s here) are answered rate_limited and sent again after
    // retryAfter with the same id: all three are stored, once each.
    const sent = await Promise.all([1, 2, 3].map((i) => sc.send('sam-peer', { i })));
    expect(new Set(sent.map((s) => s.seq)).size).to.equal(3);
    expect(sent.every((s) => !s.dup)).to.equal(true);

    // The connection drops: the client reconnects and attaches again, and nothing is lost.
    const n = attachedB;
    await b.pushOk('sam-b', 'while away');
    // The socket drops under the client (as a network loss would): it reconnects on its own.
    (x as unknown as { sock?: { close(): void } }).sock?.close();
    await until('attached again', () => attachedB > n && sb.state === 'attached');
    await until('stored message', () => wb.messages.some((m) => m.data === 'while away'));
  });

  it("an app detached at once: its messages in flight never reach the first app's listener, which loses none of its own", async function () {
    // The same sequences in both apps' inboxes (each app numbers its own from 1).
    const user = `det-${Date.now()}`;
    for (const d of ['B-1', 'B-2', 'B-3']) await b.pushOk(user, d);
    const { client: x, messages } = client(user);
    await until('connected', () => x.state === 'connected');
    const sb = x.attach({ app: b.id, token: await b.token(user) });
    sb.detach();
    await new Promise((r) => setTimeout(r, 1000));
    for (const d of ['A-1', 'A-2', 'A-3']) await a.pushOk(user, d);
    await until('three messages', () => messages.length >= 3);
    await new Promise((r) => setTimeout(r, 300));
    expect(messages.map((m) => m.data)).to.deep.equal(['A-1', 'A-2', 'A-3']);
    await a.waitPending(user, 0);
    await b.waitPending(user, 3); // not acked by the first app: still there for the next attach
  });

  it('a kick of one app detaches its session while the client and the other sessions keep receiving', async function () {
    const { client: x, messages } = client('kai');
    const sb = x.attach({ app: b.id, token: () => b.token('kai') });
    const sc = x.attach({ app: c.id, token: () => c.token('kai') });
    const wb = watch(sb);
    const wc = watch(sc);
    await until('attached', () => sb.state === 'attached' && sc.state === 'attached');
    const r = await stack.http('POST', `/v1/apps/${encodeURIComponent(b.id)}/users/kai/kick`, b.apiKey, {});
    expect(r.status).to.equal(202);
    await until('b detached', () => wb.detached.includes('kicked'));
    expect(sb.state).to.equal('detached');
    await a.pushOk('kai', 'a still');
    await c.pushOk('kai', 'c still');
    await until('a and c receive', () => messages.length === 1 && wc.messages.length === 1);
    expect(x.state).to.equal('connected');
    await sb.send('x', 1).then(
      () => expect.fail('a detached session sends nothing'),
      (e: { code: string }) => expect(e.code).to.equal('detached'),
    );
  });

  it('reports a refused attach on the session (bad token) and keeps the client connected', async function () {
    const { client: x } = client('rae');
    const bad = x.attach({ app: b.id, token: (await b.token('rae')).replace(/\.[^.]+$/, '.AAAA') });
    const w = watch(bad);
    await until('refused', () => w.errors.length > 0);
    expect(w.errors[0]).to.equal('token_invalid');
    expect(bad.state).to.equal('detached');
    expect(x.state).to.equal('connected');
  });

  it("an attach() of the connection's own first app is refused on that session (app_attached), not left attaching", async function () {
    const { client: x } = client('rob');
    const clientErrors: string[] = [];
    x.on('error', (e) => clientErrors.push(e.error.code));
    await until('connected', () => x.state === 'connected');
    const same = x.attach({ app: a.id, token: await a.token('rob') });
    const w = watch(same);
    await until('refused', () => w.errors.length > 0);
    expect(w.errors).to.deep.equal(['app_attached']);
    expect(same.state).to.equal('detached');
    expect(clientErrors, "not the client's error").to.deep.equal([]);
    expect(x.state).to.equal('connected');
  });

  it('two sends of a session with one id at once: the first is answered, the second refused duplicate_id (as the client does)', async function () {
    const { client: x } = client('sid');
    const s = x.attach({ app: c.id, token: await c.token('sid') });
    await until('attached', () => s.state === 'attached');
    const [first, second] = await Promise.allSettled([
      s.send('sid', 1, { id: 'same' }),
      s.send('sid', 2, { id: 'same' }),
    ]);
    expect(first.status === 'fulfilled' && first.value.dup).to.equal(false);
    expect(second.status === 'rejected' && (second.reason as { code?: string }).code).to.equal('duplicate_id');
    const again = await s.send('sid', 3, { id: 'same' });
    expect(again).to.include({ dup: true, seq: first.status === 'fulfilled' ? first.value.seq : -1 });
  });
});
