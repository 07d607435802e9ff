import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { jetstream } from '@nats-io/jetstream';
import { headers } from '@nats-io/nats-core';
import { chromium, type Browser, type Page } from 'playwright-core';
import { createCoordinator, type Coordinator } from '@push/coordinator';
import { createLogger } from '@push/logger';
import type { NatsConnection } from '@push/nats';
import { Subjects, type WebhookEndpoint } from '@push/protocol';
import { Stack, type TestApp } from '../helpers/stack.js';
import { WebhookReceiver } from '../helpers/webhook-receiver.js';
import type { TestClient } from '../helpers/ws-client.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Debian's chromium package (`.ci/run` installs it when missing). */
const CHROMIUM = process.env['PUSH_TEST_CHROMIUM'] ?? '/usr/bin/chromium';
/**
 * Where the screenshots go: .data/ unless asked for the README's copies
 * (`PUSH_TEST_CONSOLE_SCREENSHOTS=docs/img`), so that a test run leaves the tree clean.
 */
const SHOTS = path.resolve(ROOT, process.env['PUSH_TEST_CONSOLE_SCREENSHOTS'] ?? '.data');
/** The budget for the console's JavaScript, gzipped. */
const MAX_GZIPPED_BYTES = 150 * 1024;

/**
 * The web console (issue 19) in real headless Chromium against the real stack: served by the
 * center at /console/, logged in with the admin key or an app's API key, driven as an operator
 * would (keyboard and clicks), checked by what the page shows.
 */
describe('web console in headless Chromium (issue 19)', function () {
  this.timeout(90_000);
  let stack: Stack;
  let a: TestApp;
  let b: TestApp;
  let browser: Browser;
  let page: Page;
  let coordinator: Coordinator | undefined;
  let receiver: WebhookReceiver | undefined;
  let nc: NatsConnection | undefined;
  const clients: TestClient[] = [];
  const pageErrors: string[] = [];

  before(async function () {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
    const out = execFileSync(process.execPath, [path.join(ROOT, 'apps/center/console/bundle.mjs')], {
      encoding: 'utf8',
    });
    console.log(`      ${out.trim()}`);
    const gz = Number(/(\d+) bytes gzipped/.exec(out)?.[1]);
    expect(gz, 'console.js gzipped').to.be.within(1, MAX_GZIPPED_BYTES);

    stack = await Stack.start({ PUSH_WEBHOOK_LINGER_MS: '20' });
    a = await stack.createApp({ deliveryEvents: true }, `shop-${randomBytes(3).toString('hex')}`);
    b = await stack.createApp({}, `news-${randomBytes(3).toString('hex')}`);
    nc = await stack.connectNats('console-test');
    const cfg = stack.config();
    coordinator = createCoordinator(cfg, { logger: createLogger({ level: cfg.log.level, name: 'coordinator' }) });
    await coordinator.start();
    receiver = await WebhookReceiver.start();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    mkdirSync(SHOTS, { recursive: true });
  });

  beforeEach(async function () {
    page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (m) => {
      // A refused request (the wrong key on purpose) is the browser's note, not the page failing;
      // anything else (a CSP refusal, an exception logged) is.
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) pageErrors.push(m.text());
    });
  });
  afterEach(async function () {
    for (const c of clients.splice(0)) c.close();
    await page?.close();
    expect(pageErrors.splice(0), 'errors in the page').to.deep.equal([]);
  });
  after(async function () {
    for (const c of clients) c.close();
    await browser?.close();
    await coordinator?.stop();
    await receiver?.close();
    if (nc !== undefined) {
      const { jetstreamManager } = await import('@nats-io/jetstream');
      const jsm = await jetstreamManager(nc);
      await jsm.streams.delete(`KV_${stack.prefix}_webhooks`).catch(() => undefined);
      await nc.close();
    }
    await stack?.close();
  });

  /** Opens the console and logs in (`app` for an app's API key). */
  async function login(key: string, app?: string): Promise<void> {
    await page.goto(`${stack.httpUrl}/console/`);
    await page.getByLabel('Key', { exact: true }).fill(key);
    if (app !== undefined) await page.getByLabel('App id').fill(app);
    await page.getByLabel('Key', { exact: true }).press('Enter');
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    expect(page.url(), 'the key never goes into the URL').to.not.contain(key);
  }

  const cell = (app: string, col: string) => page.locator(`[data-app="${app}"][data-col="${col}"]`);

  it('logs in with the admin key and shows a client connecting on the overview', async function () {
    await page.goto(`${stack.httpUrl}/console/`);
    await page.getByLabel('Key', { exact: true }).fill('not-the-key');
    await page.getByRole('button', { name: 'Log in' }).click();
    // A wrong key: the reason, with its code, and still the login form.
    await page.locator('#login-error').filter({ hasText: 'admin_key_invalid' }).waitFor();
    expect(await page.getByRole('heading', { name: 'Overview' }).count()).to.equal(0);

    await login(stack.adminKey);
    await cell(a.id, 'connections').filter({ hasText: /^0$/ }).waitFor();
    clients.push(await a.connect('alice', 'phone'));
    clients.push(await b.connect('bob', 'laptop'));
    await cell(a.id, 'connections').filter({ hasText: /^1$/ }).waitFor({ timeout: 10_000 });
    await cell(b.id, 'connections').filter({ hasText: /^1$/ }).waitFor();
    await page.locator('#total-connections').filter({ hasText: /^2$/ }).waitFor();
    await page.locator('[data-health="nats"]').filter({ hasText: 'NATS: up' }).waitFor();
    await page.locator('[data-health="postgres"]').filter({ hasText: 'Postgres: up' }).waitFor();
    await page
      .locator(`[data-edge="${stack.edge.edgeId}"][data-col="connections"]`)
      .filter({ hasText: /^2$/ })
      .waitFor();
    // Some traffic so the charts have lines, then the README's picture.
    for (let i = 0; i < 6; i++) {
      await a.pushOk('carol', { n: i });
      await new Promise((resolve) => setTimeout(resolve, 700));
    }
    await cell(a.id, 'pending').filter({ hasText: /^6$/ }).waitFor();
    expect(await page.locator('.uplot').count(), 'charts drawn').to.be.at.least(3);
    await page.screenshot({ path: path.join(SHOTS, 'console-overview.png'), fullPage: false });
  });

  it("pushes to a user from the user's page and shows the ack; the page lists the user's connection", async function () {
    const alice = await a.connect('alice', 'phone');
    clients.push(alice);
    await login(stack.adminKey);
    // Keyboard only: the nav and the lookup form.
    await page.locator('#app-picker').selectOption(a.id);
    await page.getByRole('link', { name: 'Users' }).click();
    await page.getByLabel('User id').fill('alice');
    await page.getByLabel('User id').press('Enter');
    await page.locator('#user-online').filter({ hasText: 'online' }).waitFor();
    await page.locator('#user-connections').getByRole('cell', { name: 'phone' }).waitFor();
    await page.getByLabel('Data (JSON, or text)').fill('{"hello":"alice"}');
    await page.getByRole('button', { name: 'Push test message' }).click();
    // The client gets it and acks it, as an app would.
    const [msg] = await alice.waitForMessages(1);
    expect(msg?.data).to.deep.equal({ hello: 'alice' });
    await page.locator(`[data-seq="${msg?.seq}"]`).waitFor();
    alice.ack([msg?.seq ?? 0]);
    await page.locator(`[data-acked="${msg?.seq}"]`).waitFor({ timeout: 10_000 });
    await page.locator('#user-pending').filter({ hasText: /^0$/ }).waitFor();
    // The delivered and acked events show among the recent events (deliveryEvents is on).
    await page.getByRole('cell', { name: 'acked', exact: true }).first().waitFor({ timeout: 10_000 });
    await page.screenshot({ path: path.join(SHOTS, 'console-user.png'), fullPage: false });
  });

  it('looks a user up by the id as typed (spaces are part of it), and says why it cannot show "."', async function () {
    const spaced = await a.connect('bob ', 'laptop');
    clients.push(spaced);
    await login(stack.adminKey);
    await page.goto(`${stack.httpUrl}/console/#/app/${a.id}/users`);
    await page.getByLabel('User id').fill('bob ');
    await page.getByLabel('User id').press('Enter');
    // "bob " is online; "bob" (what a trimmed lookup would show) has never connected.
    await page.locator('#user-online').filter({ hasText: 'online' }).waitFor();
    await page.locator('#user-connections').getByRole('cell', { name: 'laptop' }).waitFor();
    await page.getByLabel('User id').fill('.');
    await page.getByLabel('User id').press('Enter');
    await page.getByRole('alert').filter({ hasText: 'cannot name the user "."' }).waitFor();
  });

  it("publishes to a topic from the topic page and shows it, and the business's messages, in the live tail", async function () {
    await login(stack.adminKey);
    await page.goto(`${stack.httpUrl}/console/#/app/${a.id}/topics/news`);
    await page.locator('#topic-connections').waitFor();
    await page.getByText('Following from stream sequence').waitFor();
    await page.getByLabel('Data (JSON, or text)').fill('{"headline":"from the console"}');
    await page.getByRole('button', { name: 'Publish test message' }).click();
    await page.locator('#topic-tail li').filter({ hasText: '{"headline":"from the console"}' }).waitFor();
    const seq = await a.publishTopicOk('news', { headline: 'from the business' });
    await page.locator(`[data-topic-seq="${seq}"]`).filter({ hasText: 'from the business' }).waitFor();
    expect(await page.locator('#topic-tail li').first().getAttribute('data-topic-seq')).to.equal(String(seq));
  });

  it('edits a setting: a bad value gets its error beside the field, a good one is saved', async function () {
    await login(stack.adminKey);
    await page.goto(`${stack.httpUrl}/console/#/apps/${a.id}`);
    const field = page.locator('#setting-maxPendingPerUser');
    await field.fill('-5');
    await page.getByRole('button', { name: 'Save settings' }).click();
    const error = page.locator('#setting-maxPendingPerUser-error');
    await error.filter({ hasText: /\S/ }).waitFor();
    expect(await field.getAttribute('aria-invalid')).to.equal('true');
    expect(await error.textContent()).to.match(/bad_request|>=|minimum|greater/);
    const before = await stack.http<{ app: { settings: { maxPendingPerUser: number } } }>(
      'GET',
      `/v1/admin/apps/${a.id}`,
      stack.adminKey,
    );
    expect(before.body.app.settings.maxPendingPerUser, 'the bad value was not saved').to.not.equal(-5);

    await page.locator('#setting-maxPendingPerUser').fill('500');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.locator('#settings-saved').filter({ hasText: 'Saved' }).waitFor();
    expect(await page.locator('#setting-maxPendingPerUser').getAttribute('aria-invalid')).to.equal(null);
    const after = await stack.http<{ app: { settings: { maxPendingPerUser: number } } }>(
      'GET',
      `/v1/admin/apps/${a.id}`,
      stack.adminKey,
    );
    expect(after.body.app.settings.maxPendingPerUser).to.equal(500);
  });

  it('replays a dead letter from the webhooks page and the endpoint gets it', async function () {
    if (receiver === undefined || nc === undefined) throw new Error('not set up');
    await stack.http('PATCH', `/v1/admin/apps/${a.id}`, stack.adminKey, {
      settings: { webhookMaxAttempts: 1, webhookRetryBaseMs: 20, webhookRetryMaxMs: 50 },
    });
    const created = await stack.http<{ webhook: WebhookEndpoint }>('POST', `/v1/apps/${a.id}/webhooks`, a.apiKey, {
      url: receiver.url,
      events: ['expired'],
    });
    expect(created.status).to.equal(201);
    receiver.secrets = created.body.webhook.secrets.map((s) => s.secret);
    receiver.mode = { kind: 'fail', status: 503 };
    const id = `evt_${randomBytes(9).toString('base64url')}`;
    const h = headers();
    h.set('Nats-Msg-Id', id);
    const subjects = new Subjects(stack.prefix);
    await jetstream(nc).publish(
      subjects.event(a.id, 'expired'),
      JSON.stringify({ id, type: 'expired', time: Date.now(), app: a.id, user: 'u', seq: 1 }),
      { headers: h },
    );
    const letters = `/v1/apps/${a.id}/webhooks/${created.body.webhook.id}/dead-letters`;
    const deadline = Date.now() + 20_000;
    while ((await stack.http<{ deadLetters: unknown[] }>('GET', letters, a.apiKey)).body.deadLetters.length === 0) {
      if (Date.now() > deadline) throw new Error('no dead letter');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    receiver.mode = { kind: 'ok' };

    await login(stack.adminKey);
    await page.goto(`${stack.httpUrl}/console/#/app/${a.id}/webhooks`);
    const card = page.locator(`[data-webhook="${created.body.webhook.id}"]`);
    await card.locator('[data-col="dead-letters"]').filter({ hasText: /^1$/ }).waitFor();
    await card.getByRole('button', { name: /^Replay dead letters/ }).click();
    await page.locator('#webhook-status').filter({ hasText: 'Replayed 1 dead letter' }).waitFor();
    await receiver.waitFor([id], 15_000);
    await card.locator('[data-col="dead-letters"]').filter({ hasText: /^0$/ }).waitFor();
  });

  it('creates an app (its API key shown once) and deletes it only after its id is typed', async function () {
    const id = `temp-${randomBytes(3).toString('hex')}`;
    await login(stack.adminKey);
    await page.getByRole('link', { name: 'Apps' }).click();
    await page.getByLabel('Id').fill(id);
    await page.getByRole('button', { name: 'Create app' }).click();
    const key = (await page.locator('[data-secret="API key"]').textContent()) ?? '';
    expect(key).to.match(/^pk_/);
    // The key shown pushes to the new app.
    const pushed = await stack.http('POST', `/v1/apps/${id}/push`, key, { user: 'u', data: 1 });
    expect(pushed.status).to.equal(200);
    await page.getByRole('table').getByRole('link', { name: id, exact: true }).click();
    await page.getByLabel(/^Type .* to delete/).fill('wrong');
    await page.getByRole('button', { name: 'Delete app' }).click();
    await page.getByRole('alert').filter({ hasText: 'nothing was deleted' }).waitFor();
    expect((await stack.http('GET', `/v1/admin/apps/${id}`, stack.adminKey)).status).to.equal(200);
    await page.getByLabel(/^Type .* to delete/).fill(id);
    await page.getByRole('button', { name: 'Delete app' }).click();
    await page.getByRole('heading', { name: 'Apps', exact: true }).waitFor();
    expect((await stack.http('GET', `/v1/admin/apps/${id}`, stack.adminKey)).status).to.equal(404);
  });

  it('shows a fan-out job with its state and cancels it', async function () {
    const created = await stack.http<{ job: { id: string } }>('POST', `/v1/apps/${a.id}/jobs`, a.apiKey, {
      data: { promo: 1 },
      open: true,
    });
    expect(created.status).to.equal(201);
    const job = created.body.job.id;
    await login(stack.adminKey);
    await page.goto(`${stack.httpUrl}/console/#/app/${a.id}/jobs`);
    const row = page.locator(`[data-job="${job}"]`);
    await row.getByRole('cell', { name: 'open', exact: true }).waitFor();
    await row.getByRole('button', { name: `Cancel ${job}` }).click();
    await row.getByRole('cell', { name: 'cancelled', exact: true }).waitFor();
    const after = await stack.http<{ job: { state: string } }>('GET', `/v1/apps/${a.id}/jobs/${job}`, a.apiKey);
    expect(after.body.job.state).to.equal('cancelled');
  });

  it('follows the system theme: dark when the browser prefers dark, light otherwise', async function () {
    await page.emulateMedia({ colorScheme: 'light' });
    await login(stack.adminKey);
    const background = () => page.evaluate('getComputedStyle(document.body).backgroundColor');
    expect(await background()).to.equal('rgb(255, 255, 255)');
    await page.emulateMedia({ colorScheme: 'dark' });
    expect(await background()).to.equal('rgb(13, 17, 23)');
  });

  it("with app B's API key shows app B only: nothing of app A on the overview, no apps admin", async function () {
    clients.push(await a.connect('alice', 'phone'));
    clients.push(await b.connect('bob', 'laptop'));
    await login(b.apiKey, b.id);
    await cell(b.id, 'connections').filter({ hasText: /^1$/ }).waitFor({ timeout: 10_000 });
    expect(await cell(a.id, 'connections').count()).to.equal(0);
    expect(await page.locator('main').textContent()).to.not.contain(a.id);
    expect(await page.getByRole('link', { name: 'Apps' }).count(), 'no apps admin').to.equal(0);
    // A's user page, asked for by URL, answers wrong_app and shows nothing of A's user.
    await page.goto(`${stack.httpUrl}/console/#/app/${a.id}/users/alice`);
    await page.getByRole('heading', { name: new RegExp(`User alice of ${b.id}`) }).waitFor();
  });
});
