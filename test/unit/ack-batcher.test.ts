import { expect } from 'chai';
import { AckBatcher, type AckCounters, type AckStore } from '../../apps/edge/src/ack-batcher.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A store holding sequences per app; fails the next `failures` requests, and every request of an app in `down`. */
class FakeStore implements AckStore {
  readonly stored = new Map<string, Set<number>>();
  readonly calls: string[] = [];
  readonly down = new Set<string>();
  failures = 0;

  add(app: string, ...seqs: number[]): void {
    const s = this.stored.get(app) ?? new Set<number>();
    for (const q of seqs) s.add(q);
    this.stored.set(app, s);
  }

  left(app: string): number[] {
    return [...(this.stored.get(app) ?? [])].sort((a, b) => a - b);
  }

  remove(app: string, seq: number): Promise<boolean> {
    this.calls.push(`delete ${app} ${seq}`);
    if (this.down.has(app)) return Promise.reject(new Error(`store of ${app} unavailable`));
    if (this.failures > 0) {
      this.failures--;
      return Promise.reject(new Error('store_unavailable'));
    }
    return Promise.resolve(this.stored.get(app)?.delete(seq) === true);
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

/** A store whose deletes each wait for their answer: `answers` holds one per delete sent, `sent` names them. */
function heldStore(): { store: FakeStore; answers: Array<() => void>; sent: string[] } {
  const store = new FakeStore();
  const answers: Array<() => void> = [];
  const sent: string[] = [];
  store.remove = (app, seq) => {
    sent.push(`delete ${app} ${seq}`);
    return new Promise<boolean>((r) => answers.push(() => r(true)));
  };
  return { store, answers, sent };
}

async function settle(b: AckBatcher): Promise<void> {
  for (let i = 0; i < 200 && b.pending > 0; i++) await sleep(5);
}

describe('AckBatcher', () => {
  it('deletes each acked message once, however many connections acked it in the turn, per app', async () => {
    const store = new FakeStore();
    store.add('a', 1, 2, 3);
    store.add('b', 1, 2);
    const c = counters();
    const b = new AckBatcher(store, c);
    // Two devices of one user ack 1 and 2; another app's 1 is another message.
    for (const seq of [1, 2, 1, 2]) expect(b.ack('a', seq)).to.equal(true);
    b.ack('b', 1);
    expect(store.calls).to.deep.equal([]); // gathered until the turn ends
    await settle(b);
    expect(store.calls.sort()).to.deep.equal(['delete a 1', 'delete a 2', 'delete b 1']);
    expect(store.left('a')).to.deep.equal([3]);
    expect(store.left('b')).to.deep.equal([2]);
    expect(c.requestsN).to.equal(3);
    expect(c.removedN).to.equal(3);
    expect(b.pending).to.equal(0);
    b.close();
  });

  it('counts a message already gone (another device, expired) as done, not removed', async () => {
    const store = new FakeStore();
    store.add('a', 5);
    const c = counters();
    const b = new AckBatcher(store, c);
    b.ack('a', 5);
    await settle(b);
    b.ack('a', 5); // the other device's ack, a turn later
    await settle(b);
    expect(store.calls).to.deep.equal(['delete a 5', 'delete a 5']);
    expect(c.removedN).to.equal(1);
    expect(c.retriesN).to.equal(0);
    expect(b.pending).to.equal(0);
    b.close();
  });

  it('retries a failed delete, once even when it is acked again meanwhile, and counts it', async () => {
    const store = new FakeStore();
    store.add('a', 1, 2);
    store.failures = 2;
    const failures: unknown[] = [];
    const c = counters();
    const b = new AckBatcher(store, c, { retryBaseMs: 5, retryMaxMs: 20, onFailure: (e) => failures.push(e) });
    b.ack('a', 1);
    b.ack('a', 2);
    await sleep(0);
    expect(b.pending).to.equal(2); // both failed, waiting for a retry
    b.ack('a', 1); // a second device's ack of 1 while its retry waits
    await settle(b);
    expect(store.left('a')).to.deep.equal([]);
    expect(b.pending).to.equal(0);
    expect(c.retriesN).to.equal(2);
    expect(failures).to.have.length(2);
    expect(c.removedN).to.equal(2);
    b.close();
  });

  it("while an app's store is down, probes it one delete at a time, and sends every waiting delete once a probe gets through", async () => {
    const store = new FakeStore();
    const seqs = Array.from({ length: 100 }, (_, i) => i + 1);
    store.add('a', ...seqs);
    store.down.add('a');
    const c = counters();
    const b = new AckBatcher(store, c, { retryBaseMs: 5, retryMaxMs: 20 });
    for (const seq of seqs) b.ack('a', seq);
    await sleep(150);
    // The 100 first attempts, then probes: one in flight at a time, at least ~5-20 ms apart.
    const probes = store.calls.length - 100;
    expect(probes).to.be.greaterThan(0);
    expect(probes).to.be.lessThan(40);
    expect(b.pending).to.equal(100);
    store.down.delete('a');
    const t0 = Date.now();
    await settle(b);
    expect(store.left('a')).to.deep.equal([]);
    expect(b.pending).to.equal(0);
    expect(c.removedN).to.equal(100);
    // Within one probe delay of the store's return (at most retryMaxMs), not each message's own backoff.
    expect(Date.now() - t0).to.be.lessThan(500);
    b.close();
  });

  it("one app's failing store does not hold another app's deletes", async () => {
    const store = new FakeStore();
    store.add('a', 1);
    store.add('b', 1, 2);
    store.down.add('a');
    const b = new AckBatcher(store, counters(), { retryBaseMs: 5, retryMaxMs: 20 });
    b.ack('a', 1);
    b.ack('b', 1);
    await sleep(50);
    b.ack('b', 2);
    await sleep(20);
    expect(store.left('b')).to.deep.equal([]);
    expect(store.left('a')).to.deep.equal([1]);
    expect(b.pending).to.equal(1);
    b.close();
  });

  it("a delete of the app that succeeds probes the waiting ones at once, whatever the backoff's delay", async () => {
    const store = new FakeStore();
    store.add('a', 1, 2);
    store.failures = 1;
    const b = new AckBatcher(store, counters(), { retryBaseMs: 60_000, retryMaxMs: 60_000 });
    b.ack('a', 1);
    await sleep(0);
    expect(b.pending).to.equal(1); // failed, its probe up to a minute away
    b.ack('a', 2);
    await settle(b);
    expect(store.left('a')).to.deep.equal([]);
    expect(b.pending).to.equal(0);
    b.close();
  });

  it('holds at most maxHeld acks; past it drops and counts them', () => {
    const store = new FakeStore();
    const c = counters();
    const b = new AckBatcher(store, c, { maxHeld: 3 });
    const taken = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((seq) => b.ack('a', seq));
    expect(taken).to.deep.equal([true, true, true, false, false, false, false, false, false, false]);
    expect(c.droppedN).to.equal(7);
    expect(b.pending).to.equal(3);
    b.close();
    expect(b.ack('a', 11)).to.equal(false); // closed
  });

  it('flush sends the turn at once (shutdown), and close drops the retries it held', async () => {
    const store = new FakeStore();
    store.add('a', 1, 2);
    const c = counters();
    const b = new AckBatcher(store, c, { retryBaseMs: 10_000, retryMaxMs: 10_000 });
    b.ack('a', 1);
    b.flush();
    expect(store.calls).to.deep.equal(['delete a 1']);
    store.failures = 1;
    b.ack('a', 2);
    b.flush();
    await sleep(0);
    expect(b.pending).to.equal(1); // its retry is 10 s away
    b.close();
    expect(store.left('a')).to.deep.equal([2]);
  });
  it('keeps at most maxInFlight deletes in flight, queues the rest, and removes every ack once', async () => {
    const store = new FakeStore();
    const seqs = Array.from({ length: 5000 }, (_, i) => i + 1);
    store.add('a', ...seqs);
    let inFlight = 0;
    let most = 0;
    const inner = store.remove.bind(store);
    store.remove = async (app, seq) => {
      most = Math.max(most, ++inFlight);
      await sleep(Math.random() * 2);
      inFlight--;
      return inner(app, seq);
    };
    const c = counters();
    const b = new AckBatcher(store, c, { maxInFlight: 100 });
    for (const seq of seqs) b.ack('a', seq);
    b.ack('a', 7); // twice in the turn: once
    expect(b.pending).to.equal(5000);
    expect(await b.idle(10_000)).to.equal(true);
    expect(most).to.equal(100);
    expect(store.left('a')).to.deep.equal([]);
    expect(c.requestsN).to.equal(5000);
    expect(c.removedN).to.equal(5000);
    expect(b.pending).to.equal(0);
    b.close();
  });

  it("sends another app's deletes in turn with a burst of one app's, not after it", async () => {
    const { store, answers, sent } = heldStore();
    const b = new AckBatcher(store, counters(), { maxInFlight: 10 });
    for (let seq = 1; seq <= 1000; seq++) b.ack('big', seq);
    b.flush();
    b.ack('small', 1);
    b.flush();
    expect(sent).to.have.length(10); // the slots are full of big's
    // As answers free slots, small's delete goes before most of big's queue.
    for (let i = 0; i < 100 && !sent.includes('delete small 1'); i++) {
      answers.shift()?.();
      await sleep(0);
    }
    const at = sent.indexOf('delete small 1');
    expect(at, 'position of the small app delete').to.be.within(10, 80);
    for (let i = 0; i < 5000 && (answers.length > 0 || b.pending > 0); i++) {
      for (const a of answers.splice(0)) a();
      await sleep(0);
    }
    expect(sent).to.have.length(1001);
    b.close();
  });

  it('idle waits for queued deletes, and says false at its deadline while the store does not answer', async () => {
    const { store, answers } = heldStore();
    const b = new AckBatcher(store, counters(), { maxInFlight: 2 });
    for (let seq = 1; seq <= 5; seq++) b.ack('a', seq);
    b.flush();
    expect(await b.idle(30)).to.equal(false);
    const idle = b.idle(5000);
    for (let i = 0; i < 10; i++) {
      for (const a of answers.splice(0)) a();
      await sleep(0);
    }
    expect(await idle).to.equal(true);
    expect(b.pending).to.equal(0);
    b.close();
  });

  it('is full from half its bound and wakes the waiting deliveries once, at a quarter', async () => {
    const { store, answers } = heldStore();
    const b = new AckBatcher(store, counters(), { maxHeld: 8 });
    let woken = 0;
    for (let seq = 1; seq <= 3; seq++) b.ack('a', seq);
    expect(b.full).to.equal(false);
    b.ack('a', 4);
    expect(b.full).to.equal(true);
    b.whenRoom(() => woken++);
    b.whenRoom(() => woken++);
    await sleep(0);
    expect(answers).to.have.length(4);
    answers.shift()?.();
    await sleep(0);
    expect(woken).to.equal(0); // 3 held, above a quarter
    answers.shift()?.();
    await sleep(0);
    expect(woken).to.equal(2); // 2 held: room
    expect(b.full).to.equal(false);
    for (const a of answers.splice(0)) a();
    await sleep(0);
    expect(woken).to.equal(2); // once
    b.whenRoom(() => woken++); // room now: at once
    await sleep(0);
    expect(woken).to.equal(3);
    b.close();
  });
});
