import { expect } from 'chai';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createLogger } from '@push/logger';
import { EventPublisher, LiveSubscriber, upstreamAndEventStreamConfigs, type EventOutcome } from '@push/nats';
import { emitSweptEvents } from '@push/presence';
import { DEFAULT_APP_SETTINGS, Subjects } from '@push/protocol';
import { reportCleanupFailure } from '../helpers/cleanup.js';
import { NATS_URL } from '../helpers/nats-server.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

const log = createLogger({ level: 'silent', name: 'test' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Issue 16: the edge publishes its events on the lean live connection (EventPublisher `live`)
 * instead of through nats.js. Same contract: each event stored once, acked, retried with its id
 * when its connection is cut, and a failure counted, never thrown.
 */
describe("events published on the live connection, and a sweep's many (real NATS)", function () {
  this.timeout(30_000);
  let nc: NatsConnection;
  const subjects = new Subjects(`evlive${process.pid}`);
  const opts = { maxPerUser: 100, maxAgeSeconds: 3600, duplicateWindowSeconds: 120, replicas: 1 };

  before(async function () {
    nc = await connect({ servers: NATS_URL });
    const jsm = await jetstreamManager(nc);
    const [, events] = upstreamAndEventStreamConfigs(subjects, { id: 'shop', settings: DEFAULT_APP_SETTINGS }, opts);
    await jsm.streams.add(events as Parameters<typeof jsm.streams.add>[0]);
  });
  after(async function () {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(subjects.eventsStream('shop')).catch(() => undefined);
    await nc.close().catch(reportCleanupFailure('close NATS'));
  });

  async function stored(): Promise<Array<{ id: string; type: string; user: string }>> {
    const jsm = await jetstreamManager(nc);
    const { first_seq: first, last_seq: last } = (await jsm.streams.info(subjects.eventsStream('shop'))).state;
    const out = [];
    for (let seq = first; seq <= last && last > 0; seq++) {
      const m = await jsm.streams.getMessage(subjects.eventsStream('shop'), { seq }).catch(() => null);
      if (m) out.push(m.json<{ id: string; type: string; user: string }>());
    }
    return out;
  }

  async function purge(): Promise<void> {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.purge(subjects.eventsStream('shop'));
  }

  function recorder() {
    const outcomes: EventOutcome[] = [];
    return {
      outcomes,
      onOutcome: (_type: string, outcome: EventOutcome) => outcomes.push(outcome),
      settled: async (n: number, ms: number) => {
        const until = Date.now() + ms;
        while (outcomes.length < n && Date.now() < until) await sleep(20);
      },
    };
  }

  it('stores every event once, with its id and fields, and reports each stored', async function () {
    await purge();
    const live = await LiveSubscriber.connect({ servers: NATS_URL, name: 't', logger: log });
    const rec = recorder();
    const events = new EventPublisher(nc, subjects, { live, onOutcome: rec.onOutcome });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 300; i++) {
        const fields = { app: 'shop', user: `ü${i}`, device: 'd', conn: `c${i}`, edge: 'e1' };
        ids.push(i % 2 === 0 ? events.emit('conn_open', fields) : events.emit('user_online', fields));
      }
      expect(await events.idle(10_000)).to.equal(true);
      await rec.settled(300, 1000);
      expect(rec.outcomes.filter((o) => o === 'stored')).to.have.length(300);
      const got = await stored();
      expect(got.map((e) => e.id).sort()).to.deep.equal([...ids].sort());
      expect(got.find((e) => e.id === ids[7])).to.include({ type: 'user_online', user: 'ü7' });
    } finally {
      events.close();
      live.close();
    }
  });

  it('stores each event once when the live connection is cut with events in flight', async function () {
    await purge();
    const u = new URL(NATS_URL);
    const proxy = new TcpProxy(u.hostname, Number(u.port));
    await proxy.start();
    const live = await LiveSubscriber.connect({ servers: proxy.url, name: 't', logger: log });
    const rec = recorder();
    const events = new EventPublisher(nc, subjects, { live, onOutcome: rec.onOutcome, attempts: 10 });
    try {
      const ids = new Set<string>();
      for (let round = 0; round < 5; round++) {
        for (let i = 0; i < 200; i++) {
          ids.add(
            events.emit('conn_close', {
              app: 'shop',
              user: `u${i}`,
              device: 'd',
              conn: `c${round}-${i}`,
              edge: 'e1',
              code: 1000,
              reason: 'client',
            }),
          );
        }
        await sleep(round % 2 === 0 ? 0 : 2);
        proxy.dropAll(); // with the round's events written, in flight or not yet acked
        await sleep(150);
      }
      await rec.settled(1000, 20_000);
      expect(rec.outcomes.filter((o) => o === 'stored')).to.have.length(1000);
      const got = await stored();
      expect(got).to.have.length(1000); // none twice: the retries carried each event's id
      expect(new Set(got.map((e) => e.id))).to.deep.equal(ids);
    } finally {
      events.close();
      live.close();
      await proxy.stop();
    }
  });

  it('stores every event of a sweep far larger than the queue: the sweep waits for room', async function () {
    await purge();
    const rec = recorder();
    // As the center publishes (nats.js), with a queue of 500 for a sweep of 3,000 connections.
    const events = new EventPublisher(nc, subjects, { maxQueued: 500, maxInFlight: 100, onOutcome: rec.onOutcome });
    try {
      const entries = Array.from({ length: 3000 }, (_, i) => ({
        app: 'shop',
        user: `u${i}`,
        device: 'd',
        conn: `dead-${i}`,
        edge: 'dead',
        since: 0,
        last: true,
      }));
      await emitSweptEvents(events, entries);
      await rec.settled(6000, 20_000);
      expect(rec.outcomes.filter((o) => o !== 'stored')).to.deep.equal([]);
      expect(rec.outcomes).to.have.length(6000);
      const got = await stored();
      expect(got.filter((e) => e.type === 'user_offline')).to.have.length(3000);
      expect(got.filter((e) => e.type === 'conn_close')).to.have.length(3000);
    } finally {
      events.close();
    }
  });

  it('reports an event failed at once when no stream takes it, without waiting out a deadline', async function () {
    const live = await LiveSubscriber.connect({ servers: NATS_URL, name: 't', logger: log });
    const rec = recorder();
    const events = new EventPublisher(nc, subjects, { live, onOutcome: rec.onOutcome, attempts: 1, timeoutMs: 10_000 });
    try {
      const started = Date.now();
      events.emit('conn_open', { app: 'nostream', user: 'u', device: 'd', conn: 'c', edge: 'e1' });
      await rec.settled(1, 10_000);
      expect(rec.outcomes).to.deep.equal(['failed']);
      expect(Date.now() - started).to.be.below(5000);
    } finally {
      events.close();
      live.close();
    }
  });
});
