import { expect } from 'chai';
import { Stack, type TestApp } from '../helpers/stack.js';
import type { TestClient } from '../helpers/ws-client.js';

describe('client-to-client messages', function () {
  let stack: Stack;
  let open: TestApp;
  let closed: TestApp;
  const clients: TestClient[] = [];

  before(async function () {
    stack = await Stack.start();
    open = await stack.createApp({ clientMessaging: true });
    closed = await stack.createApp({ clientMessaging: false });
  });
  after(async function () {
    for (const c of clients) c.terminate();
    await stack?.close();
  });

  async function connect(a: TestApp, user: string, device = 'default'): Promise<TestClient> {
    const c = await a.connect(user, device);
    clients.push(c);
    return c;
  }

  it('delivers what one client sends to another user, marked with the sender, after it is stored', async function () {
    const alice = await connect(open, 'alice');
    const bob = await connect(open, 'bob');
    alice.send({ t: 'send', to: 'bob', id: 'm1', data: { text: 'hi bob' } });
    const sent = await alice.waitFor((f) => f.t === 'sent');
    expect(sent).to.include({ id: 'm1', dup: false });
    expect(sent['seq']).to.be.a('number');
    const [m] = await bob.waitForMessages(1);
    expect(m).to.include({ seq: sent['seq'], from: 'alice' });
    expect(m?.data).to.deep.equal({ text: 'hi bob' });
    // Business pushes carry no sender.
    await open.pushOk('bob', 'from the server');
    const ms = await bob.waitForMessages(2);
    expect(ms[1]?.from).to.equal(undefined);
  });

  it('rate-limits a burst of sends per connection and per user, answering rate_limited with the id (issue 7)', async function () {
    const limited = await stack.createApp({ clientMessaging: true, sendRatePerConnection: 5, sendRatePerUser: 8 });
    const phone = await connect(limited, 'eve', 'phone');
    const answers = async (c: TestClient, n: number) => {
      const deadline = Date.now() + 5000;
      while (c.frames.filter((f) => f.t === 'sent' || f.t === 'error').length < n && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 10));
      return c.frames.filter((f) => f.t === 'sent' || f.t === 'error');
    };
    for (let i = 0; i < 20; i++) phone.send({ t: 'send', to: 'victim', id: `p${i}`, data: i });
    const got = await answers(phone, 20);
    const sent = got.filter((f) => f.t === 'sent').map((f) => f['id']);
    const limitedIds = got.filter((f) => f['code'] === 'rate_limited').map((f) => f['id']);
    // One second's burst gets in; the rest is refused, each answer naming its send.
    expect(sent).to.have.length.within(5, 6);
    expect(sent.length + limitedIds.length).to.equal(20);
    expect(limitedIds).to.include('p19');
    const first = got.find((f) => f['code'] === 'rate_limited');
    expect(first?.['retryAfter']).to.be.a('number').within(1, 1000);
    // Another connection of the same user shares the per-user budget (8 per second).
    const laptop = await connect(limited, 'eve', 'laptop');
    for (let i = 0; i < 10; i++) laptop.send({ t: 'send', to: 'victim', id: `l${i}`, data: i });
    const fromLaptop = await answers(laptop, 10);
    expect(fromLaptop.filter((f) => f.t === 'sent').length).to.be.within(3, 5);
    // The connection stays usable: after the wait it was told, a send gets in.
    await new Promise((r) => setTimeout(r, 1000));
    phone.send({ t: 'send', to: 'victim', id: 'after', data: 'ok' });
    const after = await phone.waitFor((f) => f['id'] === 'after');
    expect(after.t).to.equal('sent');
    expect((await limited.user('victim')).body['pending']).to.equal(
      sent.length + 1 + fromLaptop.filter((f) => f.t === 'sent').length,
    );
  });

  it('stores the message for an offline recipient until it connects and acks', async function () {
    const carol = await connect(open, 'carol');
    carol.send({ t: 'send', to: 'dan', id: 'x1', b64: Buffer.from('bytes').toString('base64') });
    const sent = await carol.waitFor((f) => f.t === 'sent');
    expect((await open.user('dan')).body['pending']).to.equal(1);
    const dan = await connect(open, 'dan');
    const [m] = await dan.waitForMessages(1);
    expect(m?.seq).to.equal(sent['seq']);
    expect(Buffer.from(m?.b64 ?? '', 'base64').toString()).to.equal('bytes');
    expect(m?.from).to.equal('carol');
  });

  it("dedupes a retried send by the client's id", async function () {
    const erin = await connect(open, 'erin');
    erin.send({ t: 'send', to: 'fay', id: 'retry-me', data: 1 });
    erin.send({ t: 'send', to: 'fay', id: 'retry-me', data: 1 });
    await erin.waitFor(() => erin.frames.filter((f) => f.t === 'sent').length === 2);
    const [a, b] = erin.frames.filter((f) => f.t === 'sent');
    expect(a?.['seq']).to.equal(b?.['seq']);
    expect([a?.['dup'], b?.['dup']].sort()).to.deep.equal([false, true]);
    expect((await open.user('fay')).body['pending']).to.equal(1);
  });

  it('refuses sends when the app does not allow client messaging', async function () {
    const g = await connect(closed, 'gus');
    g.send({ t: 'send', to: 'hal', id: 'no', data: 1 });
    const f = await g.waitFor((x) => x.t === 'error');
    expect(f).to.include({ code: 'client_messaging_disabled', id: 'no' });
    expect((await closed.user('hal')).body['pending']).to.equal(0);
  });

  it('keeps apps apart: a user id in another app is another user', async function () {
    const mine = await connect(open, 'ivy');
    const theirs = await connect(closed, 'ivy');
    const sender = await connect(open, 'jim');
    sender.send({ t: 'send', to: 'ivy', id: 'k', data: 'only the open app' });
    await mine.waitForMessages(1);
    await theirs.ping();
    expect(theirs.messages).to.have.length(0);
  });
});
