/**
 * Webhook delivery by the coordinator (issue 10), to a local receiver in this process:
 *
 *   (a) throughput: N events already stored in the app's PUSH_EVENTS stream, then the endpoint
 *       is enabled; events delivered (acknowledged by the receiver's 2xx) per second, batched
 *       (PUSH_WEBHOOK_BATCH_MAX), with the coordinator's and nats-server's CPU per event;
 *   (b) lag: a steady RATE events/s for SECONDS s; lag = the receiver's clock at arrival minus
 *       the event's `time` (set when published), p50/p99.
 *
 * The center and one coordinator run as child processes; events are published here in the
 * contract's format (the edge and center will publish them the same way).
 *
 *   npx tsx bench/webhooks.ts [--smoke]
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { headers } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { Subjects } from '@push/protocol';
import { runIfMain } from './lib/main.js';
import { CpuMeter, natsServerPid, onCleanup, sleep, spawnNode, waitHttpOk, freePort } from './lib/procs.js';
import { note, type BenchResult } from './lib/results.js';
import { env, type RunOptions } from './lib/scenario.js';
import { BenchStack, NATS_URL } from './lib/stack.js';
import { percentileSorted, round } from './lib/stats.js';

const TARGET_RATE = 10_000;
const TARGET_LAG_P99_MS = 100;

/** A receiver that counts items and records each one's lag; answers 204 to everything. */
class Receiver {
  count = 0;
  requests = 0;
  lags: number[] = [];
  recordLag = false;
  private readonly server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const now = Date.now();
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { items: Array<{ time: number }> };
      this.requests++;
      this.count += body.items.length;
      if (this.recordLag) for (const i of body.items) this.lags.push(now - i.time);
      res.writeHead(204).end();
    });
  });

  async start(): Promise<string> {
    this.server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hook`;
  }

  async waitCount(n: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.count < n) {
      if (Date.now() > deadline) throw new Error(`receiver got ${this.count} of ${n} events in ${timeoutMs} ms`);
      await sleep(5);
    }
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

export async function runWebhooks(o: RunOptions): Promise<BenchResult> {
  const total = o.smoke ? 2000 : env('BENCH_WEBHOOK_EVENTS', 100_000);
  const rate = o.smoke ? 200 : env('BENCH_WEBHOOK_RATE', 2000);
  const seconds = o.smoke ? 2 : env('BENCH_WEBHOOK_SECONDS', 15);
  const stack = new BenchStack();
  const receiver = new Receiver();
  const url = await receiver.start();
  onCleanup('webhook receiver', () => receiver.close());
  await stack.startCenter();
  const app = await stack.createApp();
  const subjects = new Subjects(stack.prefix);
  const nc = await connect({ servers: NATS_URL });
  onCleanup('bench nats', async () => {
    const jsm = await jetstreamManager(nc);
    for (const s of [
      subjects.eventsStream(app.record.id),
      subjects.dlqStream(app.record.id),
      `KV_${stack.prefix}_webhooks`,
    ])
      await jsm.streams.delete(s).catch(() => undefined);
    await nc.close();
  });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({
    name: subjects.eventsStream(app.record.id),
    subjects: [subjects.eventsOfApp(app.record.id)],
    retention: 'limits',
    storage: 'file',
    max_age: 7 * 24 * 3600 * 1e9,
    duplicate_window: 120 * 1e9,
  });
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${stack.centerUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${app.apiKey}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = (await res.json()) as Record<string, unknown>;
    if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  };
  const created = (await api('POST', `/v1/apps/${app.record.id}/webhooks`, {
    url,
    events: ['*'],
    disabled: true,
  })) as { webhook: { id: string } };
  const ep = created.webhook.id;

  const js = jetstream(nc);
  const publish = (n: number) => {
    const ps: Array<Promise<unknown>> = [];
    for (let i = 0; i < n; i++) {
      const id = `evt_${randomBytes(9).toString('base64url')}`;
      const h = headers();
      h.set('Nats-Msg-Id', id);
      const evt = { id, type: 'delivered', time: Date.now(), app: app.record.id, user: `u${i % 1000}`, seq: i + 1 };
      ps.push(js.publish(subjects.event(app.record.id, 'delivered'), JSON.stringify(evt), { headers: h }));
    }
    return Promise.all(ps);
  };

  // (a) throughput: a stored backlog, then the endpoint enabled.
  note(`storing ${total} events`);
  for (let done = 0; done < total; done += 5000) await publish(Math.min(5000, total - done));
  const coordPort = await freePort();
  const coordinator = spawnNode('coordinator', 'apps/coordinator/dist/main.js', {
    env: {
      PUSH_PREFIX: stack.prefix,
      PUSH_NATS_URL: NATS_URL,
      PUSH_COORDINATOR_HOST: '127.0.0.1',
      PUSH_COORDINATOR_PORT: String(coordPort),
      PUSH_LOG_LEVEL: 'warn',
    },
  });
  await waitHttpOk(`http://127.0.0.1:${coordPort}/readyz`, coordinator);
  const meter = new CpuMeter({
    coordinator: coordinator.proc.pid,
    nats: natsServerPid(Number(new URL(NATS_URL).port || 4222)),
  });
  meter.start();
  const t0 = performance.now();
  await api('PATCH', `/v1/apps/${app.record.id}/webhooks/${ep}`, { disabled: false });
  await receiver.waitCount(total, 300_000);
  const elapsed = (performance.now() - t0) / 1000;
  const cores = meter.stop();
  const perSecond = Math.round(total / elapsed);
  const usPerEvent = (c: number | undefined) => round(((c ?? Number.NaN) * elapsed * 1e6) / total, 1);
  note(`delivered ${total} in ${elapsed.toFixed(2)} s (${receiver.requests} POSTs)`);

  // (b) lag at a steady rate.
  receiver.recordLag = true;
  const start = receiver.count;
  const tickMs = 10;
  const sent = Math.round(rate * seconds);
  let published = 0;
  const tStart = performance.now();
  while (published < sent) {
    const due = Math.min(sent, Math.round(((performance.now() - tStart) / 1000) * rate));
    if (due > published) {
      const n = due - published;
      published = due;
      void publish(n);
    }
    await sleep(tickMs);
  }
  await receiver.waitCount(start + sent, 60_000);
  const lags = Float64Array.from(receiver.lags).sort();
  const p50 = round(percentileSorted(lags, 50), 1);
  const p99 = round(percentileSorted(lags, 99), 1);
  await coordinator.stop();

  const figures = {
    events: total,
    seconds: round(elapsed, 2),
    eventsPerSecond: perSecond,
    posts: receiver.requests,
    cores,
    cpuPerEventUs: { coordinator: usPerEvent(cores['coordinator']), nats: usPerEvent(cores['nats']) },
    steady: { rate, seconds, events: sent, lagMs: { p50, p99, max: lags[lags.length - 1] ?? 0 } },
  };
  return {
    name: 'webhooks',
    figures,
    summary: [
      {
        bench: 'webhooks',
        figure: `events delivered/s to a local receiver (batched, ${total} stored)`,
        value: `${perSecond.toLocaleString('en-US')} events/s`,
        target: `>= ${TARGET_RATE.toLocaleString('en-US')}`,
        met: perSecond >= TARGET_RATE ? 'yes' : 'no',
      },
      {
        bench: 'webhooks',
        figure: 'CPU per event: coordinator / nats-server',
        value: `${figures.cpuPerEventUs.coordinator} / ${figures.cpuPerEventUs.nats} us`,
      },
      {
        bench: 'webhooks',
        figure: `event lag at ${rate.toLocaleString('en-US')} events/s: p50 / p99`,
        value: `${p50} / ${p99} ms`,
        target: `p99 < ${TARGET_LAG_P99_MS} ms`,
        met: p99 < TARGET_LAG_P99_MS ? 'yes' : 'no',
      },
    ],
  };
}

runIfMain(import.meta.url, () => runWebhooks({ smoke: process.argv.includes('--smoke') }));
