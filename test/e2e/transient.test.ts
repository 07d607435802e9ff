import { expect } from 'chai';
import WebSocket from 'ws';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { PushClient, type PushMessage } from '@push/client';
import { Subjects, type JobView } from '@push/protocol';
import { runCli } from '../helpers/cli.js';
import { NATS_URL } from '../helpers/nats-server.js';
import { Stack, type TestApp } from '../helpers/stack.js';
import { inboxCounts } from '../helpers/streams.js';
import type { Frame, TestClient } from '../helpers/ws-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it holds, or fails with `what` after `timeoutMs`. */
async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(20);
  }
}

/** The transient `msg` frames a client got so far. */
const transients = (c: TestClient): Frame[] => c.frames.filter((f) => f.t === 'msg' && f['transient'] === true);

/**
 * Transient pushes (issue 17, part 4) through the real center, two edges and NATS: sent to the
 * user's connections online at that moment, never stored, no `seq`, no ack; the answer counts the
 * connections from presence. The window is 2 so that a transient message taking a window slot
 * (or needing an ack) would show as stored messages held back.
 */
describe('transient pushes', function () {
  this.timeout(60_000);
  let stack: Stack;
  let app: TestApp;
  let subjects: Subjects;
  let nc: NatsConnection;
  const clients: TestClient[] = [];
  const sdks: PushClient[] = [];

  before(async function () {
    stack = await Stack.start({ PUSH_EDGE_WINDOW: '2' });
    await stack.startEdge();
    app = await stack.createApp();
    subjects = new Subjects(stack.prefix);
    nc = await connect({ servers: NATS_URL });
  });
  after(async function () {
    for (const c of clients) c.terminate();
    for (const s of sdks) s.disconnect();
    await nc?.close();
    await stack?.close();
  });

  async function connectClient(user: string, device: string, edge = 0, a: TestApp = app): Promise<TestClient> {
    const c = await a.connect(user, device, '', stack.edges[edge]);
    clients.push(c);
    return c;
  }

  /** Waits until presence lists `n` connections of the user (the count a transient push answers). */
  async function waitConnections(user: string, n: number, a: TestApp = app): Promise<void> {
    await until(`${user} has ${n} connections`, async () => {
      const r = await a.user(user);
      return (r.body['connections'] as unknown[]).length === n;
    });
  }

  async function storedCount(user: string): Promise<number> {
    return (await inboxCounts(nc, subjects, app.id)).get(user) ?? 0;
  }

  it("reaches the user's connections on two edges with no seq, and answers how many", async function () {
    const a = await connectClient('tina', 'phone', 0);
    const b = await connectClient('tina', 'laptop', 1);
    await waitConnections('tina', 2);
    const r = await app.push({ user: 'tina', data: { typing: true }, transient: true });
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
    expect(r.body).to.deep.equal({ transient: true, connections: 2 });
    for (const c of [a, b]) {
      const f = await c.waitFor((x) => x.t === 'msg');
      expect(f).to.include({ t: 'msg', transient: true });
      expect(f['data']).to.deep.equal({ typing: true });
      expect(f).to.not.have.property('seq');
      expect(f['ts']).to.be.a('number');
    }
    expect(await storedCount('tina')).to.equal(0);
    expect((await app.user('tina')).body['pending']).to.equal(0);
  });

  it('takes no window slot and needs no ack: stored messages still flow past a full window of them', async function () {
    const c = await connectClient('ulla', 'default');
    await waitConnections('ulla', 1);
    // Four transient messages never acked, on a window of 2...
    for (let i = 0; i < 4; i++) {
      const r = await app.push({ user: 'ulla', b64: Buffer.from([i]).toString('base64'), transient: true });
      expect(r.body).to.deep.equal({ transient: true, connections: 1 });
    }
    await until('4 transient messages', () => transients(c).length === 4);
    expect(transients(c).map((f) => f['b64'])).to.deep.equal(['AA==', 'AQ==', 'Ag==', 'Aw==']);
    // ...and two stored ones still arrive (a transient taking a slot would hold them back).
    const s1 = await app.pushOk('ulla', { stored: 1 });
    const s2 = await app.pushOk('ulla', { stored: 2 });
    await until('2 stored messages', () => c.messages.filter((m) => m.seq !== undefined).length === 2);
    expect(c.messages.filter((m) => m.seq !== undefined).map((m) => m.seq)).to.deep.equal([s1, s2]);
    // An ack of seq 0 is no ack: the edge refuses it, the connection stays usable.
    c.ack([0]);
    const err = await c.waitFor((f) => f.t === 'error');
    expect(err['code']).to.equal('bad_frame');
    await c.ping();
  });

  it('while a connection is held mid-backlog by its window, transient messages go out at once; every stored one comes once, in order', async function () {
    const stored: number[] = [];
    for (let i = 0; i < 40; i++) stored.push(await app.pushOk('yann', { n: i }));
    // Never acked: the window of 2 holds the backlog back, so the connection is mid-backlog
    // throughout, and the transient messages must still come.
    const c = await connectClient('yann', 'default', 1);
    await waitConnections('yann', 1);
    const seqs = () => c.messages.filter((m) => m.seq !== undefined).map((m) => m.seq);
    // Held: the window's two stored messages came (the backlog read takes its round trips to
    // the store), and no more come while they are unacked.
    await until('the first window of stored messages', () => seqs().length >= 2);
    const sent = await Promise.all(
      [0, 1, 2].map((i) => app.push({ user: 'yann', data: { live: i }, transient: true })),
    );
    for (const r of sent) expect(r.body).to.deep.equal({ transient: true, connections: 1 });
    await until('3 transient messages', () => transients(c).length === 3);
    expect(seqs()).to.deep.equal(stored.slice(0, 2));
    // Acking moves the backlog on: all 40 arrive once, in order, with the transient ones among them.
    for (let i = 0; i < 40 && seqs().length < 40; i++) {
      const got = seqs();
      c.ack(got.slice(-2));
      await until('more stored messages', () => seqs().length > got.length || seqs().length === 40);
    }
    expect(seqs()).to.deep.equal(stored);
    expect(transients(c)).to.have.length(3);
  });

  it('an offline user gets nothing, then or later: the answer is 0 and nothing is stored', async function () {
    const r = await app.push({ user: 'vera', data: { typing: true }, transient: true });
    expect(r.status).to.equal(200);
    expect(r.body).to.deep.equal({ transient: true, connections: 0 });
    const c = await connectClient('vera', 'default');
    await app.pushOk('vera', { after: true });
    const [m] = await c.waitForMessages(1);
    expect(m?.data).to.deep.equal({ after: true });
    await sleep(300);
    expect(c.messages).to.have.length(1);
    expect(transients(c)).to.deep.equal([]);
    c.ack([m?.seq ?? 0]);
    await app.waitPending('vera', 0);
    expect(await storedCount('vera')).to.equal(0);
  });

  it('never reaches another user or another app', async function () {
    const other = await stack.createApp();
    const mine = await connectClient('wes', 'default');
    const theirs = await connectClient('wes', 'default', 1, other);
    const neighbour = await connectClient('wesley', 'default');
    await waitConnections('wes', 1);
    const r = await app.push({ user: 'wes', data: 'hi', transient: true });
    expect(r.body).to.deep.equal({ transient: true, connections: 1 });
    await mine.waitFor((f) => f.t === 'msg');
    await sleep(300);
    expect(theirs.messages).to.deep.equal([]);
    expect(neighbour.messages).to.deep.equal([]);
  });

  it('batch: transient and stored messages side by side; a batch-wide transient is each message default', async function () {
    const x = await connectClient('xena', 'default');
    await waitConnections('xena', 1);
    const r = await app.push({
      messages: [
        { user: 'xena', data: { n: 1 }, transient: true },
        { user: 'yuri', data: { n: 2 }, transient: true },
        { user: 'xena', data: { n: 3 } },
      ],
    });
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
    const results = r.body['results'] as Array<Record<string, unknown>>;
    expect(results[0]).to.deep.equal({ user: 'xena', transient: true, connections: 1 });
    expect(results[1]).to.deep.equal({ user: 'yuri', transient: true, connections: 0 });
    expect(results[2]).to.include({ user: 'xena', duplicate: false });
    expect(results[2]?.['seq']).to.be.a('number');
    await until('2 messages', () => x.messages.length === 2);
    expect(transients(x).map((f) => f['data'])).to.deep.equal([{ n: 1 }]);
    expect(await storedCount('yuri')).to.equal(0);
    expect(await storedCount('xena')).to.equal(1);

    const all = await app.push({
      transient: true,
      messages: [
        { user: 'xena', data: { n: 4 } },
        { user: 'xena', data: { n: 5 }, transient: false },
      ],
    });
    expect(all.status, JSON.stringify(all.body)).to.equal(200);
    const [t, stored] = all.body['results'] as Array<Record<string, unknown>>;
    expect(t).to.deep.equal({ user: 'xena', transient: true, connections: 1 });
    expect(stored?.['seq']).to.be.a('number');
    await until('4 messages', () => x.messages.length === 4);
    expect(transients(x).map((f) => f['data'])).to.deep.equal([{ n: 1 }, { n: 4 }]);
  });

  it('bad combinations answer clear codes and store nothing', async function () {
    const cases: Array<[unknown, number, string]> = [
      [{ user: 'zed', data: 1, transient: true, ttl: 60 }, 400, 'transient_conflict'],
      [{ user: 'zed', data: 1, transient: true, id: 'm1' }, 400, 'transient_conflict'],
      [{ user: 'zed', data: 1, transient: 'yes' }, 400, 'bad_request'],
      [{ transient: 1, messages: [{ user: 'zed', data: 1 }] }, 400, 'bad_request'],
      [
        {
          transient: true,
          messages: [
            { user: 'zed', data: 1 },
            { user: 'zed', data: 2, ttl: 5 },
          ],
        },
        400,
        'transient_conflict',
      ],
    ];
    for (const [body, status, code] of cases) {
      const r = await app.push(body);
      expect(r.status, JSON.stringify(body)).to.equal(status);
      expect((r.body['error'] as { code: string }).code, JSON.stringify(body)).to.equal(code);
    }
    const batch = await app.push({
      transient: true,
      messages: [
        { user: 'zed', data: 1 },
        { user: 'zed', data: 2, ttl: 5 },
      ],
    });
    expect((batch.body['error'] as { message: string }).message).to.match(/^messages\[1\]: .*ttl/);
    // Topics keep history: a transient topic message is refused, not stored silently.
    const topic = await app.publishTopic('news', { data: 1, transient: true });
    expect(topic.status).to.equal(400);
    expect((topic.body['error'] as { code: string }).code).to.equal('transient_conflict');
    const topicBatch = await stack.http('POST', `/v1/apps/${app.id}/topics/messages`, app.apiKey, {
      messages: [{ topic: 'news', data: 1, transient: true }],
    });
    expect((topicBatch.body['error'] as { code: string }).code).to.equal('transient_conflict');
    expect(await storedCount('zed')).to.equal(0);
  });

  it('rate limits apply to transient pushes as to stored ones', async function () {
    const limited = await stack.createApp({ pushRateLimit: 2 });
    const codes: number[] = [];
    for (let i = 0; i < 6; i++) codes.push((await limited.push({ user: 'rl', data: i, transient: true })).status);
    expect(codes).to.include(429);
    expect(codes[0]).to.equal(200);
  });

  it('over NATS request/reply: push.api.push answers { ok, transient, connections }', async function () {
    const c = await connectClient('nora', 'default');
    await waitConnections('nora', 1);
    const h = headers();
    h.set('Authorization', `Bearer ${app.apiKey}`);
    const reply = await nc.request(
      `${stack.prefix}.api.push`,
      JSON.stringify({ app: app.id, user: 'nora', data: { via: 'nats' }, transient: true }),
      { timeout: 5000, headers: h },
    );
    expect(reply.json()).to.deep.equal({ ok: true, transient: true, connections: 1 });
    const f = await c.waitFor((x) => x.t === 'msg');
    expect(f).to.include({ transient: true });
    const bad = await nc.request(
      `${stack.prefix}.api.push`,
      JSON.stringify({ app: app.id, user: 'nora', data: 1, transient: true, ttl: 9 }),
      { timeout: 5000, headers: h },
    );
    expect(bad.json<{ error: { code: string } }>().error.code).to.equal('transient_conflict');
  });

  it('a transient fan-out job reaches the users online and stores nothing', async function () {
    const online = await connectClient('job-on', 'default', 1);
    await waitConnections('job-on', 1);
    const jobs = `/v1/apps/${app.id}/jobs`;
    const bad = await stack.http('POST', jobs, app.apiKey, { data: 1, users: ['a'], transient: true, ttl: 5 });
    expect(bad.status).to.equal(400);
    expect((bad.body['error'] as { code: string }).code).to.equal('transient_conflict');
    const r = await stack.http<{ job: JobView }>('POST', jobs, app.apiKey, {
      data: { live: 'job' },
      users: ['job-on', 'job-off'],
      transient: true,
    });
    expect(r.status, JSON.stringify(r.body)).to.equal(201);
    expect(r.body.job).to.include({ transient: true, ttl: 0 });
    let job = r.body.job;
    await until('the job completed', async () => {
      job = (await stack.http<{ job: JobView }>('GET', `${jobs}/${r.body.job.id}`, app.apiKey)).body.job;
      return job.state === 'completed';
    });
    expect(job).to.include({ written: 2, failed: 0, transient: true });
    const f = await online.waitFor((x) => x.t === 'msg');
    expect(f).to.include({ transient: true });
    expect(f['data']).to.deep.equal({ live: 'job' });
    expect(await storedCount('job-on')).to.equal(0);
    expect(await storedCount('job-off')).to.equal(0);
    const late = await connectClient('job-off', 'default');
    await sleep(300);
    expect(late.messages).to.deep.equal([]);
  });

  it('the CLI: push --transient answers connections and stores nothing; bad flags get the code', async function () {
    const c = await connectClient('cli-t', 'default');
    await waitConnections('cli-t', 1);
    const env = {
      PUSH_PREFIX: stack.prefix,
      PUSH_DATABASE_URL: stack.databaseUrl,
      PUSH_NATS_URL: NATS_URL,
      ...(process.env['PUSH_REDIS_URL'] !== undefined ? { PUSH_REDIS_URL: process.env['PUSH_REDIS_URL'] } : {}),
    };
    const r = await runCli(['push', app.id, 'cli-t', '--data', '{"typing":true}', '--transient'], env);
    expect(r.code, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.deep.equal({ transient: true, connections: 1 });
    const f = await c.waitFor((x) => x.t === 'msg');
    expect(f).to.include({ transient: true });
    expect(await storedCount('cli-t')).to.equal(0);
    const bad = await runCli(['push', app.id, 'cli-t', '--data', '1', '--transient', '--ttl', '5'], env);
    expect(bad.code).to.not.equal(0);
    expect(bad.stderr).to.contain('transient_conflict');
  });

  it('the SDK in Node emits a transient message and never acks it', async function () {
    const sent: string[] = [];
    /** ws, recording what the SDK writes. */
    class RecordingWebSocket extends WebSocket {
      override send(data: string, ...rest: unknown[]): void {
        sent.push(data);
        (super.send as (d: string, ...r: unknown[]) => void)(data, ...rest);
      }
    }
    const client = new PushClient({
      edges: [stack.wsUrl(stack.edges[1])],
      token: () => app.token('sdk-t'),
      WebSocket: RecordingWebSocket,
    });
    sdks.push(client);
    const got: PushMessage[] = [];
    client.on('message', (m) => got.push(m));
    client.connect();
    await until('connected', () => client.state === 'connected');
    await waitConnections('sdk-t', 1);
    await app.push({ user: 'sdk-t', data: { typing: true }, transient: true });
    const seq = await app.pushOk('sdk-t', { stored: true });
    await until('2 messages', () => got.length === 2);
    expect(got[0]).to.include({ transient: true, seq: 0 });
    expect(got[0]?.data).to.deep.equal({ typing: true });
    got[0]?.ack(); // a no-op
    expect(got[1]).to.include({ seq });
    expect(got[1]?.transient).to.equal(undefined);
    await app.waitPending('sdk-t', 0);
    const acks = sent.filter((s) => s.includes('"ack"')).map((s) => JSON.parse(s) as { seqs: number[] });
    expect(acks.flatMap((a) => a.seqs)).to.deep.equal([seq]);
  });
});
