import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { expect } from 'chai';
import { chromium, type Browser, type Page } from 'playwright-core';
import { Stack, type TestApp } from '../helpers/stack.js';
import { pusherServer } from '../helpers/pusher.js';

/** Debian's chromium package (`.ci/run` installs it when missing). */
const CHROMIUM = process.env['PUSH_TEST_CHROMIUM'] ?? '/usr/bin/chromium';
const require = createRequire(import.meta.url);
/** pusher-js's browser build, with encryption (tweetnacl) for private-encrypted channels. */
const PUSHER_JS = readFileSync(require.resolve('pusher-js/dist/web/pusher-with-encryption.min.js'), 'utf8');
const MASTER_KEY = Buffer.alloc(32, 9).toString('base64');

/**
 * pusher-js's browser build in headless Chromium against the door: a page served by a stand-in
 * business server (its own origin) that also answers pusher-js's auth requests with the `pusher`
 * SDK, as a Laravel or Express backend would. Page code is given as strings: test/ is
 * type-checked without the DOM.
 */
describe('Pusher door: pusher-js in headless Chromium (issue 18)', function () {
  this.timeout(60_000);
  let stack: Stack;
  let app: TestApp;
  let browser: Browser;
  let backend: Server;
  let origin = '';
  let page: Page;

  before(async function () {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
    stack = await Stack.start();
    app = await stack.createApp({ clientMessaging: true });
    const sdk = pusherServer(stack, app, { encryptionMasterKeyBase64: MASTER_KEY });
    backend = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (req.method === 'GET' && url.pathname === '/pusher.js') {
        res.writeHead(200, { 'content-type': 'text/javascript' }).end(PUSHER_JS);
        return;
      }
      if (req.method === 'POST' && url.pathname === '/pusher/auth') {
        let body = '';
        req.on('data', (c: Buffer) => (body += c.toString('utf8')));
        req.on('end', () => {
          const form = new URLSearchParams(body);
          const socketId = form.get('socket_id') ?? '';
          const channel = form.get('channel_name') ?? '';
          const user = url.searchParams.get('user') ?? 'anon';
          const auth = channel.startsWith('presence-')
            ? sdk.authorizeChannel(socketId, channel, { user_id: user, user_info: { name: user.toUpperCase() } })
            : sdk.authorizeChannel(socketId, channel);
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(auth));
        });
        return;
      }
      res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>pusher door</title>');
    });
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
    const addr = backend.address();
    origin = `http://127.0.0.1:${typeof addr === 'object' && addr !== null ? addr.port : 0}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
  });

  beforeEach(async function () {
    page = await browser.newPage();
    page.on('pageerror', (err) => console.error('      page error:', err.message));
    await page.goto(`${origin}/`);
    await page.addScriptTag({ url: '/pusher.js' });
    await page.evaluate(`
      window.t = {};
      window.mk = (name, user) => {
        const rec = { events: [], members: null, added: [], removed: [], states: [], errors: [] };
        const client = new Pusher(${JSON.stringify(app.id)}, {
          cluster: 'local',
          wsHost: '127.0.0.1',
          wsPort: ${stack.edge.port},
          forceTLS: false,
          enabledTransports: ['ws'],
          disableStats: true,
          channelAuthorization: { endpoint: '/pusher/auth?user=' + user, transport: 'ajax' },
        });
        client.connection.bind('state_change', (s) => rec.states.push(s.current));
        rec.client = client;
        rec.sub = (channel) => {
          const ch = client.subscribe(channel);
          ch.bind_global((event, data) => {
            if (event === 'pusher:subscription_succeeded') rec.events.push({ channel, event: 'ok' });
            else if (event === 'pusher:subscription_error') rec.errors.push({ channel, data });
            else if (!event.startsWith('pusher')) rec.events.push({ channel, event, data });
          });
          if (channel.startsWith('presence-')) {
            ch.bind('pusher:subscription_succeeded', (m) => {
              const all = [];
              m.each((x) => all.push(x.id + ':' + x.info.name));
              rec.members = all.sort();
            });
            ch.bind('pusher:member_added', (m) => rec.added.push(m.id));
            ch.bind('pusher:member_removed', (m) => rec.removed.push(m.id));
          }
          return ch;
        };
        window.t[name] = rec;
      };
    `);
  });
  afterEach(async function () {
    await page?.evaluate('for (const r of Object.values(window.t ?? {})) r.client.disconnect()').catch(() => undefined);
    await page?.close();
  });
  after(async function () {
    await browser?.close();
    await new Promise((resolve) => backend?.close(resolve));
    await stack?.close();
  });

  const get = <T>(expr: string): Promise<T> => page.evaluate<T>(expr);
  const waitUntil = async (expr: string, timeout = 10_000): Promise<void> => {
    await page.waitForFunction(expr, undefined, { timeout, polling: 50 });
  };
  const subscribed = (name: string, channel: string): string =>
    `window.t.${name}.events.some((e) => e.channel === ${JSON.stringify(channel)} && e.event === 'ok')`;

  it('public, private and encrypted channels receive what the pusher SDK triggers', async function () {
    await page.evaluate(
      `mk('a', 'ann'); for (const c of ['web-news', 'private-web', 'private-encrypted-web']) t.a.sub(c);`,
    );
    await waitUntil(['web-news', 'private-web', 'private-encrypted-web'].map((c) => subscribed('a', c)).join(' && '));
    const sdk = pusherServer(stack, app, { encryptionMasterKeyBase64: MASTER_KEY });
    await sdk.trigger('web-news', 'headline', { n: 1 });
    await sdk.trigger('private-web', 'secret', { n: 2 });
    await sdk.trigger('private-encrypted-web', 'sealed', { n: 3 });
    await waitUntil('window.t.a.events.filter((e) => e.event !== "ok").length === 3');
    const got = await get<Array<{ channel: string; event: string; data: unknown }>>(
      'window.t.a.events.filter((e) => e.event !== "ok")',
    );
    expect(got).to.have.deep.members([
      { channel: 'web-news', event: 'headline', data: { n: 1 } },
      { channel: 'private-web', event: 'secret', data: { n: 2 } },
      { channel: 'private-encrypted-web', event: 'sealed', data: { n: 3 } },
    ]);
    expect(await get('window.t.a.errors')).to.deep.equal([]);
  });

  it('presence members and client events between two clients in the page', async function () {
    await page.evaluate(`mk('a', 'ann'); t.a.sub('presence-web');`);
    await waitUntil('window.t.a.members !== null');
    await page.evaluate(`mk('b', 'bob'); t.b.sub('presence-web');`);
    await waitUntil('window.t.b.members !== null && window.t.a.added.length === 1');
    expect(await get('window.t.b.members')).to.deep.equal(['ann:ANN', 'bob:BOB']);
    expect(await get('window.t.a.added')).to.deep.equal(['bob']);
    await page.evaluate(`t.b.client.channel('presence-web').trigger('client-wave', { from: 'bob' })`);
    await waitUntil('window.t.a.events.some((e) => e.event === "client-wave")');
    expect(await get('window.t.a.events.filter((e) => e.event === "client-wave").map((e) => e.data)')).to.deep.equal([
      { from: 'bob' },
    ]);
    await page.evaluate(`t.b.client.disconnect()`);
    await waitUntil('window.t.a.removed.length === 1');
    expect(await get('window.t.a.removed')).to.deep.equal(['bob']);
    expect(await get('window.t.b.events.filter((e) => e.event === "client-wave")')).to.deep.equal([]);
  });
});
