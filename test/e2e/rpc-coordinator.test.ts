import { expect } from 'chai';
import { createCoordinator, type Coordinator } from '@push/coordinator';
import { createLogger } from '@push/logger';
import type { NatsConnection } from '@push/nats';
import { Subjects } from '@push/protocol';
import { Stack } from '../helpers/stack.js';
import { WebhookReceiver } from '../helpers/webhook-receiver.js';

/** The app secret as a Standard Webhooks secret: what a business verifies RPC requests with (docs/api.md). */
const rpcSecret = (appSecret: string) => `whsec_${Buffer.from(appSecret, 'base64url').toString('base64')}`;

describe('RPC forwarding (issue 10): the coordinator calls the app and answers the client', function () {
  this.timeout(30_000);
  let stack: Stack;
  let subjects: Subjects;
  let nc: NatsConnection;
  let coordinator: Coordinator;
  let receiver: WebhookReceiver;

  before(async function () {
    stack = await Stack.start();
    subjects = new Subjects(stack.prefix);
    const cfg = stack.config();
    nc = await stack.connectNats('rpc-test');
    coordinator = createCoordinator(cfg, { logger: createLogger({ level: cfg.log.level, name: 'coordinator' }) });
    await coordinator.start();
    receiver = await WebhookReceiver.start();
  });

  after(async function () {
    await coordinator?.stop();
    await receiver?.close();
    await nc?.close();
    await stack?.close();
  });

  /** The request the edge sends for a client's `rpc` frame (contract-10). */
  const request = (app: string, id: string, data: unknown) =>
    JSON.stringify({ id, app, user: 'alice', device: 'phone', conn: 'conn1', method: 'echo', data });

  /** Sends the request and waits until the coordinator subscribed the app (it follows the apps KV). */
  async function call(app: string, id: string, data: unknown, timeout = 2000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + 5000;
    for (;;) {
      try {
        const m = await nc.request(subjects.rpc(app), request(app, id, data), { timeout });
        return JSON.parse(new TextDecoder().decode(m.data)) as Record<string, unknown>;
      } catch (err) {
        if (!/no responders/i.test(String(err)) || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  it("forwards to the app's rpcUrl, signed with the app secret, and returns its answer", async function () {
    const app = await stack.createApp({ rpcUrl: receiver.url, rpcTimeoutMs: 2000 });
    receiver.secrets = [rpcSecret(app.record.secrets[0]?.secret ?? '')];
    receiver.rpcAnswer = (req) => ({ data: { echoed: req['data'], method: req['method'], user: req['user'] } });
    const reply = await call(app.id, 'r1', { x: 1 });
    expect(reply).to.deep.equal({ data: { echoed: { x: 1 }, method: 'echo', user: 'alice' } });
    expect(receiver.badSignatures).to.equal(0);
  });

  it('answers rpc_timeout when the endpoint does not answer within rpcTimeoutMs', async function () {
    const slow = await WebhookReceiver.start();
    try {
      const app = await stack.createApp({ rpcUrl: slow.url, rpcTimeoutMs: 300 });
      slow.secrets = [rpcSecret(app.record.secrets[0]?.secret ?? '')];
      slow.mode = { kind: 'hang' };
      const t0 = Date.now();
      const reply = await call(app.id, 'r2', null, 2000);
      expect((reply['error'] as { code: string }).code).to.equal('rpc_timeout');
      expect(Date.now() - t0).to.be.below(1500);
    } finally {
      await slow.close();
    }
  });

  it('passes an error answer through and maps a non-2xx to rpc_failed', async function () {
    const app = await stack.createApp({ rpcUrl: receiver.url });
    receiver.secrets = [rpcSecret(app.record.secrets[0]?.secret ?? '')];
    receiver.rpcAnswer = () => ({ error: { code: 'not_allowed', message: 'no echo for you' } });
    expect(await call(app.id, 'r3', 1)).to.deep.equal({ error: { code: 'not_allowed', message: 'no echo for you' } });
    receiver.rpcAnswer = undefined;
    receiver.mode = { kind: 'fail', status: 500 };
    const failed = await call(app.id, 'r4', 1);
    expect((failed['error'] as { code: string }).code).to.equal('rpc_failed');
    receiver.mode = { kind: 'ok' };
  });

  it('reads a 2xx answer as a business service over NATS would: error null is a success, JSON not an object is rpc_failed', async function () {
    const app = await stack.createApp({ rpcUrl: receiver.url });
    receiver.secrets = [rpcSecret(app.record.secrets[0]?.secret ?? '')];
    receiver.rpcAnswer = () => ({ data: { name: 'Bob' }, error: null });
    expect(await call(app.id, 'n1', 1)).to.deep.equal({ data: { name: 'Bob' } });
    receiver.rpcAnswer = () => [1, 2];
    const notObject = await call(app.id, 'n2', 1);
    expect((notObject['error'] as { code: string }).code).to.equal('rpc_failed');
    receiver.rpcAnswer = undefined;
  });

  it('an app without rpcUrl has no responder (the edge answers rpc_unavailable), and a business service may answer instead', async function () {
    const app = await stack.createApp();
    await new Promise((r) => setTimeout(r, 200)); // the coordinator has heard of the app
    let err: unknown;
    try {
      await nc.request(subjects.rpc(app.id), request(app.id, 'r5', 1), { timeout: 1000 });
    } catch (e) {
      err = e;
    }
    expect(String(err)).to.match(/no responders/i);
    // A business service in the queue group answers the subject directly.
    const sub = nc.subscribe(subjects.rpc(app.id), {
      queue: subjects.rpcQueue,
      callback: (_e, m) => {
        m.respond(JSON.stringify({ data: 'from a service' }));
      },
    });
    try {
      const m = await nc.request(subjects.rpc(app.id), request(app.id, 'r6', 1), { timeout: 1000 });
      expect(JSON.parse(new TextDecoder().decode(m.data))).to.deep.equal({ data: 'from a service' });
    } finally {
      sub.unsubscribe();
    }
  });
});
