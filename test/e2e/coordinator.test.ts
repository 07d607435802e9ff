import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { loadConfig } from '@push/config';
import { createCoordinator, type Coordinator } from '@push/coordinator';
import { NATS_URL } from '../helpers/nats-server.js';

describe('coordinator HTTP', function () {
  let c: Coordinator;
  // Its own prefix: the buckets it makes (apps, webhooks, handbacks) are removed after.
  const prefix = `t${randomBytes(4).toString('hex')}`;

  before(async function () {
    c = createCoordinator(
      loadConfig({
        PUSH_COORDINATOR_HOST: '127.0.0.1',
        PUSH_COORDINATOR_PORT: '0',
        PUSH_LOG_LEVEL: 'silent',
        PUSH_PREFIX: prefix,
        PUSH_NATS_URL: NATS_URL,
      }),
    );
    await c.start();
  });
  after(async function () {
    await c?.stop();
    const nc = await connect({ servers: NATS_URL });
    try {
      const jsm = await jetstreamManager(nc);
      const mine: string[] = [];
      for await (const name of jsm.streams.names()) if (name.startsWith(`KV_${prefix}_`)) mine.push(name);
      for (const name of mine) await jsm.streams.delete(name);
    } finally {
      await nc.close();
    }
  });

  it('answers unknown paths with 404 not_found JSON, like the other apps (issue 7)', async function () {
    const r = await fetch(`http://127.0.0.1:${c.port}/nope`);
    expect(r.status).to.equal(404);
    expect(((await r.json()) as { error: { code: string } }).error.code).to.equal('not_found');
    expect((await fetch(`http://127.0.0.1:${c.port}/healthz`)).status).to.equal(200);
  });
});
