/**
 * Edge memory per idle authenticated connection, at 10,000 and 19,000 connections in one edge
 * process (PUSH_EDGE_WORKERS=1, PUSH_EDGE_MAX_CONNECTIONS=19500).
 *
 * The center (for the app) and the edge run as child processes; CLIENT_PROCS client children
 * (bench/memory-clients.ts) open the connections, each from its own loopback source address
 * (127.0.0.2, .3, ...) and under the 20,000 file descriptor limit, each connection with its own
 * user's token, and wait for every hello. The edge's memory comes from its Prometheus /metrics
 * (process_resident_memory_bytes, nodejs_heap_size_used_bytes) after a settle time, read twice:
 * as it is, and after a forced full GC (median of GC_READS reads, each after its own GC). The edge has no GC hook, so the edge is started with
 * `--inspect=127.0.0.1:<port>` and the benchmark sends `HeapProfiler.collectGarbage` over the
 * inspector protocol (the edge's code is unchanged).
 *
 * Baseline: a bare uWebSockets.js server (bench/memory-uws-baseline.ts) holding the same number
 * of idle connections, measured the same way (gc() with --expose-gc), for the ratio.
 *
 *   npx tsx bench/memory.ts
 */
import WebSocket from 'ws';
import type { AppSecret } from '@push/protocol';
import { runIfMain } from './lib/main.js';
import { ask, freePort, nextMessage, sleep, spawnNode, type Child } from './lib/procs.js';
import { note, type BenchResult } from './lib/results.js';
import { BenchStack, scrapeMetrics } from './lib/stack.js';
import { median, round } from './lib/stats.js';

const env = (name: string, def: number): number => Number(process.env[name] ?? def);
const STEPS = [env('BENCH_MEMORY_STEP1', 10_000), env('BENCH_MEMORY_STEP2', 19_000)];
const CLIENT_PROCS = 2;
const SETTLE_MS = env('BENCH_MEMORY_SETTLE_MS', 5000);
const TARGET_BYTES = 3 * 1024;
/** Reads after a forced GC at each step; the median is kept. */
const GC_READS = 3;

interface Sample {
  connections: number;
  /** As it is after the settle time. */
  rss: number;
  heapUsed: number;
  /** After a forced full GC. */
  rssAfterGc: number;
  heapUsedAfterGc: number;
}

/** Forces a full GC in a process started with --inspect, through the inspector protocol. */
async function inspectorGc(inspectPort: number): Promise<void> {
  const list = (await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`)).json()) as Array<{
    webSocketDebuggerUrl: string;
  }>;
  const target = list[0]?.webSocketDebuggerUrl;
  if (target === undefined) throw new Error('no inspector target');
  const ws = new WebSocket(target);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  let id = 0;
  const call = (method: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const my = ++id;
      const onMessage = (data: Buffer): void => {
        const m = JSON.parse(data.toString('utf8')) as { id?: number; error?: { message: string } };
        if (m.id !== my) return;
        ws.off('message', onMessage);
        if (m.error !== undefined) reject(new Error(`${method}: ${m.error.message}`));
        else resolve();
      };
      ws.on('message', onMessage);
      ws.send(JSON.stringify({ id: my, method }));
    });
  try {
    await call('HeapProfiler.collectGarbage');
    await call('HeapProfiler.collectGarbage');
  } finally {
    ws.close();
  }
}

async function edgeMemory(url: string): Promise<{ rss: number; heapUsed: number; connections: number }> {
  const m = await scrapeMetrics(`${url}/metrics`, [
    'process_resident_memory_bytes',
    'nodejs_heap_size_used_bytes',
    'push_edge_connections',
  ]);
  return {
    rss: m['process_resident_memory_bytes'] ?? Number.NaN,
    heapUsed: m['nodejs_heap_size_used_bytes'] ?? Number.NaN,
    connections: m['push_edge_connections'] ?? Number.NaN,
  };
}

/** Users [from, to) split evenly over the client children. */
function split(from: number, to: number, parts: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const n = to - from;
  for (let i = 0; i < parts; i++)
    out.push([from + Math.floor((n * i) / parts), from + Math.floor((n * (i + 1)) / parts)]);
  return out;
}

async function openConnections(
  clients: Child[],
  from: number,
  to: number,
  msg: (child: number) => Record<string, unknown>,
): Promise<number> {
  const answers = await Promise.all(
    split(from, to, clients.length).map(([a, b], i) => {
      const users = Array.from({ length: b - a }, (_, k) => `idle${a + k}`);
      return ask<{ open: number; failed: number; failures: Record<string, number> }>(
        clients[i] as Child,
        { type: 'open', users, ...msg(i) },
        'opened',
        300_000,
      );
    }),
  );
  const failed = answers.reduce((s, a) => s + a.failed, 0);
  if (failed > 0) throw new Error(`${failed} connections failed: ${JSON.stringify(answers.map((a) => a.failures))}`);
  return answers.reduce((s, a) => s + a.open, 0);
}

function perConnection(base: Sample, s: Sample): Record<string, number> {
  const n = s.connections - base.connections;
  return {
    rssBytes: round((s.rss - base.rss) / n),
    heapBytes: round((s.heapUsed - base.heapUsed) / n),
    rssBytesAfterGc: round((s.rssAfterGc - base.rssAfterGc) / n),
    heapBytesAfterGc: round((s.heapUsedAfterGc - base.heapUsedAfterGc) / n),
  };
}

/** edge/bare as text; the bare server's growth can be within the noise of a ~80 MiB process. */
function ratioText(edge: number | undefined, bare: number | undefined): string {
  if (edge === undefined || bare === undefined || bare < 50) return 'n/a (bare growth below noise)';
  return `${(edge / bare).toFixed(1)}x`;
}

async function measureEdge(): Promise<{ samples: Sample[]; perConn: Array<Record<string, number>> }> {
  const last = STEPS[STEPS.length - 1] as number;
  const stack = new BenchStack({ PUSH_EDGE_MAX_CONNECTIONS: String(last + 500) });
  note(`memory: prefix ${stack.prefix}`);
  await stack.startCenter();
  const inspectPort = await freePort();
  await stack.startEdge({ PUSH_EDGE_WORKERS: '1' }, [`--inspect=127.0.0.1:${inspectPort}`]);
  const app = await stack.createApp();
  const secret = app.record.secrets[0] as AppSecret;
  const edgeHttp = stack.edgeHttp();
  const clients = Array.from({ length: CLIENT_PROCS }, (_, i) =>
    spawnNode(`idle${i}`, 'bench/memory-clients.ts', { ipc: true }),
  );
  // The edge learns the app from the KV watch; one connection proves it did (and warms up).
  await openConnections(clients.slice(0, 1), 0, 1, () => ({
    url: stack.edgeUrl(),
    app: app.record.id,
    secret,
    localAddress: '127.0.0.2',
    hello: true,
  }));
  const sample = async (expected: number): Promise<Sample> => {
    await sleep(SETTLE_MS);
    const a = await edgeMemory(edgeHttp);
    if (a.connections !== expected) throw new Error(`edge reports ${a.connections} connections, expected ${expected}`);
    const reads: Array<{ rss: number; heapUsed: number }> = [];
    for (let i = 0; i < GC_READS; i++) {
      await inspectorGc(inspectPort);
      await sleep(1000);
      reads.push(await edgeMemory(edgeHttp));
    }
    const s = {
      connections: expected,
      rss: a.rss,
      heapUsed: a.heapUsed,
      rssAfterGc: median(reads.map((r) => r.rss)),
      heapUsedAfterGc: median(reads.map((r) => r.heapUsed)),
    };
    note(
      `memory: edge at ${expected} connections: rss ${(s.rss / 2 ** 20).toFixed(1)} MiB, heap ${(s.heapUsed / 2 ** 20).toFixed(1)} MiB; ` +
        `after GC rss ${(s.rssAfterGc / 2 ** 20).toFixed(1)} MiB, heap ${(s.heapUsedAfterGc / 2 ** 20).toFixed(1)} MiB`,
    );
    return s;
  };
  const samples = [await sample(1)];
  let open = 1;
  for (const step of STEPS) {
    const t0 = performance.now();
    // Each child keeps its own source address (its own ephemeral port range).
    await openConnections(clients, open, step, (i) => ({
      url: stack.edgeUrl(),
      app: app.record.id,
      secret,
      localAddress: `127.0.0.${2 + i}`,
      hello: true,
    }));
    note(`memory: opened ${step - open} edge connections in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    open = step;
    samples.push(await sample(step));
  }
  await Promise.all(clients.map((c) => ask(c, { type: 'close' }, 'closed').catch(() => undefined)));
  await Promise.all(clients.map((c) => c.wait()));
  await stack.close();
  const base = samples[0] as Sample;
  return { samples, perConn: samples.slice(1).map((s) => perConnection(base, s)) };
}

async function measureBaseline(): Promise<{ samples: Sample[]; perConn: Array<Record<string, number>> }> {
  const port = await freePort();
  const server = spawnNode('uws-baseline', 'bench/memory-uws-baseline.ts', {
    ipc: true,
    nodeArgs: ['--expose-gc'],
    args: [String(port)],
  });
  await nextMessage(server, 'listening');
  const clients = Array.from({ length: CLIENT_PROCS }, (_, i) =>
    spawnNode(`bare${i}`, 'bench/memory-clients.ts', { ipc: true }),
  );
  const mem = async (gc: boolean): Promise<{ rss: number; heapUsed: number; connections: number }> =>
    ask(server, { type: 'mem', gc }, 'mem');
  const sample = async (expected: number): Promise<Sample> => {
    await sleep(SETTLE_MS);
    const a = await mem(false);
    if (a.connections !== expected) throw new Error(`baseline has ${a.connections} connections, expected ${expected}`);
    const reads: Array<{ rss: number; heapUsed: number }> = [];
    for (let i = 0; i < GC_READS; i++) {
      reads.push(await mem(true));
      await sleep(1000);
    }
    const s = {
      connections: expected,
      rss: a.rss,
      heapUsed: a.heapUsed,
      rssAfterGc: median(reads.map((r) => r.rss)),
      heapUsedAfterGc: median(reads.map((r) => r.heapUsed)),
    };
    note(
      `memory: bare uWS at ${expected}: rss ${(s.rss / 2 ** 20).toFixed(1)} MiB, after GC ${(s.rssAfterGc / 2 ** 20).toFixed(1)} MiB`,
    );
    return s;
  };
  const samples = [await sample(0)];
  let open = 0;
  for (const step of STEPS) {
    await openConnections(clients, open, step, (i) => ({
      url: `ws://127.0.0.1:${port}/`,
      localAddress: `127.0.0.${12 + i}`,
    }));
    open = step;
    samples.push(await sample(step));
  }
  await Promise.all(clients.map((c) => ask(c, { type: 'close' }, 'closed').catch(() => undefined)));
  await Promise.all(clients.map((c) => c.wait()));
  await server.stop();
  const base = samples[0] as Sample;
  return { samples, perConn: samples.slice(1).map((s) => perConnection(base, s)) };
}

export async function runMemory(): Promise<BenchResult> {
  const edge = await measureEdge();
  const bare = await measureBaseline();
  const kb = (b: number | undefined): string => `${((b ?? Number.NaN) / 1024).toFixed(2)} KB`;
  const met = (ok: boolean): string => (ok ? 'yes' : 'no');
  const rows = STEPS.map((step, i) => {
    const e = edge.perConn[i] ?? {};
    const b = bare.perConn[i] ?? {};
    return { step, e, b };
  });
  return {
    name: 'memory',
    figures: {
      config: {
        steps: STEPS,
        clientProcesses: CLIENT_PROCS,
        settleMs: SETTLE_MS,
        edgeWorkers: 1,
        forcedGc: 'inspector HeapProfiler.collectGarbage',
      },
      edge: { samples: edge.samples, perConnection: Object.fromEntries(rows.map((r) => [r.step, r.e])) },
      bareUws: { samples: bare.samples, perConnection: Object.fromEntries(rows.map((r) => [r.step, r.b])) },
      ratioRssEdgeToBare: Object.fromEntries(
        rows.map((r) => [r.step, ratioText(r.e['rssBytesAfterGc'], r.b['rssBytesAfterGc'])]),
      ),
    },
    summary: rows.flatMap((r) => [
      {
        bench: 'memory',
        figure: `edge RSS per conn at ${r.step} (as is / after GC)`,
        value: `${kb(r.e['rssBytes'])} / ${kb(r.e['rssBytesAfterGc'])}`,
        target: '< 3 KB',
        met: met((r.e['rssBytesAfterGc'] ?? Infinity) < TARGET_BYTES),
      },
      {
        bench: 'memory',
        figure: `edge JS heap per conn at ${r.step} (as is / after GC)`,
        value: `${kb(r.e['heapBytes'])} / ${kb(r.e['heapBytesAfterGc'])}`,
        target: '< 3 KB',
        met: met((r.e['heapBytesAfterGc'] ?? Infinity) < TARGET_BYTES),
      },
      {
        bench: 'memory',
        figure: `bare uWS RSS / heap per conn at ${r.step} (after GC); edge/bare RSS`,
        value: `${kb(r.b['rssBytesAfterGc'])} / ${kb(r.b['heapBytesAfterGc'])}; ${ratioText(r.e['rssBytesAfterGc'], r.b['rssBytesAfterGc'])}`,
      },
    ]),
  };
}

runIfMain(import.meta.url, runMemory);
