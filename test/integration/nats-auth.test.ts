import { expect } from 'chai';
import { dropDatabase } from '@push/db';
import { reportCleanupFailure } from '../helpers/cleanup.js';
import { Stack } from '../helpers/stack.js';
import { PrivateNatsServer } from '../helpers/nats-server.js';

describe('NATS with user and password', function () {
  const server = new PrivateNatsServer(['--user', 'pushsvc', '--pass', 's3cret-pass']);
  let stack: Stack | undefined;

  before(async function () {
    await server.start();
  });
  after(async function () {
    await stack?.close().catch(reportCleanupFailure('stack close'));
    await server.stop();
  });

  it('refuses to start without the credentials the server requires', async function () {
    const s = new Stack({ PUSH_NATS_URL: server.url });
    const { createCenter } = await import('@push/center');
    const center = createCenter(s.config());
    let failed: unknown;
    await center.start().catch((err: unknown) => (failed = err));
    await center.stop();
    await dropDatabase(s.databaseUrl);
    expect(String(failed)).to.match(/auth|authorization/i);
  });

  it('runs the system with PUSH_NATS_USER and PUSH_NATS_PASSWORD, and seeds given as a comma-separated list', async function () {
    stack = await Stack.start({
      PUSH_NATS_URL: `nats://127.0.0.1:1, ${server.url}`,
      PUSH_NATS_USER: 'pushsvc',
      PUSH_NATS_PASSWORD: 's3cret-pass',
    });
    const app = await stack.createApp();
    const c = await app.connect('alice');
    const seq = await app.pushOk('alice', 'through an authenticated NATS');
    const [m] = await c.waitForMessages(1);
    expect(m?.seq).to.equal(seq);
    c.terminate();
  });
});
