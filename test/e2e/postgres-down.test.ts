import { expect } from 'chai';
import { headers, type NatsConnection } from '@nats-io/nats-core';
import { DATABASE_RETRY_AFTER_SECONDS, dropDatabase } from '@push/db';
import { Subjects, type JobView } from '@push/protocol';
import { CenterProcess } from '../helpers/center-process.js';
import { reportCleanupFailure } from '../helpers/cleanup.js';
import { Stack, type HttpAnswer, type TestApp } from '../helpers/stack.js';
import { inboxCounts } from '../helpers/streams.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import type { TestClient } from '../helpers/ws-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Postgres down (issue 15), as a business server sees it: a center whose Postgres is reached
 * through a proxy the test turns off (so others on the shared Postgres are not disturbed) keeps
 * taking pushes and topic messages (apps come from the KV bucket), answers the routes that need
 * Postgres with `503 database_unavailable` and `Retry-After`, finishes a fan-out job it was
 * running once Postgres returns, starts while Postgres is down, and never exits.
 */
describe('Postgres down', function () {
  this.timeout(60_000);
  let stack: Stack;
  let proxy: TcpProxy;
  let nc: NatsConnection;
  let subjects: Subjects;
  /** The apps of the two tests, made before any outage. */
  let jobApp: TestApp;
  let lateApp: TestApp;
  const centers: CenterProcess[] = [];
  const clients: TestClient[] = [];
  const databases: string[] = [];

  before(async function () {
    // The stack's own center creates the test's apps, on Postgres directly, then stops.
    stack = await Stack.start({ PUSH_JOB_RUNNERS: '0', PUSH_JOB_LEASE: '2' });
    subjects = new Subjects(stack.prefix);
    const pg = new URL(stack.databaseUrl);
    proxy = new TcpProxy(pg.hostname, Number(pg.port || 5432));
    await proxy.start();
    nc = await stack.connectNats('test-postgres-down');
    jobApp = await stack.createApp({ fanoutRate: 10 });
    lateApp = await stack.createApp();
    // Only the centers behind the proxy may answer: the stack's would take NATS API requests of
    // the queue group with Postgres up. The edge goes on without it.
    await stack.center.stop();
  });
  afterEach(function () {
    proxy.setDown(false);
  });
  after(async function () {
    for (const c of clients) c.terminate();
    await Promise.all(centers.map((c) => c.kill()));
    await nc?.close();
    await proxy?.stop();
    for (const url of databases) await dropDatabase(url).catch(reportCleanupFailure('drop database'));
    await stack?.close();
  });

  /** The URL of database `name` (the stack's by default) through the proxy, or directly. */
  function dbUrl(name = new URL(stack.databaseUrl).pathname.slice(1), viaProxy = true): string {
    const u = new URL(stack.databaseUrl);
    u.pathname = `/${name}`;
    if (viaProxy) u.port = String(proxy.port);
    return u.toString();
  }

  /** A center in its own process, on Postgres through the proxy, running jobs (lease 2 s). */
  async function startCenter(env: Record<string, string> = {}): Promise<CenterProcess> {
    const c = new CenterProcess();
    centers.push(c);
    await c.start({ ...stack.env, PUSH_DATABASE_URL: dbUrl(), PUSH_JOB_RUNNERS: '4', ...env });
    return c;
  }

  async function call<T = Record<string, unknown>>(
    c: CenterProcess,
    method: string,
    path: string,
    key: string,
    body?: unknown,
  ): Promise<HttpAnswer<T>> {
    const res = await fetch(`${c.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: (text === '' ? {} : JSON.parse(text)) as T, headers: res.headers };
  }

  /** The routes that need Postgres, each answering `503 database_unavailable` with `Retry-After`. */
  async function expectDatabaseRoutesUnavailable(c: CenterProcess, app: TestApp, jobId: string): Promise<void> {
    const a = `/v1/apps/${app.id}`;
    const routes: Array<[string, string, string, unknown?]> = [
      ['GET', '/v1/admin/apps', stack.adminKey],
      ['POST', '/v1/admin/apps', stack.adminKey, { settings: {} }],
      ['GET', `${a}/users/alice/topics`, app.apiKey],
      ['PUT', `${a}/users/alice/topics/news`, app.apiKey],
      ['GET', `${a}/jobs/${jobId}`, app.apiKey],
      ['POST', `${a}/jobs`, app.apiKey, { data: 'x', users: ['bob'] }],
      ['GET', `${a}/webhooks`, app.apiKey],
    ];
    for (const [method, path, key, body] of routes) {
      const started = Date.now();
      const r = await call<{ error: { code: string } }>(c, method, path, key, body);
      expect(r.status, `${method} ${path}: ${JSON.stringify(r.body)}`).to.equal(503);
      expect(r.body.error.code, `${method} ${path}`).to.equal('database_unavailable');
      expect(r.headers.get('retry-after'), `${method} ${path}`).to.equal(String(DATABASE_RETRY_AFTER_SECONDS));
      expect(Date.now() - started, `${method} ${path} answered fast`).to.be.below(5000);
    }
  }

  async function waitJob(c: CenterProcess, app: TestApp, id: string, pred: (j: JobView) => boolean): Promise<JobView> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const r = await call<{ job: JobView }>(c, 'GET', `/v1/apps/${app.id}/jobs/${id}`, app.apiKey);
      if (r.status === 200 && pred(r.body.job)) return r.body.job;
      if (Date.now() > deadline) throw new Error(`job: ${r.status} ${JSON.stringify(r.body)}; center: ${c.output}`);
      await sleep(100);
    }
  }

  it('goes on pushing and delivering, answers 503 database_unavailable where it needs Postgres, and finishes a job begun before', async function () {
    const center = await startCenter();
    const app = jobApp;
    const alice = await app.connect('alice');
    clients.push(alice);
    const users = Array.from({ length: 30 }, (_, i) => `u${i}`);
    const created = await call<{ job: JobView }>(center, 'POST', `/v1/apps/${app.id}/jobs`, app.apiKey, {
      data: { notice: 'job' },
      ttl: 600,
      users,
    });
    expect(created.status, JSON.stringify(created.body)).to.equal(201);
    const jobId = created.body.job.id;
    await waitJob(center, app, jobId, (j) => j.written >= 3);

    proxy.setDown(true);
    const downAt = Date.now();
    const pushed = await call(center, 'POST', `/v1/apps/${app.id}/push`, app.apiKey, {
      user: 'alice',
      data: { hello: 'while postgres is down' },
    });
    expect(pushed.status, JSON.stringify(pushed.body)).to.equal(200);
    const [msg] = await alice.waitForMessages(1);
    expect(msg?.data).to.deep.equal({ hello: 'while postgres is down' });
    const topic = await call(center, 'POST', `/v1/apps/${app.id}/topics/news/messages`, app.apiKey, { data: 1 });
    expect(topic.status, JSON.stringify(topic.body)).to.equal(200);
    const status = await call(center, 'GET', `/v1/apps/${app.id}/users/alice`, app.apiKey);
    expect(status.status, JSON.stringify(status.body)).to.equal(200);

    await expectDatabaseRoutesUnavailable(center, app, jobId);
    // The same code over NATS request/reply, with the wait in the error.
    const h = headers();
    h.set('Authorization', `Bearer ${app.apiKey}`);
    const reply = await nc.request(subjects.api('jobs.get'), JSON.stringify({ app: app.id, job: jobId }), {
      headers: h,
      timeout: 10_000,
    });
    expect(reply.json()).to.deep.include({
      error: {
        code: 'database_unavailable',
        message: 'the database (Postgres) is unavailable; retry after the Retry-After seconds',
        status: 503,
        retryAfter: DATABASE_RETRY_AFTER_SECONDS,
      },
    });

    // Down longer than the job's lease: its run stops and is taken up again afterwards.
    await sleep(Math.max(0, 3000 - (Date.now() - downAt)));
    proxy.setDown(false);

    const done = await waitJob(center, app, jobId, (j) => j.state === 'completed');
    expect(done).to.include({ total: 30, written: 30, failed: 0, remaining: 0 });
    const counts = await inboxCounts(nc, subjects, app.id);
    expect(
      users.filter((u) => counts.get(u) !== 1),
      'users without exactly one copy',
    ).to.deep.equal([]);

    const apps = await call(center, 'GET', '/v1/admin/apps', stack.adminKey);
    expect(apps.status).to.equal(200);
    expect(center.alive, center.output).to.equal(true);
    expect(center.output).to.include('postgres unavailable');
    // One line per outage, not a stack per request.
    expect(center.output).not.to.include('"stack"');
    expect(center.output, 'a stack printed outside the JSON logs').not.to.match(/^\s+at /m);
  });

  it('starts while Postgres is down, serves pushes from the apps KV bucket, and migrates when it returns', async function () {
    const app = lateApp;
    proxy.setDown(true);
    // A database that does not exist yet: the center creates and migrates it when Postgres answers.
    const name = `${new URL(stack.databaseUrl).pathname.slice(1)}_late`;
    databases.push(dbUrl(name, false));
    const center = await startCenter({ PUSH_DATABASE_URL: dbUrl(name) });

    const pushed = await call(center, 'POST', `/v1/apps/${app.id}/push`, app.apiKey, { user: 'bob', data: 'hi' });
    expect(pushed.status, JSON.stringify(pushed.body)).to.equal(200);
    const listed = await call(center, 'GET', '/v1/admin/apps', stack.adminKey);
    expect(listed.status).to.equal(503);
    expect(listed.headers.get('retry-after')).to.equal(String(DATABASE_RETRY_AFTER_SECONDS));

    proxy.setDown(false);
    const deadline = Date.now() + 15_000;
    for (;;) {
      const r = await call(center, 'GET', `/v1/apps/${app.id}/jobs`, app.apiKey);
      if (r.status === 200) break;
      expect(r.status, JSON.stringify(r.body)).to.equal(503);
      if (Date.now() > deadline) throw new Error(`still 503 after Postgres returned: ${center.output}`);
      await sleep(200);
    }
    expect((await call(center, 'GET', '/v1/admin/apps', stack.adminKey)).status).to.equal(200);
    expect(center.alive, center.output).to.equal(true);
    await center.stop();
  });
});
