import { expect } from 'chai';
import { EdgeProcess } from '../helpers/edge-process.js';
import { Stack, type TestApp } from '../helpers/stack.js';
import { TestClient } from '../helpers/ws-client.js';
import { NATS_URL } from '../helpers/nats-server.js';

/** The worker a connection landed on, from its hello (`<edge id>-<start>-<counter>`). */
const workerOf = (c: TestClient): string => String(c.hello['conn']).replace(/-[0-9a-z]+-\d+$/, '');

/**
 * An edge in a process of its own (`workers` of them sharing its port) for one describe block,
 * with a fresh app; prints the edge's output when a test fails.
 */
function edgeProcessSuite(workers: number, env: Record<string, string> = {}) {
  const suite = { stack: undefined as unknown as Stack, app: undefined as unknown as TestApp, edge: new EdgeProcess() };
  const clients: TestClient[] = [];
  before(async function () {
    suite.stack = await Stack.start();
    suite.app = await suite.stack.createApp();
    await suite.edge.start(
      {
        PUSH_PREFIX: suite.stack.prefix,
        PUSH_NATS_URL: NATS_URL,
        PUSH_REDIS_URL: 'redis://127.0.0.1:6379',
        ...env,
      },
      workers,
    );
  });
  after(async function () {
    for (const c of clients) c.terminate();
    await suite.edge.kill();
    await suite.stack?.close();
  });
  afterEach(function () {
    if (this.currentTest?.state === 'failed') console.log(`edge output:\n${suite.edge.output}`);
  });

  /** Connects each user in turn (one connection each), kept for the cleanup. */
  async function connectEach(users: string[]): Promise<TestClient[]> {
    const out: TestClient[] = [];
    for (const u of users) out.push(await TestClient.connect(suite.edge.wsUrl, await suite.app.token(u)));
    clients.push(...out);
    return out;
  }

  /** Pushes `{to: user}` to each user and checks that each connection got its own message. */
  async function pushEachAndExpect(users: string[], conns: TestClient[]): Promise<void> {
    const seqs = await Promise.all(users.map((u) => suite.app.pushOk(u, { to: u })));
    for (const [i, c] of conns.entries()) {
      const [m] = await c.waitForMessages(1);
      expect(m?.seq).to.equal(seqs[i]);
      expect(m?.data).to.deep.equal({ to: users[i] });
    }
  }

  return { suite, connectEach, pushEachAndExpect };
}

describe('edge workers sharing one port', function () {
  this.timeout(60_000);
  const { suite, connectEach, pushEachAndExpect } = edgeProcessSuite(2, { PUSH_EDGE_ID: 'shared' });

  it('spreads connections over two workers (SO_REUSEPORT), each with its own id, all delivering', async function () {
    // /readyz answered from one worker; wait until the other listens too.
    const seen = new Set<string>();
    for (let i = 0; seen.size < 2 && i < 200; i++) {
      const probe = await TestClient.connect(suite.edge.wsUrl, await suite.app.token('probe'));
      seen.add(workerOf(probe));
      probe.terminate();
      if (seen.size < 2) await new Promise((r) => setTimeout(r, 25));
    }
    const users = Array.from({ length: 40 }, (_, i) => `w${i}`);
    const conns = await connectEach(users);
    expect([...new Set(conns.map(workerOf))].sort()).to.deep.equal(['shared-w1', 'shared-w2']);
    await pushEachAndExpect(users, conns);
  });
});

describe('an edge process under a stream of upgrades', function () {
  this.timeout(60_000);
  const { connectEach, pushEachAndExpect } = edgeProcessSuite(1);

  it('keeps every upgraded connection open and delivering (uWS 20.30 closed some after a corked async upgrade)', async function () {
    // With the upgrade done after an await inside res.cork(), uWS 20.30 read the new socket's
    // state from the wrong bytes and closed some sockets right after open, depending on memory
    // layout: in this process it was the 8th connection, every time (uWebSockets#1929).
    const users = Array.from({ length: 300 }, (_, i) => `s${i}`);
    const conns = await connectEach(users);
    await pushEachAndExpect(users, conns);
    expect(conns.filter((c) => c.closeCode !== undefined)).to.have.length(0);
  });
});
