import { expect } from 'chai';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { PipelineFullError, RequestLostError, RequestPipeline, RequestTimeoutError } from '@push/nats';
import { NATS_URL } from '../helpers/nats-server.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('RequestPipeline (against the real NATS server)', function () {
  let nc: NatsConnection;
  const subject = `pipeline-test.${process.pid}.${Date.now()}`;
  /** Replies held back by the test responder, released on demand. */
  const held: Array<() => void> = [];

  before(async function () {
    nc = await connect({ servers: NATS_URL });
    nc.subscribe(`${subject}.echo`, {
      callback: (_e, m) => {
        m.respond(m.data);
      },
    });
    // Answers "n" with n replies "n-1" ... "n-n" then "end" (a batched Direct Get's shape).
    nc.subscribe(`${subject}.many`, {
      callback: (_e, m) => {
        const n = Number(m.string());
        for (let i = 1; i <= n; i++) nc.publish(m.reply ?? '', `${n}-${i}`);
        nc.publish(m.reply ?? '', 'end');
      },
    });
    nc.subscribe(`${subject}.hold`, {
      callback: (_e, m) => {
        held.push(() => m.respond(m.data));
      },
    });
    await nc.flush();
  });
  after(async function () {
    await nc?.close();
  });
  // A test that failed leaves its held replies behind; the next one must not answer them.
  beforeEach(function () {
    held.length = 0;
  });

  it('keeps many requests in flight and answers each with its own reply', async function () {
    const p = new RequestPipeline(nc, { maxInFlight: 64 });
    const answers = await Promise.all(Array.from({ length: 5000 }, (_, i) => p.request(`${subject}.echo`, String(i))));
    expect(answers.map((m) => m.string())).to.deep.equal(Array.from({ length: 5000 }, (_, i) => String(i)));
    p.close();
  });

  it('past maxInFlight, queues in order, and rejects with PipelineFullError past maxQueued', async function () {
    const p = new RequestPipeline(nc, { maxInFlight: 2, maxQueued: 3, timeoutMs: 5000 });
    const order: string[] = [];
    const reqs = ['a', 'b', 'c', 'd', 'e'].map((x) =>
      p.request(`${subject}.hold`, x).then((m) => order.push(m.string())),
    );
    let full: unknown;
    await p.request(`${subject}.hold`, 'f').catch((err: unknown) => (full = err));
    expect(full).to.be.instanceOf(PipelineFullError);
    expect(p.inFlight).to.equal(2);
    expect(p.queued).to.equal(3);
    // Release replies one by one: queued requests go out in call order.
    while (order.length < 5) {
      await nc.flush();
      const h = held.shift();
      if (h === undefined) {
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      h();
      await nc.flush();
    }
    await Promise.all(reqs);
    expect(order).to.deep.equal(['a', 'b', 'c', 'd', 'e']);
    p.close();
  });

  it('times out requests in flight and requests still queued, by one deadline from the call', async function () {
    const p = new RequestPipeline(nc, { maxInFlight: 1, timeoutMs: 200 });
    // Both calls in one millisecond, so both have the same deadline: with the second a
    // millisecond later, the first's expiry frees the slot while the second has 1 ms left, and
    // it is sent (correctly, and then this test could not tell).
    const t = Date.now();
    while (Date.now() === t);
    const results = await Promise.allSettled([p.request(`${subject}.hold`, '1'), p.request(`${subject}.hold`, '2')]);
    expect(results.map((r) => r.status)).to.deep.equal(['rejected', 'rejected']);
    for (const r of results) expect((r as PromiseRejectedResult).reason).to.be.instanceOf(RequestTimeoutError);
    expect(p.inFlight + p.queued).to.equal(0);
    // The queued one expired while waiting: it was never sent.
    await nc.flush();
    expect(held).to.have.length(1);
    held.length = 0;
    p.close();
  });

  it('with deadlineFromSend, a queued request waits for its slot and then has the whole timeout', async function () {
    const p = new RequestPipeline(nc, { maxInFlight: 1, timeoutMs: 600, deadlineFromSend: true });
    const first = p.request(`${subject}.hold`, '1');
    const second = p.request(`${subject}.hold`, '2');
    const release = async (afterMs: number): Promise<void> => {
      await new Promise((r) => setTimeout(r, afterMs));
      await nc.flush();
      held.shift()?.();
    };
    await release(300);
    expect((await first).string()).to.equal('1');
    // Answered 700 ms after its call: past the timeout counted from the call, within it from the send.
    await release(400);
    expect((await second).string()).to.equal('2');
    // In flight, the deadline still holds.
    const err = await p.request(`${subject}.hold`, '3').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(RequestTimeoutError);
    held.length = 0;
    p.close();
  });

  it('idle() resolves once the last request in flight or queued is answered, and false at its deadline', async function () {
    const p = new RequestPipeline(nc, { maxInFlight: 1 });
    expect(await p.idle(10)).to.equal(true); // nothing to wait for
    const answered: string[] = [];
    const reqs = ['1', '2'].map((x) => p.request(`${subject}.hold`, x).then((m) => answered.push(m.string())));
    await nc.flush();
    expect(await p.idle(100)).to.equal(false); // both held back: the deadline wins
    const idle = p.idle(5000);
    while (answered.length < 2) {
      await nc.flush();
      const h = held.shift();
      if (h === undefined) await new Promise((r) => setTimeout(r, 10));
      else h();
    }
    await Promise.all(reqs);
    expect(await idle).to.equal(true);
    expect(answered).to.deep.equal(['1', '2']);
  });

  it('fails each unanswered request at its deadline, not at the next periodic check (issue 7)', async function () {
    const timeoutMs = 2000;
    const p = new RequestPipeline(nc, { timeoutMs });
    // Calls spread over 500 ms: a check every timeout / 4 would fail some of them up to 500 ms late.
    const late: number[] = [];
    const calls: Array<Promise<void>> = [];
    for (let i = 0; i < 6; i++) {
      const t0 = Date.now();
      calls.push(
        p.request(`${subject}.hold`, String(i)).then(
          () => expect.fail('answered'),
          (err: unknown) => {
            expect(err).to.be.instanceOf(RequestTimeoutError);
            late.push(Date.now() - t0 - timeoutMs);
          },
        ),
      );
      await new Promise((r) => setTimeout(r, 100));
    }
    await Promise.all(calls);
    // A periodic check would fail them 0 to 500 ms late, spread over that range; the timer fires
    // each at its deadline, late only by the event loop's lag (up to a few hundred ms on a busy
    // 2-core machine, so the bound is the median's and the worst's is looser).
    late.sort((a, b) => a - b);
    expect(late[0], `late by ${late.join(', ')} ms`).to.be.at.least(-1);
    expect(late[Math.floor(late.length / 2)], `late by ${late.join(', ')} ms`).to.be.at.most(100);
    expect(late[late.length - 1], `late by ${late.join(', ')} ms`).to.be.at.most(300);
    held.length = 0;
  });

  it('answers a multi-reply request with all its replies in order, one slot each, among single ones', async function () {
    const p = new RequestPipeline(nc, { maxInFlight: 2 });
    const isEnd = (m: { string(): string }): boolean => m.string() === 'end';
    const [many, one, more] = await Promise.all([
      p.requestMany(`${subject}.many`, '3', isEnd),
      p.request(`${subject}.echo`, 'x'),
      p.requestMany(`${subject}.many`, '200', isEnd),
    ]);
    expect(many.map((m) => m.string())).to.deep.equal(['3-1', '3-2', '3-3', 'end']);
    expect(one.string()).to.equal('x');
    expect(more).to.have.length(201);
    expect(more.map((m) => m.string()).slice(0, -1)).to.deep.equal(
      Array.from({ length: 200 }, (_, i) => `200-${i + 1}`),
    );
    expect(p.inFlight + p.queued).to.equal(0);
    p.close();
  });

  it('times out a multi-reply request whose last reply never comes', async function () {
    const p = new RequestPipeline(nc, { timeoutMs: 200 });
    let err: unknown;
    await p.requestMany(`${subject}.many`, '2', () => false).catch((e: unknown) => (err = e));
    expect(err).to.be.instanceOf(RequestTimeoutError);
    expect(p.inFlight).to.equal(0);
    p.close();
  });

  it('following its connection (the default), fails at once what was sent on a connection that is lost, and sends what is asked while it reconnects', async function () {
    const u = new URL(NATS_URL);
    const proxy = new TcpProxy(u.hostname, Number(u.port));
    await proxy.start();
    const via = await connect({ servers: proxy.url, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
    const lossy = new RequestPipeline(via, { timeoutMs: 60_000 });
    const plain = new RequestPipeline(via, { watchConnection: false, timeoutMs: 60_000 });
    try {
      const sent = [lossy.request(`${subject}.hold`, 'a'), lossy.request(`${subject}.hold`, 'b')];
      const waiting = plain.request(`${subject}.hold`, 'c').catch((err: unknown) => err);
      for (let i = 0; i < 200 && held.length < 3; i++) await sleep(10);
      expect(held).to.have.length(3); // the server has them; their replies are never sent
      held.length = 0;
      const t0 = Date.now();
      proxy.dropAll();
      const results = await Promise.allSettled(sent);
      expect(Date.now() - t0).to.be.lessThan(5000); // not the 60 s deadline
      for (const r of results) {
        expect(r.status).to.equal('rejected');
        expect((r as PromiseRejectedResult).reason).to.be.instanceOf(RequestLostError);
      }
      // Asked while the client reconnects: sent once it has, and answered.
      const later = await lossy.request(`${subject}.echo`, 'd');
      expect(later.string()).to.equal('d');
      // With watchConnection: false, the lost request still waits for its deadline.
      expect(plain.inFlight).to.equal(1);
      plain.close();
      expect(await waiting).to.be.instanceOf(Error);
    } finally {
      lossy.close();
      plain.close();
      await via.close();
      await proxy.stop();
    }
  });

  it('fails everything in flight or queued on close', async function () {
    const p = new RequestPipeline(nc, { maxInFlight: 1 });
    const a = p.request(`${subject}.hold`, '1');
    const b = p.request(`${subject}.hold`, '2');
    p.close();
    const results = await Promise.allSettled([a, b]);
    expect(results.map((r) => r.status)).to.deep.equal(['rejected', 'rejected']);
    held.length = 0;
  });
});
