/**
 * Benchmark "pusher": our Pusher door (edge `/app/<key>` + center `/apps/<id>/events`) against
 * soketi, the Pusher-protocol server on the same stack (uWebSockets.js, Node), driven by one
 * Pusher-protocol load generator: N WebSocket clients subscribe to one channel, the official
 * `pusher` SDK triggers E events at R per second, every client times each event from the
 * trigger to its arrival. Figures: time to connect and subscribe N clients, delivery latency
 * p50/p99, share delivered, server CPU seconds for the triggers (ours: center, edge and
 * nats-server, which stores every event before it is sent; soketi: its one process).
 *
 * soketi lives apart from the workspace: `npm install --prefix bench/soketi` (its uWebSockets.js
 * is overridden to the alias the project uses); without it only ours runs, and the summary says so.
 * Run: `npx tsx bench/pusher.ts [--smoke]` (after `make build`, with the services up).
 */
import { existsSync } from 'node:fs';
import WebSocket from 'ws';
import PusherServer from 'pusher';
import { pusherCredentials } from '@push/apps';
import { LatencyHistogram } from './lib/hist.js';
import { runIfMain } from './lib/main.js';
import { ROOT, cpuSeconds, freePort, natsServerPid, sleep, spawnNode, waitHttpOk, type Child } from './lib/procs.js';
import { note, type BenchResult, type SummaryRow } from './lib/results.js';
import { BenchStack, NATS_URL } from './lib/stack.js';

const SMOKE = process.argv.includes('--smoke');
const CLIENTS = Number(process.env['BENCH_PUSHER_CLIENTS'] ?? (SMOKE ? 50 : 2000));
const EVENTS = Number(process.env['BENCH_PUSHER_EVENTS'] ?? (SMOKE ? 10 : 200));
const RATE = Number(process.env['BENCH_PUSHER_RATE'] ?? 20);
const CHANNEL = 'bench-fanout';
const SOKETI = `${ROOT}bench/soketi/node_modules/@soketi/soketi/bin/server.js`;

/** One server speaking the Pusher protocol: where clients connect, its SDK, its processes. */
interface Target {
  name: string;
  wsUrl: string;
  sdk: PusherServer;
  pids: number[];
  /** The process holding the sockets (ours: the edge), whose memory per connection is reported. */
  socketProcess: Child;
}

interface Figures {
  target: string;
  clients: number;
  subscribeMs: number;
  connectsPerSecond: number;
  /** Resident memory of the socket process per idle subscribed client, settled, no forced GC (bytes). */
  rssPerClient: number;
  events: number;
  delivered: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  serverCpuSeconds: number;
}

/** Opens one Pusher client, subscribed to the channel; `onTick` gets each event's trigger time. */
function openClient(url: string, onTick: (sentAt: number) => void): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const timer = setTimeout(() => reject(new Error('connect and subscribe took over 30 s')), 30_000);
    ws.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    ws.on('message', (raw: Buffer) => {
      const f = JSON.parse(raw.toString('utf8')) as { event: string; data?: unknown };
      if (f.event === 'tick' && typeof f.data === 'string') {
        onTick((JSON.parse(f.data) as { t: number }).t);
      } else if (f.event === 'pusher:connection_established') {
        ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: CHANNEL } }));
      } else if (f.event === 'pusher_internal:subscription_succeeded') {
        clearTimeout(timer);
        resolve(ws);
      }
    });
  });
}

async function drive(t: Target): Promise<Figures> {
  const hist = new LatencyHistogram();
  const sockets: WebSocket[] = [];
  await sleep(1000);
  const rss0 = t.socketProcess.rss();
  const started = Date.now();
  try {
    for (let i = 0; i < CLIENTS; i += 100) {
      const batch = Array.from({ length: Math.min(100, CLIENTS - i) }, () =>
        openClient(t.wsUrl, (sentAt) => hist.record(Date.now() - sentAt)),
      );
      sockets.push(...(await Promise.all(batch)));
    }
    const subscribeMs = Date.now() - started;
    note(`${t.name}: ${CLIENTS} clients subscribed in ${subscribeMs} ms`);
    // Idle for a while, as an operator would look at it (no forced GC on either side).
    await sleep(SMOKE ? 500 : 5000);
    const rssPerClient = (t.socketProcess.rss() - rss0) / CLIENTS;
    const cpu0 = t.pids.reduce((s, pid) => s + cpuSeconds(pid), 0);
    const gap = 1000 / RATE;
    const first = Date.now();
    const triggers: Array<Promise<unknown>> = [];
    for (let i = 0; i < EVENTS; i++) {
      const due = first + i * gap;
      if (due > Date.now()) await sleep(due - Date.now());
      triggers.push(t.sdk.trigger(CHANNEL, 'tick', { t: Date.now(), i }));
    }
    await Promise.all(triggers);
    const expected = EVENTS * CLIENTS;
    const deadline = Date.now() + 10_000;
    while (hist.count < expected && Date.now() < deadline) await sleep(50);
    const serverCpuSeconds = t.pids.reduce((s, pid) => s + cpuSeconds(pid), 0) - cpu0;
    return {
      target: t.name,
      clients: CLIENTS,
      subscribeMs,
      connectsPerSecond: Math.round((CLIENTS / subscribeMs) * 1000),
      rssPerClient: Math.round(rssPerClient),
      events: EVENTS,
      delivered: hist.count / expected,
      p50Ms: hist.percentile(50),
      p99Ms: hist.percentile(99),
      maxMs: hist.max,
      serverCpuSeconds,
    };
  } finally {
    for (const ws of sockets) ws.terminate();
  }
}

/** The nats-server process of NATS_URL when it runs on this machine (0 when not found). */
function natsPid(): number {
  const port = Number(new URL(NATS_URL.split(',')[0] ?? '').port || 4222);
  return natsServerPid(port) ?? 0;
}

async function ours(): Promise<{ target: Target; stack: BenchStack }> {
  const stack = new BenchStack();
  await stack.startCenter();
  await stack.startEdge();
  // Topic publishes are not rate-limited by default; client events are not used here.
  const app = await stack.createApp({});
  const creds = pusherCredentials(app.record);
  const edge = stack.edges[0];
  if (edge === undefined || stack.center === undefined) throw new Error('stack did not start');
  await sleep(200); // the edge hears of the new app through a KV watch
  return {
    stack,
    target: {
      name: 'ours',
      wsUrl: `ws://127.0.0.1:${edge.port}/app/${encodeURIComponent(creds.key)}?protocol=7&client=js&version=8.4.0`,
      sdk: new PusherServer({
        appId: creds.appId,
        key: creds.key,
        secret: creds.secrets[0] ?? '',
        host: '127.0.0.1',
        port: String(stack.centerPort),
        useTLS: false,
      }),
      // The store is part of our cost (every event is stored before it is sent): nats-server counts.
      pids: [stack.center.proc.pid ?? 0, edge.child.proc.pid ?? 0, natsPid()].filter((p) => p > 0),
      socketProcess: edge.child,
    },
  };
}

async function soketi(): Promise<{ target: Target; child: Child }> {
  const port = await freePort();
  const metrics = await freePort();
  const child = spawnNode('soketi', SOKETI, {
    args: ['start'],
    echo: false,
    env: {
      SOKETI_PORT: String(port),
      SOKETI_METRICS_SERVER_PORT: String(metrics),
      SOKETI_DEFAULT_APP_ID: 'bench',
      SOKETI_DEFAULT_APP_KEY: 'bench-key',
      SOKETI_DEFAULT_APP_SECRET: 'bench-secret',
      // Its defaults cap backend events at 10/s and connections per app: lift them for the bench.
      SOKETI_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SEC: '-1',
      SOKETI_DEFAULT_APP_MAX_CONNS: '-1',
    },
  });
  await waitHttpOk(`http://127.0.0.1:${port}/`, child);
  return {
    child,
    target: {
      name: 'soketi',
      wsUrl: `ws://127.0.0.1:${port}/app/bench-key?protocol=7&client=js&version=8.4.0`,
      sdk: new PusherServer({
        appId: 'bench',
        key: 'bench-key',
        secret: 'bench-secret',
        host: '127.0.0.1',
        port: String(port),
        useTLS: false,
      }),
      pids: [child.proc.pid ?? 0],
      socketProcess: child,
    },
  };
}

const row = (f: Figures, figure: string, value: string): SummaryRow => ({
  bench: `pusher ${f.target}`,
  figure,
  value,
});

export async function pusherBench(): Promise<BenchResult> {
  const figures: Figures[] = [];
  const summary: SummaryRow[] = [];
  const o = await ours();
  try {
    figures.push(await drive(o.target));
  } finally {
    await o.stack.close();
  }
  if (existsSync(SOKETI)) {
    const s = await soketi();
    try {
      figures.push(await drive(s.target));
    } finally {
      await s.child.stop();
    }
  } else {
    summary.push({
      bench: 'pusher soketi',
      figure: 'not run',
      value: 'npm install --prefix bench/soketi',
    });
  }
  for (const f of figures) {
    summary.push(
      row(
        f,
        `${f.clients} clients connected and subscribed`,
        `${f.subscribeMs} ms (${f.connectsPerSecond}/s, 100 handshakes in flight)`,
      ),
      row(f, 'server RSS per idle subscribed client, settled, no forced GC', `${f.rssPerClient} B`),
      row(f, `${f.events} events at ${RATE}/s: delivered`, `${(f.delivered * 100).toFixed(2)} %`),
      row(
        f,
        'delivery latency p50 / p99 / max',
        `${f.p50Ms.toFixed(1)} / ${f.p99Ms.toFixed(1)} / ${f.maxMs.toFixed(1)} ms`,
      ),
      row(f, 'server CPU for the events', `${f.serverCpuSeconds.toFixed(2)} s`),
    );
  }
  return { name: 'pusher', figures: { clients: CLIENTS, events: EVENTS, rate: RATE, targets: figures }, summary };
}

runIfMain(import.meta.url, pusherBench);
