/**
 * Bench child for bench/unicast.ts: holds one WebSocket per user to the edge, acks every message
 * (acks batched per connection per event-loop turn), and measures what it receives.
 *
 * Latency is receive time minus the send time the load generator put in the message (`s`, µs of
 * process.hrtime: CLOCK_MONOTONIC, the same clock in every process of the machine).
 *
 * Driven by its parent over IPC: connect, reset (start a round), stats, close.
 */
import WebSocket from 'ws';
import { signClientToken } from '@push/apps';
import type { AppSecret } from '@push/protocol';
import { serveParent, type ChildMessage } from './lib/procs.js';
import { summarizeLatencies } from './lib/stats.js';

interface Client {
  ws: WebSocket;
  acks: number[];
}

const clients: Client[] = [];
const dirty: Client[] = [];
let flushScheduled = false;

let round = -1;
let received = 0;
let roundReceived = 0;
let duplicates = 0;
let seen = new Set<number>();
let latencies = new Float64Array(1 << 20);
let latencyCount = 0;
let firstUs = 0;
let lastUs = 0;
let errorFrames = 0;
let unexpectedCloses = 0;
let closing = false;
const errorCodes: Record<string, number> = {};

const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

function flushAcks(): void {
  flushScheduled = false;
  for (const c of dirty) {
    if (c.acks.length === 0) continue;
    c.ws.send(`{"t":"ack","seqs":[${c.acks.join(',')}]}`);
    c.acks = [];
  }
  dirty.length = 0;
}

interface Frame {
  t: string;
  seq?: number;
  code?: string;
  data?: { r?: number; s?: number };
}

function onFrame(c: Client, text: string): void {
  const f = JSON.parse(text) as Frame;
  if (f.t === 'msg' && typeof f.seq === 'number') {
    const t = nowUs();
    received++;
    if (c.acks.length === 0) dirty.push(c);
    c.acks.push(f.seq);
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flushAcks);
    }
    const d = f.data;
    if (d?.r !== round || typeof d.s !== 'number') return; // warm-up or an earlier round
    if (seen.has(f.seq)) {
      duplicates++;
      return;
    }
    seen.add(f.seq);
    roundReceived++;
    if (firstUs === 0) firstUs = t;
    lastUs = t;
    if (latencyCount === latencies.length) {
      const bigger = new Float64Array(latencies.length * 2);
      bigger.set(latencies);
      latencies = bigger;
    }
    latencies[latencyCount++] = t - d.s;
  } else if (f.t === 'error') {
    errorFrames++;
    const code = f.code ?? 'unknown';
    errorCodes[code] = (errorCodes[code] ?? 0) + 1;
  }
}

function open(url: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    const c: Client = { ws, acks: [] };
    let greeted = false;
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error('no hello within 15 s'));
    }, 15_000);
    ws.on('message', (data: Buffer) => {
      const text = data.toString('utf8');
      if (!greeted) {
        if ((JSON.parse(text) as Frame).t === 'hello') {
          greeted = true;
          clearTimeout(timer);
          resolve(c);
        }
        return;
      }
      onFrame(c, text);
    });
    ws.on('unexpected-response', (_req, res) => {
      clearTimeout(timer);
      reject(new Error(`upgrade refused: ${res.statusCode ?? 0}`));
    });
    ws.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    ws.on('close', () => {
      if (!closing && greeted) unexpectedCloses++;
    });
  });
}

async function connectAll(
  url: string,
  app: string,
  secret: AppSecret,
  users: string[],
  concurrency: number,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < users.length) {
      const user = users[next++] as string;
      const token = await signClientToken(secret, { app, user, device: 'bench', ttlSeconds: 3 * 3600 });
      // The edge learns new apps through a KV watch: retry a refused upgrade for a moment.
      for (let attempt = 0; ; attempt++) {
        try {
          clients.push(await open(`${url}?token=${encodeURIComponent(token)}`));
          break;
        } catch (err) {
          if (attempt >= 20) throw err;
          await new Promise((r) => setTimeout(r, 250));
        }
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

serveParent(async (m: ChildMessage) => {
  switch (m.type) {
    case 'connect': {
      await connectAll(m['url'] as string, m['app'] as string, m['secret'] as AppSecret, m['users'] as string[], 50);
      return { type: 'connected', connections: clients.length };
    }
    case 'reset': {
      round = m['round'] as number;
      roundReceived = 0;
      duplicates = 0;
      seen = new Set();
      latencyCount = 0;
      firstUs = 0;
      lastUs = 0;
      return { type: 'reset' };
    }
    case 'stats': {
      const withLatency = m['latency'] === true;
      return {
        type: 'stats',
        received,
        roundReceived,
        duplicates,
        firstUs,
        lastUs,
        errorFrames,
        errorCodes,
        unexpectedCloses,
        open: clients.filter((c) => c.ws.readyState === WebSocket.OPEN).length,
        ...(withLatency ? { latencyUs: summarizeLatencies(latencies.subarray(0, latencyCount)) } : {}),
      };
    }
    case 'close': {
      closing = true;
      for (const c of clients) c.ws.terminate();
      setTimeout(() => process.exit(0), 50);
      return { type: 'closed' };
    }
    default:
      throw new Error(`unknown command ${m.type}`);
  }
});
