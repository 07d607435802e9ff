import { expect } from 'chai';
import type { Edge } from '@push/edge';
import { Subjects } from '@push/protocol';
import { Stack, type TestApp } from '../helpers/stack.js';
import type { TestClient } from '../helpers/ws-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A counter of an edge's Prometheus registry (0 when it has no sample yet). */
async function counter(edge: Edge, name: string): Promise<number> {
  const m = await edge.registry.getSingleMetric(name)?.get();
  return m?.values.reduce((sum, v) => sum + v.value, 0) ?? 0;
}

/**
 * The inbox store on nats-server 2.11+ as a user sees it: batched backlog reads, coalesced
 * acks, server-side expiry, and client messages that cannot evict the business's.
 */
describe('inbox store (batched reads, acks removed one by one, TTL, kinds)', function () {
  let stack: Stack;
  let app: TestApp;
  const clients: TestClient[] = [];

  before(async function () {
    stack = await Stack.start();
    app = await stack.createApp({ clientMessaging: true });
  });
  after(async function () {
    for (const c of clients) c.terminate();
    await stack?.close();
  });

  async function connect(user: string, device = 'default', edge?: Edge, a: TestApp = app): Promise<TestClient> {
    const c = await a.connect(user, device, '', edge);
    clients.push(c);
    return c;
  }

  it('1,100 client sends to an offline user leave every business push in place (issue 7 defect 2)', async function () {
    this.timeout(60_000);
    const pushed: number[] = [];
    for (let i = 0; i < 5; i++) pushed.push(await app.pushOk('victim', { business: i }));
    // Ten senders, 110 each: past the app's per-user cap of 1,000. A send refused by a rate
    // limit is sent again after a pause, so every one of them is stored in the end.
    const senders = await Promise.all(Array.from({ length: 10 }, (_, i) => connect(`spammer${i}`)));
    const sendAll = async (s: TestClient, i: number): Promise<number> => {
      let stored = 0;
      for (let k = 0; k < 110; k++) {
        const id = `s${i}-${k}`;
        for (let attempt = 0; ; attempt++) {
          const before = s.frames.length;
          s.send({ t: 'send', to: 'victim', id, data: { spam: k } });
          const answer = await s.waitFor((f) => s.frames.indexOf(f) >= before && f['id'] === id, 10_000);
          if (answer.t === 'sent') {
            stored++;
            break;
          }
          if (answer['code'] !== 'rate_limited' || attempt > 100) throw new Error(JSON.stringify(answer));
          const wait = typeof answer['retryAfter'] === 'number' ? answer['retryAfter'] * 1000 : 200;
          await sleep(Math.min(wait, 2000));
        }
      }
      return stored;
    };
    const stored = (await Promise.all(senders.map((s, i) => sendAll(s, i)))).reduce((a, b) => a + b, 0);
    expect(stored, 'client messages stored').to.be.greaterThan(1000);
    // Both kinds count as pending; the client ones are held to the cap on their own.
    expect((await app.user('victim')).body['pending']).to.equal(5 + 1000);

    const victim = await connect('victim');
    const business: number[] = [];
    for (;;) {
      const ms = await victim.waitForMessages(1);
      const fresh = ms.filter((m) => !business.includes(m.seq) && m.from === undefined);
      business.push(...fresh.map((m) => m.seq));
      if (business.length >= 5) break;
      victim.ack(ms.map((m) => m.seq));
      await sleep(20);
    }
    expect(business).to.deep.equal(pushed);
  });

  it('expires a message on the server: pending drops with no client connected', async function () {
    this.timeout(10_000);
    await app.pushOk('tess', 'short', { ttl: 1 });
    await app.pushOk('tess', 'long');
    expect((await app.user('tess')).body['pending']).to.equal(2);
    await app.waitPending('tess', 1, 4000);
    const c = await connect('tess');
    const [m] = await c.waitForMessages(1);
    expect(m?.data).to.equal('long');
  });

  it('reads a backlog larger than the window and than the byte bound, in order, once each', async function () {
    this.timeout(30_000);
    // 16 KiB of backpressure: each backlog read asks for at most 8 KiB; 2 KiB messages.
    const small = await stack.startEdge({ PUSH_EDGE_MAX_BACKPRESSURE: String(16 * 1024), PUSH_EDGE_WINDOW: '40' });
    while (!small.knowsApp(app.id)) await sleep(5);
    const total = 130;
    const big = 'x'.repeat(2048);
    for (let i = 0; i < total; i += 26) {
      await app.push({ messages: Array.from({ length: 26 }, (_, k) => ({ user: 'ursula', data: { i: i + k, big } })) });
    }
    const c = await connect('ursula', 'default', small);
    expect(c.hello['window']).to.equal(40);
    let acked = 0;
    let ackFrames = 0;
    while (acked < total) {
      await c.waitForMessages(acked + 1, 10_000);
      await sleep(50);
      const now = c.messages;
      expect(now.length - acked, 'unacked in flight').to.be.at.most(40);
      c.ack(now.slice(acked).map((m) => m.seq));
      ackFrames++;
      acked = now.length;
    }
    await c.ping();
    await sleep(100);
    expect(c.messages.map((m) => (m.data as { i: number }).i)).to.deep.equal(
      Array.from({ length: total }, (_, i) => i),
    );
    await app.waitPending('ursula', 0);
    expect(await counter(small, 'push_edge_backlog_messages_total')).to.equal(total);
    // Batched: fewer store reads than messages, yet more than the window alone would need
    // (about four 2 KiB messages fit the 8 KiB byte bound).
    const requests = await counter(small, 'push_edge_backlog_requests_total');
    expect(requests).to.be.lessThan(total / 2);
    expect(requests).to.be.at.least(Math.floor(total / 8));
    // One delete per message acked, over ackFrames ack frames.
    expect(ackFrames).to.be.at.least(Math.ceil(total / 40));
    expect(await counter(small, 'push_edge_ack_requests_total')).to.equal(total);
    expect(await counter(small, 'push_edge_inbox_removed_total')).to.equal(total);
  });

  it('acks in order remove both kinds: business pushes and client messages', async function () {
    const sender = await connect('yann');
    for (let i = 0; i < 3; i++) {
      await app.pushOk('zoe', { business: i });
      sender.send({ t: 'send', to: 'zoe', id: `z${i}`, data: { client: i } });
      await sender.waitFor(() => sender.frames.filter((f) => f.t === 'sent').length === i + 1);
    }
    expect((await app.user('zoe')).body['pending']).to.equal(6);
    const z = await connect('zoe');
    const ms = await z.waitForMessages(6);
    expect(ms.map((m) => m.from)).to.deep.equal([undefined, 'yann', undefined, 'yann', undefined, 'yann']);
    z.ack(ms.slice(0, 4).map((m) => m.seq));
    await app.waitPending('zoe', 2);
    z.ack(ms.slice(4).map((m) => m.seq));
    await app.waitPending('zoe', 0);
  });

  it('two devices acking interleaved remove exactly the acked messages, one delete per ack', async function () {
    this.timeout(15_000);
    const edge = stack.edge;
    const seqs: number[] = [];
    for (let i = 0; i < 20; i++) seqs.push(await app.pushOk('vera', i));
    const other = await app.pushOk('walt', 'untouched');
    const phone = await connect('vera', 'phone');
    const tablet = await connect('vera', 'tablet');
    await phone.waitForMessages(20);
    await tablet.waitForMessages(20);
    const requestsBefore = await counter(edge, 'push_edge_ack_requests_total');
    const removedBefore = await counter(edge, 'push_edge_inbox_removed_total');
    // Interleaved: the phone acks the even positions, the tablet the odd ones, of the first 12;
    // the tablet also acks 15 and 17 out of order.
    const first = seqs.slice(0, 12);
    phone.ack(first.filter((_, i) => i % 2 === 0));
    tablet.ack([...first.filter((_, i) => i % 2 === 1), seqs[15] as number, seqs[17] as number]);
    await app.waitPending('vera', 20 - 14);
    // Acks of messages the other device already removed: nothing more goes, nothing fails.
    const failedBefore = await counter(edge, 'push_edge_inbox_remove_failed_total');
    phone.ack(first.filter((_, i) => i % 2 === 1));
    tablet.ack(first.filter((_, i) => i % 2 === 0));
    await sleep(300);
    expect((await app.user('vera')).body['pending']).to.equal(6);
    expect(await counter(edge, 'push_edge_inbox_remove_failed_total')).to.equal(failedBefore);
    // A delete per ack: 14 removed, the 12 second acks found their message gone.
    expect(
      (await counter(edge, 'push_edge_ack_requests_total')) - requestsBefore,
      'store requests for 26 acks',
    ).to.equal(26);
    expect((await counter(edge, 'push_edge_inbox_removed_total')) - removedBefore).to.equal(14);
    // What is left is exactly what nobody acked.
    phone.close();
    tablet.close();
    const again = await connect('vera', 'laptop');
    const rest = [12, 13, 14, 16, 18, 19].map((i) => seqs[i]);
    await again.waitForMessages(6);
    await again.ping();
    expect(again.messages.map((m) => m.seq)).to.deep.equal(rest);
    expect((await app.user('walt')).body['pending']).to.equal(1);
    const w = await connect('walt');
    expect((await w.waitForMessages(1))[0]?.seq).to.equal(other);
  });

  it('acks racing the expiry of the acked messages remove them without failures', async function () {
    this.timeout(15_000);
    const edge = stack.edge;
    const c = await connect('xena');
    for (let i = 0; i < 10; i++) await app.pushOk('xena', i, { ttl: 1 });
    const keep = await app.pushOk('xena', 'keep');
    const ms = await c.waitForMessages(11);
    const failedBefore = await counter(edge, 'push_edge_inbox_remove_failed_total');
    const retriesBefore = await counter(edge, 'push_edge_ack_retries_total');
    // About when the server expires them: some acks find them, some find them gone.
    await sleep(900);
    for (const m of ms.slice(0, 10)) {
      c.ack([m.seq]);
      await sleep(30);
    }
    await app.waitPending('xena', 1, 4000);
    await sleep(200);
    expect(await counter(edge, 'push_edge_inbox_remove_failed_total')).to.equal(failedBefore);
    expect(await counter(edge, 'push_edge_ack_retries_total')).to.equal(retriesBefore);
    c.close();
    const again = await connect('xena', 'other');
    expect((await again.waitForMessages(1))[0]?.seq).to.equal(keep);
  });

  it('100 users connecting at once get their interleaved backlogs through one shared pass, each in order, once', async function () {
    this.timeout(60_000);
    const users = Array.from({ length: 100 }, (_, i) => `storm.${i}`);
    const per = 12;
    // Interleaved as a reconnect storm finds them: round after round over every user.
    const want = new Map<string, number[]>(users.map((u) => [u, []]));
    for (let r = 0; r < per; r++) {
      const res = await app.push({ messages: users.map((user) => ({ user, data: { r } })) });
      expect(res.status).to.equal(200);
      const results = res.body['results'] as Array<{ seq: number }>;
      results.forEach((x, i) => want.get(users[i] as string)?.push(x.seq));
    }
    const sweepsBefore = await counter(stack.edge, 'push_edge_backlog_sweeps_total');
    const storm = await Promise.all(users.map((u) => connect(u)));
    for (const [i, c] of storm.entries()) {
      const got = await c.waitForMessages(per, 20_000);
      expect(got.map((m) => m.seq)).to.deep.equal(want.get(users[i] as string));
    }
    expect(await counter(stack.edge, 'push_edge_backlog_sweeps_total')).to.be.greaterThan(sweepsBefore);
    for (const c of storm) c.ack(c.messages.map((m) => m.seq));
    await app.waitPending('storm.0', 0);
    await sleep(200);
    for (const c of storm) expect(c.messages.length, 'no message twice').to.equal(per);
  });

  it('connects 300 users with nothing pending without a read (a few shared probes), while 20 with pending get every message once', async function () {
    this.timeout(60_000);
    // Every Direct Get the edges make of this app's inbox stream, as the server sees them.
    const nc = await stack.connectNats('probe-watch');
    const bodies: string[] = [];
    const watch = nc.subscribe(`$JS.API.DIRECT.GET.${new Subjects(stack.prefix).inboxStream(app.id)}`, {
      callback: (_err, msg) => {
        bodies.push(msg.string());
      },
    });
    try {
      const busy = Array.from({ length: 20 }, (_, i) => `busy.${i}`);
      const idle = Array.from({ length: 300 }, (_, i) => `idle.${i}`);
      const want = new Map<string, number[]>(busy.map((u) => [u, []]));
      for (let r = 0; r < 3; r++) {
        for (const u of busy) want.get(u)?.push(await app.pushOk(u, { r }));
      }
      // One client message too: the probe covers both kinds.
      const sender = await connect('sender');
      sender.send({ t: 'send', to: 'busy.0', id: 'c1', data: 'from a client' });
      await sender.waitFor((f) => f.t === 'sent');
      await app.waitPending('busy.0', 4);
      await nc.flush();
      bodies.length = 0;
      const skipsBefore = await counter(stack.edge, 'push_edge_backlog_probe_skips_total');
      const all = [...idle, ...busy].sort(() => Math.random() - 0.5);
      const cs = await Promise.all(all.map((u) => connect(u)));
      for (const [i, c] of cs.entries()) {
        const u = all[i] as string;
        if (!u.startsWith('busy.')) continue;
        const n = u === 'busy.0' ? 4 : 3;
        const got = await c.waitForMessages(n, 20_000);
        const seqs = got.filter((m) => m.from === undefined).map((m) => m.seq);
        expect(seqs, u).to.deep.equal(want.get(u));
      }
      // Something pushed now reaches an idle user live: probed "nothing" left it live, not stalled.
      const late = await app.pushOk('idle.7', 'late');
      const idle7 = cs[all.indexOf('idle.7')] as TestClient;
      expect((await idle7.waitForMessages(1))[0]?.seq).to.equal(late);
      await sleep(300);
      await nc.flush();
      const probes = bodies.filter((b) => b.includes('"multi_last"'));
      const reads = bodies.filter((b) => !b.includes('"multi_last"'));
      expect(probes.length, 'probes for 320 connects').to.be.within(1, 8);
      // The busy users' reads only (one each, or a shared pass): none for the 300 idle users.
      expect(reads.length, reads.join('\n')).to.be.within(1, busy.length);
      expect(reads.some((b) => b.includes('idle.'))).to.equal(false);
      expect((await counter(stack.edge, 'push_edge_backlog_probe_skips_total')) - skipsBefore).to.equal(idle.length);
      await sleep(200);
      for (const [i, c] of cs.entries()) {
        const u = all[i] as string;
        const n = u === 'busy.0' ? 4 : u.startsWith('busy.') ? 3 : u === 'idle.7' ? 1 : 0;
        expect(c.messages.length, `${u}: each message once`).to.equal(n);
      }
    } finally {
      watch.unsubscribe();
      await nc.close();
    }
  });
});
