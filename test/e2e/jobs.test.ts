import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { Subjects, type JobView } from '@push/protocol';
import { CenterProcess } from '../helpers/center-process.js';
import { NATS_URL } from '../helpers/nats-server.js';
import { Stack, type HttpAnswer, type TestApp } from '../helpers/stack.js';
import { inboxCounts } from '../helpers/streams.js';
import type { TestClient } from '../helpers/ws-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

type JobAnswer = { job: JobView; error?: { code: string } };

/**
 * Fan-out jobs as a business server sees them: a message for a list of users written into each
 * inbox by the centers, at the app's rate, surviving a center killed with SIGKILL midway. The
 * in-process center of the stack answers the API but runs no jobs (PUSH_JOB_RUNNERS=0); the
 * jobs run in centers started as child processes, so one can be killed without a goodbye.
 */
describe('fan-out jobs', function () {
  this.timeout(120_000);
  let stack: Stack;
  let subjects: Subjects;
  let nc: NatsConnection;
  const centers: CenterProcess[] = [];
  const clients: TestClient[] = [];

  before(async function () {
    stack = await Stack.start({ PUSH_JOB_RUNNERS: '0', PUSH_JOB_LEASE: '2', PUSH_JOB_MAX_USERS: '20000' });
    subjects = new Subjects(stack.prefix);
    nc = await connect({ servers: NATS_URL });
  });
  after(async function () {
    for (const c of clients) c.terminate();
    await Promise.all(centers.map((c) => c.kill()));
    await nc?.close();
    await stack?.close();
  });

  /** A center in its own process that runs jobs (the stack's lease of 2 s). */
  async function startRunner(): Promise<CenterProcess> {
    const c = new CenterProcess();
    centers.push(c);
    await c.start({ ...stack.env, PUSH_JOB_RUNNERS: '4' });
    return c;
  }

  /** The last runner started that is still alive, or a new one. */
  let runner: CenterProcess | undefined;
  async function ensureRunner(): Promise<void> {
    runner ??= await startRunner();
  }

  const jobs = <T = JobAnswer>(a: TestApp, method: string, rest = '', body?: unknown): Promise<HttpAnswer<T>> =>
    stack.http<T>(method, `/v1/apps/${encodeURIComponent(a.id)}/jobs${rest}`, a.apiKey, body);

  async function getJob(a: TestApp, id: string): Promise<JobView> {
    const r = await jobs(a, 'GET', `/${id}`);
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
    return r.body.job;
  }

  /** Polls the job until `pred` holds. */
  async function waitJob(a: TestApp, id: string, pred: (j: JobView) => boolean, timeoutMs = 60_000): Promise<JobView> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const j = await getJob(a, id);
      if (pred(j)) return j;
      if (Date.now() > deadline) throw new Error(`job stayed ${JSON.stringify(j)}; center output: ${outputs()}`);
      await sleep(50);
    }
  }

  const outputs = (): string => centers.map((c) => c.output.slice(-2000)).join('\n---\n');

  const userIds = (n: number, prefix = 'u'): string[] =>
    Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(5, '0')}`);

  it('writes 10,000 inboxes exactly once across a center killed with SIGKILL midway; online users get it live', async function () {
    const app = await stack.createApp({ fanoutRate: 2500 });
    const users = userIds(10_000);
    const online = users.slice(0, 50);
    for (const u of online) clients.push(await app.connect(u));
    const data = { notice: 'maintenance at 02:00', marker: Math.random() };
    // 3 invalid ids and 2 repeats: skipped and counted, not a reason to refuse the job.
    const given = [...users, '', 'x'.repeat(300), 'bad\u0000id', users[1], users[2]];
    const created = await jobs(app, 'POST', '', { data, ttl: 600, users: given });
    expect(created.status, JSON.stringify(created.body)).to.equal(201);
    const id = created.body.job.id;
    expect(created.body.job).to.include({ state: 'queued', total: 10_005, skipped: 5, written: 0, remaining: 10_000 });

    const a = await startRunner();
    const midway = await waitJob(app, id, (j) => j.written >= 3000);
    expect(midway.state).to.equal('running');
    await a.kill();
    // Nothing runs it now: the progress stays where the dead center's last checkpoint left it.
    const afterKill = await getJob(app, id);
    expect(afterKill.written, 'the kill came before the end').to.be.below(10_000);
    expect(afterKill.state).to.equal('running');

    runner = await startRunner();
    const done = await waitJob(app, id, (j) => j.state === 'completed');
    expect(done).to.include({ total: 10_005, written: 10_000, skipped: 5, failed: 0, remaining: 0, progress: 1 });
    expect(done.finishedAt).to.be.a('string');
    expect(await runner.metric('push_center_jobs_claimed_total', { resumed: '1' }), 'B resumed a started job').to.equal(
      1,
    );

    // B wrote every user after the checkpoint again; the store dropped those A had already stored.
    const rewrites = await runner.metric('push_center_job_rewrites_total');
    const fresh = await runner.metric('push_center_job_writes_total');
    expect(rewrites + fresh).to.equal(10_000 - afterKill.written);
    // Every user's inbox holds the message exactly once: the rewrites after the checkpoint were deduped.
    const counts = await inboxCounts(nc, subjects, app.id);
    expect(counts.size).to.equal(10_000);
    const wrong = [...counts].filter(([, n]) => n !== 1);
    expect(wrong, 'users with other than one copy').to.deep.equal([]);
    expect(users.every((u) => counts.has(u))).to.equal(true);

    // Online users got it live, once.
    await Promise.all(clients.map((c) => c.waitForMessages(1)));
    await sleep(300);
    for (const c of clients) {
      expect(c.messages.length).to.equal(1);
      expect(c.messages[0]?.data).to.deep.equal(data);
    }
    // Offline users find it waiting: in pending, and delivered when they connect.
    const status = await app.user('u09999');
    expect(status.body['pending']).to.equal(1);
    const late = await app.connect('u09999');
    clients.push(late);
    const [m] = await late.waitForMessages(1);
    expect(m?.data).to.deep.equal(data);
  });

  it('a center stopped with SIGTERM lets go of its job at once: another resumes it long before the lease would lapse', async function () {
    if (runner !== undefined) await runner.stop();
    runner = undefined;
    // C holds its jobs for 60 s unrenewed: only its letting go explains a takeover within seconds.
    const c = new CenterProcess();
    centers.push(c);
    await c.start({ ...stack.env, PUSH_JOB_RUNNERS: '4', PUSH_JOB_LEASE: '60' });
    // 1000 users at 50/s take C 20 s: the second center, started meanwhile (seconds on a busy
    // machine), finds the job still running.
    const app = await stack.createApp({ fanoutRate: 50 });
    const users = userIds(1000, 'g');
    const { body } = await jobs(app, 'POST', '', { data: 'handover', users });
    const id = body.job.id;
    await waitJob(app, id, (j) => j.written >= 100, 20_000);
    runner = await startRunner(); // lease 2 s; cannot take the job while C holds it
    await c.stop();
    const stopped = await getJob(app, id);
    expect(stopped.state).to.equal('running');
    expect(stopped.written, 'C saved its progress as it stopped').to.be.at.least(100);
    const done = await waitJob(app, id, (j) => j.state === 'completed', 40_000);
    expect(done).to.include({ written: 1000, failed: 0 });
    expect(await runner.metric('push_center_jobs_claimed_total', { resumed: '1' })).to.equal(1);
    const counts = await inboxCounts(nc, subjects, app.id);
    expect(counts.size).to.equal(1000);
    expect([...counts.values()].every((n) => n === 1)).to.equal(true);
  });

  it('writes at the app fanoutRate: progress grows over time, and a cancel stops it within a second', async function () {
    await ensureRunner();
    const app = await stack.createApp({ fanoutRate: 20 });
    const created = await jobs(app, 'POST', '', { data: 'slow', users: userIds(400, 's') });
    expect(created.status).to.equal(201);
    const id = created.body.job.id;
    const first = await waitJob(app, id, (j) => j.state === 'running' && j.written > 0, 20_000);
    await sleep(1500);
    const second = await getJob(app, id);
    // At 20 writes/s, 400 users take 20 s: after a couple of seconds the job is going, not done.
    expect(second.written).to.be.above(first.written);
    expect(second.written).to.be.below(200);
    expect(second).to.include({ state: 'running' });
    expect(second.remaining).to.equal(400 - second.written);
    expect(second.progress).to.be.above(0).and.below(0.5);

    const cancelled = await jobs(app, 'POST', `/${id}/cancel`);
    expect(cancelled.status).to.equal(200);
    expect(cancelled.body.job.state).to.equal('cancelled');
    await sleep(1000);
    const settled = await getJob(app, id);
    await sleep(1500);
    const later = await getJob(app, id);
    expect(later.state).to.equal('cancelled');
    expect(later.written, 'nothing written a second after the cancel').to.equal(settled.written);
    expect(later.written).to.be.below(400);
    // The counts are the inboxes' truth.
    const counts = await inboxCounts(nc, subjects, app.id);
    expect(counts.size).to.equal(later.written);
    expect([...counts.values()].every((n) => n === 1)).to.equal(true);

    // A second cancel is no error; the job takes no more users.
    const again = await jobs(app, 'POST', `/${id}/cancel`);
    expect(again.status).to.equal(200);
    expect(again.body.job.state).to.equal('cancelled');
    const more = await jobs(app, 'POST', `/${id}/users`, { users: ['late'] });
    expect(more.status).to.equal(409);
    expect(more.body.error?.code).to.equal('job_not_open');
  });

  it('a job whose app is deleted stops writing: a new app given the same id at once starts empty', async function () {
    await ensureRunner();
    const id = `reused-${Date.now()}`;
    const app = await stack.createApp({ fanoutRate: 300 }, id);
    const created = await jobs(app, 'POST', '', { data: 'from the deleted app', users: userIds(3000, 'r') });
    expect(created.status).to.equal(201);
    await waitJob(app, created.body.job.id, (j) => j.written > 100, 20_000);
    expect((await stack.http('DELETE', `/v1/admin/apps/${id}`, stack.adminKey)).status).to.equal(204);
    await stack.createApp({}, id);
    await sleep(4000); // past the backoff of the writes the delete made fail
    const counts = await inboxCounts(nc, subjects, id);
    expect(counts.size, "the deleted app's job wrote into the new app's inboxes").to.equal(0);
  });

  it('takes users in chunks into an open job; repeats across chunks are skipped at the start', async function () {
    await ensureRunner();
    const app = await stack.createApp({ fanoutRate: 0 });
    const created = await jobs(app, 'POST', '', { b64: Buffer.from([1, 2, 3]).toString('base64'), open: true });
    expect(created.status).to.equal(201);
    const id = created.body.job.id;
    expect(created.body.job).to.include({ state: 'open', total: 0 });
    await sleep(1200); // an open job is not run, even by a center looking for work
    expect((await inboxCounts(nc, subjects, app.id)).size).to.equal(0);

    type Added = { added: number; skipped: number; job: JobView };
    const one = await jobs<Added>(app, 'POST', `/${id}/users`, { users: ['ann', 'bob', 'cyd', ''] });
    expect(one.status).to.equal(200);
    expect(one.body).to.include({ added: 3, skipped: 1 });
    // Repeats within a request are skipped at once; those of an earlier chunk (cyd, ann) at the start.
    const two = await jobs<Added>(app, 'POST', `/${id}/users`, { users: ['cyd', 'dee', 'ann', 'dee'] });
    expect(two.body).to.include({ added: 3, skipped: 1 });
    expect(two.body.job).to.include({ state: 'open', total: 8 });

    const started = await jobs(app, 'POST', `/${id}/start`);
    expect(started.status).to.equal(200);
    expect(started.body.job).to.include({ total: 8, skipped: 4, remaining: 4 });
    const done = await waitJob(app, id, (j) => j.state === 'completed', 20_000);
    expect(done).to.include({ written: 4, skipped: 4, failed: 0 });
    const counts = await inboxCounts(nc, subjects, app.id);
    expect(Object.fromEntries(counts)).to.deep.equal({ ann: 1, bob: 1, cyd: 1, dee: 1 });

    // A retried start changes nothing; users after the start are refused.
    const restart = await jobs(app, 'POST', `/${id}/start`);
    expect(restart.status).to.equal(200);
    expect(restart.body.job.state).to.equal('completed');
    const late = await jobs(app, 'POST', `/${id}/users`, { users: ['eve'] });
    expect(late.body.error?.code).to.equal('job_not_open');

    const list = await jobs<{ jobs: JobView[] }>(app, 'GET');
    expect(list.status).to.equal(200);
    expect(list.body.jobs.map((j) => j.id)).to.deep.equal([id]);
  });

  it("an app's jobs run in the order they were queued: an open job started late runs after one queued before its start", async function () {
    await ensureRunner();
    const app = await stack.createApp({ fanoutRate: 200 });
    const first = await jobs(app, 'POST', '', { data: 'first', users: userIds(400, 'f') });
    await waitJob(app, first.body.job.id, (j) => j.state === 'running', 20_000);
    const open = await jobs(app, 'POST', '', { data: 'open', users: ['o1', 'o2'], open: true });
    const queued = await jobs(app, 'POST', '', { data: 'queued', users: ['q1', 'q2'] });
    expect(queued.body.job.state).to.equal('queued');
    await sleep(100);
    expect((await jobs(app, 'POST', `/${open.body.job.id}/start`)).body.job.state).to.equal('queued');
    const q = await waitJob(app, queued.body.job.id, (j) => j.state === 'completed', 30_000);
    const o = await waitJob(app, open.body.job.id, (j) => j.state === 'completed', 30_000);
    expect(Date.parse(String(o.startedAt)), 'the job started later ran first').to.be.at.least(
      Date.parse(String(q.finishedAt)),
    );
  });

  it('answers bad input with its code: unknown job, too many users, bad message, bad users', async function () {
    const app = await stack.createApp({ maxMessageBytes: 100 });
    const other = await stack.createApp();
    const expectError = (r: HttpAnswer<JobAnswer>, status: number, code: string): void => {
      expect(r.status, JSON.stringify(r.body)).to.equal(status);
      expect(r.body.error?.code).to.equal(code);
    };
    expectError(await jobs(app, 'GET', '/job_AAAAAAAAAAAAAAAA'), 404, 'job_not_found');
    expectError(await jobs(app, 'GET', '/nope'), 404, 'job_not_found');
    expectError(await jobs(app, 'GET', `/${'j'.repeat(10_000)}`), 404, 'job_not_found');
    expectError(await jobs(app, 'POST', '/job_AAAAAAAAAAAAAAAA/cancel'), 404, 'job_not_found');

    // Another app's job is not found through this app's key.
    const mine = await jobs(other, 'POST', '', { data: 1, open: true });
    expectError(await jobs(app, 'GET', `/${mine.body.job.id}`), 404, 'job_not_found');
    expect(
      (await stack.http('GET', `/v1/apps/${other.id}/jobs/${mine.body.job.id}`, app.apiKey)).body['error'],
    ).to.include({ code: 'wrong_app' });

    // PUSH_JOB_MAX_USERS is 20,000 here: in one request, and over chunks.
    expectError(await jobs(app, 'POST', '', { data: 1, users: userIds(20_001) }), 413, 'job_too_large');
    const open = await jobs(app, 'POST', '', { data: 1, open: true });
    const openId = open.body.job.id;
    expect((await jobs(app, 'POST', `/${openId}/users`, { users: userIds(15_000) })).status).to.equal(200);
    expectError(await jobs(app, 'POST', `/${openId}/users`, { users: userIds(6000, 'v') }), 413, 'job_too_large');
    expect((await getJob(app, openId)).total, 'the refused chunk added nothing').to.equal(15_000);
    await jobs(app, 'POST', `/${openId}/cancel`);

    expectError(await jobs(app, 'POST', '', { users: ['a'] }), 400, 'invalid_data');
    expectError(await jobs(app, 'POST', '', { data: 1, b64: 'AQ==', users: ['a'] }), 400, 'invalid_data');
    expectError(await jobs(app, 'POST', '', { data: 1, ttl: -1, users: ['a'] }), 400, 'invalid_ttl');
    expectError(await jobs(app, 'POST', '', { data: 'x'.repeat(200), users: ['a'] }), 413, 'payload_too_large');
    expectError(await jobs(app, 'POST', '', { data: 1, users: 'a' }), 400, 'bad_request');
    expectError(await jobs(app, 'POST', '', { data: 1 }), 400, 'bad_request');
    expectError(await jobs(app, 'POST', `/${openId}/users`, { users: { a: 1 } }), 400, 'bad_request');
    const notJson = await stack.http<JobAnswer>('POST', `/v1/apps/${app.id}/jobs`, app.apiKey, undefined, '{"data":');
    expectError(notJson, 400, 'bad_json');
    const noKey = await stack.http<JobAnswer>('POST', `/v1/apps/${app.id}/jobs`, undefined, { data: 1, users: [] });
    expectError(noKey, 401, 'api_key_missing');

    // A job whose every user is invalid is done at once, with each one skipped.
    const none = await jobs(app, 'POST', '', { data: 1, users: ['', 7, null, 'a\u0001'] });
    expect(none.status).to.equal(201);
    expect(none.body.job).to.include({ state: 'completed', total: 4, skipped: 4, written: 0, progress: 1 });
  });

  it('serves the same operations over NATS request/reply', async function () {
    await ensureRunner();
    const app = await stack.createApp({ fanoutRate: 0 });
    const call = async (op: string, body: unknown): Promise<Record<string, unknown>> => {
      const h = headers();
      h.set('Authorization', `Bearer ${app.apiKey}`);
      const reply = await nc.request(`${stack.prefix}.api.jobs.${op}`, JSON.stringify(body), {
        timeout: 5000,
        headers: h,
      });
      return reply.json<Record<string, unknown>>();
    };
    const created = await call('create', { app: app.id, data: { via: 'nats' }, open: true });
    expect(created['ok']).to.equal(true);
    const job = (created['job'] as JobView).id;
    const added = await call('users', { app: app.id, job, users: ['n1', 'n2'] });
    expect(added).to.include({ ok: true, added: 2, skipped: 0 });
    const started = await call('start', { app: app.id, job });
    expect((started['job'] as JobView).state).to.equal('queued');
    const deadline = Date.now() + 20_000;
    let got = await call('get', { app: app.id, job });
    while ((got['job'] as JobView).state !== 'completed' && Date.now() < deadline) {
      await sleep(50);
      got = await call('get', { app: app.id, job });
    }
    expect(got['job']).to.include({ state: 'completed', written: 2 });
    const list = await call('list', { app: app.id });
    expect((list['jobs'] as JobView[]).map((j) => j.id)).to.deep.equal([job]);
    const cancel = await call('cancel', { app: app.id, job });
    expect((cancel['job'] as JobView).state, 'a finished job stays finished').to.equal('completed');
    const unknown = await call('get', { app: app.id, job: 'job_AAAAAAAAAAAAAAAA' });
    expect(unknown['error']).to.include({ code: 'job_not_found', status: 404 });
    const noJob = await call('get', { app: app.id });
    expect(noJob['error']).to.include({ code: 'job_not_found', status: 404 });
    expect(Object.fromEntries(await inboxCounts(nc, subjects, app.id))).to.deep.equal({ n1: 1, n2: 1 });
  });

  it('CLI: jobs create from a file of users, get and list', async function () {
    await ensureRunner();
    const app = await stack.createApp({ fanoutRate: 0 });
    const dir = mkdtempSync(path.join(os.tmpdir(), 'jobs-cli-'));
    try {
      const file = path.join(dir, 'users.txt');
      writeFileSync(file, 'c1\nc2\r\n\nc3\n');
      const cli = async (...args: string[]): Promise<Record<string, unknown>> => {
        const r = await run(process.execPath, [path.join(ROOT, 'apps/center/dist/cli.js'), ...args], {
          cwd: ROOT,
          env: { PATH: process.env['PATH'] ?? '', ...stack.env, PUSH_LOG_LEVEL: 'warn' },
          timeout: 20_000,
        });
        return JSON.parse(r.stdout) as Record<string, unknown>;
      };
      const created = (await cli('jobs', 'create', '--app', app.id, '--users', file, '--data', '{"cli":true}'))[
        'job'
      ] as JobView;
      expect(created).to.include({ state: 'queued', total: 3, skipped: 0 });
      const done = await waitJob(app, created.id, (j) => j.state === 'completed', 20_000);
      expect(done.written).to.equal(3);
      const got = (await cli('jobs', 'get', '--app', app.id, created.id))['job'] as JobView;
      expect(got).to.include({ id: created.id, state: 'completed', written: 3 });
      const list = (await cli('jobs', 'list', '--app', app.id))['jobs'] as JobView[];
      expect(list.map((j) => j.id)).to.deep.equal([created.id]);
      expect(Object.fromEntries(await inboxCounts(nc, subjects, app.id))).to.deep.equal({ c1: 1, c2: 1, c3: 1 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
