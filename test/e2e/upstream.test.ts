import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { jetstreamManager } from '@nats-io/jetstream';
import { expect } from 'chai';
import type { NatsConnection } from '@push/nats';
import { Subjects } from '@push/protocol';
import { Stack, type TestApp } from '../helpers/stack.js';
import { readStream, waitStream } from '../helpers/streams.js';
import type { TestClient } from '../helpers/ws-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const EXAMPLE = path.join(ROOT, 'docs/examples/business-consumer.mjs');

/** The example of docs/api.md, as the page includes it. */
interface BusinessConsumer {
  consume(opts: {
    servers: string;
    prefix: string;
    app: string;
    durable: string;
    kinds?: string[];
    onUpstream: (record: Record<string, unknown>, msgId: string | undefined) => void;
    onEvent: (record: Record<string, unknown>, msgId: string | undefined) => void;
  }): Promise<{ stop(): Promise<void> }>;
}

describe('upstream: up frames stored for the business (issue 10)', function () {
  let stack: Stack;
  let nc: NatsConnection;
  let subjects: Subjects;
  let app: TestApp;
  const clients: TestClient[] = [];

  before(async function () {
    stack = await Stack.start();
    subjects = new Subjects(stack.prefix);
    nc = await stack.connectNats('test-upstream');
    app = await stack.createApp({ upstream: true });
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

  /** Sends `n` frames made by `frame(i)` and waits for an answer (`upsent` or `error`) to each. */
  async function answers(c: TestClient, ids: string[], timeoutMs = 5000): Promise<Array<Record<string, unknown>>> {
    const deadline = Date.now() + timeoutMs;
    const answered = () =>
      c.frames.filter((f) => (f.t === 'upsent' || f.t === 'error') && ids.includes(f['id'] as string));
    while (answered().length < ids.length && Date.now() < deadline) await sleep(10);
    return answered();
  }

  it('stores an up frame once, answers upsent with its stream sequence, and dedupes a retry with the same id', async function () {
    const alice = await connect(app, 'alice', 'phone');
    alice.send({ t: 'up', id: 'u1', kind: 'chat', data: { text: 'hello business' } });
    const first = await alice.waitFor((f) => f['id'] === 'u1');
    expect(first).to.include({ t: 'upsent', id: 'u1', dup: false });
    // Stored before the answer: the stream holds it now, at the sequence the client was told.
    const stored = await readStream(nc, subjects.upstreamStream(app.id));
    expect(stored).to.have.length(1);
    const [m] = stored;
    expect(m?.seq).to.equal(first['seq']);
    expect(m?.subject).to.equal(`${stack.prefix}.up.${app.id}.chat`);
    expect(m?.msgId).to.equal(m?.body['id']);
    expect(m?.body).to.include({
      app: app.id,
      user: 'alice',
      device: 'phone',
      kind: 'chat',
      conn: alice.hello['conn'],
    });
    expect(m?.body['data']).to.deep.equal({ text: 'hello business' });
    expect(m?.body['time']).to.be.a('number');
    expect(String(m?.body['id'])).to.match(/^up_[A-Za-z0-9_-]{24}$/);

    // The client retries (its answer was lost, say): same id, from a new connection of the user.
    const again = await connect(app, 'alice', 'laptop');
    again.send({ t: 'up', id: 'u1', kind: 'chat', data: { text: 'hello business' } });
    const retry = await again.waitFor((f) => f['id'] === 'u1');
    expect(retry).to.include({ t: 'upsent', dup: true, seq: first['seq'] });
    // Bytes, and the default kind.
    again.send({ t: 'up', id: 'u2', b64: Buffer.from([1, 2, 3]).toString('base64') });
    expect(await again.waitFor((f) => f['id'] === 'u2')).to.include({ t: 'upsent', dup: false });
    const all = await readStream(nc, subjects.upstreamStream(app.id));
    expect(all).to.have.length(2);
    expect(all[1]?.subject).to.equal(`${stack.prefix}.up.${app.id}.default`);
    expect(all[1]?.body['b64']).to.equal('AQID');
    expect(all[1]?.body['data']).to.equal(undefined);
    // Another user with the same frame id is another message.
    const bob = await connect(app, 'bob');
    bob.send({ t: 'up', id: 'u1', data: 1 });
    expect(await bob.waitFor((f) => f['id'] === 'u1')).to.include({ t: 'upsent', dup: false });
  });

  it('answers store_unavailable, never upsent, when the upstream stream cannot store', async function () {
    this.timeout(40_000);
    const lone = await stack.createApp({ upstream: true });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(subjects.upstreamStream(lone.id));
    const c = await connect(lone, 'carol');
    c.send({ t: 'up', id: 'lost', data: 'x' });
    // No stream answers, as while one is elected: the edge holds the frame until
    // PUSH_STORE_TIMEOUT_MS (15 s), then refuses it.
    const answer = await c.waitFor((f) => f['id'] === 'lost', 25_000);
    expect(answer).to.include({ t: 'error', code: 'store_unavailable' });
    await c.ping(); // the connection stays usable
  });

  it('refuses bad up frames with a code and the frame id; the connection stays usable', async function () {
    const small = await stack.createApp({ upstream: true, maxUpBytes: 100 });
    const c = await connect(small, 'dave');
    c.send({ t: 'up', id: 'big', data: 'x'.repeat(200) });
    c.send({ t: 'up', id: 'dot', kind: 'a.b', data: 1 });
    c.send({ t: 'up', id: 'star', kind: '*', data: 1 });
    c.send({ t: 'up', id: 'long', kind: 'k'.repeat(65), data: 1 });
    c.send({ t: 'up', id: 'num', kind: 7, data: 1 });
    c.send({ t: 'up', id: 'none' });
    c.send({ t: 'up', id: 'both', data: 1, b64: 'AQID' });
    c.send({ t: 'up', data: 1 });
    const got = await answers(c, ['big', 'dot', 'star', 'long', 'num', 'none', 'both']);
    const code = (id: string) => got.find((f) => f['id'] === id)?.['code'];
    expect(code('big')).to.equal('payload_too_large');
    for (const id of ['dot', 'star', 'long', 'num']) expect(code(id), id).to.equal('invalid_kind');
    expect(code('none')).to.equal('invalid_data');
    expect(code('both')).to.equal('invalid_data');
    await c.waitFor((f) => f.t === 'error' && f['id'] === undefined && f['code'] === 'invalid_id');
    expect(await readStream(nc, subjects.upstreamStream(small.id))).to.have.length(0);
    c.send({ t: 'up', id: 'ok', kind: 'fine-kind_1', data: 'x'.repeat(50) });
    expect(await c.waitFor((f) => f['id'] === 'ok')).to.include({ t: 'upsent' });
  });

  it('refuses up frames of an app without upstream (upstream_disabled)', async function () {
    const off = await stack.createApp();
    const c = await connect(off, 'erin');
    c.send({ t: 'up', id: 'no', data: 1 });
    expect(await c.waitFor((f) => f['id'] === 'no')).to.include({ t: 'error', code: 'upstream_disabled' });
  });

  it('rate-limits up frames per connection, answering rate_limited with the id and when to retry', async function () {
    const limited = await stack.createApp({ upstream: true, upRatePerConnection: 5 });
    const c = await connect(limited, 'fay');
    const ids = Array.from({ length: 20 }, (_, i) => `r${i}`);
    for (const id of ids) c.send({ t: 'up', id, data: id });
    const got = await answers(c, ids);
    expect(got).to.have.length(20);
    const stored = got.filter((f) => f.t === 'upsent');
    const refused = got.filter((f) => f['code'] === 'rate_limited');
    expect(stored.length).to.be.within(5, 6);
    expect(stored.length + refused.length).to.equal(20);
    expect(refused[0]?.['retryAfter']).to.be.a('number').within(1, 1000);
    await waitStream(nc, subjects.upstreamStream(limited.id), (r) => r.length === stored.length);
    await sleep(1000);
    c.send({ t: 'up', id: 'later', data: 1 });
    expect(await c.waitFor((f) => f['id'] === 'later')).to.include({ t: 'upsent' });
  });

  it('the business consumer of docs/api.md (included there verbatim) reads upstream and events with its own durable', async function () {
    const code = readFileSync(EXAMPLE, 'utf8');
    expect(readFileSync(path.join(ROOT, 'docs/api.md'), 'utf8')).to.include(code.trim());
    const example = (await import(pathToFileURL(EXAMPLE).href)) as BusinessConsumer;
    const biz = await stack.createApp({ upstream: true });
    const ups: Array<Record<string, unknown>> = [];
    const evts: Array<Record<string, unknown>> = [];
    const consumer = await example.consume({
      servers: stack.config().natsUrl,
      prefix: stack.prefix,
      app: biz.id,
      durable: 'billing',
      kinds: ['order'],
      onUpstream: (r) => void ups.push(r),
      onEvent: (r) => void evts.push(r),
    });
    try {
      const c = await connect(biz, 'gus');
      c.send({ t: 'up', id: 'o1', kind: 'order', data: { sku: 'tea' } });
      c.send({ t: 'up', id: 'n1', kind: 'noise', data: 0 }); // filtered out by the consumer's kinds
      await c.waitFor((f) => f['id'] === 'n1');
      const deadline = Date.now() + 5000;
      while ((ups.length < 1 || !evts.some((e) => e['type'] === 'user_online')) && Date.now() < deadline)
        await sleep(20);
      expect(ups.map((u) => u['data'])).to.deep.equal([{ sku: 'tea' }]);
      expect(evts.find((e) => e['type'] === 'user_online')).to.include({ user: 'gus', app: biz.id });
    } finally {
      await consumer.stop();
    }
  });
});
