import { expect } from 'chai';
import { DEFAULT_LOAD, FailoverSystem, type FaultFigures, type FaultName } from '../../bench/lib/failover.js';
import { runCleanups } from '../../bench/lib/procs.js';

/**
 * Failover without refusals (issue 15): a center and an edge on a private 3-node JetStream
 * cluster (R3 streams, every node a seed), 300 pushes/s to 100 online users and 10 offline users
 * who connect at the end, while the cluster loses a node. For every fault: each accepted push
 * (2xx with a seq) reaches its user exactly once and in order, nothing acked stays stored, and
 * refusals stay within the fault's bound. The driver is the failover benchmark's
 * (bench/lib/failover.ts); `make test-faults` runs this file, `make test` does not.
 */
describe('faults: a 3-node JetStream cluster loses a node under load', function () {
  this.timeout(240_000);
  let system: FailoverSystem | undefined;

  before(async function () {
    system = await FailoverSystem.start();
  });
  after(async function () {
    await system?.close();
    // Anything the system registered and did not close (a failed start) goes too.
    await runCleanups();
  });

  /** Runs the fault, prints its figures (the report of a run), and checks what every fault must keep. */
  async function run(name: FaultName): Promise<FaultFigures> {
    const f = await system!.run(name, DEFAULT_LOAD);
    process.stdout.write(
      `      ${name}: ${f.what}; refused ${f.refused}/${f.pushes} (${f.refusedPercent}%) ${JSON.stringify(f.refusals)}, ` +
        `longest refused stretch ${f.longestRefusedMs} ms, lost ${f.lost}, duplicates ${f.duplicates}, out of order ${f.outOfOrder}, ` +
        `acked left stored ${String(f.ackedLeftStored)}, accept p99 ${f.latencyMs.p99} ms${f.refused > 0 ? `, refused after ${f.refusedAfterMs.min}-${f.refusedAfterMs.max} ms` : ''}` +
        `${f.newLeaderMs !== null ? `, new leader after ${f.newLeaderMs} ms` : ''}\n`,
    );
    const summary = JSON.stringify(f);
    expect(f.accepted, `pushes were accepted at all: ${summary}`).to.be.greaterThan(0);
    expect(f.lost, `accepted pushes never delivered: ${summary}`).to.equal(0);
    expect(f.duplicates, `accepted pushes delivered twice: ${summary}`).to.equal(0);
    expect(f.outOfOrder, `deliveries out of seq order: ${summary}`).to.equal(0);
    if (f.ackedLeftStored !== null) expect(f.ackedLeftStored, `acked messages left stored: ${summary}`).to.equal(0);
    return f;
  }

  it('kill -9 of the inbox stream leader: every accepted push delivered once, in order; at most 0.5% refused', async function () {
    const f = await run('leader-kill');
    expect(f.refusedPercent, JSON.stringify(f.refusals)).to.be.at.most(0.5);
  });

  it('kill -9 of the topic stream leader: every subscriber gets every accepted publish once, in order; at most 0.5% refused', async function () {
    const f = await run('topic-leader-kill');
    expect(f.refusedPercent, JSON.stringify(f.refusals)).to.be.at.most(0.5);
  });

  it('kill -9 of a follower: nothing refused', async function () {
    const f = await run('follower-kill');
    expect(f.refused, JSON.stringify(f.refusals)).to.equal(0);
  });

  it('rolling restart with lame duck mode: nothing refused, nothing lost', async function () {
    const f = await run('rolling-ldm');
    expect(f.refused, JSON.stringify(f.refusals)).to.equal(0);
  });

  it('rolling restart with SIGTERM: nothing lost (refusals counted and reported)', async function () {
    await run('rolling-term');
  });
});
