import { expect } from 'chai';
import { Registry } from 'prom-client';
import type { LiveHandler, LiveSubscriber, TopicStore, TopicStoredMessage } from '@push/nats';
import { createLogger } from '@push/logger';
import { Subjects, encodeEnvelope } from '@push/protocol';
import { createEdgeMetrics } from '../../apps/edge/src/metrics.js';
import { TopicChannels } from '../../apps/edge/src/topic-channels.js';

/** A live subscriber that hands each subscription's handler to the test. */
class FakeLive {
  readonly handlers = new Map<number, { subject: string; handler: LiveHandler<unknown>; owner: unknown }>();
  private sid = 0;
  subscribe(subject: string, handler: LiveHandler<unknown>, owner?: unknown): number {
    this.handlers.set(++this.sid, { subject, handler, owner });
    return this.sid;
  }
  unsubscribe(sid: number): void {
    this.handlers.delete(sid);
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
  /** Delivers a republished copy of a stored message (with its Nats-Last-Sequence). */
  deliver(subject: string, seq: number, prev: number, data: string): void {
    const h = Buffer.from(`NATS/1.0\r\nNats-Sequence: ${seq}\r\nNats-Last-Sequence: ${prev}\r\n\r\n`);
    const payload = encodeEnvelope(
      { ts: 1, expires: Date.now() + 60_000, binary: false, from: undefined },
      Buffer.from(data),
    );
    for (const h2 of this.handlers.values()) if (h2.subject === subject) h2.handler(h, payload, subject, h2.owner);
  }
}

/** A topic history: what is held, by sequence. */
class FakeStore {
  held: TopicStoredMessage[] = [];
  reads = 0;
  add(seq: number, data: string): void {
    this.held.push({ seq, prev: 0, ts: 1, expires: Date.now() + 60_000, bytes: Buffer.from(data), binary: false });
  }
  lastSeq(): Promise<number> {
    return Promise.resolve(this.held[this.held.length - 1]?.seq ?? 0);
  }
  readBatch(_app: string, _topic: string, from: number, b: { max: number }) {
    this.reads++;
    const all = this.held.filter((m) => m.seq >= from);
    return Promise.resolve({ messages: all.slice(0, b.max), more: all.length > b.max });
  }
}

const tick = () => new Promise((r) => setImmediate(r));

describe('TopicChannels', () => {
  const subjects = new Subjects('p');
  const key = subjects.liveTopic('a', 't');
  let live: FakeLive;
  let store: FakeStore;
  let published: string[];
  let topics: TopicChannels;
  let subscribers = 1;

  beforeEach(() => {
    live = new FakeLive();
    store = new FakeStore();
    published = [];
    subscribers = 1;
    topics = new TopicChannels(
      live as unknown as LiveSubscriber,
      store as unknown as TopicStore,
      subjects,
      { publish: (_k, frame) => published.push(frame), subscribers: (k) => (k.endsWith('#app') ? 0 : subscribers) },
      createEdgeMetrics(new Registry()),
      createLogger({ level: 'silent', name: 'test' }),
    );
  });

  const seqs = () =>
    published.map((f) => {
      const x = JSON.parse(f) as { t: string; seq?: number; prev?: number; first?: number };
      return x.t === 'lost' ? `lost:${x.first}` : `${x.seq}/${x.prev}`;
    });

  it('holds one NATS subscription per topic, ref-counted, gone with the last subscriber', async () => {
    await topics.join('a', 't');
    await topics.join('a', 't');
    await topics.join('a', 'u');
    expect(live.handlers.size).to.equal(2);
    topics.leave('a', 't');
    expect(live.handlers.size).to.equal(2);
    topics.leave('a', 't');
    topics.leave('a', 'u');
    expect(live.handlers.size).to.equal(0);
    expect(topics.size).to.equal(0);
  });

  it('starts after the last stored sequence and fans each message out once', async () => {
    store.add(3, '"old"');
    const ch = await topics.join('a', 't');
    expect(ch.last).to.equal(3);
    store.add(7, '"x"');
    live.deliver(key, 7, 3, '"x"');
    live.deliver(key, 7, 3, '"x"'); // a repeat is not fanned out again
    expect(seqs()).to.deep.equal(['7/3']);
  });

  it('fans out what arrived while it read its last sequence to the joiners it attached first (`_all` from the open)', async () => {
    store.add(3, '"old"');
    // The read of the last sequence is slow: a message is stored (and arrives live) meanwhile.
    let answer!: (n: number) => void;
    store.lastSeq = () => new Promise<number>((r) => (answer = r));
    const attached: number[] = [];
    const joining = topics.join('a', 't', (ch) => {
      attached.push(ch.last);
      published.push('attached');
    });
    const second = topics.join('a', 't', () => published.push('attached 2'));
    await tick();
    store.add(5, '"new"');
    live.deliver(key, 5, 3, '"new"');
    answer(5); // read after it was stored: the last sequence is 5
    const ch = await joining;
    await second;
    // Both joiners were attached before the held message was fanned out, and it was.
    expect(published.slice(0, 2)).to.deep.equal(['attached', 'attached 2']);
    published.splice(0, 2);
    expect(seqs()).to.deep.equal(['5/3']);
    expect(attached).to.deep.equal([4]);
    expect(ch.last).to.equal(5);
    // A joiner of the ready channel is attached at once; nothing is fanned out again.
    let now = false;
    await topics.join('a', 't', () => (now = true));
    expect(now).to.equal(true);
    expect(seqs()).to.deep.equal(['5/3']);
  });

  it('fills a gap it notices by Nats-Last-Sequence from history, in order, then goes on live', async () => {
    await topics.join('a', 't');
    store.add(1, '1');
    live.deliver(key, 1, 0, '1');
    store.add(4, '4'); // missed live
    store.add(6, '6'); // missed live
    store.add(9, '9');
    live.deliver(key, 9, 6, '9');
    store.add(10, '10');
    live.deliver(key, 10, 9, '10'); // arrives while the gap is being filled: held
    await tick();
    await tick();
    expect(seqs()).to.deep.equal(['1/0', '4/1', '6/4', '9/6', '10/9']);
  });

  it('sends lost when history no longer holds the missing messages', async () => {
    await topics.join('a', 't');
    store.add(1, '1');
    live.deliver(key, 1, 0, '1');
    // 5 was evicted before the edge could read it; 8 is held.
    store.add(8, '8');
    live.deliver(key, 8, 5, '8');
    await tick();
    await tick();
    expect(seqs()).to.deep.equal(['1/0', 'lost:8', '8/1']);
  });
});
