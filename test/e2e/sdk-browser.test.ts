import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { chromium, type Browser, type Page } from 'playwright-core';
import { createCenter, type Center } from '@push/center';
import { createDispatcher, rankEdges, type Dispatcher } from '@push/dispatcher';
import { createLogger } from '@push/logger';
import { startDemoServer, type DemoServer } from '../../demo/server.js';
import { EdgeProcess } from '../helpers/edge-process.js';
import { NATS_URL, freePort } from '../helpers/nats-server.js';
import { Stack, type TestApp } from '../helpers/stack.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Debian's chromium package (`.ci/run` installs it when missing). */
const CHROMIUM = process.env['PUSH_TEST_CHROMIUM'] ?? '/usr/bin/chromium';
/**
 * Where the demo test saves its screenshot: .data/ unless asked for the README's copy
 * (`PUSH_TEST_SCREENSHOT=docs/img/demo.png`), so that a test run leaves the tree clean.
 */
const SCREENSHOT = path.resolve(ROOT, process.env['PUSH_TEST_SCREENSHOT'] ?? '.data/demo.png');
/** The bundle budget of issue 11: minified and gzipped. */
const MAX_GZIPPED_BYTES = 8 * 1024;
/** push-client-apps.min.js: the same with multi-app sessions (`attach`, issue 17). */
const MAX_APPS_GZIPPED_BYTES = 10 * 1024;

/**
 * The SDK's browser bundle in real headless Chromium, against the real stack: the page is served
 * by the demo server (its own origin), asks the dispatcher (another origin: CORS) for edges and
 * connects to them (a third). Page code is given as strings: test/ is type-checked without the DOM.
 */
describe('SDK (push-client.min.js) in headless Chromium', function () {
  this.timeout(90_000);
  let stack: Stack;
  let app: TestApp;
  /** A second app, attached on the same connection (several apps on one connection). */
  let other: TestApp;
  let browser: Browser;
  let demo: DemoServer;
  let dispatcher: Dispatcher;
  const edgeB = new EdgeProcess();
  let page: Page;

  before(async function () {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
    const out = execFileSync(process.execPath, [path.join(ROOT, 'libs/client/bundle.mjs')], { encoding: 'utf8' });
    console.log(`      ${out.trim()}`);
    const gz = Number(/push-client\.min\.js: \d+ bytes minified, (\d+) bytes gzipped/.exec(out)?.[1]);
    expect(gz, 'bundle size, gzipped').to.be.within(1, MAX_GZIPPED_BYTES);
    const appsGz = Number(/push-client-apps\.min\.js: \d+ bytes minified, (\d+) bytes gzipped/.exec(out)?.[1]);
    expect(appsGz, 'multi-app bundle size, gzipped').to.be.within(gz, MAX_APPS_GZIPPED_BYTES);

    stack = await Stack.start();
    app = await stack.createApp({ clientMessaging: true, presenceTopics: ['room-*'] });
    other = await stack.createApp();
    await edgeB.start({ PUSH_PREFIX: stack.prefix, PUSH_NATS_URL: NATS_URL, PUSH_REDIS_URL: 'redis://127.0.0.1:6379' });
    dispatcher = createDispatcher(
      stack.config({
        PUSH_DISPATCHER_HOST: '127.0.0.1',
        PUSH_DISPATCHER_PORT: '0',
        PUSH_DISPATCHER_EDGES: [edgeB.wsUrl, stack.wsUrl()].join(','),
      }),
    );
    await dispatcher.start();
    const secret = app.record.secrets[0];
    if (secret === undefined) throw new Error('no secret');
    demo = await startDemoServer({
      app: app.id,
      secret,
      apiKey: app.apiKey,
      centerUrl: stack.httpUrl,
      dispatcherUrl: `http://127.0.0.1:${dispatcher.port}`,
      port: 0,
      feedIntervalMs: 400,
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
  });

  beforeEach(async function () {
    page = await browser.newPage();
    page.on('pageerror', (err) => console.error('      page error:', err.message));
  });
  afterEach(async function () {
    await page?.evaluate('for (const r of Object.values(window.t ?? {})) r.client.disconnect()').catch(() => undefined);
    await page?.close();
  });
  after(async function () {
    await browser?.close();
    await demo?.close();
    await dispatcher?.stop();
    await edgeB.kill();
    await stack?.close();
  });

  /**
   * Opens a bare page on the demo server's origin with the bundle loaded, and `mk(name, user,
   * options)` to start a PushClient there that records what it sees in `window.t[name]`.
   */
  async function harness(): Promise<void> {
    await page.exposeFunction('pushToken', (user: string, ttl: number, topics?: string[]) =>
      app.token(user, 'browser', ttl, topics),
    );
    // Plays the app's backend for `fetchMembers`: the occupancy route wants the API key.
    await page.exposeFunction('pushMembers', async (topic: string) => {
      const path = `/v1/apps/${app.id}/topics/${encodeURIComponent(topic)}/presence`;
      return (await stack.http('GET', path, app.apiKey)).body;
    });
    await page.goto(`${demo.url}/harness`); // a 404 text page: only its origin matters
    await page.addScriptTag({ url: '/push-client.min.js' });
    await page.evaluate(`
      window.t = {};
      window.mk = (name, user, opts = {}) => {
        const rec = { messages: [], connects: [], closes: [], errors: [], disconnected: null };
        const client = new PushClient({
          dispatcher: ${JSON.stringify(`http://127.0.0.1:${dispatcher.port}`)},
          token: () => window.pushToken(user, opts.ttl ?? 3600, opts.topics),
          backoff: { baseMs: 50, capMs: 300 },
          ...opts,
        });
        client.on('message', (m) => rec.messages.push({ seq: m.seq, data: m.data, from: m.from, ...(m.transient ? { transient: true } : {}) }));
        client.on('connected', (c) => rec.connects.push(c.edge));
        client.on('connecting', (w) => rec.closes.push(w));
        client.on('disconnected', (w) => (rec.disconnected = w));
        client.on('error', (e) => rec.errors.push(e.error.code));
        rec.client = client;
        window.t[name] = rec;
        client.connect();
      };
    `);
  }

  const get = <T>(expr: string): Promise<T> => page.evaluate<T>(expr);
  const waitUntil = async (expr: string, timeout = 15_000): Promise<void> => {
    await page.waitForFunction(expr, undefined, { timeout, polling: 50 });
  };
  /** A user whose dispatcher list starts with `first`. */
  const userOn = (first: string, tag: string): string => {
    const edges = [edgeB.wsUrl, stack.wsUrl()];
    for (let i = 0; ; i++) if (rankEdges(edges, app.id, `${tag}${i}`)[0] === first) return `${tag}${i}`;
  };

  it('receives and acks, and gets the backlog after a reconnect', async function () {
    await harness();
    const user = userOn(stack.wsUrl(), 'recv');
    await page.evaluate(`mk('a', ${JSON.stringify(user)})`);
    await waitUntil(`t.a.client.state === 'connected'`);
    for (let i = 0; i < 3; i++) await app.pushOk(user, { n: i });
    await waitUntil('t.a.messages.length === 3');
    expect(await get('t.a.messages.map((m) => m.data.n)')).to.deep.equal([0, 1, 2]);
    await app.waitPending(user, 0);
    await page.evaluate('t.a.client.disconnect()');
    await app.pushOk(user, { n: 3 });
    await page.evaluate('t.a.client.connect()');
    await waitUntil('t.a.messages.length === 4');
    await app.waitPending(user, 0);
  });

  it('reconnects after the edge is killed (SIGKILL), fails over to the second edge of the list, loses nothing', async function () {
    await harness();
    const user = userOn(edgeB.wsUrl, 'kill');
    await page.evaluate(`mk('k', ${JSON.stringify(user)})`);
    await waitUntil(`t.k.client.state === 'connected'`);
    expect(await get('t.k.connects')).to.deep.equal([edgeB.wsUrl]);
    const seqs: number[] = [];
    for (let i = 0; i < 3; i++) seqs.push(await app.pushOk(user, i));
    await waitUntil('t.k.messages.length === 3');
    await edgeB.kill();
    for (let i = 3; i < 6; i++) seqs.push(await app.pushOk(user, i));
    await waitUntil('t.k.messages.length === 6', 30_000);
    expect(await get('t.k.connects.at(-1)')).to.equal(stack.wsUrl());
    expect(await get('t.k.messages.map((m) => m.seq)')).to.deep.equal(seqs);
    await app.waitPending(user, 0);
  });

  it('refreshes the token on expiry (4005) and keeps receiving', async function () {
    await harness();
    const user = userOn(stack.wsUrl(), 'exp');
    await page.evaluate(`mk('e', ${JSON.stringify(user)}, { ttl: 2, tokenRefreshMarginSeconds: 0 })`);
    await waitUntil(`t.e.closes.some((c) => c.code === 4005)`, 20_000);
    await waitUntil(`t.e.client.state === 'connected' && t.e.connects.length >= 2`);
    await app.pushOk(user, 'fresh');
    await waitUntil(`t.e.messages.some((m) => m.data === 'fresh')`);
  });

  it('emits a transient message (seq 0, transient) and never acks it; stored ones are acked', async function () {
    await harness();
    const user = userOn(stack.wsUrl(), 'trans');
    await page.evaluate(`mk('t1', ${JSON.stringify(user)})`);
    await waitUntil(`t.t1.client.state === 'connected'`);
    for (let i = 0; (await app.user(user)).body['online'] !== true; i++) {
      if (i > 200) throw new Error('never online');
      await new Promise((r) => setTimeout(r, 25));
    }
    const r = await app.push({ user, data: { typing: true }, transient: true });
    expect(r.body).to.deep.equal({ transient: true, connections: 1 });
    const seq = await app.pushOk(user, 'stored');
    await waitUntil('t.t1.messages.length === 2');
    expect(await get('t.t1.messages.map((m) => [m.seq, m.data, m.transient === true])')).to.deep.equal([
      [0, { typing: true }, true],
      [seq, 'stored', false],
    ]);
    await app.waitPending(user, 0);
    // An ack of the transient one would have come back as an error frame.
    await new Promise((r) => setTimeout(r, 300));
    expect(await get('t.t1.errors')).to.deep.equal([]);
  });

  it('one PushClient with a second app attached: each gets its own messages; a kick of the second leaves the first receiving', async function () {
    await harness();
    await page.exposeFunction('otherToken', (user: string) => other.token(user, 'browser'));
    const user = userOn(stack.wsUrl(), 'multi');
    // push-client.min.js has no multi-app sessions: attach says which bundle has them.
    await page.evaluate(`mk('plain', 'nobody')`);
    expect(
      await get(
        `(() => { try { t.plain.client.attach({ app: 'x', token: 'y' }); return 'attached'; } catch (e) { return e.code; } })()`,
      ),
    ).to.equal('attach_unavailable');
    await page.evaluate(`t.plain.client.disconnect()`);
    await page.addScriptTag({ url: '/push-client-apps.min.js' });
    await page.evaluate(`
      mk('m', ${JSON.stringify(user)});
      t.m.second = { messages: [], detached: [] };
      t.m.session = t.m.client.attach({
        app: ${JSON.stringify(other.id)},
        token: () => window.otherToken(${JSON.stringify(user)}),
      });
      t.m.session.on('message', (m) => t.m.second.messages.push(m.data));
      t.m.session.on('detached', (d) => t.m.second.detached.push(d.reason));
    `);
    await waitUntil(`t.m.session.state === 'attached'`);
    await app.pushOk(user, 'first');
    await other.pushOk(user, 'second');
    await waitUntil('t.m.messages.length === 1 && t.m.second.messages.length === 1');
    expect(await get('[t.m.messages[0].data, t.m.second.messages[0]]')).to.deep.equal(['first', 'second']);
    await other.waitPending(user, 0);
    await app.waitPending(user, 0);
    await stack.http('POST', `/v1/apps/${other.id}/users/${user}/kick`, other.apiKey, {});
    await waitUntil(`t.m.second.detached.includes('kicked')`);
    await app.pushOk(user, 'still');
    await waitUntil('t.m.messages.length === 2');
    expect(await get('t.m.client.state')).to.equal('connected');
  });

  it('stops reconnecting when kicked', async function () {
    await harness();
    const user = userOn(stack.wsUrl(), 'kick');
    await page.evaluate(`mk('k', ${JSON.stringify(user)})`);
    await waitUntil(`t.k.client.state === 'connected'`);
    await stack.http('POST', `/v1/apps/${app.id}/users/${user}/kick`, app.apiKey, {});
    await waitUntil(`t.k.client.state === 'disconnected'`);
    expect(await get('t.k.disconnected.code')).to.equal(4004);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await get('[t.k.client.state, t.k.connects.length]')).to.deep.equal(['disconnected', 1]);
  });

  it('stops on 4006 replaced when a newer connection of the user takes over (app devicePolicy single)', async function () {
    await harness();
    const single = await stack.createApp({ devicePolicy: 'single' });
    await page.exposeFunction('singleToken', (user: string) => single.token(user, 'browser'));
    const edges = JSON.stringify([stack.wsUrl()]);
    await page.evaluate(`mk('s', 'solo', { edges: ${edges}, token: () => window.singleToken('solo') })`);
    await waitUntil(`t.s.client.state === 'connected'`);
    const newer = await single.connect('solo', 'phone', '', stack.edges[stack.edges.length - 1]);
    try {
      await waitUntil(`t.s.client.state === 'disconnected'`);
      expect(await get('t.s.disconnected')).to.deep.equal({ code: 4006, reason: 'replaced' });
      await new Promise((r) => setTimeout(r, 1500)); // backoff here is 50-300 ms: a reconnect would show
      expect(await get('[t.s.client.state, t.s.connects.length]')).to.deep.equal(['disconnected', 1]);
      await newer.ping();
    } finally {
      newer.terminate();
    }
  });

  it('send resolves with the stored seq; the other user receives it', async function () {
    await harness();
    const a = userOn(stack.wsUrl(), 'snd');
    const b = `${a}-peer`;
    await page.evaluate(`mk('a', ${JSON.stringify(a)}); mk('b', ${JSON.stringify(b)})`);
    const r = await get<{ seq: number; dup: boolean }>(`t.a.client.send(${JSON.stringify(b)}, { text: 'hello' })`);
    expect(r.dup).to.equal(false);
    await waitUntil('t.b.messages.length === 1');
    expect(await get('t.b.messages[0]')).to.deep.equal({ seq: r.seq, data: { text: 'hello' }, from: a });
  });

  it('subscribe: topic messages arrive in order, resume after a reconnect without gap or repeat, stop after unsubscribe', async function () {
    await harness();
    const user = userOn(stack.wsUrl(), 'sub');
    await page.evaluate(`
      mk('s', ${JSON.stringify(user)}, { topics: ['scores'] });
      t.s.topic = [];
      t.s.sub = t.s.client.subscribe('scores');
      t.s.sub.on('message', (m) => t.s.topic.push({ seq: m.seq, data: m.data }));
    `);
    await waitUntil(`t.s.sub.state === 'subscribed'`);
    const seqs: number[] = [];
    for (let i = 0; i < 2; i++) seqs.push(await app.publishTopicOk('scores', i));
    await waitUntil('t.s.topic.length === 2');
    await page.evaluate('t.s.client.disconnect()');
    for (let i = 2; i < 4; i++) seqs.push(await app.publishTopicOk('scores', i));
    await page.evaluate('t.s.client.connect()');
    await waitUntil('t.s.topic.length === 4');
    expect(await get('t.s.topic')).to.deep.equal(seqs.map((seq, data) => ({ seq, data })));
    await page.evaluate(`t.s.sub.unsubscribe()`);
    await waitUntil(`t.s.sub.state === 'unsubscribed'`);
    await app.publishTopicOk('scores', 'after');
    await new Promise((r) => setTimeout(r, 300));
    expect(await get('t.s.topic.length')).to.equal(4);
  });

  it('presence: two users see each other in members, a join when the other arrives and a leave when it disconnects', async function () {
    await harness();
    const watch = (name: string) => `
      mk('${name}', '${name}-user', { topics: ['room-*'], fetchMembers: (topic) => window.pushMembers(topic) });
      t.${name}.seen = [];
      t.${name}.sub = t.${name}.client.subscribe('room-b', { presence: true });
      t.${name}.sub.on('members', (list) => t.${name}.seen.push('members ' + list.map((m) => m.user).sort().join(',')));
      t.${name}.sub.on('join', (m) => t.${name}.seen.push('join ' + m.user));
      t.${name}.sub.on('leave', (m) => t.${name}.seen.push('leave ' + m.user));
    `;
    await page.evaluate(watch('ann'));
    await waitUntil('t.ann.seen.length === 1');
    expect(await get('t.ann.seen')).to.deep.equal(['members ann-user']);
    // The edge records ann's subscription just after `subscribed`: wait for the route to list her.
    await waitUntil(`window.pushMembers('room-b').then((b) => JSON.stringify(b).includes('ann-user'))`);
    await page.evaluate(watch('bob'));
    await waitUntil('t.bob.seen.length === 1 && t.ann.seen.length === 2');
    expect(await get('t.bob.seen')).to.deep.equal(['members ann-user,bob-user']);
    expect(await get('t.ann.seen')).to.deep.equal(['members ann-user', 'join bob-user']);
    expect(await get('t.ann.sub.members().map((m) => m.user).sort()')).to.deep.equal(['ann-user', 'bob-user']);
    await page.evaluate('t.bob.client.disconnect()');
    await waitUntil('t.ann.seen.length === 3');
    expect(await get('t.ann.seen[2]')).to.equal('leave bob-user');
    expect(await get('t.ann.sub.members().map((m) => m.user)')).to.deep.equal(['ann-user']);
  });

  it('CORS: a page on another origin reads the dispatcher; the center only when PUSH_CORS_ORIGINS names the origin', async function () {
    await harness();
    const read = (url: string) =>
      get<number | string>(
        `fetch(${JSON.stringify(url)}, { headers: { authorization: 'Bearer ${app.apiKey}' } }).then((r) => r.status, (e) => e.name)`,
      );
    // Issue 14: the center holds API and admin keys, so by default no page of another origin reads it.
    expect(await read(`${stack.httpUrl}/v1/apps/${app.id}/users/x`)).to.equal('TypeError');
    const cfg = stack.config({ PUSH_CENTER_PORT: '0', PUSH_CORS_ORIGINS: new URL(demo.url).origin });
    const listed: Center = createCenter(cfg, { logger: createLogger({ level: cfg.log.level, name: 'center-cors' }) });
    await listed.start();
    try {
      expect(await read(`http://127.0.0.1:${listed.port}/v1/apps/${app.id}/users/x`)).to.equal(200);
    } finally {
      await listed.stop();
    }
    const edges = await get<string[]>(
      `fetch('http://127.0.0.1:${dispatcher.port}/v1/edges?app=${app.id}&user=x').then((r) => r.json()).then((b) => b.edges)`,
    );
    expect(edges).to.have.length(2);
  });

  it('route selection: reports an unreachable edge with exclude=, and keeps one edge list per navigator.connection.type (issue 17)', async function () {
    const dead = `ws://127.0.0.1:${await freePort()}/ws`;
    const live = stack.wsUrl();
    const routed = createDispatcher(
      stack.config({
        PUSH_DISPATCHER_HOST: '127.0.0.1',
        PUSH_DISPATCHER_PORT: '0',
        PUSH_DISPATCHER_EDGES: [dead, live].join(','),
      }),
    );
    await routed.start();
    try {
      let user = '';
      for (let i = 0; user === ''; i++) if (rankEdges([dead, live], app.id, `net${i}`)[0] === dead) user = `net${i}`;
      /** The `exclude`s of each dispatcher request the page made. */
      const asks: string[][] = [];
      page.on('request', (r) => {
        const u = new URL(r.url());
        if (u.pathname === '/v1/edges' && u.port === String(routed.port)) asks.push(u.searchParams.getAll('exclude'));
      });
      // The page's network, as Chrome on Android reports it; the test switches it.
      await page.addInitScript(`
        window.netType = 'wifi';
        Object.defineProperty(navigator, 'connection', { get: () => ({ type: window.netType }), configurable: true });
      `);
      await harness();
      await page.evaluate(`mk('n', ${JSON.stringify(user)}, { dispatcher: 'http://127.0.0.1:${routed.port}' })`);
      await waitUntil(`window.t.n.connects.length === 1`);
      expect(await get<string[]>('window.t.n.connects')).to.deep.equal([live]);
      expect(asks).to.deep.equal([[], [dead]]);

      // Another network: its own list, asked afresh (nothing excluded there yet).
      await page.evaluate(`window.netType = 'cellular'; window.t.n.client.disconnect(); window.t.n.client.connect()`);
      await waitUntil(`window.t.n.connects.length === 2`);
      expect(asks).to.deep.equal([[], [dead], [], [dead]]);

      // Back on Wi-Fi: the list that worked there, with no request at all.
      await page.evaluate(`window.netType = 'wifi'; window.t.n.client.disconnect(); window.t.n.client.connect()`);
      await waitUntil(`window.t.n.connects.length === 3`);
      expect(await get<string[]>('window.t.n.connects')).to.deep.equal([live, live, live]);
      expect(asks).to.have.length(4);
    } finally {
      await routed.stop();
    }
  });

  it('the demo page: two users chat and a live feed flows; screenshot taken', async function () {
    await page.setViewportSize({ width: 1100, height: 520 });
    await page.goto(demo.url);
    await page.waitForSelector(`#alice b[data-state=connected]`);
    await page.waitForSelector(`#bob b[data-state=connected]`);
    await page.fill('#alice input', 'hi bob, the edge says hello');
    await page.click('#alice button');
    await page.waitForSelector(`#bob ul.chat li:has-text("hi bob, the edge says hello")`);
    await page.fill('#bob input', 'hi alice! got it');
    await page.click('#bob button');
    await page.waitForSelector(`#alice ul.chat li:has-text("hi alice! got it")`);
    await page.waitForSelector('#alice li.mine small'); // "stored #<seq>": the send promise resolved
    // Feed items reached both users (each line names who got it).
    await page.waitForFunction(
      `[...document.querySelectorAll('#feed li small')].filter((s) => s.textContent.includes(',')).length >= 6`,
      undefined,
      { timeout: 15_000 },
    );
    mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
  });
});
