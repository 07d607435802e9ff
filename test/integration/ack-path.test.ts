import { expect } from 'chai';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { InboxStore, ensureInboxStream } from '@push/nats';
import { Subjects } from '@push/protocol';
import { AckBatcher, type AckCounters, type AckStore } from '../../apps/edge/src/ack-batcher.js';
import { reportCleanupFailure } from '../helpers/cleanup.js';
import { NATS_URL } from '../helpers/nats-server.js';
import { prng } from '../helpers/prng.js';

const payload = (text: string) => ({ bytes: Buffer.from(JSON.stringify(text)), binary: false });
const turn = () => new Promise((r) => setImmediate(r));

function counters(): AckCounters & { requests: number; retries: number } {
  const c = {
    requests: 0,
    retries: 0,
    removed: { inc: () => undefined },
    ackRequests: { inc: (n = 1) => void (c.requests += n) },
    ackRetries: { inc: () => void c.retries++ },
    acksDropped: { inc: () => undefined },
  };
  return c;
}

/** The real InboxStore whose deletes are held until released: a store that answers slowly. */
class HeldStore implements AckStore {
  held = true;
  private waiting: Array<() => void> = [];
  constructor(private readonly inner: InboxStore) {}

  async remove(app: string, seq: number): Promise<boolean> {
    if (this.held) await new Promise<void>((r) => this.waiting.push(r));
    return this.inner.remove(app, seq);
  }

  release(): void {
    this.held = false;
    for (const r of this.waiting.splice(0)) r();
  }

  /** Lets the deletes waiting now go, and holds later ones again. */
  step(): void {
    for (const r of this.waiting.splice(0)) r();
  }
}

/** One connection's view of a user's inbox: messages delivered in sequence order, acked in any order. */
class Conn {
  readonly delivered: number[] = [];
  readonly acked = new Set<number>();
}

/**
 * The edge's ack path (AckBatcher) against real NATS with a store that answers slowly: it never
 * removes a message nobody acked and removes every one acked, whatever the interleaving of acks,
 * new messages and two devices acking out of order.
 */
describe('AckBatcher on real NATS: removes exactly what was acked', function () {
  this.timeout(30_000);
  let nc: NatsConnection;
  const subjects = new Subjects(`ackco${process.pid}`);
  const app = { id: 'shop', settings: { maxPendingPerUser: 10_000 } };
  const opts = { maxPerUser: 10_000, maxAgeSeconds: 3600, duplicateWindowSeconds: 60, replicas: 1 };
  let inbox: InboxStore;

  before(async function () {
    nc = await connect({ servers: NATS_URL });
    await ensureInboxStream(nc, subjects, app, opts);
    inbox = new InboxStore(nc, subjects);
  });
  after(async function () {
    inbox?.close();
    if (nc === undefined) return;
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(subjects.inboxStream(app.id)).catch(reportCleanupFailure('delete inbox stream'));
    await nc.close().catch(reportCleanupFailure('close NATS'));
  });

  /** Sequences stored for the user now. */
  async function stored(user: string): Promise<number[]> {
    const r = await inbox.readBatch(app.id, user, 1, { max: 10_000, maxBytes: 1 << 22 });
    return r.messages.map((m) => m.seq);
  }

  async function waitFor(cond: () => boolean): Promise<void> {
    for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
  }

  it('random interleavings of publishes, deliveries and acks of two devices and two users never remove an unacked message', async function () {
    const rand = prng(16);
    const users = ['zed', 'yan'];
    const conns = new Map(users.map((u) => [u, [new Conn(), new Conn()]]));
    const published = new Map<string, number[]>(users.map((u) => [u, []]));
    const acked = new Map<string, Set<number>>(users.map((u) => [u, new Set()]));
    const store = new HeldStore(inbox);
    store.held = true;
    const c = counters();
    const errors: string[] = [];
    const b = new AckBatcher(store, c, { onFailure: (err) => errors.push(String(err)) });
    for (let step = 0; step < 400; step++) {
      const user = users[Math.floor(rand() * users.length)] as string;
      const pub = published.get(user) as number[];
      const r = rand();
      if (r < 0.3) {
        pub.push((await inbox.publish(app.id, user, payload(`s${step}`), { ttlMs: 60_000 })).seq);
      } else if (r < 0.55) {
        // A connection is delivered its next message (in sequence order).
        const conn = (conns.get(user) as Conn[])[Math.floor(rand() * 2)] as Conn;
        const next = pub.find((s) => s > (conn.delivered.at(-1) ?? 0));
        if (next !== undefined) conn.delivered.push(next);
      } else if (r < 0.9) {
        // A connection acks one of its unacked deliveries, not always the oldest.
        const conn = (conns.get(user) as Conn[])[Math.floor(rand() * 2)] as Conn;
        const open = conn.delivered.filter((s) => !conn.acked.has(s));
        if (open.length === 0) continue;
        const seq = open[rand() < 0.6 ? 0 : Math.floor(rand() * open.length)] as number;
        conn.acked.add(seq);
        (acked.get(user) as Set<number>).add(seq);
        expect(b.ack(app.id, seq)).to.equal(true);
      } else if (r < 0.95) {
        await turn();
      } else {
        store.step(); // the store answers the deletes waiting now
        await turn();
      }
      // Whatever was removed so far was acked by some device.
      if (step % 50 === 49) {
        for (const u of users) {
          const left = new Set(await stored(u));
          for (const s of published.get(u) as number[]) {
            if (!left.has(s)) expect(acked.get(u)?.has(s), `${u} seq ${s} removed unacked`).to.equal(true);
          }
        }
      }
    }
    store.release();
    await waitFor(() => b.pending === 0);
    expect(b.pending, `retries ${c.retries}: ${errors.slice(0, 3).join('; ')}`).to.equal(0);
    // Every ack applied (a second device's delete of a message already gone counts as done), nothing else.
    expect(c.retries, errors.slice(0, 3).join('; ')).to.equal(0);
    for (const u of users) {
      const unacked = (published.get(u) as number[]).filter((s) => !acked.get(u)?.has(s));
      expect(await stored(u), u).to.deep.equal(unacked);
    }
    b.close();
  });
});
