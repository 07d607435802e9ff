import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { chromium, type Browser, type Page } from 'playwright-core';
import { Stack, type TestApp } from '../helpers/stack.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CHROMIUM = process.env['PUSH_TEST_CHROMIUM'] ?? '/usr/bin/chromium';

/**
 * The SDK's adaptive heartbeat in headless Chromium against the real edge (issue 17): it steps
 * up, remembers the interval in localStorage under the network `navigator.connection` names, and
 * a page loaded again starts there. Page code is given as strings (test/ has no DOM types).
 */
describe('SDK heartbeat in headless Chromium (issue 17)', function () {
  this.timeout(90_000);
  let stack: Stack;
  let app: TestApp;
  let browser: Browser;
  let server: http.Server;
  let origin: string;
  let page: Page | undefined;

  before(async function () {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
    execFileSync(process.execPath, [path.join(ROOT, 'libs/client/bundle.mjs')]);
    const bundle = readFileSync(path.join(ROOT, 'libs/client/dist/push-client.min.js'));
    // Seconds instead of minutes: the edge's floor is lowered, the app allows 1 s.
    stack = await Stack.start({ PUSH_EDGE_PING_MIN: '1' });
    app = await stack.createApp({ pingMinSeconds: 1 });
    server = http.createServer((req, res) => {
      if (req.url === '/push-client.min.js') {
        res.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>heartbeat</title>');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
  });
  after(async function () {
    await page?.evaluate('window.client?.disconnect()').catch(() => undefined);
    await browser?.close();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    await stack?.close();
  });

  /** Loads the page and starts a client that records the intervals of its `connected` events. */
  async function load(p: Page): Promise<void> {
    await p.goto(`${origin}/`);
    await p.addScriptTag({ url: '/push-client.min.js' });
    await p.evaluate(`
      window.agreed = [];
      window.client = new PushClient({
        edges: [${JSON.stringify(stack.wsUrl())}],
        token: () => window.pushToken(),
        pingSeconds: 1,
        heartbeat: { confirmAfter: 1, stepFactor: 2, maxSeconds: 4, pongTimeoutMs: 2000 },
      });
      window.client.on('connected', (c) => window.agreed.push(c.ping));
      window.client.connect();
    `);
  }

  it('steps up to its max, remembers it per network in localStorage, and a reloaded page starts there', async function () {
    const context = await browser.newContext();
    page = await context.newPage();
    await page.exposeFunction('pushToken', () => app.token('tab-user', 'browser'));
    await load(page);
    // 1 s -> 2 s -> 4 s, and a pong after 4 s of silence confirms 4.
    await page.waitForFunction(
      `(() => { try { return JSON.parse(localStorage.getItem('push-client.heartbeat'))[window.client.heartbeat.network].good === 4 } catch { return false } })()`,
      undefined,
      { timeout: 30_000, polling: 100 },
    );
    const network = await page.evaluate<string>('window.client.heartbeat.network');
    // Chromium tells the effective type (desktop Chromium no link type): not the Node default.
    expect(network).to.not.equal('default');
    expect(await page.evaluate<number[]>('window.agreed')).to.deep.equal([1]);

    await page.evaluate('window.client.disconnect()');
    await page.reload();
    await load(page);
    await page.waitForFunction('window.agreed.length === 1', undefined, { timeout: 10_000 });
    // The new page asked for what this network kept, and the edge agreed it.
    expect(await page.evaluate<number[]>('window.agreed')).to.deep.equal([4]);
    expect(await page.evaluate<number>('window.client.heartbeat.seconds')).to.equal(4);
    await page.evaluate('window.client.disconnect()');
    await context.close();
    page = undefined;
  });
});
