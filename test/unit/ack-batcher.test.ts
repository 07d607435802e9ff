import { expect } from 'chai';
import type { InboxKind } from '@push/protocol';
import { AckBatcher, type AckCounters, type AckStore } from '../../apps/edge/src/ack-batcher.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A store holding sequences (with their kind) per user; fails the next `failures` requests. */
class FakeStore implements AckStore {
  readonly stored = new Map<string, Map<number, InboxKind>>();
  readonly calls: string[] = [];
  failures = 0;

  add(user: string, ...seqs: number[]): void {
    this.addKind(user, 'b', ...seqs);
  }

  addKind(user: string, kind: InboxKind, ...seqs: number[]): void {
    const s = this.stored.get(user) ?? new Map<number, InboxKind>();
    for (const q of seqs) s.set(q, kind);
    this.stored.set(user, s);
  }

  left(user: string): number[] {
    return [...(this.stored.get(user)?.keys() ?? [])].sort((a, b) => a - b);
  }

  purge(_app: string, user: string, belowSeq: number, kind: InboxKind): Promise<number> {
    this.calls.push(`purge ${user}.${kind} <${belowSeq}`);
    if (this.failures > 0) {
      this.failures--;
      return Promise.reject(new Error('store_unavailable'));
    }
    const s = this.stored.get(user) ?? new Map<number, InboxKind>();
    let n = 0;
    for (const [q, k] of [...s]) {
      if (q < belowSeq && k === kind) {
        s.delete(q);
        n++;
      }
    }
    return Promise.resolve(n);
  }

  remove(_app: string, seq: number): Promise<boolean> {
    this.calls.push(`delete ${seq}`);
    if (this.failures > 0) {
      this.failures--;
      return Promise.reject(new Error('store_unavailable'));
    }
    for (const s of this.stored.values()) if (s.delete(seq)) return Promise.resolve(true);
    return Promise.resolve(false);
  }
}

function counters(): AckCounters & Record<'removedN' | 'requestsN' | 'retriesN' | 'droppedN', number> {
  const c = {
    removedN: 0,
    requestsN: 0,
    retriesN: 0,
    droppedN: 0,
    removed: { inc: (n = 1) => void (c.removedN += n) },
    ackRequests: { inc: (n = 1) => void (c.requestsN += n) },
    ackRetries: { inc: (n = 1) => void (c.retriesN += n) },
    acksDropped: { inc: (n = 1) => void (c.droppedN += n) },
  };
  return c;
}

describe('AckBatcher', () => {
  it("turns one turn's in-order acks of a user, from two connections, into one purge", async () => {
    const store = new FakeStore();
    store.add('u', 1, 2, 3, 4, 5);
    store.add('v', 6);
    const c = counters();
    const b = new AckBatcher(store, c);
    // Connection A acked 1 and 2 (floor 2); connection B acked 1..4 (floor 4).
    b.ack('app', 'u', 1, 1, 'b');
    b.ack('app', 'u', 2, 2, 'b');
    for (const seq of [1, 2, 3, 4]) b.ack('app', 'u', seq, seq, 'b');
    await sleep(10);
    expect(store.calls).to.deep.equal(['purge u.b <5']);
    expect(store.left('u')).to.deep.equal([5]);
    expect(store.left('v')).to.deep.equal([6]);
    expect(c.removedN).to.equal(4);
    expect(b.pending).to.equal(0);
  });

  it('deletes acks above the floor, and lets a later floor in the same turn cover them', async () => {
    const store = new FakeStore();
    store.add('u', 1, 2, 3, 4, 5, 6);
    const c = counters();
    const b = new AckBatcher(store, c);
    b.ack('app', 'u', 5, 0, 'b'); // out of order: 1 still unacked
    b.ack('app', 'u', 3, 0, 'b');
    await sleep(10);
    expect(store.calls).to.deep.equal(['delete 5', 'delete 3']);
    store.calls.length = 0;
    b.ack('app', 'u', 6, 0, 'b');
    b.ack('app', 'u', 1, 1, 'b');
    b.ack('app', 'u', 2, 3, 'b');
    b.ack('app', 'u', 4, 6, 'b'); // the floor passes 6: one purge covers 6 too
    await sleep(10);
    expect(store.calls).to.deep.equal(['purge u.b <7']);
    expect(store.left('u')).to.deep.equal([]);
    expect(b.pending).to.equal(0);
  });

  it('purges each kind that was acked, and only those', async () => {
    const store = new FakeStore();
    store.add('u', 1, 3, 5);
    store.addKind('u', 'c', 2, 4);
    const b = new AckBatcher(store, counters());
    b.ack('app', 'u', 1, 1, 'b');
    await sleep(10);
    expect(store.calls).to.deep.equal(['purge u.b <2']);
    expect(store.left('u')).to.deep.equal([2, 3, 4, 5]);
    store.calls.length = 0;
    for (const [seq, kind] of [
      [2, 'c'],
      [3, 'b'],
      [4, 'c'],
      [5, 'b'],
    ] as const) {
      b.ack('app', 'u', seq, seq, kind);
    }
    await sleep(10);
    expect(store.calls).to.deep.equal(['purge u.b <6', 'purge u.c <6']);
    expect(store.left('u')).to.deep.equal([]);
  });

  it('retries a failed request with backoff, merged with newer acks, and counts it', async () => {
    const store = new FakeStore();
    store.add('u', 1, 2, 3);
    store.failures = 2;
    const c = counters();
    const b = new AckBatcher(store, c, { retryBaseMs: 5, retryMaxMs: 20 });
    b.ack('app', 'u', 1, 1, 'b');
    await sleep(5);
    b.ack('app', 'u', 2, 2, 'b');
    const deadline = Date.now() + 2000;
    while (b.pending > 0 && Date.now() < deadline) await sleep(5);
    expect(b.pending).to.equal(0);
    expect(c.retriesN).to.equal(2);
    expect(store.left('u')).to.deep.equal([3]);
    b.close();
  });

  it('holds at most maxHeld acks; past it drops and counts them', () => {
    const store = new FakeStore();
    store.failures = 1_000_000; // the store is down
    const c = counters();
    const b = new AckBatcher(store, c, { maxHeld: 3, retryBaseMs: 1000 });
    for (let seq = 10; seq < 20; seq++) b.ack('app', 'u', seq, 0, 'b');
    expect(b.pending).to.equal(3);
    expect(c.droppedN).to.equal(7);
    b.close();
  });

  it('parks acks behind a purge in flight for their user, sends them as one purge after it, and drains them at shutdown', async () => {
    const store = new FakeStore();
    store.add('u', 1, 2, 3, 4, 5, 6);
    store.add('v', 7);
    // The store holds its answers to purges until released.
    const waiting: Array<() => void> = [];
    const purge = store.purge.bind(store);
    const sent: string[] = [];
    store.purge = (app, user, below, kind) => {
      sent.push(`purge ${user}.${kind} <${below}`);
      return new Promise<void>((r) => waiting.push(r)).then(() => purge(app, user, below, kind));
    };
    const c = counters();
    const b = new AckBatcher(store, c);
    b.ack('app', 'u', 1, 1, 'b');
    await sleep(0);
    // Three turns of acks of u wait behind its purge in flight.
    for (const seq of [2, 3, 4]) {
      b.ack('app', 'u', seq, seq, 'b');
      await sleep(0);
    }
    b.ack('app', 'v', 7, 7, 'b'); // another user is not held
    await sleep(0);
    expect(sent).to.deep.equal(['purge u.b <2', 'purge v.b <8']);
    expect(b.pending).to.equal(5);
    for (const r of waiting.splice(0)) r();
    await sleep(0);
    // Answered: the parked acks go as one purge up to the highest floor.
    expect(sent).to.deep.equal(['purge u.b <2', 'purge v.b <8', 'purge u.b <5']);
    expect(store.left('u')).to.deep.equal([2, 3, 4, 5, 6]);
    b.ack('app', 'u', 5, 5, 'b');
    await sleep(0);
    expect(sent).to.have.length(3); // parked again
    b.drain(); // shutdown: sent at once, though a purge of u is in flight
    expect(sent).to.deep.equal(['purge u.b <2', 'purge v.b <8', 'purge u.b <5', 'purge u.b <6']);
    for (const r of waiting.splice(0)) r();
    await sleep(0);
    expect(store.left('u')).to.deep.equal([6]);
    expect(b.pending).to.equal(0);
    b.close();
  });
  it('sends acks parked behind an unanswered purge as their own purge after parkMaxMs, and counts the late answer once', async () => {
    const store = new FakeStore();
    store.add('u', 1, 2, 3, 4);
    const waiting: Array<() => void> = [];
    const purge = store.purge.bind(store);
    const sent: string[] = [];
    let hang = true; // the first purge's answer is lost (an election); it is answered much later
    store.purge = (app, user, below, kind) => {
      sent.push(`purge ${user}.${kind} <${below}`);
      if (!hang) return purge(app, user, below, kind);
      hang = false;
      return new Promise<void>((r) => waiting.push(r)).then(() => purge(app, user, below, kind));
    };
    const b = new AckBatcher(store, counters(), { parkMaxMs: 40 });
    b.ack('app', 'u', 1, 1, 'b');
    await sleep(0);
    b.ack('app', 'u', 2, 2, 'b');
    b.ack('app', 'u', 3, 3, 'b');
    await sleep(5);
    expect(sent).to.deep.equal(['purge u.b <2']); // parked behind it
    const deadline = Date.now() + 2000;
    while (sent.length < 2 && Date.now() < deadline) await sleep(5);
    expect(sent).to.deep.equal(['purge u.b <2', 'purge u.b <4']);
    expect(store.left('u')).to.deep.equal([4]);
    expect(b.pending).to.equal(1); // the first ack, whose purge is still unanswered
    for (const r of waiting.splice(0)) r();
    await sleep(0);
    expect(b.pending).to.equal(0);
    // The late answer released nothing twice: the next ack goes at once, as its own round.
    b.ack('app', 'u', 4, 4, 'b');
    await sleep(0);
    expect(sent).to.deep.equal(['purge u.b <2', 'purge u.b <4', 'purge u.b <5']);
    expect(store.left('u')).to.deep.equal([]);
    b.close();
  });
});
