import { expect } from 'chai';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { ask, spawnNode } from '../../bench/lib/procs.js';
import { NATS_URL, benchPrefix, removePrefix } from '../../bench/lib/stack.js';

/** The bench runs on the shared services and must leave none of its prefix's buckets behind. */
describe('bench cleanup (removePrefix)', function () {
  this.timeout(20_000);
  let nc: NatsConnection;

  before(async () => {
    nc = await connect({ servers: NATS_URL });
  });
  after(async () => {
    await nc.close();
  });

  const streamsOf = async (prefix: string): Promise<string[]> => {
    const jsm = await jetstreamManager(nc);
    const out: string[] = [];
    for await (const name of jsm.streams.names()) if (name.includes(prefix)) out.push(name);
    return out;
  };

  it("deletes every KV bucket the run's center and coordinator made (apps and webhooks)", async () => {
    const prefix = benchPrefix();
    const kvm = new Kvm(nc);
    await kvm.create(`${prefix}_apps`);
    await kvm.create(`${prefix}_webhooks`);
    expect(await streamsOf(prefix)).to.have.members([`KV_${prefix}_apps`, `KV_${prefix}_webhooks`]);
    await removePrefix(prefix);
    expect(await streamsOf(prefix)).to.deep.equal([]);
  });

  it('a question to a child whose channel already closed is refused, not a crash before the cleanups', async () => {
    // As when a Ctrl-C reaches the load children while the benchmark is taking a sample.
    const child = spawnNode('closed', 'test/helpers/ipc-closed-child.cjs', { ipc: true, echo: false });
    try {
      const until = Date.now() + 5000;
      while (child.proc.connected && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      expect(child.proc.connected).to.equal(false);
      const err = await ask(child, { type: 'stats' }, 'stats', 3000).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(String(err)).to.match(/could not send stats/);
    } finally {
      await child.stop();
    }
  });
});
