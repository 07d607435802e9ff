import { expect } from 'chai';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { provisionStreams } from '@push/nats';
import { Subjects } from '@push/protocol';
import { NATS_URL } from '../helpers/nats-server.js';
import { reportCleanupFailure } from '../helpers/cleanup.js';

describe('the legacy one-stream-for-all-apps inbox', function () {
  let nc: NatsConnection;
  const subjects = new Subjects(`legacy${process.pid}`);
  const legacy = `${subjects.prefix.toUpperCase()}_INBOX`;

  before(async function () {
    nc = await connect({ servers: NATS_URL });
  });
  after(async function () {
    const jsm = await jetstreamManager(nc);
    for (const s of [legacy, `KV_${subjects.appsBucket}`])
      await jsm.streams.delete(s).catch(reportCleanupFailure(`delete stream ${s}`));
    await nc.close();
  });

  it('stops provisioning with what to do while it holds messages, and is removed once empty', async function () {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: legacy, subjects: [`${subjects.prefix}.inbox.*.*`] });
    nc.publish(`${subjects.prefix}.inbox.app.user`, 'old message');
    await nc.flush();
    let err: unknown;
    await provisionStreams(nc, subjects, { replicas: 1 }).catch((e: unknown) => (err = e));
    expect(String(err)).to.include(`legacy stream ${legacy}`).and.include('1 messages');
    expect((await jsm.streams.info(legacy)).state.messages).to.equal(1);

    await jsm.streams.purge(legacy);
    await provisionStreams(nc, subjects, { replicas: 1 });
    const gone = await jsm.streams.info(legacy).then(
      () => false,
      () => true,
    );
    expect(gone).to.equal(true);
  });
});
