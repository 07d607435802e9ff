/**
 * End to end unicast: center HTTP push -> JetStream stored -> RePublish -> edge -> WebSocket
 * client -> ack -> removed from the store.
 *
 * Runs the real processes: a center and a one-worker edge (`node apps/<x>/dist/main.js`, unique
 * PUSH_PREFIX, fresh database), CLIENTS users each holding one `ws` connection in a child process
 * (bench/unicast-clients.ts) that acks every message, and this process as the load generator,
 * pushing batches through POST /v1/apps/:app/push.
 *
 *   (a) throughput: push as fast as the center takes it (CONCURRENCY requests of BATCH messages
 *       in flight) for THROUGHPUT_SECONDS; delivered rate = distinct messages the clients got /
 *       (last receive - first push); then the inbox stream must drain to 0 (all acked, removed).
 *   (b) latency at LATENCY_RATE msgs/s for LATENCY_SECONDS, a batch every TICK_MS: latency =
 *       client receive time - time the push request was sent (in the message), p50/p95/p99/max.
 *
 * ROUNDS of (b), then ROUNDS of (a), then one more (b) to show the latency right after the
 * bursts; figures are medians over ROUNDS.
 *
 *   npx tsx bench/unicast.ts
 */
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { Subjects, type AppSecret } from '@push/protocol';
import { runIfMain } from './lib/main.js';
import { CpuMeter, ask, natsServerPid, onCleanup, sleep, spawnNode, type Child } from './lib/procs.js';
import { note, type BenchResult } from './lib/results.js';
import { BenchStack, NATS_URL, type BenchApp } from './lib/stack.js';
import { median, round, type LatencySummary } from './lib/stats.js';

const env = (name: string, def: number): number => Number(process.env[name] ?? def);
const ROUNDS = env('BENCH_UNICAST_ROUNDS', 3);
const CLIENTS = env('BENCH_UNICAST_CLIENTS', 1000);
const THROUGHPUT_SECONDS = env('BENCH_UNICAST_SECONDS', 10);
const BATCH = env('BENCH_UNICAST_BATCH', 1000);
const CONCURRENCY = env('BENCH_UNICAST_CONCURRENCY', 8);
const LATENCY_RATE = env('BENCH_UNICAST_RATE', 5000);
const LATENCY_SECONDS = env('BENCH_UNICAST_LATENCY_SECONDS', 10);
const TICK_MS = 5;
/** Pause between rounds, ms. */
const SETTLE_MS = 2000;
const PAYLOAD_BYTES = 100;
const TARGET_THROUGHPUT = 20_000;
const TARGET_P99_MS = 20;

const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

interface ClientStats {
  type: 'stats';
  received: number;
  roundReceived: number;
  duplicates: number;
  firstUs: number;
  lastUs: number;
  errorFrames: number;
  errorCodes: Record<string, number>;
  unexpectedCloses: number;
  open: number;
  latencyUs?: LatencySummary;
}

/** Pushes batches through the center's HTTP API; message data carries the round and send time. */
class Pusher {
  private readonly url: string;
  private readonly auth: string;
  private readonly users: string[];
  private readonly pad: string;
  private next = 0;
  accepted = 0;
  failed = 0;
  readonly statuses: Record<string, number> = {};

  constructor(centerUrl: string, app: BenchApp, users: string[]) {
    this.url = `${centerUrl}/v1/apps/${encodeURIComponent(app.record.id)}/push`;
    this.auth = `Bearer ${app.apiKey}`;
    this.users = users;
    // {"r":1,"s":1234567890123,"p":"…"} padded to PAYLOAD_BYTES
    this.pad = 'x'.repeat(PAYLOAD_BYTES - `{"r":1,"s":${nowUs()},"p":""}`.length);
  }

  reset(): void {
    this.accepted = 0;
    this.failed = 0;
  }

  /** Sends one batch of `n` messages to the next users in turn; resolves when answered. */
  async send(n: number, roundId: number): Promise<void> {
    const sentUs = nowUs();
    const parts: string[] = new Array<string>(n);
    for (let i = 0; i < n; i++) {
      const user = this.users[this.next++ % this.users.length] as string;
      parts[i] = `{"user":"${user}","data":{"r":${roundId},"s":${sentUs},"p":"${this.pad}"}}`;
    }
    const body = `{"messages":[${parts.join(',')}]}`;
    try {
      const res = await fetch(this.url, {
        method: 'POST',
        headers: { authorization: this.auth, 'content-type': 'application/json' },
        body,
      });
      await res.arrayBuffer();
      this.statuses[res.status] = (this.statuses[res.status] ?? 0) + 1;
      if (res.status === 200) this.accepted += n;
      else this.failed += n; // 503 = some not stored: counted as failed, not retried
    } catch (err) {
      this.statuses['network'] = (this.statuses['network'] ?? 0) + 1;
      this.failed += n;
      if (this.failed === n) note(`push failed: ${String(err)}`);
    }
  }

  /** Keeps `concurrency` batches of `batch` in flight for `seconds`. */
  async flat(seconds: number, batch: number, concurrency: number, roundId: number): Promise<number> {
    const start = performance.now();
    const stopAt = start + seconds * 1000;
    const worker = async (): Promise<void> => {
      while (performance.now() < stopAt) await this.send(batch, roundId);
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    return (performance.now() - start) / 1000;
  }

  /** Sends `rate` msgs/s for `seconds`, a batch every TICK_MS (whatever is due), not waiting for answers. */
  async paced(rate: number, seconds: number, roundId: number): Promise<number> {
    const start = performance.now();
    const inflight = new Set<Promise<void>>();
    let sent = 0;
    for (;;) {
      const elapsed = performance.now() - start;
      if (elapsed >= seconds * 1000) break;
      let due = Math.floor((rate * elapsed) / 1000) - sent;
      while (due > 0) {
        const n = Math.min(due, 1000);
        due -= n;
        sent += n;
        const p = this.send(n, roundId).finally(() => inflight.delete(p));
        inflight.add(p);
      }
      await sleep(TICK_MS);
    }
    await Promise.all(inflight);
    return (performance.now() - start) / 1000;
  }
}

async function stats(clients: Child, latency = false): Promise<ClientStats> {
  return ask<ClientStats>(clients, { type: 'stats', latency }, 'stats');
}

/** Waits until the clients got `expected` distinct messages of the round, or progress stops for `idleMs`. */
async function waitDelivered(clients: Child, expected: number, idleMs = 15_000): Promise<ClientStats> {
  let last = -1;
  let lastChange = Date.now();
  for (;;) {
    const s = await stats(clients);
    if (s.roundReceived >= expected) return s;
    if (s.roundReceived !== last) {
      last = s.roundReceived;
      lastChange = Date.now();
    } else if (Date.now() - lastChange > idleMs) {
      return s;
    }
    await sleep(100);
  }
}

/** Waits until the inbox stream holds no message (every delivered one acked and removed). */
async function waitDrained(
  jsm: JetStreamManager,
  stream: string,
  timeoutMs = 120_000,
): Promise<{ pending: number; ms: number }> {
  const start = Date.now();
  for (;;) {
    const pending = (await jsm.streams.info(stream)).state.messages;
    if (pending === 0 || Date.now() - start > timeoutMs) return { pending, ms: Date.now() - start };
    await sleep(100);
  }
}

interface ThroughputRound {
  pushedMsgs: number;
  pushSeconds: number;
  storedPerSec: number;
  delivered: number;
  deliveredPerSec: number;
  duplicates: number;
  failedPushes: number;
  pendingAfter: number;
  drainMs: number;
  /** Pushed / (time from the first push until the stream held 0 messages): acked and removed. */
  completedPerSec: number;
  cores: Record<string, number>;
  /** Lines the edge and center logged during the round, by message (warnings at PUSH_LOG_LEVEL=warn). */
  logs: Record<string, Record<string, number>>;
}

interface LatencyRound {
  sent: number;
  delivered: number;
  achievedRate: number;
  latencyMs: { p50: number; p95: number; p99: number; max: number; mean: number };
  duplicates: number;
  failedPushes: number;
  pendingAfter: number;
  cores: Record<string, number>;
  logs: Record<string, Record<string, number>>;
}

/** What `children` logged since `logMark()` was taken, by message. */
function logMark(children: Record<string, Child | undefined>): () => Record<string, Record<string, number>> {
  const before = Object.fromEntries(Object.entries(children).map(([k, c]) => [k, { ...(c?.lineCounts ?? {}) }]));
  return () => {
    const out: Record<string, Record<string, number>> = {};
    for (const [k, c] of Object.entries(children)) {
      const delta: Record<string, number> = {};
      for (const [msg, n] of Object.entries(c?.lineCounts ?? {})) {
        const d = n - (before[k]?.[msg] ?? 0);
        if (d > 0) delta[msg] = d;
      }
      if (Object.keys(delta).length > 0) out[k] = delta;
    }
    return out;
  };
}

export async function runUnicast(): Promise<BenchResult> {
  const stack = new BenchStack();
  note(`unicast: prefix ${stack.prefix}`);
  await stack.startCenter();
  await stack.startEdge({ PUSH_EDGE_WORKERS: '1' });
  const app = await stack.createApp();
  const secret = app.record.secrets[0] as AppSecret;
  const users = Array.from({ length: CLIENTS }, (_, i) => `user${i}`);

  const clients = spawnNode('clients', 'bench/unicast-clients.ts', { ipc: true });
  const connected = await ask<{ type: string; connections: number }>(
    clients,
    { type: 'connect', url: stack.edgeUrl(), app: app.record.id, secret, users },
    'connected',
  );
  note(`unicast: ${connected.connections} clients connected`);

  const nc = await connect({ servers: NATS_URL, name: 'bench-unicast' });
  onCleanup('nats', () => nc.close());
  const jsm = await jetstreamManager(nc);
  const stream = new Subjects(stack.prefix).inboxStream(app.record.id);
  const pusher = new Pusher(stack.centerUrl, app, users);
  const logged = { edge: stack.edges[0]?.child, center: stack.center };
  const natsPort = Number(new URL(NATS_URL).port || 4222);
  const meter = new CpuMeter({
    edge: stack.edges[0]?.child.pid,
    center: stack.center?.pid,
    clients: clients.pid,
    loadgen: process.pid,
    nats: natsServerPid(natsPort),
  });

  // Warm-up (JIT, connection pools) at the latency rate: not counted.
  await ask(clients, { type: 'reset', round: 0 }, 'reset');
  await pusher.paced(LATENCY_RATE, 3, 0);
  await waitDelivered(clients, pusher.accepted, 5000);
  await waitDrained(jsm, stream);

  const throughput: ThroughputRound[] = [];
  const latency: LatencyRound[] = [];
  let roundId = 0;

  /** (b) latency at a fixed rate; measured first, on a quiet system. */
  const latencyRound = async (label: string): Promise<LatencyRound> => {
    roundId++;
    await ask(clients, { type: 'reset', round: roundId }, 'reset');
    pusher.reset();
    const llogs = logMark(logged);
    meter.start();
    const pacedSeconds = await pusher.paced(LATENCY_RATE, LATENCY_SECONDS, roundId);
    const sent = pusher.accepted;
    await waitDelivered(clients, sent, 10_000);
    const lcores = meter.stop();
    const s = await stats(clients, true);
    const lat = s.latencyUs as LatencySummary;
    const ldrained = await waitDrained(jsm, stream);
    const l: LatencyRound = {
      sent,
      delivered: s.roundReceived,
      achievedRate: round(sent / pacedSeconds),
      latencyMs: {
        p50: round(lat.p50 / 1000, 2),
        p95: round(lat.p95 / 1000, 2),
        p99: round(lat.p99 / 1000, 2),
        max: round(lat.max / 1000, 2),
        mean: round(lat.mean / 1000, 2),
      },
      duplicates: s.duplicates,
      failedPushes: pusher.failed,
      pendingAfter: ldrained.pending,
      cores: lcores,
      logs: llogs(),
    };
    note(
      `unicast ${label} latency @${LATENCY_RATE}/s: delivered ${l.delivered}/${sent}, p50 ${l.latencyMs.p50} p95 ${l.latencyMs.p95} ` +
        `p99 ${l.latencyMs.p99} max ${l.latencyMs.max} ms, pending after ${l.pendingAfter}, cores ${JSON.stringify(lcores)}, logs ${JSON.stringify(l.logs)}`,
    );
    return l;
  };

  /** (a) throughput: as fast as the center takes it. */
  const throughputRound = async (label: string): Promise<ThroughputRound> => {
    roundId++;
    await ask(clients, { type: 'reset', round: roundId }, 'reset');
    pusher.reset();
    const startUs = nowUs();
    const logs = logMark(logged);
    meter.start();
    const pushSeconds = await pusher.flat(THROUGHPUT_SECONDS, BATCH, CONCURRENCY, roundId);
    const pushed = pusher.accepted;
    const got = await waitDelivered(clients, pushed);
    const cores = meter.stop();
    const drained = await waitDrained(jsm, stream);
    const completedSeconds = (nowUs() - startUs) / 1e6;
    const deliveredSeconds = (got.lastUs - startUs) / 1e6;
    const t: ThroughputRound = {
      pushedMsgs: pushed,
      pushSeconds: round(pushSeconds, 2),
      storedPerSec: round(pushed / pushSeconds),
      delivered: got.roundReceived,
      deliveredPerSec: round(got.roundReceived / deliveredSeconds),
      duplicates: got.duplicates,
      failedPushes: pusher.failed,
      pendingAfter: drained.pending,
      drainMs: drained.ms,
      completedPerSec: round(pushed / completedSeconds),
      cores,
      logs: logs(),
    };
    note(
      `unicast ${label} throughput: stored ${t.storedPerSec}/s, delivered ${t.delivered}/${pushed} at ${t.deliveredPerSec}/s, ` +
        `dups ${t.duplicates}, failed ${t.failedPushes}, pending ${t.pendingAfter} after ${t.drainMs} ms more (removed: ${t.completedPerSec}/s), ` +
        `cores ${JSON.stringify(cores)}, logs ${JSON.stringify(t.logs)}`,
    );

    return t;
  };

  for (let r = 0; r < ROUNDS; r++) {
    latency.push(await latencyRound(`round ${r + 1}`));
    await sleep(SETTLE_MS);
  }
  for (let r = 0; r < ROUNDS; r++) {
    throughput.push(await throughputRound(`round ${r + 1}`));
    await sleep(SETTLE_MS);
  }
  // Not in the medians: the latency right after the throughput bursts (the store just removed
  // hundreds of thousands of messages), to show whether the system recovers.
  const latencyAfterBursts = await latencyRound('after the bursts');

  const final = await stats(clients);
  await ask(clients, { type: 'close' }, 'closed').catch(() => undefined);
  await clients.wait();
  await stack.close();

  const delivered = median(throughput.map((t) => t.deliveredPerSec));
  const stored = median(throughput.map((t) => t.storedPerSec));
  const completed = median(throughput.map((t) => t.completedPerSec));
  const p = (k: 'p50' | 'p95' | 'p99' | 'max'): number => median(latency.map((l) => l.latencyMs[k]));
  const allDelivered =
    throughput.every((t) => t.delivered >= t.pushedMsgs) && latency.every((l) => l.delivered >= l.sent);
  const allDrained = [...throughput, ...latency].every((x) => x.pendingAfter === 0);
  const met = (ok: boolean): string => (ok ? 'yes' : 'no');
  return {
    name: 'unicast',
    figures: {
      config: {
        clients: CLIENTS,
        rounds: ROUNDS,
        throughputSeconds: THROUGHPUT_SECONDS,
        batch: BATCH,
        concurrency: CONCURRENCY,
        latencyRate: LATENCY_RATE,
        latencySeconds: LATENCY_SECONDS,
        tickMs: TICK_MS,
        payloadBytes: PAYLOAD_BYTES,
        edgeWorkers: 1,
      },
      deliveredMsgsPerSec: round(delivered),
      storedMsgsPerSec: round(stored),
      completedMsgsPerSec: round(completed),
      latencyMs: { p50: p('p50'), p95: p('p95'), p99: p('p99'), max: p('max') },
      allDelivered,
      allDrained,
      clientErrors: {
        errorFrames: final.errorFrames,
        errorCodes: final.errorCodes,
        unexpectedCloses: final.unexpectedCloses,
      },
      statuses: pusher.statuses,
      latencyAfterBurstsMs: latencyAfterBursts.latencyMs,
      rounds: { throughput, latency, latencyAfterBursts },
    },
    summary: [
      {
        bench: 'unicast',
        figure: 'delivered (push->store->edge->client), median',
        value: `${Math.round(delivered).toLocaleString('en-US')} msgs/s`,
        target: '>= 20,000 msgs/s',
        met: met(delivered >= TARGET_THROUGHPUT),
      },
      {
        bench: 'unicast',
        figure: 'stored by the center meanwhile, median',
        value: `${Math.round(stored).toLocaleString('en-US')} msgs/s`,
      },
      {
        bench: 'unicast',
        figure: 'acked and removed (until 0 pending), median',
        value: `${Math.round(completed).toLocaleString('en-US')} msgs/s`,
      },
      {
        bench: 'unicast',
        figure: 'every message delivered and acked to 0 pending',
        value: allDelivered && allDrained ? 'yes' : 'NO',
      },
      {
        bench: 'unicast',
        figure: `latency @${LATENCY_RATE}/s p50/p95/p99/max, median`,
        value: `${p('p50')}/${p('p95')}/${p('p99')}/${p('max')} ms`,
        target: 'p99 < 20 ms',
        met: met(p('p99') < TARGET_P99_MS),
      },
    ],
  };
}

runIfMain(import.meta.url, runUnicast);
