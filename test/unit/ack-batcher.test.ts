import { expect } from 'chai';
import { AckBatcher, type AckCounters, type AckStore } from '../../apps/edge/src/ack-batcher.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A store holding sequences per user; fails the next `failures` requests. */
class FakeStore implements AckStore {
  readonly stored = new Map<string, Set<number>>();
  readonly calls: string[] = [];
  failures = 0;

  add(user: string, ...seqs: number[]): void {
    const s = this.stored.get(user) ?? new Set<number>();
    for (const q of seqs) s.add(q);
    this.stored.set(user, s);
  }

  purge(_app: string, user: string, belowSeq: number): Promise<number> {
    this.calls.push(`purge ${user} <${belowSeq}`);
    if (this.failures > 0) {
      this.failures--;
      return Promise.reject(new Error('store_unavailable'));
    }
    const s = this.stored.get(user) ?? new Set<number>();
    let n = 0;
    for (const q of [...s]) {
      if (q < belowSeq) {
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
    b.ack('app', 'u', 1, 1);
    b.ack('app', 'u', 2, 2);
    for (const seq of [1, 2, 3, 4]) b.ack('app', 'u', seq, seq);
    await sleep(10);
    expect(store.calls).to.deep.equal(['purge u <5']);
    expect([...(store.stored.get('u') ?? [])]).to.deep.equal([5]);
    expect([...(store.stored.get('v') ?? [])]).to.deep.equal([6]);
    expect(c.removedN).to.equal(4);
    expect(b.pending).to.equal(0);
  });

  it('deletes acks above the floor, and lets a later floor in the same turn cover them', async () => {
    const store = new FakeStore();
    store.add('u', 1, 2, 3, 4, 5, 6);
    const c = counters();
    const b = new AckBatcher(store, c);
    b.ack('app', 'u', 5, 0); // out of order: 1 still unacked
    b.ack('app', 'u', 3, 0);
    await sleep(10);
    expect(store.calls).to.deep.equal(['delete 5', 'delete 3']);
    store.calls.length = 0;
    b.ack('app', 'u', 6, 0);
    b.ack('app', 'u', 1, 1);
    b.ack('app', 'u', 2, 3);
    b.ack('app', 'u', 4, 6); // the floor passes 6: one purge covers 6 too
    await sleep(10);
    expect(store.calls).to.deep.equal(['purge u <7']);
    expect(store.stored.get('u')?.size).to.equal(0);
    expect(b.pending).to.equal(0);
  });

  it('retries a failed request with backoff, merged with newer acks, and counts it', async () => {
    const store = new FakeStore();
    store.add('u', 1, 2, 3);
    store.failures = 2;
    const c = counters();
    const b = new AckBatcher(store, c, { retryBaseMs: 5, retryMaxMs: 20 });
    b.ack('app', 'u', 1, 1);
    await sleep(5);
    b.ack('app', 'u', 2, 2);
    const deadline = Date.now() + 2000;
    while (b.pending > 0 && Date.now() < deadline) await sleep(5);
    expect(b.pending).to.equal(0);
    expect(c.retriesN).to.equal(2);
    expect([...(store.stored.get('u') ?? [])]).to.deep.equal([3]);
    b.close();
  });

  it('holds at most maxHeld acks; past it drops and counts them', async () => {
    const store = new FakeStore();
    store.failures = 1_000_000; // the store is down
    const c = counters();
    const b = new AckBatcher(store, c, { maxHeld: 3, retryBaseMs: 1000 });
    for (let seq = 10; seq < 20; seq++) b.ack('app', 'u', seq, 0);
    expect(b.pending).to.equal(3);
    expect(c.droppedN).to.equal(7);
    b.close();
  });
});
