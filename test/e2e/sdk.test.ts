import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import WebSocket from 'ws';
import { PushClient, type CloseInfo, type PushClientOptions, type PushMessage } from '@push/client';
import { createCenter, type Center } from '@push/center';
import { createDispatcher, rankEdges, type Dispatcher } from '@push/dispatcher';
import { createLogger } from '@push/logger';
import { EdgeProcess } from '../helpers/edge-process.js';
import { NATS_URL, freePort } from '../helpers/nats-server.js';
import { Stack, type TestApp } from '../helpers/stack.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Polls `check` until it holds, or fails with `what` after `timeoutMs`. */
async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** An SDK client on Node 20 (the `ws` package as its WebSocket) that records what it saw. */
class Watched {
  readonly client: PushClient;
  readonly messages: PushMessage[] = [];
  readonly connects: string[] = [];
  readonly closes: CloseInfo[] = [];
  readonly errors: string[] = [];
  disconnected: CloseInfo | undefined;

  constructor(opts: Omit<PushClientOptions, 'WebSocket'> & { WebSocket?: PushClientOptions['WebSocket'] }) {
    this.client = new PushClient({ WebSocket, ...opts });
    this.client.on('message', (m) => this.messages.push(m));
    this.client.on('connected', (c) => this.connects.push(c.edge));
    this.client.on('connecting', (why) => this.closes.push(why));
    this.client.on('disconnected', (why) => (this.disconnected = why));
    this.client.on('error', (e) => this.errors.push(e.error.code));
  }

  data(): unknown[] {
    return this.messages.map((m) => m.data);
  }
}

describe('SDK (@push/client) in Node against the real stack', function () {
  this.timeout(60_000);
  let stack: Stack;
  let app: TestApp;
  const clients: Watched[] = [];
  const watch = (opts: ConstructorParameters<typeof Watched>[0]): Watched => {
    const w = new Watched(opts);
    clients.push(w);
    return w;
  };

  before(async function () {
    stack = await Stack.start();
    app = await stack.createApp({ clientMessaging: true });
  });
  afterEach(function () {
    for (const c of clients.splice(0)) c.client.disconnect();
  });
  after(async function () {
    await stack?.close();
  });

  it('receives in order, acks in batches (pending drops to 0), and gets the backlog after a reconnect', async function () {
    const w = watch({ edges: [stack.wsUrl()], token: () => app.token('ann') });
    w.client.connect();
    await until('connected', () => w.client.state === 'connected');
    for (let i = 0; i < 5; i++) await app.pushOk('ann', { n: i });
    await until('5 messages', () => w.messages.length === 5);
    expect(w.data()).to.deep.equal([0, 1, 2, 3, 4].map((n) => ({ n })));
    await app.waitPending('ann', 0);

    w.client.disconnect();
    expect(w.client.state).to.equal('disconnected');
    await app.pushOk('ann', { n: 5 });
    await app.pushOk('ann', { n: 6 });
    w.client.connect();
    await until('the backlog', () => w.messages.length === 7);
    expect(w.data().slice(5)).to.deep.equal([{ n: 5 }, { n: 6 }]);
    await app.waitPending('ann', 0);
  });

  it('manual ack mode: nothing is acked until message.ack(); a repeat after reconnect is not shown again', async function () {
    const w = watch({ edges: [stack.wsUrl()], token: () => app.token('mo'), ackMode: 'manual' });
    w.client.connect();
    await until('connected', () => w.client.state === 'connected');
    await app.pushOk('mo', 'one');
    await until('a message', () => w.messages.length === 1);
    await new Promise((r) => setTimeout(r, 200));
    await app.waitPending('mo', 1); // not acked yet
    // Reconnect: the edge delivers it again; the SDK drops the repeat.
    w.client.disconnect();
    w.client.connect();
    await until('connected again', () => w.client.state === 'connected');
    await new Promise((r) => setTimeout(r, 300));
    expect(w.messages.length).to.equal(1);
    w.messages[0]?.ack();
    await app.waitPending('mo', 0);
  });

  it('auto mode: a message whose listener threw comes again on the next connection and is shown again, then acked', async function () {
    const w = watch({ edges: [stack.wsUrl()], token: () => app.token('thrower') });
    const calls: number[] = [];
    let fail = true;
    w.client.on('message', (m) => {
      calls.push(m.seq);
      if (fail) throw new Error('a bug in the app');
    });
    w.client.connect();
    await until('connected', () => w.client.state === 'connected');
    const seq = await app.pushOk('thrower', 'again');
    await until('shown once', () => calls.length === 1);
    expect(w.errors).to.include('listener');
    await new Promise((r) => setTimeout(r, 200));
    await app.waitPending('thrower', 1); // not acked
    fail = false;
    w.client.disconnect();
    w.client.connect();
    await until('shown again', () => calls.length === 2);
    expect(calls).to.deep.equal([seq, seq]);
    await app.waitPending('thrower', 0);
  });

  it('send resolves once stored; the recipient gets it with from; a refused send rejects with the code', async function () {
    const alice = watch({ edges: [stack.wsUrl()], token: () => app.token('alice') });
    const bob = watch({ edges: [stack.wsUrl()], token: () => app.token('bob') });
    alice.client.connect();
    bob.client.connect();
    // Sent before the connection is up: queued, then sent on hello.
    const r = await alice.client.send('bob', { text: 'hi bob' }, { id: 'greeting-1' });
    expect(r.id).to.equal('greeting-1');
    expect(r.seq).to.be.a('number');
    expect(r.dup).to.equal(false);
    await until('bob got it', () => bob.messages.length === 1);
    expect(bob.messages[0]).to.include({ seq: r.seq, from: 'alice' });
    expect(bob.messages[0]?.data).to.deep.equal({ text: 'hi bob' });
    // The same id again (a retry): stored once.
    const again = await alice.client.send('bob', { text: 'hi bob' }, { id: 'greeting-1' });
    expect(again).to.deep.equal({ id: 'greeting-1', seq: r.seq, dup: true });

    const closed = await stack.createApp({ clientMessaging: false });
    const carl = watch({ edges: [stack.wsUrl()], token: () => closed.token('carl') });
    carl.client.connect();
    const err = await carl.client.send('dora', 'x').then(
      () => undefined,
      (e: unknown) => e as { code: string },
    );
    expect(err?.code).to.equal('client_messaging_disabled');
  });

  it('gets a new token when the edge closes for expiry (4005) and keeps receiving', async function () {
    let issued = 0;
    const w = watch({
      edges: [stack.wsUrl()],
      token: () => {
        issued += 1;
        return app.token('tim', 'default', 2);
      },
      tokenRefreshMarginSeconds: 0,
    });
    w.client.connect();
    await until('closed for expiry', () => w.closes.some((c) => c.code === 4005), 15_000);
    await until('connected again', () => w.client.state === 'connected' && w.connects.length >= 2, 10_000);
    expect(issued).to.be.greaterThanOrEqual(2);
    await app.pushOk('tim', 'after refresh');
    await until('the message', () => w.data().includes('after refresh'), 10_000);
  });

  it('learns why an upgrade was refused: a bad token (4400) is replaced by the provider and the client connects', async function () {
    let calls = 0;
    const w = watch({
      edges: [stack.wsUrl()],
      token: () => (++calls === 1 ? 'not-a-jwt' : app.token('una')),
      backoff: { baseMs: 50, capMs: 200 },
    });
    w.client.connect();
    await until('connected', () => w.client.state === 'connected');
    expect(w.closes.find((c) => c.code !== 0)).to.deep.equal({ code: 4400, reason: 'token_malformed' });
  });

  it('stops for good when kicked (4004): no reconnect', async function () {
    const w = watch({ edges: [stack.wsUrl()], token: () => app.token('kim') });
    w.client.connect();
    await until('connected', () => w.client.state === 'connected');
    const r = await stack.http('POST', `/v1/apps/${app.id}/users/kim/kick`, app.apiKey, {});
    expect(r.status).to.equal(202);
    await until('disconnected', () => w.client.state === 'disconnected');
    expect(w.disconnected?.code).to.equal(4004);
    await new Promise((r2) => setTimeout(r2, 1500));
    expect(w.client.state).to.equal('disconnected');
    expect(w.connects.length).to.equal(1);
    const status = await app.user('kim');
    expect(status.body['online']).to.equal(false);
  });

  it("an app's allowedOrigins: a page from another origin is refused with 4403 origin_not_allowed and stops", async function () {
    const strict = await stack.createApp({ allowedOrigins: ['https://good.example'] });
    const from = (origin: string) =>
      class extends WebSocket {
        constructor(url: string) {
          super(url, { origin });
        }
      };
    const evil = watch({
      edges: [stack.wsUrl()],
      token: () => strict.token('eve'),
      WebSocket: from('https://evil.example'),
    });
    evil.client.connect();
    await until('refused', () => evil.client.state === 'disconnected');
    expect(evil.disconnected).to.deep.equal({ code: 4403, reason: 'origin_not_allowed' });
    const good = watch({
      edges: [stack.wsUrl()],
      token: () => strict.token('gus'),
      WebSocket: from('https://good.example'),
    });
    good.client.connect();
    await until('connected', () => good.client.state === 'connected');
    // No Origin at all (a server, the CLI): not a page, not checked.
    const server = watch({ edges: [stack.wsUrl()], token: () => strict.token('sid') });
    server.client.connect();
    await until('connected', () => server.client.state === 'connected');
  });

  describe('with a dispatcher and an edge in its own process', function () {
    let dispatcher: Dispatcher;
    const edgeA = new EdgeProcess();
    let deadUrl: string;

    before(async function () {
      await edgeA.start({
        PUSH_PREFIX: stack.prefix,
        PUSH_NATS_URL: NATS_URL,
        PUSH_REDIS_URL: 'redis://127.0.0.1:6379',
      });
      deadUrl = `ws://127.0.0.1:${await freePort()}/ws`;
    });
    afterEach(async function () {
      await dispatcher?.stop();
    });
    after(async function () {
      await edgeA.kill();
    });

    /** Starts a dispatcher over `edges`; returns a user whose ranked list starts with `first`. */
    async function dispatch(edges: string[], first: string): Promise<string> {
      dispatcher = createDispatcher(
        stack.config({
          PUSH_DISPATCHER_HOST: '127.0.0.1',
          PUSH_DISPATCHER_PORT: '0',
          PUSH_DISPATCHER_EDGES: edges.join(','),
        }),
      );
      await dispatcher.start();
      for (let i = 0; ; i++) if (rankEdges(edges, app.id, `u${i}`)[0] === first) return `u${i}`;
    }

    it("fails over to the second edge of the dispatcher's list when the first does not answer", async function () {
      const user = await dispatch([deadUrl, stack.wsUrl()], deadUrl);
      const w = watch({
        dispatcher: `http://127.0.0.1:${dispatcher.port}`,
        token: () => app.token(user),
        backoff: { baseMs: 50, capMs: 200 },
      });
      w.client.connect();
      await until('connected', () => w.client.state === 'connected');
      expect(w.connects).to.deep.equal([stack.wsUrl()]);
      await app.pushOk(user, 'via the second edge');
      await until('the message', () => w.messages.length === 1);
    });

    it('reconnects after the edge is killed (SIGKILL) and loses nothing', async function () {
      const user = await dispatch([edgeA.wsUrl, stack.wsUrl()], edgeA.wsUrl);
      const w = watch({
        dispatcher: `http://127.0.0.1:${dispatcher.port}`,
        token: () => app.token(user),
        backoff: { baseMs: 50, capMs: 200 },
      });
      w.client.connect();
      await until('connected to A', () => w.client.state === 'connected');
      expect(w.connects).to.deep.equal([edgeA.wsUrl]);
      const sent: number[] = [];
      for (let i = 0; i < 5; i++) sent.push(await app.pushOk(user, i));
      await until('5 messages', () => w.messages.length === 5);
      await edgeA.kill();
      // A send while the connection is down waits, then goes out after the reconnect.
      const reply = w.client.send(`${user}-peer`, 'across the failover');
      for (let i = 5; i < 10; i++) sent.push(await app.pushOk(user, i));
      expect((await reply).seq).to.be.a('number');
      await until('all 10 messages', () => w.messages.length === 10);
      expect(w.connects.at(-1)).to.equal(stack.wsUrl());
      expect(w.messages.map((m) => m.seq)).to.deep.equal(sent); // once each, in order
      await app.waitPending(user, 0);
    });
  });

  it('the CLI watch (built on the SDK) prints each message once as a JSON line and acks it; a kick ends it', async function () {
    const proc = spawn(
      process.execPath,
      [path.join(ROOT, 'apps/center/dist/cli.js'), 'watch', '--app', app.id, '--user', 'wes', '--url', stack.wsUrl()],
      {
        cwd: ROOT,
        env: {
          PATH: process.env['PATH'] ?? '',
          PUSH_PREFIX: stack.prefix,
          PUSH_DATABASE_URL: stack.databaseUrl,
          PUSH_NATS_URL: NATS_URL,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    try {
      await until('the CLI connected', () => stderr.includes('connected to'), 15_000);
      const seq = await app.pushOk('wes', { hello: 'cli' });
      await until('the message line', () => stdout.includes('"hello"'));
      expect(JSON.parse(stdout.trim().split('\n')[0] ?? '')).to.deep.include({ t: 'msg', seq, data: { hello: 'cli' } });
      await app.waitPending('wes', 0);
      await stack.http('POST', `/v1/apps/${app.id}/users/wes/kick`, app.apiKey, {});
      expect(await exited).to.equal(1);
      expect(stderr).to.include('closed: 4004');
    } finally {
      proc.kill();
    }
  });

  it('CORS: the center answers no page of another origin by default, the dispatcher any (issue 14)', async function () {
    const pre = await fetch(`${stack.httpUrl}/v1/apps/${app.id}/push`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://page.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      },
    });
    expect(pre.headers.get('access-control-allow-origin')).to.equal(null);
    expect(pre.headers.get('access-control-allow-methods')).to.equal(null);
    for (const path of [`/v1/apps/${app.id}/users/x`, '/v1/admin/apps']) {
      const r = await fetch(`${stack.httpUrl}${path}`, {
        headers: {
          origin: 'https://page.example',
          authorization: `Bearer ${path.includes('admin') ? stack.adminKey : app.apiKey}`,
        },
      });
      expect(r.status, path).to.equal(200);
      expect(r.headers.get('access-control-allow-origin'), path).to.equal(null);
    }
    const d = createDispatcher(stack.config({ PUSH_DISPATCHER_HOST: '127.0.0.1', PUSH_DISPATCHER_PORT: '0' }));
    await d.start();
    try {
      const r = await fetch(`http://127.0.0.1:${d.port}/v1/edges?app=demo&user=u`, {
        headers: { origin: 'https://page.example' },
      });
      expect(r.headers.get('access-control-allow-origin')).to.equal('*');
    } finally {
      await d.stop();
    }
  });

  it('CORS: PUSH_CORS_ORIGINS lets exactly the named origins call the center, preflight included', async function () {
    const cfg = stack.config({ PUSH_CENTER_PORT: '0', PUSH_CORS_ORIGINS: 'https://a.example, https://b.example:8443' });
    const center: Center = createCenter(cfg, { logger: createLogger({ level: cfg.log.level, name: 'center-cors' }) });
    await center.start();
    try {
      const base = `http://127.0.0.1:${center.port}`;
      const preflight = (origin: string) =>
        fetch(`${base}/v1/apps/${app.id}/push`, {
          method: 'OPTIONS',
          headers: {
            origin,
            'access-control-request-method': 'POST',
            'access-control-request-headers': 'authorization, content-type',
          },
        });
      const pre = await preflight('https://b.example:8443');
      expect(pre.status).to.equal(204);
      expect(pre.headers.get('access-control-allow-origin')).to.equal('https://b.example:8443');
      expect(pre.headers.get('access-control-allow-methods')).to.include('POST');
      expect(pre.headers.get('access-control-allow-headers')).to.include('authorization');
      expect(pre.headers.get('vary')).to.include('origin');
      const unlistedPre = await preflight('https://c.example');
      expect(unlistedPre.headers.get('access-control-allow-origin')).to.equal(null);
      expect(unlistedPre.headers.get('access-control-allow-methods')).to.equal(null);
      const get = (origin: string) =>
        fetch(`${base}/v1/apps/${app.id}/users/x`, { headers: { origin, authorization: `Bearer ${app.apiKey}` } });
      expect((await get('https://a.example')).headers.get('access-control-allow-origin')).to.equal('https://a.example');
      // Exact match only: another scheme, port or a suffix is another origin.
      for (const other of [
        'http://a.example',
        'https://a.example:444',
        'https://a.example.evil',
        'https://c.example',
      ]) {
        const r = await get(other);
        expect(r.status, other).to.equal(200); // CORS is the browser's to enforce: no header, no read
        expect(r.headers.get('access-control-allow-origin'), other).to.equal(null);
      }
    } finally {
      await center.stop();
    }
  });

  it('CORS: a configured dispatcher list answers only its origins', async function () {
    const d = createDispatcher(
      stack.config({
        PUSH_DISPATCHER_HOST: '127.0.0.1',
        PUSH_DISPATCHER_PORT: '0',
        PUSH_DISPATCHER_CORS: 'https://a.example',
      }),
    );
    await d.start();
    try {
      const ask = (origin: string) =>
        fetch(`http://127.0.0.1:${d.port}/v1/edges?app=demo&user=u`, { headers: { origin } });
      const ok = await ask('https://a.example');
      expect(ok.headers.get('access-control-allow-origin')).to.equal('https://a.example');
      const other = await ask('https://b.example');
      expect(other.status).to.equal(200); // CORS is the browser's to enforce: no header, no read
      expect(other.headers.get('access-control-allow-origin')).to.equal(null);
    } finally {
      await d.stop();
    }
  });
});
