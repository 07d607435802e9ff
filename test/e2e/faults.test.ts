import { expect } from 'chai';
import { EdgeProcess } from '../helpers/edge-process.js';
import { NATS_URL, PrivateNatsServer } from '../helpers/nats-server.js';
import { Stack, type TestApp } from '../helpers/stack.js';
import { TestClient } from '../helpers/ws-client.js';
import { reportCleanupFailure } from '../helpers/cleanup.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A device that stays online the way a real SDK does: acks everything it gets, and reconnects
 * whenever its socket closes. Records every message id it saw and, per connection, the
 * sequences in arrival order.
 */
class AckingDevice {
  readonly ids = new Set<string>();
  readonly foreign: unknown[] = [];
  /** Sequences delivered, one array per connection. */
  readonly sessions: number[][] = [];
  private client: TestClient | undefined;
  private taken = 0;
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly app: TestApp,
    readonly user: string,
  ) {}

  async start(): Promise<void> {
    await this.connect();
    this.loop = this.run();
  }

  get connections(): number {
    return this.sessions.length;
  }

  private async connect(): Promise<void> {
    this.client = await this.app.connect(this.user);
    this.taken = 0;
    this.sessions.push([]);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const c = this.client;
      if (c === undefined || c.closeCode !== undefined) {
        // Refused or unreachable: like an SDK, try again shortly.
        await this.connect().catch(() => sleep(100));
        continue;
      }
      const ms = c.messages;
      if (ms.length > this.taken) {
        const fresh = ms.slice(this.taken);
        this.taken = ms.length;
        const session = this.sessions[this.sessions.length - 1] as number[];
        for (const m of fresh) {
          const d = m.data as { id?: string; user?: string };
          if (d.user !== this.user) this.foreign.push(d);
          if (typeof d.id === 'string') this.ids.add(d.id);
          session.push(m.seq);
        }
        for (let i = 0; i < fresh.length; i += 1000) c.ack(fresh.slice(i, i + 1000).map((m) => m.seq));
      }
      await sleep(10);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    this.client?.terminate();
  }
}

describe('faults: nats-server killed mid-stream', function () {
  this.timeout(60_000);
  let server: PrivateNatsServer;
  let stack: Stack | undefined;
  const devices: AckingDevice[] = [];

  before(async function () {
    server = new PrivateNatsServer();
    await server.start();
    // A small window makes connections stall and reread the store often, so the kill lands
    // while backlog reads are in flight (the path that once left a connection stalled for good).
    stack = await Stack.start({ PUSH_NATS_URL: server.url, PUSH_STORE_TIMEOUT_MS: '2000', PUSH_EDGE_WINDOW: '10' });
  });
  after(async function () {
    for (const d of devices) await d.stop();
    // The server may be down if a test failed mid-outage; close() needs it.
    if (stack !== undefined) {
      await server.start().catch(reportCleanupFailure('nats-server restart'));
      await stack.close();
    }
    await server.stop();
  });

  it('delivers every accepted message after a kill -9 and restart of the store (duplicates allowed)', async function () {
    const app = await stack!.createApp();
    const users = ['u0', 'u1', 'u2', 'u3'];
    for (const u of users) {
      const d = new AckingDevice(app, u);
      await d.start();
      devices.push(d);
    }

    const total = 2000;
    const batch = 10;
    const accepted = new Map<string, number>(); // id -> seq
    const statuses = new Map<string, number>();
    let acceptedAfterRestart = 0;
    let restarted = false;
    let next = 0;

    async function pusher(w: number): Promise<void> {
      while (next < total) {
        const from = next;
        next += batch;
        const messages = Array.from({ length: Math.min(batch, total - from) }, (_, k) => {
          const n = from + k;
          const user = users[(n + w) % users.length] as string;
          return { user, data: { id: `m${n}`, user } };
        });
        let r;
        try {
          r = await app.push({ messages });
        } catch {
          // The center itself never went away; counted so the assertion below names it.
          statuses.set('fetch-error', (statuses.get('fetch-error') ?? 0) + 1);
          continue;
        }
        const key = `${r.status} ${(r.body['error'] as { code?: string } | undefined)?.code ?? ''}`.trim();
        statuses.set(key, (statuses.get(key) ?? 0) + 1);
        // Counted as accepted: every message the center answered with a sequence (a 200, or
        // the stored part of a 503 batch).
        const results = (r.body['results'] as Array<{ seq?: number }> | undefined) ?? [];
        results.forEach((x, i) => {
          if (typeof x.seq === 'number') {
            accepted.set(messages[i]!.data.id, x.seq);
            if (restarted) acceptedAfterRestart++;
          }
        });
        await sleep(5);
      }
    }

    const fault = (async () => {
      while (next < total / 3) await sleep(5);
      await server.kill();
      // While the store is away, neither the edge nor the center says it is ready.
      for (const url of [`http://127.0.0.1:${stack!.edge.port}`, stack!.httpUrl]) {
        const deadline = Date.now() + 3000;
        let r = await fetch(`${url}/readyz`);
        while (r.status === 200 && Date.now() < deadline) {
          await sleep(20);
          r = await fetch(`${url}/readyz`);
        }
        expect(r.status, `${url}/readyz during the outage`).to.equal(503);
        expect(((await r.json()) as { reason: string }).reason).to.equal('nats reconnecting');
      }
      await sleep(500);
      await server.start();
      restarted = true;
    })();
    await Promise.all([pusher(0), pusher(1), pusher(2), pusher(3), fault]);

    expect(restarted).to.equal(true);
    expect(accepted.size, `statuses: ${JSON.stringify([...statuses])}`).to.be.greaterThan(total / 3);
    expect(acceptedAfterRestart, 'the center stores again after the restart').to.be.greaterThan(0);
    // Only the documented answers: 200, or 503 store_unavailable while the store was away.
    for (const k of statuses.keys()) expect(['200', '503 store_unavailable']).to.include(k);

    const missing = (): string[] => {
      const got = new Set<string>();
      for (const d of devices) for (const id of d.ids) got.add(id);
      return [...accepted.keys()].filter((id) => !got.has(id));
    };
    const deadline = Date.now() + 20_000;
    while (missing().length > 0 && Date.now() < deadline) await sleep(100);

    const lost = missing();
    expect(
      lost,
      `${lost.length} of ${accepted.size} accepted messages never arrived, e.g. ${lost.slice(0, 10).join(',')} (seqs ${lost
        .slice(0, 10)
        .map((id) => accepted.get(id))
        .join(',')}); statuses ${JSON.stringify([...statuses])}`,
    ).to.deep.equal([]);
    for (const d of devices) {
      expect(d.foreign, `${d.user} got another user's messages`).to.deep.equal([]);
      for (const s of d.sessions) {
        // Within one connection the sequence only increases (a reconnect may repeat messages).
        for (let i = 1; i < s.length; i++) expect(s[i]!, `${d.user} order`).to.be.greaterThan(s[i - 1]!);
      }
    }
    // Every message was acked: the removals that failed or were lost with the connection during
    // the outage are applied once the store is back, and nothing stays stored.
    for (const u of users) await app.waitPending(u, 0, 20_000);
  });

  it('after the restart, an app created later reaches the edge and its clients get their messages', async function () {
    // The edge learns apps through a KV watch that must survive the server restart.
    const fresh = await stack!.createApp();
    const deadline = Date.now() + 10_000;
    let c: TestClient | undefined;
    while (c === undefined) {
      try {
        c = await fresh.connect('late');
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await sleep(100);
      }
    }
    const seq = await fresh.pushOk('late', 'after the storm');
    const [m] = await c.waitForMessages(1);
    expect(m?.seq).to.equal(seq);
    c.ack([seq]);
    c.terminate();
    for (const url of [stack!.httpUrl, `http://127.0.0.1:${stack!.edge.port}`]) {
      expect((await fetch(`${url}/readyz`)).status, url).to.equal(200);
    }
  });
});

describe('faults: edge killed abruptly', function () {
  this.timeout(60_000);
  let stack: Stack;
  let app: TestApp;
  const edgeA = new EdgeProcess();
  const clients: TestClient[] = [];

  before(async function () {
    stack = await Stack.start();
    app = await stack.createApp();
  });
  after(async function () {
    for (const c of clients) c.terminate();
    await edgeA.kill();
    await stack?.close();
  });

  it('delivers every unacked message, in order, through another edge after SIGKILL', async function () {
    await edgeA.start({
      PUSH_PREFIX: stack.prefix,
      PUSH_NATS_URL: NATS_URL,
      PUSH_REDIS_URL: 'redis://127.0.0.1:6379',
    });

    // Two messages stored while the user is offline, then the user connects to edge A.
    const seqs: number[] = [];
    for (let i = 0; i < 2; i++) seqs.push(await app.pushOk('zoe', { n: seqs.length }));
    const a = await TestClient.connect(edgeA.wsUrl, await app.token('zoe'));
    clients.push(a);
    for (let i = 0; i < 10; i++) seqs.push(await app.pushOk('zoe', { n: seqs.length }));
    const got = await a.waitForMessages(12);
    expect(got.map((m) => m.seq)).to.deep.equal(seqs);

    // Ack every third message; the rest stay unacked.
    const acked = seqs.filter((_, i) => i % 3 === 0);
    a.ack(acked);
    await app.waitPending('zoe', seqs.length - acked.length);

    await edgeA.kill();
    expect(await a.waitClosed(), 'the socket drops without a close frame').to.equal(1006);

    // More arrive while the user is offline.
    for (let i = 0; i < 3; i++) seqs.push(await app.pushOk('zoe', { n: seqs.length }));

    const b = await TestClient.connect(stack.wsUrl(), await app.token('zoe'));
    clients.push(b);
    const unacked = seqs.filter((s) => !acked.includes(s));
    const ms = await b.waitForMessages(unacked.length);
    await b.ping();
    await sleep(100);
    expect(b.messages.map((m) => m.seq)).to.deep.equal(unacked);
    expect(b.messages.map((m) => (m.data as { n: number }).n)).to.deep.equal(
      seqs.map((_, i) => i).filter((i) => i % 3 !== 0 || i >= 12),
    );
    b.ack(ms.map((m) => m.seq));
    await app.waitPending('zoe', 0);
  });
});
