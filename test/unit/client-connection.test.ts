import { mock } from 'node:test';
import { expect } from 'chai';
import { Registry } from 'prom-client';
import type { InboxMessage, InboxStore, PublishOptions, PublishResult } from '@push/nats';
import {
  DEFAULT_APP_SETTINGS,
  PushError,
  Subjects,
  type AppRecord,
  type AppSettings,
  type MessagePayload,
} from '@push/protocol';
import { ClientConnection, type ClientSocket, type ConnectionContext } from '../../apps/edge/src/client-connection.js';
import { createEdgeMetrics } from '../../apps/edge/src/metrics.js';
import { SendLimits } from '../../apps/edge/src/send-limits.js';
import type { TopicChannel } from '../../apps/edge/src/topic-channels.js';

/**
 * Unit tests of one client connection with a fake store, a fake socket and a fake ack path: no
 * NATS, no uWS. The store's batched reads are answered by hand, so live messages can be made to
 * arrive exactly while a read is out; the socket's buffered bytes and send answers are set by
 * the test.
 */

/** Lets promise callbacks and setImmediate callbacks run (never a timer: some tests mock them). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

function message(seq: number, opts: { from?: string; expires?: number; prev?: number } = {}): InboxMessage {
  return {
    seq,
    ts: 1,
    expires: opts.expires ?? Date.now() + 60_000,
    bytes: Buffer.from(String(seq)),
    binary: false,
    from: opts.from,
    ...(opts.prev !== undefined ? { prev: opts.prev } : {}),
  };
}

interface Read {
  fromSeq: number;
  max: number;
  maxBytes: number;
  /** Answers with these messages: a sequence (a business push), or a sequence and a sender. */
  answer(seqs: Array<number | { seq: number; from: string }>, more: boolean): void;
  fail(err: unknown): void;
}

/** A store whose batched reads wait for the test to answer them; publishes are recorded. */
class FakeStore implements Pick<InboxStore, 'readBatch' | 'publish'> {
  readonly reads: Read[] = [];
  readonly published: Array<{ app: string; user: string; payload: MessagePayload; opts: PublishOptions }> = [];
  publishFails: Error | undefined;
  private seq = 1000;

  readBatch(
    _app: string,
    _user: string,
    fromSeq: number,
    bounds: { max: number; maxBytes: number },
  ): Promise<{ messages: InboxMessage[]; more: boolean }> {
    return new Promise((resolve, reject) => {
      this.reads.push({
        fromSeq,
        max: bounds.max,
        maxBytes: bounds.maxBytes,
        answer: (seqs, more) =>
          resolve({
            messages: seqs.map((s) => (typeof s === 'number' ? message(s) : message(s.seq, { from: s.from }))),
            more,
          }),
        fail: reject,
      });
    });
  }

  publish(app: string, user: string, payload: MessagePayload, opts: PublishOptions): Promise<PublishResult> {
    if (this.publishFails !== undefined) return Promise.reject(this.publishFails);
    this.published.push({ app, user, payload, opts });
    return Promise.resolve({ seq: ++this.seq, duplicate: false });
  }

  /** The one read made since the last call; fails the test when there is none or several. */
  async nextRead(): Promise<Read> {
    await settle();
    expect(this.reads, 'reads made').to.have.length(1);
    return this.reads.shift() as Read;
  }
}

/** A socket recording the frames sent; `buffered` and `answer` model uWS backpressure. */
class FakeSocket implements ClientSocket {
  readonly frames: Array<Record<string, unknown>> = [];
  buffered = 0;
  /** What the next sends answer (1 sent, 2 dropped by uWS). */
  answer = 1;
  ended: [number, string] | undefined;

  send(text: string): number {
    if (this.answer === 2) return 2;
    this.frames.push(JSON.parse(text) as Record<string, unknown>);
    return this.answer;
  }
  cork(cb: () => void): void {
    cb();
  }
  getBufferedAmount(): number {
    return this.buffered;
  }
  end(code: number, reason: string): void {
    this.ended = [code, reason];
  }
  ping(): void {}
  close(): void {}
  subscribe(): boolean {
    return true;
  }
  unsubscribe(): boolean {
    return true;
  }
  publish(): boolean {
    return true;
  }

  /** Sequences of the messages delivered, in order. */
  get delivered(): number[] {
    return this.frames.filter((f) => f['t'] === 'msg').map((f) => f['seq'] as number);
  }
  get errors(): Array<Record<string, unknown>> {
    return this.frames.filter((f) => f['t'] === 'error');
  }
}

/** What the connection handed to the ack path. */
interface Ack {
  app: string;
  seq: number;
}

const HIGH_WATER = 64 * 1024;

function harness(
  opts: {
    window?: number;
    settings?: Partial<AppSettings>;
    /** The app's `_all` channel is not open on the edge: it is ready when this settles. */
    allReady?: Promise<void>;
    /** The same for another app (attached sessions), by app id. */
    allReadyOf?: Record<string, Promise<void>>;
  } = {},
) {
  const store = new FakeStore();
  const ws = new FakeSocket();
  const acks: Ack[] = [];
  /** The ack path's state as the connection sees it (AckBatcher.full, whenRoom). */
  const ackPath = { full: false, waiters: [] as Array<() => void> };
  const unacked: Array<{ seqs: number[]; floor: number }> = [];
  const warnings: unknown[] = [];
  const app: AppRecord = {
    id: 'app',
    name: 'app',
    disabled: false,
    secrets: [],
    settings: { ...DEFAULT_APP_SETTINGS, clientMessaging: true, ...opts.settings },
    apiKeys: [],
    updatedAt: '',
  };
  const ctx: ConnectionContext = {
    edgeId: 'e1',
    connIdPrefix: 'e1-boot',
    config: { window: opts.window ?? 100, maxAppsPerConnection: 16 },
    subjects: new Subjects('t'),
    store,
    // The connection's side of the backlog contract; BacklogReader has tests of its own.
    backlog: { read: (a, user, fromSeq, bounds) => store.readBatch(a, user, fromSeq, bounds) },
    // Upstream and rpc have e2e tests of their own (upstream.test.ts, rpc.test.ts).
    upstream: { publish: () => Promise.reject(new Error('no upstream store in this test')) },
    rpc: { call: () => Promise.reject(new Error('no rpc in this test')) },
    events: { emit: (type) => `evt_${type}` },
    // Topics have tests of their own (topics.test.ts, topic-channels.test.ts): `_all` is open on
    // this edge here (the socket joins it at once, so `hello` goes out with the open).
    topicStore: {
      readBatch: () => Promise.resolve({ messages: [], more: false, first: 0, last: 0 }),
      lastSeq: () => Promise.resolve(0),
      firstSeqSince: () => Promise.resolve(undefined),
    },
    topics: {
      join: (joined, topic, attach) => {
        const ch = { key: `live.${topic}`, last: 0 } as TopicChannel;
        const ready = joined === app.id ? opts.allReady : opts.allReadyOf?.[joined];
        if (ready !== undefined) {
          return ready.then(() => {
            attach?.(ch);
            return ch;
          });
        }
        attach?.(ch);
        return Promise.resolve(ch);
      },
      leave: () => undefined,
      channel: () => undefined,
      reached: () => Promise.resolve(true),
    },
    topicPresence: { joined: () => undefined, left: () => undefined },
    channels: { join: () => Promise.resolve(), leave: () => undefined },
    apps: {
      get: (id) => (id === app.id ? app : id === 'other' ? { ...app, id: 'other', name: 'other' } : undefined),
      holds: () => () => true,
    },
    metrics: createEdgeMetrics(new Registry()),
    log: {
      warn: (o: unknown) => warnings.push(o),
      error: (o: unknown) => warnings.push(o),
      debug: () => undefined,
    },
    sendLimits: new SendLimits(),
    acks: {
      ack(app, seq) {
        acks.push({ app, seq });
        return true;
      },
      get full() {
        return ackPath.full;
      },
      whenRoom(fn) {
        ackPath.waiters.push(fn);
      },
    },
    highWaterBytes: HIGH_WATER,
    // Bindings have e2e tests of their own (bindings.test.ts).
    bindings: { read: () => Promise.resolve({ topics: [], whole: true }) },
    deliveryCounts: {
      unacked(_app, _user, seqs, floor) {
        unacked.push({ seqs: [...seqs], floor });
      },
    },
  };
  const conn = new ClientConnection(ctx, 7, 'app', 'alice', 'phone', 0);
  conn.pingSeconds = 25;
  conn.open(ws, 1024);
  const frame = (f: unknown): void => conn.onFrame(JSON.stringify(f));
  return { conn, store, ws, acks, ackPath, app, ctx, warnings, frame, unacked };
}

describe('ClientConnection (fake store and socket)', () => {
  it('greets, then reads the backlog from sequence 1 with the free window and the socket room', async () => {
    const { store, ws } = harness({ window: 50 });
    expect(ws.frames[0]).to.include({ t: 'hello', conn: 'e1-boot-7', user: 'alice', device: 'phone', window: 50 });
    const read = await store.nextRead();
    expect(read).to.include({ fromSeq: 1, max: 50, maxBytes: HIGH_WATER });
  });

  it("greets only once the app's `_all` channel is ready on the edge; frames sent meanwhile are answered after hello, in order", async () => {
    let ready!: () => void;
    const { ws, frame, store } = harness({ allReady: new Promise<void>((r) => (ready = r)) });
    frame({ t: 'ping' });
    frame({ t: 'ack', seqs: [99] }); // never delivered: ack_unknown
    await settle();
    expect(ws.frames).to.deep.equal([]);
    expect(store.reads).to.have.length(0); // no backlog read before the hello either
    ready();
    await settle();
    expect(ws.frames.map((f) => f['t'])).to.deep.equal(['hello', 'pong', 'error']);
    expect(ws.frames[2]).to.include({ code: 'ack_unknown' });
    expect(store.reads).to.have.length(1);
  });

  it('closes with 1008 a client that sends more than 64 frames before its hello', async () => {
    const { ws, frame } = harness({ allReady: new Promise<void>(() => undefined) });
    for (let i = 0; i < 64; i++) frame({ t: 'ping' });
    expect(ws.ended).to.equal(undefined);
    frame({ t: 'ping' });
    expect(ws.ended).to.deep.equal([1008, 'too many frames before hello']);
    await settle();
    expect(ws.frames).to.deep.equal([]);
  });

  it('holds frames about an attached session until its `attached`, then answers them in order; more than 64 close with 1008', async () => {
    let ready!: () => void;
    const { conn, ws, frame } = harness({ allReadyOf: { other: new Promise<void>((r) => (ready = r)) } });
    conn.authenticate = () => ({ app: 'other', user: 'bob', device: 'tab', exp: 0 });
    await settle();
    ws.frames.length = 0;
    frame({ t: 'attach', token: 'a-token-of-other' });
    frame({ t: 'ack', app: 'other', seqs: [5] }); // never delivered: ack_unknown, after `attached`
    frame({ t: 'ping' }); // about the connection: answered at once
    await settle();
    expect(ws.frames.map((f) => f['t'])).to.deep.equal(['pong']);
    ready();
    await settle();
    expect(ws.frames.map((f) => [f['t'], f['app']])).to.deep.equal([
      ['pong', undefined],
      ['attached', 'other'],
      ['error', 'other'],
    ]);
    expect(ws.frames[2]).to.include({ code: 'ack_unknown' });

    const second = harness({ allReadyOf: { other: new Promise<void>(() => undefined) } });
    second.conn.authenticate = () => ({ app: 'other', user: 'bob', device: 'tab', exp: 0 });
    second.frame({ t: 'attach', token: 'a-token-of-other' });
    for (let i = 0; i < 64; i++) second.frame({ t: 'ack', app: 'other', seqs: [i + 1] });
    expect(second.ws.ended).to.equal(undefined);
    second.frame({ t: 'ack', app: 'other', seqs: [65] });
    expect(second.ws.ended).to.deep.equal([1008, 'too many frames before attached']);
  });

  describe('backlog then live: no gap, no duplicate', () => {
    it('delivers in order, once each, when live messages arrive while a batch is out', async () => {
      const { conn, store, ws } = harness();
      const first = await store.nextRead();
      // Stored while the read is out: 3 is also in the batch, 4 and 5 came after its snapshot.
      conn.onLive(message(3));
      conn.onLive(message(4));
      first.answer([1, 2, 3], true);
      const second = await store.nextRead();
      expect(second.fromSeq).to.equal(4);
      conn.onLive(message(5));
      second.answer([4], false);
      await settle();
      expect(ws.delivered).to.deep.equal([1, 2, 3, 4, 5]);
      conn.onLive(message(6));
      conn.onLive(message(6)); // the same live message twice (a redelivery) goes out once
      expect(ws.delivered).to.deep.equal([1, 2, 3, 4, 5, 6]);
    });

    it('reads the store again when a live message follows one of its kind it never got (issue 15)', async () => {
      // A stream leader died after storing 4 and before its RePublish reached this edge: 5 names
      // 4 as its previous. Delivering 5 would move past 4, and the ack floor would purge it.
      const { conn, store, ws, acks } = harness();
      (await store.nextRead()).answer([1, 2], false);
      await settle();
      conn.onLive(message(3, { prev: 2 }));
      conn.onLive(message(5, { prev: 4 }));
      const again = await store.nextRead();
      expect(again.fromSeq).to.equal(4);
      again.answer([4, 5], false);
      await settle();
      conn.onLive(message(6, { prev: 5 }));
      // A client message's previous is one of its own kind: 6 (business) does not vouch for 7.
      conn.onLive(message(8, { from: 'bob', prev: 7 }));
      const third = await store.nextRead();
      expect(third.fromSeq).to.equal(7);
      third.answer(
        [
          { seq: 7, from: 'bob' },
          { seq: 8, from: 'bob' },
        ],
        false,
      );
      await settle();
      expect(ws.delivered).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8]);
      expect(acks).to.deep.equal([]);
    });

    it('reads again, not from its buffer, when more live messages came during the read than it keeps', async () => {
      const { conn, store, ws } = harness({ window: 3 });
      const first = await store.nextRead();
      for (let s = 1; s <= 5; s++) conn.onLive(message(s)); // 4 and 5 overflow the buffer of 3
      first.answer([1, 2], false);
      await settle();
      expect(ws.delivered).to.deep.equal([1, 2]);
      const again = await store.nextRead();
      expect(again).to.include({ fromSeq: 3, max: 1 });
      again.answer([3], true);
      await settle();
      expect(ws.delivered).to.deep.equal([1, 2, 3]);
      expect(store.reads).to.have.length(0); // window full: the rest waits in the store
    });
  });

  describe('never-ack guard (issue 17 part 3)', () => {
    it('reports at the close only what was delivered and not acked, with the ack floor', async () => {
      const { conn, store, frame, unacked } = harness();
      (await store.nextRead()).answer([1, 2, 3, 4], false);
      await settle();
      frame({ t: 'ack', seqs: [1, 3] });
      expect(unacked).to.deep.equal([]); // nothing is counted while delivering or acking
      conn.closed();
      expect(unacked).to.deep.equal([{ seqs: [2, 4], floor: 1 }]);
    });

    it('reports nothing when every delivery was acked', async () => {
      const { conn, store, frame, unacked } = harness();
      (await store.nextRead()).answer([1, 2], false);
      await settle();
      frame({ t: 'ack', seqs: [1, 2] });
      conn.closed();
      conn.closed();
      expect(unacked).to.deep.equal([]);
    });
  });

  describe('window full -> stall -> acks resume', () => {
    it('sends nothing past the window, keeps nothing of what arrives, and reads on after an ack', async () => {
      const { conn, store, ws, frame } = harness({ window: 3 });
      (await store.nextRead()).answer([10, 11, 12], true);
      await settle();
      expect(ws.delivered).to.deep.equal([10, 11, 12]);
      expect(store.reads).to.have.length(0); // window full: no read until an ack
      for (let s = 13; s < 1013; s++) conn.onLive(message(s)); // stalled: left in the store
      expect(ws.delivered).to.deep.equal([10, 11, 12]);
      frame({ t: 'ack', seqs: [10] });
      const next = await store.nextRead();
      expect(next).to.include({ fromSeq: 13, max: 1 });
      next.answer([13], true);
      await settle();
      expect(ws.delivered).to.deep.equal([10, 11, 12, 13]);
      frame({ t: 'ack', seqs: [11, 12, 13] });
      const last = await store.nextRead();
      expect(last).to.include({ fromSeq: 14, max: 3 });
      last.answer([14], false);
      await settle();
      conn.onLive(message(15)); // live again
      expect(ws.delivered).to.deep.equal([10, 11, 12, 13, 14, 15]);
    });
  });

  describe('ack path far behind the store -> stall -> room resumes', () => {
    it('sends nothing while the ack path is full, and reads what it missed once it has room', async () => {
      const { conn, store, ws, ackPath } = harness();
      (await store.nextRead()).answer([1, 2], false);
      await settle();
      expect(ws.delivered).to.deep.equal([1, 2]);
      ackPath.full = true;
      conn.onLive(message(3)); // left in the store
      conn.onLive(message(4));
      expect(ws.delivered).to.deep.equal([1, 2]);
      expect(ackPath.waiters).to.have.length(1);
      expect(store.reads).to.have.length(0);
      ackPath.full = false;
      for (const fn of ackPath.waiters.splice(0)) fn();
      const again = await store.nextRead();
      expect(again).to.include({ fromSeq: 3 });
      again.answer([3, 4], false);
      await settle();
      expect(ws.delivered).to.deep.equal([1, 2, 3, 4]);
    });
  });

  describe('socket backpressure -> stall -> drain resumes', () => {
    it('stops at the high-water mark and reads what it missed from the store after a drain', async () => {
      const { conn, store, ws } = harness();
      (await store.nextRead()).answer([1], false);
      await settle();
      ws.buffered = HIGH_WATER; // the client reads slowly
      conn.onLive(message(2));
      conn.onLive(message(3));
      expect(ws.delivered).to.deep.equal([1]);
      conn.drained(); // still above the mark: nothing yet
      await settle();
      expect(store.reads).to.have.length(0);
      ws.buffered = 1000;
      conn.drained();
      const read = await store.nextRead();
      expect(read).to.include({ fromSeq: 2, maxBytes: HIGH_WATER - 1000 });
      read.answer([2, 3], false);
      await settle();
      conn.onLive(message(4));
      expect(ws.delivered).to.deep.equal([1, 2, 3, 4]);
    });

    it('sends again, once, a message uWS dropped', async () => {
      const { conn, store, ws } = harness();
      (await store.nextRead()).answer([1], false);
      await settle();
      ws.answer = 2; // uWS dropped it: over its backpressure limit
      conn.onLive(message(2));
      conn.onLive(message(3));
      ws.answer = 1;
      conn.drained();
      const read = await store.nextRead();
      expect(read.fromSeq).to.equal(2);
      read.answer([2, 3], false);
      await settle();
      expect(ws.delivered).to.deep.equal([1, 2, 3]);
    });
  });

  describe('a failed backlog read', () => {
    afterEach(() => mock.timers.reset());

    it('is retried after a full-jitter delay that grows while the store keeps failing', async () => {
      mock.timers.enable({ apis: ['setTimeout'] });
      const { store, ws, warnings } = harness();
      (await store.nextRead()).fail(new PushError('store_unavailable'));
      await settle();
      expect(warnings).to.have.length(1);
      // First retry within 1-2 s.
      mock.timers.tick(999);
      await settle();
      expect(store.reads).to.have.length(0);
      mock.timers.tick(1001);
      const second = await store.nextRead();
      expect(second.fromSeq).to.equal(1);
      second.fail(new PushError('store_unavailable'));
      await settle();
      // Second retry within 1-3 s.
      mock.timers.tick(999);
      await settle();
      expect(store.reads).to.have.length(0);
      mock.timers.tick(2001);
      const third = await store.nextRead();
      third.answer([1, 2], false);
      await settle();
      expect(ws.delivered).to.deep.equal([1, 2]);
    });

    it('is retried at once by a resync asked for while it was failing (a NATS reconnect)', async () => {
      mock.timers.enable({ apis: ['setTimeout'] });
      const { conn, store, ws } = harness();
      const first = await store.nextRead();
      conn.resync();
      first.fail(new PushError('store_unavailable'));
      const again = await store.nextRead();
      again.answer([1], false);
      await settle();
      expect(ws.delivered).to.deep.equal([1]);
    });
  });

  describe('acks go to the ack path', () => {
    it('hands each ack of a delivered message over, in any order, business and client messages alike', async () => {
      const { conn, store, ws, acks, frame } = harness();
      (await store.nextRead()).answer([], false);
      await settle();
      // Live: 5 and 7 are business messages, 6 a client message (stored under its own subject).
      conn.onLive(message(5));
      conn.onLive(message(6, { from: 'bob' }));
      conn.onLive(message(7));
      frame({ t: 'ack', seqs: [6] });
      frame({ t: 'ack', seqs: [5] });
      frame({ t: 'ack', seqs: [7] });
      expect(acks).to.deep.equal([
        { app: 'app', seq: 6 },
        { app: 'app', seq: 5 },
        { app: 'app', seq: 7 },
      ]);
      expect(ws.errors).to.deep.equal([]);
    });

    it('answers acks of sequences not in flight with ack_unknown naming them, applying the rest', async () => {
      const { store, ws, acks, frame } = harness();
      (await store.nextRead()).answer([1, 2], false);
      await settle();
      frame({ t: 'ack', seqs: [1, 9, 1] });
      expect(acks.map((a) => a.seq)).to.deep.equal([1]);
      expect(ws.errors).to.have.length(1);
      expect(ws.errors[0]).to.include({ code: 'ack_unknown' });
      expect(ws.errors[0]?.['seqs']).to.deep.equal([9, 1]);
    });

    it('skips an expired message, acking it for removal instead of sending it', async () => {
      const { conn, store, ws, acks } = harness();
      (await store.nextRead()).answer([], false);
      await settle();
      conn.onLive(message(1, { expires: Date.now() - 1 }));
      conn.onLive(message(2));
      expect(ws.delivered).to.deep.equal([2]);
      expect(acks).to.deep.equal([{ app: 'app', seq: 1 }]);
    });
  });

  describe('client sends', () => {
    it('stores a send for the recipient with the sender and an idempotency id, answered with its id', async () => {
      const { store, ws, frame } = harness();
      frame({ t: 'send', id: 'm1', to: 'bob', data: { hi: 1 }, ttl: 60 });
      await settle();
      expect(store.published).to.have.length(1);
      const p = store.published[0];
      expect(p?.user).to.equal('bob');
      expect(p?.opts).to.deep.include({
        from: 'alice',
        ttlMs: 60_000,
        msgId: new Subjects('t').clientMessageId('app', 'alice', 'm1'),
      });
      expect(ws.frames.at(-1)).to.deep.equal({ t: 'sent', id: 'm1', seq: 1001, dup: false });
    });

    const refusals: Array<[string, Record<string, unknown>, string]> = [
      ['a bad recipient', { t: 'send', id: 'm2', to: '', data: 1 }, 'invalid_id'],
      ['no data', { t: 'send', id: 'm3', to: 'bob' }, 'invalid_data'],
      ['a bad ttl', { t: 'send', id: 'm4', to: 'bob', data: 1, ttl: -5 }, 'invalid_ttl'],
    ];
    for (const [what, body, code] of refusals) {
      it(`answers a send with ${what} with ${code} and the send's id`, async () => {
        const { store, ws, frame } = harness();
        frame(body);
        await settle();
        expect(store.published).to.have.length(0);
        expect(ws.errors).to.have.length(1);
        expect(ws.errors[0]).to.include({ code, id: body['id'] });
      });
    }

    it('answers refusals found after parsing with the send id: disabled, too large, rate limited, store down', async () => {
      const { store, ws, app, frame } = harness({ settings: { maxMessageBytes: 10, sendRatePerConnection: 3 } });
      for (const send of [
        { id: 'big', data: 'x'.repeat(20) },
        { id: 'a', data: 1 },
        { id: 'b', data: 1 },
        { id: 'c', data: 1 },
      ]) {
        frame({ t: 'send', to: 'bob', ...send });
        await settle();
      }
      store.publishFails = new PushError('store_unavailable');
      app.settings.sendRatePerConnection = 0;
      frame({ t: 'send', id: 'down', to: 'bob', data: 1 });
      await settle();
      app.settings.clientMessaging = false;
      frame({ t: 'send', id: 'off', to: 'bob', data: 1 });
      await settle();
      const answers = ws.frames
        .filter((f) => f['t'] === 'sent' || f['t'] === 'error')
        .map((f) => [f['id'], f['code'] ?? 'sent']);
      expect(answers).to.deep.equal([
        ['big', 'payload_too_large'],
        ['a', 'sent'],
        ['b', 'sent'],
        ['c', 'rate_limited'],
        ['down', 'store_unavailable'],
        ['off', 'client_messaging_disabled'],
      ]);
      const limited = ws.errors.find((e) => e['code'] === 'rate_limited');
      expect(limited?.['retryAfter']).to.be.a('number').above(0);
    });

    it('answers frames that are no send without an id, and stays open', async () => {
      const { ws, frame, conn } = harness();
      conn.onFrame('not json');
      frame({ t: 'nope' });
      frame({ t: 'ping' });
      await settle();
      expect(ws.errors.map((e) => [e['code'], 'id' in e])).to.deep.equal([
        ['bad_frame', false],
        ['unknown_frame', false],
      ]);
      expect(ws.frames.at(-1)).to.deep.equal({ t: 'pong' });
      expect(ws.ended).to.equal(undefined);
    });
  });
});
