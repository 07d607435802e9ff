/**
 * Heartbeats (issue 17): the idle CPU of our edges holding N connections that each ping at 25 s,
 * against the same N pinging at 300 s (each agreed per connection with `?ping=`; the load children
 * send `{"t":"ping"}` once per interval per connection, spread evenly, and count the pongs).
 * Figures: edge cores over the hold, per 100,000 connections (scaled linearly from N: what a ping
 * costs grows with the connections; the edges' own base does not, so the scaled figure is an upper
 * bound), nats-server and Redis beside, pings and pongs per second. Each interval runs on a fresh
 * stack, the intervals interleaved within a round.
 *
 *   npx tsx bench/heartbeat.ts
 *   BENCH_HEARTBEAT_CONNECTIONS=36000 BENCH_HEARTBEAT_HOLD_S=60 BENCH_HEARTBEAT_ROUNDS=2 npx tsx bench/heartbeat.ts
 */
import { LoadFleet, PER_CHILD } from './lib/fleet.js';
import { runIfMain } from './lib/main.js';
import { cpuSeconds, sleep } from './lib/procs.js';
import { note, type BenchResult, type SummaryRow } from './lib/results.js';
import { CpuByRole, env, quietFirst, showSpread, spread, type RunOptions, type Spread } from './lib/scenario.js';
import { round } from './lib/stats.js';
import { OursTarget } from './lib/targets.js';

interface RoundFigures {
  interval: number;
  connections: number;
  holdS: number;
  cpu: Record<string, number>;
  edgeCoresPer100k: number;
  pingsPerSecond: number;
  pongsPerSecond: number;
  unexpectedCloses: number;
}

async function measure(
  fleet: LoadFleet,
  edges: number,
  connections: number,
  interval: number,
  settleMs: number,
  holdMs: number,
): Promise<RoundFigures> {
  const target = await OursTarget.start(edges);
  try {
    await fleet.openAll({ target, userPrefix: 'hb', total: connections, concurrency: 1000, pingSeconds: interval });
    // Connects, presence writes and the first backlog checks are done; GC settles.
    await sleep(settleMs);
    await fleet.stats(true, false);
    const cpu = new CpuByRole(target, fleet, true);
    // CpuByRole rounds to 0.01 cores; the edges' figure is read to the ms of CPU here.
    const edgePids = target.servers.filter((p) => p.name.startsWith('edge')).map((p) => p.pid);
    const edgeCpu = () => edgePids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
    cpu.start();
    const t0 = performance.now();
    const e0 = edgeCpu();
    await sleep(holdMs);
    const edgeCores = (edgeCpu() - e0) / ((performance.now() - t0) / 1000);
    const c: Record<string, number> = { ...cpu.stop(), edges: round(edgeCores, 4) };
    const s = await fleet.stats(false, false);
    if (s.ready < connections) throw new Error(`heartbeat ${interval} s: ${s.ready} of ${connections} still open`);
    const secs = holdMs / 1000;
    const f: RoundFigures = {
      interval,
      connections,
      holdS: secs,
      cpu: c,
      edgeCoresPer100k: round(((c['edges'] ?? Number.NaN) * 100_000) / connections, 3),
      pingsPerSecond: round(s.pings / secs, 0),
      pongsPerSecond: round(s.pongs / secs, 0),
      unexpectedCloses: s.unexpectedCloses,
    };
    note(
      `heartbeat ${interval} s x ${connections}: edges ${c['edges']} cores (${f.edgeCoresPer100k} per 100k), ` +
        `nats ${c['nats']}, redis ${c['redis']}, clients ${c['clients']}; ${f.pingsPerSecond} pings/s, ${f.pongsPerSecond} pongs/s`,
    );
    return f;
  } finally {
    await fleet.reset();
    await target.close();
  }
}

export async function runHeartbeat(opts: RunOptions = { smoke: false }): Promise<BenchResult> {
  const smoke = opts.smoke;
  const connections = smoke ? 200 : env('BENCH_HEARTBEAT_CONNECTIONS', 36_000);
  const intervals = (process.env['BENCH_HEARTBEAT_INTERVALS'] ?? '25,300').split(',').map(Number);
  const rounds = smoke ? 1 : env('BENCH_HEARTBEAT_ROUNDS', 2);
  const holdMs = smoke ? 1000 : env('BENCH_HEARTBEAT_HOLD_S', 60) * 1000;
  const settleMs = smoke ? 200 : env('BENCH_HEARTBEAT_SETTLE_MS', 10_000);
  const edges = Math.max(1, Math.ceil(connections / PER_CHILD));

  const byInterval: Record<number, RoundFigures[]> = {};
  const fleet = LoadFleet.start(LoadFleet.sizeFor(connections));
  try {
    for (let r = 0; r < rounds; r++) {
      for (const interval of intervals) {
        await quietFirst(smoke);
        note(`heartbeat round ${r + 1}/${rounds}: ${interval} s, ${connections} connections over ${edges} edges`);
        (byInterval[interval] ??= []).push(await measure(fleet, edges, connections, interval, settleMs, holdMs));
      }
    }
  } finally {
    await fleet.stop();
  }

  const fig = (interval: number, pick: (f: RoundFigures) => number, digits = 3): Spread =>
    spread((byInterval[interval] ?? []).map(pick), digits);
  const figures: Record<string, unknown> = { connections, edges, rounds, holdS: holdMs / 1000, intervals: {} };
  const summary: SummaryRow[] = [];
  for (const interval of intervals) {
    const per100k = fig(interval, (f) => f.edgeCoresPer100k);
    (figures['intervals'] as Record<string, unknown>)[String(interval)] = {
      edgeCores: fig(interval, (f) => f.cpu['edges'] ?? Number.NaN),
      edgeCoresPer100k: per100k,
      natsCores: fig(interval, (f) => f.cpu['nats'] ?? Number.NaN),
      redisCores: fig(interval, (f) => f.cpu['redis'] ?? Number.NaN),
      clientCores: fig(interval, (f) => f.cpu['clients'] ?? Number.NaN),
      pingsPerSecond: fig(interval, (f) => f.pingsPerSecond, 0),
      pongsPerSecond: fig(interval, (f) => f.pongsPerSecond, 0),
      rounds: byInterval[interval],
    };
    summary.push({
      bench: 'heartbeat',
      figure: `edge idle CPU per 100,000 connections pinging every ${interval} s (measured at ${connections.toLocaleString('en-US')}, scaled)`,
      value: `${showSpread(per100k)} cores`,
    });
  }
  const [short, long] = intervals;
  if (short !== undefined && long !== undefined) {
    const a = fig(short, (f) => f.edgeCoresPer100k).median;
    const b = fig(long, (f) => f.edgeCoresPer100k).median;
    summary.push({
      bench: 'heartbeat',
      figure: `edge idle CPU at ${long} s against ${short} s`,
      value: a > 0 && b > 0 ? `${round((b / a) * 100, 0)}% (${round(a / b, 1)}x less)` : 'too small to tell',
    });
  }
  return { name: 'heartbeat', figures, summary };
}

runIfMain(import.meta.url, () => runHeartbeat({ smoke: process.argv.includes('--smoke') }));
