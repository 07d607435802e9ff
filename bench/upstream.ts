/**
 * Upstream: `up` frames stored per second from many clients. N clients (1,000) on one edge
 * process each keep W `up` frames awaiting their `upsent` (the edge answers only once JetStream
 * stored the frame in the app's upstream stream), for D seconds. Measured: `upsent` answers per
 * second (= frames stored), their latency, the edge's and nats-server's CPU, and that the stream
 * holds exactly as many messages as were answered. Goal (issue 10): >= 20,000 frames/s.
 *
 *   npx tsx bench/upstream.ts            # BENCH_UP_CLIENTS, _WINDOW, _SECONDS
 */
import WebSocket from 'ws';
import { signClientToken } from '@push/apps';
import { Subjects } from '@push/protocol';
import { monoMs } from './lib/hist.js';
import { runIfMain } from './lib/main.js';
import { CpuMeter, natsServerPid, sleep } from './lib/procs.js';
import { note, type BenchResult, type SummaryRow } from './lib/results.js';
import { env, type RunOptions } from './lib/scenario.js';
import { BenchStack, NATS_URL, streamMessages } from './lib/stack.js';

const GOAL = 20_000;

/** One client: keeps `window` up frames in flight while `running()`. */
async function client(
  url: string,
  token: string,
  window: number,
  running: () => boolean,
  latencies: number[],
): Promise<{ stored: number; errors: number }> {
  const ws = new WebSocket(`${url}?token=${encodeURIComponent(token)}`);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  let next = 0;
  let stored = 0;
  let errors = 0;
  let inFlight = 0;
  const sentAt = new Map<string, number>();
  const body = JSON.stringify({ text: 'x'.repeat(100) });
  const send = (): void => {
    const id = `u${next++}`;
    sentAt.set(id, monoMs());
    inFlight++;
    ws.send(`{"t":"up","id":"${id}","kind":"bench","data":${body}}`);
  };
  return new Promise((resolve) => {
    ws.on('message', (raw: Buffer) => {
      const f = JSON.parse(raw.toString()) as { t: string; id?: string };
      if (f.t !== 'upsent' && f.t !== 'error') return;
      inFlight--;
      if (f.t === 'upsent') stored++;
      else errors++;
      const t = f.id === undefined ? undefined : sentAt.get(f.id);
      if (t !== undefined && latencies.length < 200_000) latencies.push(monoMs() - t);
      if (f.id !== undefined) sentAt.delete(f.id);
      if (running()) send();
      else if (inFlight === 0) {
        ws.close();
        resolve({ stored, errors });
      }
    });
    for (let i = 0; i < window; i++) send();
  });
}

const pct = (sorted: number[], p: number): number =>
  sorted.length === 0 ? 0 : (sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] as number);

export async function runUpstream(opts: RunOptions = { smoke: false }): Promise<BenchResult> {
  const smoke = opts.smoke;
  const clients = smoke ? 50 : env('BENCH_UP_CLIENTS', 1000);
  const window = env('BENCH_UP_WINDOW', 8);
  const seconds = smoke ? 2 : env('BENCH_UP_SECONDS', 10);
  const stack = new BenchStack();
  try {
    await stack.startCenter();
    await stack.startEdge();
    const app = await stack.createApp({ upstream: true, upRatePerConnection: 0 });
    await sleep(500); // the edge hears of the app through the KV watch
    const secret = app.record.secrets[0];
    if (secret === undefined) throw new Error('app without secret');
    const tokens = await Promise.all(
      Array.from({ length: clients }, (_, i) =>
        signClientToken(secret, { app: app.record.id, user: `up${i}`, ttlSeconds: 3600 }),
      ),
    );
    const edge = stack.edges[0];
    const meter = new CpuMeter({ edge: edge?.child.pid, nats: natsServerPid(Number(new URL(NATS_URL).port || 4222)) });
    let running = true;
    const latencies: number[] = [];
    meter.start();
    const t0 = monoMs();
    const runs = tokens.map((token) => client(stack.edgeUrl(), token, window, () => running, latencies));
    await sleep(seconds * 1000);
    running = false;
    const elapsed = (monoMs() - t0) / 1000;
    const cpu = meter.stop();
    const results = await Promise.all(runs);
    const stored = results.reduce((s, r) => s + r.stored, 0);
    const errors = results.reduce((s, r) => s + r.errors, 0);
    const inStream = await streamMessages(new Subjects(stack.prefix).upstreamStream(app.record.id));
    if (inStream !== stored) throw new Error(`the stream holds ${inStream} messages, ${stored} were answered upsent`);
    const rate = Math.round(stored / elapsed);
    latencies.sort((a, b) => a - b);
    const lat = { p50: Math.round(pct(latencies, 0.5)), p99: Math.round(pct(latencies, 0.99)) };
    note(
      `${stored} up frames stored in ${elapsed.toFixed(1)} s: ${rate}/s; errors ${errors}; cpu ${JSON.stringify(cpu)}`,
    );
    const summary: SummaryRow[] = [
      {
        bench: 'upstream',
        figure: `up frames stored/s from ${clients.toLocaleString('en-US')} clients (${window} in flight each)`,
        value: `${rate.toLocaleString('en-US')}/s; upsent latency p50 ${lat.p50} ms, p99 ${lat.p99} ms; errors ${errors}; cores: edge ${cpu['edge'] ?? '?'}, nats ${cpu['nats'] ?? '?'}`,
        target: `>= ${GOAL.toLocaleString('en-US')}/s`,
        met: rate >= GOAL ? 'yes' : 'no',
      },
    ];
    return {
      name: 'upstream',
      figures: { clients, window, seconds: elapsed, stored, errors, rate, latencyMs: lat, cores: cpu },
      summary,
    };
  } finally {
    await stack.close();
  }
}

runIfMain(import.meta.url, () => runUpstream({ smoke: process.argv.includes('--smoke') }));
