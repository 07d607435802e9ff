import { expect } from 'chai';
import type { NatsConnection } from '@push/nats';
import { Subjects } from '@push/protocol';
import { Stack, type TestApp } from '../helpers/stack.js';
import type { TestClient } from '../helpers/ws-client.js';

describe('rpc: client requests answered over NATS (issue 10)', function () {
  let stack: Stack;
  let nc: NatsConnection;
  let subjects: Subjects;
  const clients: TestClient[] = [];

  before(async function () {
    stack = await Stack.start();
    subjects = new Subjects(stack.prefix);
    nc = await stack.connectNats('test-rpc');
  });
  after(async function () {
    for (const c of clients) c.terminate();
    await nc?.close();
    await stack?.close();
  });

  async function connect(a: TestApp, user: string, device = 'default'): Promise<TestClient> {
    const c = await a.connect(user, device);
    clients.push(c);
    return c;
  }

  /** A business service answering the app's rpc subject in the rpc queue group (`answer` undefined: no reply). */
  function respond(a: TestApp, answer: (req: Record<string, unknown>) => unknown): () => void {
    const sub = nc.subscribe(subjects.rpc(a.id), {
      queue: subjects.rpcQueue,
      callback: (err, msg) => {
        if (err !== null) return;
        const req = msg.json<Record<string, unknown>>();
        const reply = answer(req);
        if (reply !== undefined) msg.respond(JSON.stringify(reply));
      },
    });
    return () => sub.unsubscribe();
  }

  it('forwards an rpc with who sent it and answers the client with the reply, by id', async function () {
    const app = await stack.createApp();
    const seen: Array<Record<string, unknown>> = [];
    const stop = respond(app, (req) => {
      seen.push(req);
      return { data: { sum: (req['data'] as number[]).reduce((a, b) => a + b, 0) } };
    });
    await nc.flush();
    const c = await connect(app, 'amy', 'phone');
    c.send({ t: 'rpc', id: 'r1', method: 'math.sum', data: [1, 2, 3] });
    const answer = await c.waitFor((f) => f['id'] === 'r1');
    expect(answer).to.deep.equal({ t: 'rpc', id: 'r1', data: { sum: 6 } });
    expect(seen[0]).to.deep.include({ id: 'r1', app: app.id, user: 'amy', device: 'phone', method: 'math.sum' });
    expect(seen[0]?.['conn']).to.equal(c.hello['conn']);
    stop();
  });

  it('answers rpc_failed with the business message for an error reply', async function () {
    const app = await stack.createApp();
    const stop = respond(app, () => ({ error: { code: 'not_allowed', message: 'amy may not do that' } }));
    await nc.flush();
    const c = await connect(app, 'amy');
    c.send({ t: 'rpc', id: 'r2', method: 'admin.drop', data: null });
    const answer = await c.waitFor((f) => f['id'] === 'r2');
    expect(answer).to.include({ t: 'error', code: 'rpc_failed', message: 'amy may not do that' });
    stop();
  });

  it('answers rpc_unavailable when no service listens, and rpc_timeout when none answers in time', async function () {
    const app = await stack.createApp({ rpcTimeoutMs: 300 });
    const c = await connect(app, 'bo');
    c.send({ t: 'rpc', id: 'nobody', method: 'm' });
    expect(await c.waitFor((f) => f['id'] === 'nobody')).to.include({ t: 'error', code: 'rpc_unavailable' });
    const stop = respond(app, () => undefined); // listens, never answers
    await nc.flush();
    const started = Date.now();
    c.send({ t: 'rpc', id: 'slow', method: 'm' });
    expect(await c.waitFor((f) => f['id'] === 'slow')).to.include({ t: 'error', code: 'rpc_timeout' });
    expect(Date.now() - started).to.be.within(250, 3000);
    await c.ping();
    stop();
  });

  it('refuses bad rpc frames and bounds the rate per connection', async function () {
    const app = await stack.createApp({ rpcRatePerConnection: 3 });
    const stop = respond(app, (req) => ({ data: req['id'] }));
    await nc.flush();
    const c = await connect(app, 'cy');
    c.send({ t: 'rpc', id: 'nomethod' });
    expect(await c.waitFor((f) => f['id'] === 'nomethod')).to.include({ t: 'error', code: 'invalid_id' });
    for (let i = 0; i < 10; i++) c.send({ t: 'rpc', id: `q${i}`, method: 'm' });
    const deadline = Date.now() + 5000;
    const done = () => c.frames.filter((f) => String(f['id']).startsWith('q'));
    while (done().length < 10 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const ok = done().filter((f) => f.t === 'rpc');
    const limited = done().filter((f) => f['code'] === 'rate_limited');
    expect(ok.length).to.be.within(3, 4);
    expect(ok.length + limited.length).to.equal(10);
    stop();
  });
  it('at most 16 rpc await their answer on one connection, every session together; the refusal says how long to wait', async function () {
    const a = await stack.createApp({ rpcRatePerConnection: 0, rpcTimeoutMs: 2000 });
    const b = await stack.createApp({ rpcRatePerConnection: 0, rpcTimeoutMs: 2000 });
    const stops = [respond(a, () => undefined), respond(b, () => undefined)]; // listen, never answer
    await nc.flush();
    const c = await connect(a, 'multi');
    c.send({ t: 'attach', token: await b.token('multi') });
    await c.waitFor((f) => f.t === 'attached');
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      c.send({ t: 'rpc', id: `A${i}`, method: 'm' });
      c.send({ t: 'rpc', app: b.id, id: `B${i}`, method: 'm' });
      ids.push(`A${i}`, `B${i}`);
    }
    const answered = () => c.frames.filter((f) => ids.includes(String(f['id'])));
    const deadline = Date.now() + 5000;
    while (answered().length < ids.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const limited = answered().filter((f) => f['code'] === 'rate_limited');
    expect(answered().filter((f) => f['code'] === 'rpc_timeout').length, 'awaited their answer').to.equal(16);
    expect(limited.length).to.equal(8);
    for (const f of limited) expect(f['retryAfter']).to.be.within(1, 2000);
    // Once the 16 timed out, slots are free again.
    c.send({ t: 'rpc', app: b.id, id: 'after', method: 'm' });
    expect(await c.waitFor((f) => f['id'] === 'after')).to.include({ code: 'rpc_timeout' });
    for (const stop of stops) stop();
  });

  it('answers an rpc that cannot be sent with its reason, not rpc_unavailable: data too deep, request too large', async function () {
    const app = await stack.createApp();
    const stop = respond(app, (req) => ({ data: req['method'] }));
    await nc.flush();
    const c = await connect(app, 'deep');
    const deep = '['.repeat(20_000) + ']'.repeat(20_000);
    c.sendRaw(`{"t":"rpc","id":"deep","method":"m","data":${deep}}`);
    expect(await c.waitFor((f) => f['id'] === 'deep')).to.include({ t: 'error', code: 'invalid_data' });
    c.send({ t: 'rpc', id: 'big', method: 'm', data: 'x'.repeat(1_048_576 - 100) }); // the edge takes the frame, NATS not the request
    expect(await c.waitFor((f) => f['id'] === 'big')).to.include({ t: 'error', code: 'payload_too_large' });
    c.send({ t: 'rpc', id: 'fine', method: 'still.here' });
    expect(await c.waitFor((f) => f['id'] === 'fine')).to.deep.equal({ t: 'rpc', id: 'fine', data: 'still.here' });
    stop();
  });

  it('takes a reply whose error is null as a success', async function () {
    const app = await stack.createApp();
    const stop = respond(app, () => ({ data: { ok: 1 }, error: null }));
    await nc.flush();
    const c = await connect(app, 'nul');
    c.send({ t: 'rpc', id: 'n1', method: 'm' });
    expect(await c.waitFor((f) => f['id'] === 'n1')).to.deep.equal({ t: 'rpc', id: 'n1', data: { ok: 1 } });
    stop();
  });
});
