import { expect } from 'chai';
import { loadConfig } from '@push/config';
import { createCoordinator, type Coordinator } from '@push/coordinator';

describe('coordinator HTTP', function () {
  let c: Coordinator;

  before(async function () {
    c = createCoordinator(
      loadConfig({
        PUSH_COORDINATOR_HOST: '127.0.0.1',
        PUSH_COORDINATOR_PORT: '0',
        PUSH_LOG_LEVEL: 'silent',
        ...(process.env['PUSH_NATS_URL'] !== undefined ? { PUSH_NATS_URL: process.env['PUSH_NATS_URL'] } : {}),
      }),
    );
    await c.start();
  });
  after(async function () {
    await c?.stop();
  });

  it('answers unknown paths with 404 not_found JSON, like the other apps (issue 7)', async function () {
    const r = await fetch(`http://127.0.0.1:${c.port}/nope`);
    expect(r.status).to.equal(404);
    expect(((await r.json()) as { error: { code: string } }).error.code).to.equal('not_found');
    expect((await fetch(`http://127.0.0.1:${c.port}/healthz`)).status).to.equal(200);
  });
});
