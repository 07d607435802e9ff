import { expect } from 'chai';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { InboxStore, UndeliverableStore, ensureInboxStream } from '@push/nats';
import { Subjects } from '@push/protocol';
import { reportCleanupFailure } from '../helpers/cleanup.js';
import { NATS_URL } from '../helpers/nats-server.js';

const payload = (text: string) => ({ bytes: Buffer.from(JSON.stringify(text)), binary: false });

/**
 * Moving a never-acked message (issue 17 part 3) stores the copy before it deletes the inbox
 * message: a move cut short by a crash leaves the message in both places, and the next move
 * stores no second copy. Real NATS; the edge's counting is in test/e2e/never-ack.test.ts.
 */
describe('UndeliverableStore: a move loses nothing and stores once (real NATS)', function () {
  this.timeout(20_000);
  let nc: NatsConnection;
  const subjects = new Subjects(`undeliv${process.pid}`);
  const app = { id: 'shop', settings: { maxPendingPerUser: 100 } };
  const opts = { maxPerUser: 100, maxAgeSeconds: 3600, duplicateWindowSeconds: 60, replicas: 1 };
  let inbox: InboxStore;
  let undeliverable: UndeliverableStore;

  before(async function () {
    nc = await connect({ servers: NATS_URL });
    await ensureInboxStream(nc, subjects, app, opts);
    inbox = new InboxStore(nc, subjects);
    undeliverable = new UndeliverableStore(nc, subjects, opts);
  });
  after(async function () {
    inbox?.close();
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(subjects.inboxStream(app.id)).catch(() => undefined);
    await undeliverable?.deleteStream(app.id).catch(reportCleanupFailure('delete undeliverable stream'));
    await nc.close().catch(reportCleanupFailure('close NATS'));
  });

  it('a move cut short after its store is finished by the next one, with one copy', async function () {
    const { seq } = await inbox.publish(app.id, 'ann', payload('a'), { ttlMs: 60_000 });
    // The first half of a move (the copy, with the move's id), then the "crash".
    await undeliverable.ensure(app.id);
    const stored = await inbox.readBatch(app.id, 'ann', seq, { max: 1, maxBytes: 1 << 20 });
    expect(stored.messages).to.have.length(1);
    const jsm = await jetstreamManager(nc);
    const raw = await jsm.streams.getMessage(subjects.inboxStream(app.id), { seq });
    const h = headers();
    h.set('Nats-Msg-Id', `undeliv.${seq}`);
    h.set('Push-Inbox-Seq', String(seq));
    h.set('Push-Deliveries', '3');
    h.set('Push-Moved-At', String(Date.now()));
    await nc.request(subjects.undeliverable(app.id, 'ann'), raw?.data ?? new Uint8Array(), {
      headers: h,
      timeout: 5000,
    });
    expect(await inbox.pending(app.id, 'ann')).to.equal(1); // still in the inbox: nothing lost
    expect(await undeliverable.move(app.id, 'ann', seq, 4)).to.equal('moved');
    expect(await inbox.pending(app.id, 'ann')).to.equal(0);
    const listed = await undeliverable.list(app.id);
    expect(listed.map((l) => [l.user, l.inboxSeq, l.data])).to.deep.equal([['ann', seq, 'a']]);
    // Moved again (a second edge at the same moment): gone, no second copy.
    expect(await undeliverable.move(app.id, 'ann', seq, 4)).to.equal('gone');
    expect(await undeliverable.list(app.id)).to.have.length(1);
    expect(await undeliverable.purge(app.id)).to.equal(1);
  });

  it("moves only the named user's message", async function () {
    const { seq } = await inbox.publish(app.id, 'bob', payload('b'), { ttlMs: 60_000 });
    expect(await undeliverable.move(app.id, 'ann', seq, 3)).to.equal('gone');
    expect(await inbox.pending(app.id, 'bob')).to.equal(1);
    expect(await undeliverable.list(app.id)).to.deep.equal([]);
  });

  it('replay skips a message whose TTL passed, and lists and purges per user', async function () {
    const { seq: short } = await inbox.publish(app.id, 'cid', payload('short'), { ttlMs: 1000 });
    const { seq: long } = await inbox.publish(app.id, 'dan', payload('long'), { ttlMs: 60_000 });
    expect(await undeliverable.move(app.id, 'cid', short, 3)).to.equal('moved');
    expect(await undeliverable.move(app.id, 'dan', long, 3)).to.equal('moved');
    expect((await undeliverable.list(app.id, { user: 'dan' })).map((l) => l.user)).to.deep.equal(['dan']);
    expect(await undeliverable.list(app.id, { limit: 1 })).to.have.length(1);
    const first = (await undeliverable.list(app.id))[0]?.seq ?? 0;
    expect((await undeliverable.list(app.id, { after: first })).map((l) => l.user)).to.deep.equal(['dan']);
    await new Promise((r) => setTimeout(r, 1100));
    expect(await undeliverable.replay(app.id, 'cid')).to.deep.equal({ replayed: 0, expired: 1 });
    expect(await undeliverable.replay(app.id)).to.deep.equal({ replayed: 1, expired: 0 });
    expect(await inbox.pending(app.id, 'dan')).to.equal(1);
    expect(await undeliverable.replay(app.id)).to.deep.equal({ replayed: 0, expired: 0 });
    expect(await undeliverable.purge(app.id, 'dan')).to.equal(0);
  });

  it('an app that never had one answers empty lists and purges', async function () {
    expect(await undeliverable.list('never')).to.deep.equal([]);
    expect(await undeliverable.purge('never')).to.equal(0);
    expect(await undeliverable.replay('never')).to.deep.equal({ replayed: 0, expired: 0 });
  });
});
