import { expect } from 'chai';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createLogger } from '@push/logger';
import { InboxStore, LiveSubscriber, ensureInboxStream, type InboxMessage } from '@push/nats';
import { Subjects, encodeToken, isPushError } from '@push/protocol';
import { reportCleanupFailure } from '../helpers/cleanup.js';
import { NATS_URL } from '../helpers/nats-server.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

const log = createLogger({ level: 'silent', name: 'test' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const text = (m: InboxMessage) => Buffer.from(m.bytes).toString();
const bounds = { max: 1000, maxBytes: 1 << 20 };

/**
 * Issue 16: the edge reads backlogs and removes acked messages on its lean live connection
 * (InboxStore `live`), reading the few headers it needs from the reply's bytes. The same store
 * on nats.js answers the same: each test runs on both and compares.
 */
describe('InboxStore reads and removals on the live connection (real NATS)', function () {
  this.timeout(30_000);
  let nc: NatsConnection;
  let live: LiveSubscriber;
  let viaLive: InboxStore;
  let viaNats: InboxStore;
  const subjects = new Subjects(`inblive${process.pid}`);
  const app = { id: 'shop', settings: { maxPendingPerUser: 10_000 } };
  const opts = { maxPerUser: 10_000, maxAgeSeconds: 3600, duplicateWindowSeconds: 60, replicas: 1 };
  const users = ['ann', 'bob', 'c.d', 'eve'];
  /** Sequences stored per user, in order. */
  const seqs = new Map<string, number[]>();

  before(async function () {
    nc = await connect({ servers: NATS_URL });
    await ensureInboxStream(nc, subjects, app, opts);
    live = await LiveSubscriber.connect({ servers: NATS_URL, name: 't', logger: log });
    viaLive = new InboxStore(nc, subjects, { live });
    viaNats = new InboxStore(nc, subjects);
    // 4 users x 30 interleaved, every third one a client message (from another user).
    for (let i = 0; i < 30; i++) {
      for (const u of users) {
        const from = i % 3 === 0 ? 'zed' : undefined;
        const r = await viaNats.publish(
          app.id,
          u,
          { bytes: Buffer.from(JSON.stringify(`${u}-${i}`)), binary: false },
          { ttlMs: 600_000, from },
        );
        seqs.set(u, [...(seqs.get(u) ?? []), r.seq]);
      }
    }
  });
  after(async function () {
    viaLive?.close();
    viaNats?.close();
    live?.close();
    if (nc === undefined) return;
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(subjects.inboxStream(app.id)).catch(reportCleanupFailure('delete inbox stream'));
    await nc.close().catch(reportCleanupFailure('close NATS'));
  });

  it("reads a user's backlog as nats.js does: sequences, bytes, kinds, bounds and `more`", async function () {
    for (const u of users) {
      const a = await viaLive.readBatch(app.id, u, 1, bounds);
      const b = await viaNats.readBatch(app.id, u, 1, bounds);
      expect(a.messages.map((m) => m.seq)).to.deep.equal(seqs.get(u));
      expect(a.messages.map(text)).to.deep.equal(Array.from({ length: 30 }, (_, i) => JSON.stringify(`${u}-${i}`)));
      expect(a.messages.map((m) => m.from)).to.deep.equal(b.messages.map((m) => m.from));
      expect(a.messages.filter((m) => m.from === 'zed')).to.have.length(10);
      expect(a.more).to.equal(false);
    }
    const part = await viaLive.readBatch(app.id, 'bob', 1, { max: 7, maxBytes: 1 << 20 });
    expect(part.messages.map((m) => m.seq)).to.deep.equal(seqs.get('bob')?.slice(0, 7));
    expect(part.more).to.equal(true);
    const none = await viaLive.readBatch(app.id, 'nobody', 1, bounds);
    expect(none).to.deep.equal({ messages: [], more: false });
  });

  it('reads a range of the stream with only the wanted users decoded, and how far it went', async function () {
    const wanted = new Set([encodeToken('c.d'), encodeToken('eve')]);
    const a = await viaLive.readRange(app.id, 1, { max: 50, maxBytes: 1 << 20 }, (t) => wanted.has(t));
    const all = [...seqs.values()].flat().sort((x, y) => x - y);
    expect(a.last).to.equal(all[49]);
    expect(a.more).to.equal(true);
    const expected = all.slice(0, 50).filter((s) => seqs.get('c.d')?.includes(s) || seqs.get('eve')?.includes(s));
    expect(a.messages.map((m) => m.seq)).to.deep.equal(expected);
    expect(new Set(a.userTokens)).to.deep.equal(wanted);
    const b = await viaNats.readRange(app.id, 1, { max: 50, maxBytes: 1 << 20 }, (t) => wanted.has(t));
    expect(b.messages.map(text)).to.deep.equal(a.messages.map(text));
    expect(b.last).to.equal(a.last);
    const rest = await viaLive.readRange(app.id, a.last + 1, { max: 1000, maxBytes: 1 << 20 });
    expect(rest.messages).to.have.length(all.length - 50);
    expect(rest.more).to.equal(false);
  });

  it("answers each user's last sequence in one probe", async function () {
    const a = await viaLive.lastSeqs(app.id, ['ann', 'c.d', 'nobody']);
    expect(a.complete).to.equal(true);
    expect(a.last.get(encodeToken('ann'))).to.equal(seqs.get('ann')?.at(-1));
    expect(a.last.get(encodeToken('c.d'))).to.equal(seqs.get('c.d')?.at(-1));
    expect(a.last.has(encodeToken('nobody'))).to.equal(false);
    expect(await viaNats.lastSeqs(app.id, ['ann', 'c.d', 'nobody'])).to.deep.equal(a);
    const empty = await viaLive.lastSeqs(app.id, ['nobody', 'none']);
    expect(empty.last.size).to.equal(0);
    expect(empty.complete).to.equal(true);
  });

  it('removes by sequence (false once gone) and purges up to a sequence', async function () {
    const eve = seqs.get('eve') as number[];
    expect(await viaLive.remove(app.id, eve[0] as number)).to.equal(true);
    expect(await viaLive.remove(app.id, eve[0] as number)).to.equal(false);
    expect(await viaLive.purge(app.id, 'eve', eve[10] as number)).to.equal(9);
    const left = await viaLive.readBatch(app.id, 'eve', 1, bounds);
    expect(left.messages.map((m) => m.seq)).to.deep.equal(eve.slice(10));
    expect(await viaLive.remove(app.id, 999_999)).to.equal(false);
  });

  it('fails reads of an app with no stream at once with store_unavailable', async function () {
    const t0 = Date.now();
    const err = await viaLive.readBatch('nostream', 'ann', 1, bounds).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isPushError(err) && err.code).to.equal('store_unavailable');
    expect(Date.now() - t0).to.be.below(2000);
  });

  it('answers every read right or with store_unavailable when the live connection is cut mid-answer, and reads on', async function () {
    const u = new URL(NATS_URL);
    const proxy = new TcpProxy(u.hostname, Number(u.port));
    await proxy.start();
    const cut = await LiveSubscriber.connect({ servers: proxy.url, name: 't-cut', logger: log });
    const store = new InboxStore(nc, subjects, { live: cut });
    try {
      const want = await viaNats.readBatch(app.id, 'ann', 1, bounds);
      let right = 0;
      let failed = 0;
      for (let round = 0; round < 5; round++) {
        const reads = Array.from({ length: 100 }, () => store.readBatch(app.id, 'ann', 1, bounds));
        await sleep(round);
        proxy.dropAll(); // with reads in flight, some answers half received
        for (const r of await Promise.allSettled(reads)) {
          if (r.status === 'fulfilled') {
            expect(r.value.messages.map(text)).to.deep.equal(want.messages.map(text));
            right++;
          } else {
            expect(isPushError(r.reason) && r.reason.code).to.equal('store_unavailable');
            failed++;
          }
        }
        await sleep(100);
      }
      expect(right + failed).to.equal(500);
      expect(failed, 'the cuts hit reads in flight').to.be.above(0);
      // Back: a read after the cuts is answered in full.
      let after: InboxMessage[] = [];
      for (const until = Date.now() + 10_000; Date.now() < until; await sleep(100)) {
        const r = await store.readBatch(app.id, 'ann', 1, bounds).catch(() => undefined);
        if (r !== undefined) {
          after = r.messages;
          break;
        }
      }
      expect(after.map(text)).to.deep.equal(want.messages.map(text));
    } finally {
      store.close();
      cut.close();
      await proxy.stop();
    }
  });
});
