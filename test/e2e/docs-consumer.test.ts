import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { expect } from 'chai';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { headers } from '@nats-io/nats-core';
import { createLogger } from '@push/logger';
import { connectNats, type NatsConnection } from '@push/nats';
import { Subjects } from '@push/protocol';
import { NATS_URL } from '../helpers/nats-server.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

type ConsumeEvents = (opts: {
  servers: string;
  prefix: string;
  app: string;
  durable: string;
  types?: string[];
  onEvent: (e: { id: string; type: string }) => Promise<void> | void;
}) => Promise<{ close(): Promise<void> }>;

/**
 * The consumer of docs/api.md "Straight from NATS", taken from the page as written. It is written
 * under the repository (.data/) so that its imports resolve to the repository's node_modules.
 */
async function loadDocsConsumer(): Promise<{ consumeEvents: ConsumeEvents; cleanup: () => void }> {
  const page = readFileSync(path.join(ROOT, 'docs/api.md'), 'utf8');
  const block = /```js\n(\/\/ push-consumer\.mjs[\s\S]*?)```/.exec(page)?.[1];
  if (block === undefined) throw new Error('docs/api.md has no push-consumer.mjs block');
  const dir = path.join(ROOT, '.data', `docs-consumer-${randomBytes(4).toString('hex')}`);
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'push-consumer.mjs');
  writeFileSync(file, block);
  const mod = (await import(pathToFileURL(file).href)) as { consumeEvents: ConsumeEvents };
  return { consumeEvents: mod.consumeEvents, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

describe('the NATS consumer example in docs/api.md (a business reading events without webhooks)', function () {
  this.timeout(20_000);
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const subjects = new Subjects(prefix);
  const app = 'docsapp';
  let nc: NatsConnection;

  before(async function () {
    nc = await connectNats({
      servers: NATS_URL,
      name: 'docs-consumer',
      logger: createLogger({ level: 'silent', name: 't' }),
    });
    // The app's events stream as the contract configures it (created by the app's provisioning).
    await (
      await jetstreamManager(nc)
    ).streams.add({
      name: subjects.eventsStream(app),
      subjects: [subjects.eventsOfApp(app)],
      retention: 'limits',
      storage: 'file',
      max_age: 7 * 24 * 3600 * 1e9,
      duplicate_window: 120 * 1e9,
    });
  });
  after(async function () {
    await (await jetstreamManager(nc)).streams.delete(subjects.eventsStream(app)).catch(() => undefined);
    await nc.close();
  });

  it('gets each event of the types it asked for, once, and acks them', async function () {
    const docs = await loadDocsConsumer();
    const got: Array<{ id: string; type: string }> = [];
    const c = await docs.consumeEvents({
      servers: NATS_URL,
      prefix,
      app,
      durable: 'billing',
      types: ['user_online', 'user_offline'],
      onEvent: (e) => {
        got.push(e);
      },
    });
    try {
      const js = jetstream(nc);
      const want: string[] = [];
      for (const type of ['user_online', 'conn_open', 'user_offline']) {
        const id = `evt_${randomBytes(6).toString('hex')}`;
        const h = headers();
        h.set('Nats-Msg-Id', id);
        await js.publish(
          subjects.event(app, type),
          JSON.stringify({ id, type, time: Date.now(), app, user: 'alice' }),
          {
            headers: h,
          },
        );
        if (type !== 'conn_open') want.push(id);
      }
      const deadline = Date.now() + 5000;
      while (got.length < want.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 200));
      expect(got.map((e) => e.id)).to.deep.equal(want);
      const info = await (await jetstreamManager(nc)).consumers.info(subjects.eventsStream(app), 'billing');
      expect(info.num_ack_pending).to.equal(0);
      expect(info.num_pending).to.equal(0);
    } finally {
      await c.close();
      docs.cleanup();
    }
  });
});
