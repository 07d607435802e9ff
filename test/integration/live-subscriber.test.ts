import { expect } from 'chai';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { createLogger } from '@push/logger';
import { LiveSubscriber, headerSequence } from '@push/nats';
import { PrivateNatsServer } from '../helpers/nats-server.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { reportCleanupFailure } from '../helpers/cleanup.js';

const log = createLogger({ level: 'silent', name: 'test' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('LiveSubscriber (lean NATS subscriptions for the edge)', function () {
  this.timeout(30_000);
  const server = new PrivateNatsServer(['--user', 'u', '--pass', 'p']);
  let pub: NatsConnection;

  before(async function () {
    await server.start();
    pub = await connect({ servers: server.url, user: 'u', pass: 'p' });
  });
  after(async function () {
    await pub?.close().catch(reportCleanupFailure('publisher close'));
    await server.stop();
  });

  it('receives messages with headers and large payloads, in order, only on subscribed subjects', async function () {
    const live = await LiveSubscriber.connect({
      servers: server.url,
      auth: { user: 'u', pass: 'p' },
      name: 't',
      logger: log,
    });
    const got: Array<{ seq: number; size: number; first: number }> = [];
    live.subscribe('live.a', (h, p) => got.push({ seq: headerSequence(h), size: p.length, first: p[0] ?? -1 }));
    live.subscribe('live.b', () => got.push({ seq: -1, size: 0, first: 0 }));
    await live.flush();
    const big = Buffer.alloc(900_000, 7);
    for (let i = 1; i <= 50; i++) {
      const h = headers();
      h.set('Nats-Sequence', String(i));
      pub.publish('live.a', i === 25 ? big : Buffer.from([i]), { headers: h });
    }
    pub.publish('live.c', 'nobody');
    await pub.flush();
    const deadline = Date.now() + 5000;
    while (got.length < 50 && Date.now() < deadline) await sleep(10);
    expect(got.map((g) => g.seq)).to.deep.equal(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(got[24]).to.deep.equal({ seq: 25, size: 900_000, first: 7 });
    live.close();
  });

  it('stops delivering after unsubscribe', async function () {
    const live = await LiveSubscriber.connect({
      servers: server.url,
      auth: { user: 'u', pass: 'p' },
      name: 't',
      logger: log,
    });
    let n = 0;
    const sid = live.subscribe('live.x', () => n++);
    await live.flush();
    pub.publish('live.x', 'one');
    await pub.flush();
    await sleep(100);
    live.unsubscribe(sid);
    await live.flush();
    pub.publish('live.x', 'two');
    await pub.flush();
    await sleep(100);
    expect(n).to.equal(1);
    expect(live.size).to.equal(0);
    live.close();
  });

  it('fails to connect with wrong credentials, with the server error', async function () {
    let err: unknown;
    await LiveSubscriber.connect({
      servers: server.url,
      auth: { user: 'u', pass: 'wrong' },
      name: 't',
      logger: log,
    }).catch((e: unknown) => (err = e));
    expect(String(err)).to.match(/authorization|closed/i);
  });

  it('restores every subscription after the server restarts, and reports the reconnect', async function () {
    let reconnects = 0;
    const live = await LiveSubscriber.connect({
      servers: server.url,
      auth: { user: 'u', pass: 'p' },
      name: 't',
      logger: log,
      onReconnect: () => reconnects++,
    });
    const got: string[] = [];
    for (const s of ['r.1', 'r.2', 'r.3']) live.subscribe(s, (_h, p) => got.push(`${s}:${p.toString()}`));
    await live.flush();
    await pub.close();
    await server.kill();
    await sleep(300);
    expect(live.isConnected).to.equal(false);
    await server.start();
    const deadline = Date.now() + 10_000;
    while (reconnects === 0 && Date.now() < deadline) await sleep(50);
    expect(reconnects).to.equal(1);
    pub = await connect({ servers: server.url, user: 'u', pass: 'p' });
    for (const s of ['r.1', 'r.2', 'r.3']) pub.publish(s, 'after');
    await pub.flush();
    const until = Date.now() + 3000;
    while (got.length < 3 && Date.now() < until) await sleep(10);
    expect(got.sort()).to.deep.equal(['r.1:after', 'r.2:after', 'r.3:after']);
    live.close();
  });
});

describe('LiveSubscriber during a re-handshake (issue 7, defect 1)', function () {
  this.timeout(30_000);
  const server = new PrivateNatsServer();
  let proxy: TcpProxy;
  let pub: NatsConnection;

  before(async function () {
    await server.start();
    proxy = new TcpProxy('127.0.0.1', server.port);
    await proxy.start();
    pub = await connect({ servers: server.url });
  });
  after(async function () {
    await pub?.close();
    await proxy?.stop();
    await server.stop();
  });

  it('a subscription made while CONNECT is in flight gets messages, and flush() waits for the handshake', async function () {
    let reconnects = 0;
    const live = await LiveSubscriber.connect({
      servers: proxy.url,
      name: 't',
      logger: log,
      onReconnect: () => reconnects++,
    });
    const got: string[] = [];
    live.subscribe('old.s', (_h, p) => got.push(`old:${p.toString()}`));
    await live.flush();
    // The next connection's CONNECT reaches the server 1.5 s after the greeting.
    proxy.holdMs = 1500;
    const greeted = proxy.nextClientBytes();
    proxy.dropAll();
    await greeted;
    expect(live.isConnected).to.equal(false);
    live.subscribe('new.s', (_h, p) => got.push(`new:${p.toString()}`));
    const t0 = Date.now();
    await live.flush();
    // Resolving before the server saw the SUB would let the edge read the backlog too early.
    expect(Date.now() - t0).to.be.greaterThan(1000);
    pub.publish('new.s', 'after');
    pub.publish('old.s', 'after');
    await pub.flush();
    const until = Date.now() + 3000;
    while (got.length < 2 && Date.now() < until) await sleep(10);
    expect(got.sort()).to.deep.equal(['new:after', 'old:after']);
    expect(reconnects).to.equal(1);
    live.close();
  });
});
