/**
 * What the never-ack guard costs (issue 17 part 3; docs/architecture.md "Never-ack loops"). It
 * writes nothing per delivery or ack, so what is measured is what it does do:
 *
 *   unacked closes: DeliveryCounts.unacked for CLOSES closes of distinct users, each leaving
 *                   UNACKED messages in flight (one Redis script call each; maxDeliveries high,
 *                   so nothing moves): closes per second, the Redis time per call, and the Redis
 *                   memory each counted message holds;
 *   moves:          UndeliverableStore.move of MOVES never-acked messages (Direct Get, store in
 *                   the undeliverable stream, delete from the inbox), IN_FLIGHT at once: moves
 *                   per second.
 *
 *   npx tsx bench/never-ack.ts   (PUSH_BENCH_NATS_URL for a 2.11+ server, PUSH_BENCH_REDIS_URL;
 *   BENCH_NEVERACK_CLOSES, BENCH_NEVERACK_UNACKED, BENCH_NEVERACK_MOVES, BENCH_NEVERACK_ROUNDS)
 */
import { connect } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { InboxStore, UndeliverableStore, ensureInboxStream } from '@push/nats';
import { DEFAULT_APP_SETTINGS, Subjects, type AppRecord } from '@push/protocol';
import { DeliveryCounts } from '../apps/edge/src/delivery-counts.js';
import { createEdgeMetrics } from '../apps/edge/src/metrics.js';
import { median } from './lib/stats.js';
import { printSummary, writeResult, type SummaryRow } from './lib/results.js';
import { benchPrefix, NATS_URL, REDIS_URL, removePrefix } from './lib/stack.js';

const env = (name: string, fallback: number): number => Number(process.env[name] ?? fallback);
const CLOSES = env('BENCH_NEVERACK_CLOSES', 20_000);
const UNACKED = env('BENCH_NEVERACK_UNACKED', 10);
const MOVES = env('BENCH_NEVERACK_MOVES', 2000);
const ROUNDS = env('BENCH_NEVERACK_ROUNDS', 3);
const IN_FLIGHT = 64;
const APP = 'bench';

const prefix = benchPrefix();
const subjects = new Subjects(prefix);
const nc = await connect({ servers: NATS_URL, name: 'bench-never-ack' });
const redis = new Redis(REDIS_URL);
const inboxOpts = { maxPerUser: 10_000, maxAgeSeconds: 3600, duplicateWindowSeconds: 60, replicas: 1 };
const inbox = new InboxStore(nc, subjects, { timeoutMs: 60_000 });
const undeliverable = new UndeliverableStore(nc, subjects, inboxOpts);
const record = (maxDeliveries: number): AppRecord => ({
  id: APP,
  name: APP,
  disabled: false,
  secrets: [],
  settings: { ...DEFAULT_APP_SETTINGS, maxDeliveries },
  apiKeys: [],
  updatedAt: '',
});

/** Redis `used_memory`, bytes. */
async function redisMemory(): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? NaN);
}

const rounds: Array<{ closesPerSec: number; msPerCall: number; bytesPerCounted: number; movesPerSec: number }> = [];
try {
  await ensureInboxStream(nc, subjects, { id: APP, settings: { maxPendingPerUser: 10_000 } }, inboxOpts);
  const log = { warn: (o: unknown) => console.error(o) };
  for (let round = 0; round < ROUNDS; round++) {
    // --- unacked closes: one script call each, nothing moved.
    const counts = new DeliveryCounts({
      redis,
      subjects,
      apps: { get: () => record(1_000_000) },
      undeliverable,
      events: { emit: () => '' },
      metrics: createEdgeMetrics(new Registry()),
      log,
    });
    const memBefore = await redisMemory();
    const seqs = Array.from({ length: UNACKED }, (_, i) => 1000 + i);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < CLOSES; i++) counts.unacked(APP, `r${round}u${i}`, seqs, 0);
    if (!(await counts.idle(120_000))) throw new Error('unacked counts did not finish in 120 s');
    const closeSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const memAfter = await redisMemory();

    // --- moves: MOVES messages stored, then moved IN_FLIGHT at once.
    const stored: Array<{ user: string; seq: number }> = [];
    const body = { bytes: Buffer.from(JSON.stringify({ text: 'x'.repeat(100) })), binary: false };
    for (let i = 0; i < MOVES; i += IN_FLIGHT) {
      const batch = Array.from({ length: Math.min(IN_FLIGHT, MOVES - i) }, (_, k) => `m${round}u${i + k}`);
      const rs = await Promise.all(batch.map((u) => inbox.publish(APP, u, body, { ttlMs: 3_600_000 })));
      rs.forEach((r, k) => stored.push({ user: batch[k] as string, seq: r.seq }));
    }
    await undeliverable.ensure(APP);
    let next = 0;
    let moved = 0;
    const t1 = process.hrtime.bigint();
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < stored.length) {
          const m = stored[next++] as { user: string; seq: number };
          if ((await undeliverable.move(APP, m.user, m.seq, 20)) === 'moved') moved++;
        }
      }),
    );
    const moveSeconds = Number(process.hrtime.bigint() - t1) / 1e9;
    if (moved !== MOVES) throw new Error(`moved ${moved} of ${MOVES}`);
    await undeliverable.purge(APP);
    const r = {
      closesPerSec: Math.round(CLOSES / closeSeconds),
      msPerCall: (closeSeconds * 1000) / CLOSES,
      bytesPerCounted: Math.round((memAfter - memBefore) / (CLOSES * UNACKED)),
      movesPerSec: Math.round(MOVES / moveSeconds),
    };
    rounds.push(r);
    console.error(`round ${round + 1}: ${JSON.stringify(r)}`);
  }
  const med = (k: keyof (typeof rounds)[number]) => median(rounds.map((r) => r[k]));
  const summary: SummaryRow[] = [
    {
      bench: 'never-ack',
      figure: `unacked closes/s (${UNACKED} unacked each, one Redis call)`,
      value: `${med('closesPerSec').toLocaleString('en-US')}`,
    },
    { bench: 'never-ack', figure: 'wall ms per unacked close (pipelined)', value: med('msPerCall').toFixed(4) },
    { bench: 'never-ack', figure: 'Redis bytes per counted message', value: String(med('bytesPerCounted')) },
    {
      bench: 'never-ack',
      figure: `moves/s (${IN_FLIGHT} in flight)`,
      value: `${med('movesPerSec').toLocaleString('en-US')}`,
    },
    { bench: 'never-ack', figure: 'writes per delivery / per ack', value: '0 / 0 (by construction)' },
  ];
  printSummary(summary);
  const path = writeResult({
    name: 'never-ack',
    figures: { closes: CLOSES, unacked: UNACKED, moves: MOVES, inFlight: IN_FLIGHT, server: nc.info?.version, rounds },
    summary,
  });
  console.error(`results: ${path}`);
} finally {
  inbox.close();
  await nc.close();
  redis.disconnect();
  await removePrefix(prefix);
}
