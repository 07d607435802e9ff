import { expect } from 'chai';
import { PushClient, type PushClientOptions } from '@push/client';

/** A WebSocket that records what the client sends and lets the test play the edge. */
class FakeSocket {
  static all: FakeSocket[] = [];
  readyState = 0;
  readonly sent: unknown[] = [];
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;

  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }
  send(data: string): void {
    this.sent.push(JSON.parse(data));
  }
  close(): void {
    this.readyState = 3;
  }
  // --- the edge's side
  hello(ping = 25): void {
    this.readyState = 1;
    this.frame({
      t: 'hello',
      conn: 'c1',
      app: 'a',
      user: 'u',
      device: 'd',
      ping,
      window: 100,
      maxMessageBytes: 10,
    });
  }
  frame(f: unknown): void {
    this.onmessage?.({ data: JSON.stringify(f) });
  }
  end(code: number, reason = ''): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  get host(): string {
    return new URL(this.url).host;
  }
}

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));
/** A token the client reads `exp` from (its signature is the edge's business, not checked here). */
const tokenExpiringIn = (seconds: number): string =>
  `x.${Buffer.from(JSON.stringify({ exp: Date.now() / 1000 + seconds })).toString('base64url')}.sig`;
const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
const last = (): FakeSocket => {
  const s = FakeSocket.all.at(-1);
  if (s === undefined) throw new Error('no socket');
  return s;
};

describe('PushClient with a scripted edge (no I/O)', function () {
  const clients: PushClient[] = [];
  const make = (opts: Partial<PushClientOptions> = {}): PushClient => {
    const c = new PushClient({
      edges: ['ws://e1/ws', 'ws://e2/ws'],
      token: 'not.checked.here',
      WebSocket: FakeSocket,
      backoff: { baseMs: 1, capMs: 2 },
      ...opts,
    });
    clients.push(c);
    return c;
  };
  beforeEach(() => {
    FakeSocket.all = [];
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.disconnect();
  });

  it('acks the messages of one turn in one frame, after the listeners returned', async function () {
    const c = make();
    const seen: number[] = [];
    c.on('message', (m) => seen.push(m.seq));
    c.connect();
    await tick();
    const s = last();
    expect(s.url).to.include('refusal=close');
    s.hello();
    s.frame({ t: 'msg', seq: 1, ts: 1, data: 'a' });
    s.frame({ t: 'msg', seq: 2, ts: 1, data: 'b' });
    s.frame({ t: 'msg', seq: 3, ts: 1, data: 'c' });
    expect(s.sent).to.deep.equal([]); // not within the turn
    await tick();
    expect(seen).to.deep.equal([1, 2, 3]);
    expect(s.sent).to.deep.equal([{ t: 'ack', seqs: [1, 2, 3] }]);
  });

  it('does not ack a message whose listener threw (it comes again), and reports the throw', async function () {
    const c = make();
    const errors: string[] = [];
    c.on('error', (e) => errors.push(e.type));
    c.on('message', () => {
      throw new Error('handler bug');
    });
    c.connect();
    await tick();
    last().hello();
    last().frame({ t: 'msg', seq: 7, ts: 1, data: 'x' });
    await tick();
    expect(last().sent).to.deep.equal([]);
    expect(errors).to.deep.equal(['handler']);
  });

  it('stops on 4004 (kicked) and 4403; moves to the next edge on 4503; stays on the edge after a lost connection', async function () {
    const c = make();
    c.connect();
    await tick();
    expect(last().host).to.equal('e1');
    last().end(4503, 'edge_full');
    await tick(20);
    expect(last().host).to.equal('e2');
    last().hello();
    last().end(1006);
    await tick(20);
    expect(last().host).to.equal('e2'); // sticky: the edge that worked
    last().hello();
    const count = FakeSocket.all.length;
    last().end(4004, 'kicked');
    await tick(20);
    expect(c.state).to.equal('disconnected');
    expect(FakeSocket.all.length).to.equal(count);

    const d = make();
    d.connect();
    await tick();
    last().end(4403, 'origin_not_allowed');
    await tick(20);
    expect(d.state).to.equal('disconnected');
  });

  it('moves to the next edge on 4429 (per-IP limit of one edge) and stops on 4403 ip_not_allowed (issue 17)', async function () {
    const c = make();
    c.connect();
    await tick();
    expect(last().host).to.equal('e1');
    last().end(4429, 'ip_connection_limit');
    await tick(20);
    expect(last().host).to.equal('e2');
    expect(c.state).to.equal('connecting');
    last().end(4403, 'ip_not_allowed');
    await tick(20);
    expect(c.state).to.equal('disconnected');
  });

  it('pings every hello.ping seconds and abandons a connection whose ping got no pong in time', async function () {
    const c = make({ heartbeat: { pongTimeoutMs: 100, storage: null } });
    const lost: number[] = [];
    c.on('connecting', (why) => lost.push(why.code));
    c.connect();
    await tick();
    const s = last();
    s.hello(0.05); // 50 ms, so the test is quick; the edge clamps real values to seconds
    await tick(70);
    expect(s.sent).to.deep.include({ t: 'ping' });
    s.frame({ t: 'pong' });
    await tick(70);
    expect(s.sent.filter((f) => (f as { t: string }).t === 'ping')).to.have.length(2);
    expect(FakeSocket.all.length).to.equal(1);
    await tick(150); // no pong, nothing at all: dead
    expect(lost).to.include(1006);
    expect(FakeSocket.all.length).to.be.greaterThan(1);
    expect(last().host).to.equal('e1'); // a connection that had said hello: the same edge again
  });

  it('proposes a longer interval in a ping after on-time pongs, and pings at what the edge agreed', async function () {
    const c = make({ pingSeconds: 1, heartbeat: { confirmAfter: 1, stepFactor: 2, storage: null } });
    c.connect();
    await tick();
    const s = last();
    expect(new URL(s.url).searchParams.get('ping')).to.equal('1');
    s.hello(1);
    await tick(1050);
    expect(s.sent.at(-1)).to.deep.equal({ t: 'ping' });
    s.frame({ t: 'pong' });
    await tick(1050);
    expect(s.sent.at(-1)).to.deep.equal({ t: 'ping', ping: 2 });
    s.frame({ t: 'pong', ping: 2 });
    expect(c.heartbeat.seconds).to.equal(2);
    await tick(1100);
    expect(s.sent.filter((f) => (f as { t: string }).t === 'ping')).to.have.length(2);
  });

  it('settles send by sent or error; retries with the same id after a reconnect', async function () {
    const c = make();
    c.connect();
    await tick();
    const p = c.send('bob', { x: 1 }, { id: 'm1' });
    last().hello();
    expect(last().sent).to.deep.equal([{ t: 'send', id: 'm1', to: 'bob', data: { x: 1 } }]);
    last().end(1006); // the answer is lost with the connection
    await tick(20);
    last().hello();
    expect(last().sent).to.deep.equal([{ t: 'send', id: 'm1', to: 'bob', data: { x: 1 } }]);
    last().frame({ t: 'sent', id: 'm1', seq: 9, dup: true });
    expect(await p).to.deep.equal({ id: 'm1', seq: 9, dup: true });

    const q = c.send('bob', 1, { id: 'm2' });
    last().frame({ t: 'error', code: 'payload_too_large', message: 'too big', id: 'm2' });
    const err = await q.then(
      () => undefined,
      (e: unknown) => e as { code: string },
    );
    expect(err?.code).to.equal('payload_too_large');
  });

  it('subscribe: sub on hello, messages once and in order with no ack, resumes from the last seq after a reconnect', async function () {
    const c = make();
    const sub = c.subscribe('news', { token: 'tt' });
    expect(c.subscribe('news')).to.equal(sub); // the same topic: the same subscription
    const got: number[] = [];
    const events: string[] = [];
    sub.on('message', (m) => got.push(m.seq));
    sub.on('subscribed', ({ seq }) => events.push(`subscribed ${seq}`));
    sub.on('lost', ({ first }) => events.push(`lost ${first}`));
    c.connect();
    await tick();
    last().hello();
    expect(last().sent).to.deep.equal([{ t: 'sub', topic: 'news', token: 'tt' }]); // live only
    last().frame({ t: 'subscribed', topic: 'news', seq: 10 });
    expect(sub.state).to.equal('subscribed');
    last().frame({ t: 'msg', topic: 'news', seq: 12, prev: 10, ts: 1, data: 'a' });
    last().frame({ t: 'msg', topic: 'news', seq: 15, prev: 12, ts: 1, data: 'b' });
    last().frame({ t: 'msg', topic: 'news', seq: 15, prev: 12, ts: 1, data: 'b' }); // a repeat
    last().frame({ t: 'msg', topic: 'other', seq: 16, prev: 0, ts: 1, data: 'not ours' });
    await tick();
    expect(got).to.deep.equal([12, 15]);
    expect(last().sent).to.have.length(1); // topic messages take no ack

    last().end(1006);
    await tick(20);
    last().hello();
    expect(last().sent).to.deep.equal([{ t: 'sub', topic: 'news', since: 15, token: 'tt' }]);
    expect(sub.state).to.equal('subscribing');
    // History no longer reaches back to 15: lost, then what is held (its prev points into the gone part).
    last().frame({ t: 'lost', topic: 'news', first: 20 });
    last().frame({ t: 'msg', topic: 'news', seq: 20, prev: 18, ts: 1, data: 'c' });
    last().frame({ t: 'subscribed', topic: 'news', seq: 20 });
    expect(got).to.deep.equal([12, 15, 20]);
    expect(events).to.deep.equal(['subscribed 10', 'lost 20', 'subscribed 20']);
  });

  it('subscribe: a gap in prev asks again from the last seq and drops frames until the missed ones came', async function () {
    const c = make();
    const sub = c.subscribe('s', { since: 5 });
    const got: number[] = [];
    sub.on('message', (m) => got.push(m.seq));
    c.connect();
    await tick();
    last().hello();
    expect(last().sent).to.deep.equal([{ t: 'sub', topic: 's', since: 5 }]);
    last().frame({ t: 'msg', topic: 's', seq: 6, prev: 5, ts: 1 });
    last().frame({ t: 'subscribed', topic: 's', seq: 6 });
    last().frame({ t: 'msg', topic: 's', seq: 9, prev: 8, ts: 1 }); // 8 was missed
    last().frame({ t: 'msg', topic: 's', seq: 10, prev: 9, ts: 1 });
    expect(last().sent.slice(1)).to.deep.equal([{ t: 'sub', topic: 's', since: 6 }]); // asked once
    last().frame({ t: 'msg', topic: 's', seq: 8, prev: 6, ts: 1 });
    last().frame({ t: 'msg', topic: 's', seq: 9, prev: 8, ts: 1 });
    last().frame({ t: 'msg', topic: 's', seq: 10, prev: 9, ts: 1 });
    last().frame({ t: 'subscribed', topic: 's', seq: 10 });
    expect(got).to.deep.equal([6, 8, 9, 10]);
  });

  it('unsubscribe sends unsub and ends with unsubscribed; a refused sub ends with error; _all needs no sub', async function () {
    const c = make();
    c.connect();
    await tick();
    last().hello();
    const sub = c.subscribe('t');
    let unsubscribed = 0;
    sub.on('unsubscribed', () => unsubscribed++);
    last().frame({ t: 'subscribed', topic: 't', seq: 0 });
    sub.unsubscribe();
    expect(last().sent.at(-1)).to.deep.equal({ t: 'unsub', topic: 't' });
    last().frame({ t: 'msg', topic: 't', seq: 3, prev: 0, ts: 1 });
    last().frame({ t: 'unsubscribed', topic: 't' });
    expect([sub.state, unsubscribed]).to.deep.equal(['unsubscribed', 1]);

    const denied = c.subscribe('secret');
    const codes: string[] = [];
    denied.on('error', (e) => codes.push(e.code));
    last().frame({ t: 'error', code: 'topic_forbidden', message: 'no', topic: 'secret' });
    expect([codes, denied.state]).to.deep.equal([['topic_forbidden'], 'unsubscribed']);
    expect(c.subscribe('secret')).to.not.equal(denied); // may be asked again (with a token)

    const all: number[] = [];
    expect(c.subscribe('_all')).to.equal(c.broadcasts);
    c.broadcasts.on('message', (m) => all.push(m.seq));
    last().frame({ t: 'msg', topic: '_all', seq: 40, prev: 31, ts: 1 });
    last().end(1006);
    await tick(20);
    last().hello();
    expect(last().sent).to.deep.include({ t: 'sub', topic: '_all', since: 40 }); // resumes broadcasts
    expect(all).to.deep.equal([40]);
  });

  it('presence: members are the fetched list with the join/leave frames that came during the fetch applied in order', async function () {
    // The fetch answers late, with a list from before the frames: bob and cid joined, dan left
    // meanwhile. Then once more with a list from after them (bob in it, dan gone): same members.
    for (const snapshot of [
      { members: [{ user: 'dan', device: 'x', conn: 'c9', since: 1 }, { user: 'eve' }] },
      [{ user: 'eve' }, { user: 'bob' }],
    ]) {
      let answer: (v: unknown) => void = () => undefined;
      const asked: string[] = [];
      const c = make({
        fetchMembers: (topic) => {
          asked.push(topic);
          return new Promise((r) => (answer = r));
        },
      });
      const sub = c.subscribe('room', { presence: true });
      const events: string[] = [];
      sub.on('members', (list) => events.push(`members ${list.map((m) => m.user).join(',')}`));
      sub.on('join', (m) => events.push(`join ${m.user}`));
      sub.on('leave', ({ user }) => events.push(`leave ${user}`));
      c.connect();
      await tick();
      last().hello(); // this client is user u
      last().frame({ t: 'subscribed', topic: 'room', seq: 0 });
      expect(asked).to.deep.equal(['room']);
      last().frame({ t: 'join', topic: 'room', user: 'bob', device: 'phone', since: 5 });
      last().frame({ t: 'join', topic: 'room', user: 'cid', device: 'web', since: 6 });
      last().frame({ t: 'leave', topic: 'room', user: 'dan' });
      expect(sub.members()).to.deep.equal([]); // not known yet
      answer(snapshot);
      await tick();
      expect(events).to.deep.equal(['members eve,bob,cid,u']); // u: this user, subscribed
      expect(sub.members().map((m) => m.user)).to.have.members(['eve', 'bob', 'cid', 'u']);

      // From now on each frame applies at once; repeats change nothing; this user never leaves.
      last().frame({ t: 'join', topic: 'room', user: 'bob', device: 'phone', since: 5 });
      last().frame({ t: 'join', topic: 'room', user: 'fay', device: 'tv', since: 7 });
      last().frame({ t: 'leave', topic: 'room', user: 'eve' });
      last().frame({ t: 'leave', topic: 'room', user: 'eve' });
      last().frame({ t: 'leave', topic: 'room', user: 'u' });
      last().frame({ t: 'join', topic: 'other', user: 'gus' });
      expect(events.slice(1)).to.deep.equal(['join fay', 'leave eve']);
      expect(sub.members().map((m) => m.user)).to.have.members(['bob', 'cid', 'u', 'fay']);
      expect(sub.members().find((m) => m.user === 'fay')).to.deep.equal({ user: 'fay', device: 'tv', since: 7 });
      // The `subscribed` of a gap's refill asks nothing: the list is current.
      last().frame({ t: 'subscribed', topic: 'room', seq: 0 });
      expect(asked).to.have.length(1);
      c.disconnect();
    }
  });

  it('presence: fetched again after a reconnect (a late answer of the old fetch is dropped); a failed fetch is reported and retried', async function () {
    const answers: ((v: unknown) => void)[] = [];
    const failures: string[] = [];
    let fail = true;
    const c = make({
      fetchMembers: () => (fail ? Promise.reject(new Error('backend down')) : new Promise((r) => answers.push(r))),
    });
    c.on('error', (e) => failures.push(`${e.type} ${e.error.code}`));
    const sub = c.subscribe('room', { presence: true });
    const lists: string[][] = [];
    sub.on('members', (list) => lists.push(list.map((m) => m.user)));
    c.connect();
    await tick();
    last().hello();
    last().frame({ t: 'subscribed', topic: 'room', seq: 0 });
    await tick();
    expect(failures).to.deep.equal(['presence presence_fetch_failed']);
    fail = false;
    await tick(1100); // the retry, a second later
    expect(answers).to.have.length(1);
    last().end(1006);
    await tick(20);
    last().hello();
    last().frame({ t: 'subscribed', topic: 'room', seq: 0 });
    answers[0]?.(['old']); // the answer of the first connection's fetch: too late
    answers[1]?.({ members: 'not a list' });
    await tick();
    expect(failures.at(-1)).to.equal('presence bad_members');
    expect(lists).to.deep.equal([]);
    await tick(2100);
    answers[2]?.(['vic']);
    await tick();
    expect(lists).to.deep.equal([['vic', 'u']]);
    expect(() => make({}).subscribe('x', { presence: true }))
      .to.throw()
      .with.property('code', 'no_fetch_members');
  });

  it('disconnect() stops what a presence subscription would retry: no member fetch after it', async function () {
    let calls = 0;
    const c = make({
      fetchMembers: () => {
        calls++;
        return Promise.reject(new Error('backend down'));
      },
    });
    c.on('error', () => undefined);
    c.subscribe('room', { presence: true });
    c.connect();
    await tick();
    last().hello();
    last().frame({ t: 'subscribed', topic: 'room', seq: 0 });
    await tick();
    expect(calls).to.equal(1);
    c.disconnect();
    await tick(1200); // past the retry a second after the failure
    expect(calls).to.equal(1);
  });

  it('refreshes the token ahead of exp again after a disconnect()/connect() cycle, and arms nothing for one that came after disconnect()', async function () {
    // exp 31.2 s away and the default margin of 30 s: the refresh is due in about 1.2 s.
    let asked = 0;
    const c = make({ token: () => (asked++, tokenExpiringIn(31.2)) });
    c.connect();
    await tick();
    expect(asked).to.equal(1);
    c.disconnect();
    c.connect(); // the cached token still has time: used as it is
    await tick();
    expect(asked).to.equal(1);
    await tick(1400);
    expect(asked, 'asked again ahead of exp').to.equal(2);

    const before = timers();
    let give: (t: string) => void = () => undefined;
    const late = make({ token: () => new Promise<string>((r) => (give = r)) });
    late.connect();
    await tick();
    late.disconnect();
    give(tokenExpiringIn(3600));
    await tick();
    expect(timers(), 'a timer left behind (it keeps Node running)').to.be.at.most(before);
  });

  it('a token living less than the refresh margin is refreshed at half of its life, not every second', async function () {
    // 4 s tokens, a margin of 30 s: each is asked again about 2 s after it came.
    let asked = 0;
    const c = make({ token: () => (asked++, tokenExpiringIn(4)) });
    c.connect();
    await tick();
    last().hello();
    expect(asked).to.equal(1);
    await tick(1500);
    expect(asked, 'asked again within 1.5 s').to.equal(1);
    await tick(1000);
    expect(asked, 'asked again at half of its life').to.equal(2);
    c.disconnect();
  });

  it('up: settled by upsent, retried with the same id after rate_limited and after a reconnect', async function () {
    const c = make();
    c.connect();
    await tick();
    const p = c.up({ text: 'hi' }, { kind: 'chat', id: 'u1' });
    last().hello();
    const frame = { t: 'up', id: 'u1', kind: 'chat', data: { text: 'hi' } };
    expect(last().sent).to.deep.equal([frame]);
    last().frame({ t: 'error', code: 'rate_limited', message: 'slow down', id: 'u1', retryAfter: 5 });
    await tick(30);
    expect(last().sent).to.deep.equal([frame, frame]);
    last().end(1006);
    await tick(20);
    last().hello();
    expect(last().sent).to.deep.equal([frame]);
    last().frame({ t: 'upsent', id: 'u1', seq: 3, dup: true });
    expect(await p).to.deep.equal({ id: 'u1', seq: 3, dup: true });
  });

  it('rpc: resolves with the reply data, rejects with the code, and an rpc in flight when the connection drops is rejected, not resent', async function () {
    const c = make();
    c.connect();
    await tick();
    const p = c.rpc('sum', [1, 2]); // before hello: waits for the connection
    last().hello();
    const [req] = last().sent as Array<{ id: string }>;
    expect(req).to.deep.include({ t: 'rpc', method: 'sum', data: [1, 2] });
    last().frame({ t: 'rpc', id: req?.id, data: 3 });
    expect(await p).to.equal(3);

    const code = (q: Promise<unknown>) =>
      q.then(
        () => 'resolved',
        (e: unknown) => (e as { code: string }).code,
      );
    const q = c.rpc('slow');
    const id = (last().sent.at(-1) as { id: string }).id;
    last().frame({ t: 'error', code: 'rpc_timeout', message: 'no answer', id });
    expect(await code(q)).to.equal('rpc_timeout');

    const r = c.rpc('dropped');
    last().end(1006);
    expect(await code(r)).to.equal('disconnected');
    await tick(20);
    last().hello();
    expect(last().sent).to.deep.equal([]);
    expect(await code(c.rpc('late', null, { timeoutMs: 10 }))).to.equal('timeout');
  });
});
