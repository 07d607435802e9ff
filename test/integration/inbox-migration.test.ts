import { expect } from 'chai';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { InboxStore, ensureInboxStream } from '@push/nats';
import { Subjects, encodeEnvelope } from '@push/protocol';
import { reportCleanupFailure } from '../helpers/cleanup.js';

/**
 * An inbox stream made before client messages got their own subject (one subject per user,
 * no per-message TTL) is brought to the current layout when it is provisioned.
 */
describe('migrating an inbox stream of the one-subject-per-user layout', function () {
  let nc: NatsConnection;
  const subjects = new Subjects(`mig${process.pid}`);
  const app = { id: 'shop', settings: { maxPendingPerUser: 100 } };
  const opts = { maxPerUser: 100, maxAgeSeconds: 3600, duplicateWindowSeconds: 60, replicas: 1 };
  const stream = subjects.inboxStream(app.id);

  before(async function () {
    nc = await connect({ servers: process.env['PUSH_NATS_URL'] ?? 'nats://127.0.0.1:4222' });
  });
  after(async function () {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(stream).catch(reportCleanupFailure(`delete stream ${stream}`));
    await nc.close();
  });

  it('moves stored messages to the business and client subjects, keeps them readable, drops expired ones', async function () {
    const jsm = await jetstreamManager(nc);
    const old = `${subjects.prefix}.inbox.shop.*`;
    await jsm.streams.add({
      name: stream,
      subjects: [old],
      allow_direct: true,
      max_msgs_per_subject: 100,
      republish: { src: old, dest: `${subjects.prefix}.live.u.shop.{{wildcard(1)}}` },
    });
    const now = Date.now();
    const env = (text: string, from?: string, ttlMs = 60_000): Buffer =>
      encodeEnvelope({ ts: now, expires: now + ttlMs, binary: false, from }, Buffer.from(JSON.stringify(text)));
    const legacy = (user: string): string => `${subjects.prefix}.inbox.shop.${user}`;
    for (const [user, body] of [
      ['alice', env('order shipped')],
      ['alice', env('hi from bob', 'bob')],
      ['alice', env('gone', undefined, -1)],
      ['carol', env('welcome')],
    ] as const) {
      await nc.request(legacy(user), body);
    }

    await ensureInboxStream(nc, subjects, app, opts);

    const info = await jsm.streams.info(stream, { subjects_filter: '>' });
    expect(info.config.subjects).to.deep.equal([subjects.inboxOfApp('shop')]);
    expect(info.config.allow_msg_ttl).to.equal(true);
    expect(info.state.subjects).to.deep.equal({
      [subjects.inbox('shop', 'alice', 'b')]: 1,
      [subjects.inbox('shop', 'alice', 'c')]: 1,
      [subjects.inbox('shop', 'carol', 'b')]: 1,
    });
    const store = new InboxStore(nc, subjects);
    try {
      const { messages } = await store.readBatch('shop', 'alice', 1, { max: 10, maxBytes: 1 << 20 });
      expect(messages.map((m) => [Buffer.from(m.bytes).toString(), m.from])).to.deep.equal([
        ['"order shipped"', undefined],
        ['"hi from bob"', 'bob'],
      ]);
      expect(await store.pending('shop', 'alice')).to.equal(2);
      // Provisioning again is a no-op.
      await ensureInboxStream(nc, subjects, app, opts);
      expect(await store.pending('shop', 'alice')).to.equal(2);
      expect(await store.pending('shop', 'carol')).to.equal(1);
    } finally {
      store.close();
    }
  });
});
