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

  it('pings every hello.ping seconds and abandons a connection silent for two intervals', async function () {
    const c = make();
    const lost: number[] = [];
    c.on('connecting', (why) => lost.push(why.code));
    c.connect();
    await tick();
    const s = last();
    s.hello(0.05); // 50 ms, so the test is quick; the edge clamps real values to 10..50 s
    await tick(70);
    expect(s.sent).to.deep.include({ t: 'ping' });
    expect(FakeSocket.all.length).to.equal(1);
    await tick(200); // no pong, nothing at all: dead
    expect(lost).to.include(1006);
    expect(FakeSocket.all.length).to.be.greaterThan(1);
    expect(last().host).to.equal('e1'); // a connection that had said hello: the same edge again
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
});
