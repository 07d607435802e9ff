/**
 * Scenario 1, idle connections: memory per idle connection and connects per second, for our edge
 * (authenticated: token check, presence write, live subscription, backlog check) and its peers
 * (bare uWebSockets.js, Socket.IO 4 with the Redis adapter), at 10,000 and 19,000 connections in
 * one server process; and our edge alone at 100,000 over several one-worker edge processes (a
 * process here may hold 20,000 file descriptors; Socket.IO and bare uWS are not run that wide).
 *
 * Each round starts every server afresh, in turn (ours, uws, sio), so the ratios compare servers
 * measured minutes apart on the same machine. Per connection = (memory at N - memory at 0) / N,
 * both after a forced full GC. Connects per second: STEP1 connections opened with CONCURRENCY
 * handshakes in flight, from the first connect to the last connection ready.
 *
 *   npx tsx bench/idle.ts
 */
import { LoadFleet, PER_CHILD, type OpenResult } from './lib/fleet.js';
import { runIfMain } from './lib/main.js';
import { sleep } from './lib/procs.js';
import { note, type BenchResult, type SummaryRow } from './lib/results.js';
import {
  CpuByRole,
  env,
  showSpread,
  spread,
  type RunOptions,
  type Spread,
  chosenTargets,
  eachTargetRound,
  quietFirst,
} from './lib/scenario.js';
import { round } from './lib/stats.js';
import { LABELS, OursTarget, type Memory, type Target } from './lib/targets.js';

const MEMORY_TARGET_KB = 3;
const SIO_RATIO_TARGET = 5;
const CONNECTS_TARGET = 10_000;
/** Issue 16: our connects/s at least this share of bare uWS's, same run, %. */
const CONNECTS_SHARE_TARGET = 60;

interface StepFigures {
  connections: number;
  rssPerConnKB: number;
  heapPerConnKB: number;
}

interface RoundFigures {
  /** The first step's connects on a fresh server process (its JIT cold, as after a restart). */
  connectsPerSecond: number;
  /** The second step's, on the same process, warm from the first (NaN with one step). */
  warmConnectsPerSecond: number;
  connectCpu: Record<string, number>;
  steps: StepFigures[];
  failures: Record<string, number>;
}

function perConn(m: Memory, base: Memory, n: number): StepFigures {
  return {
    connections: n,
    rssPerConnKB: round((m.rss - base.rss) / n / 1024, 2),
    heapPerConnKB: round((m.heapUsed - base.heapUsed) / n / 1024, 2),
  };
}

async function measure(
  target: Target,
  fleet: LoadFleet,
  steps: number[],
  concurrency: number,
  settleMs: number,
): Promise<RoundFigures> {
  await sleep(settleMs);
  const base = await target.memory();
  const cpu = new CpuByRole(target, fleet);
  const out: RoundFigures = {
    connectsPerSecond: 0,
    warmConnectsPerSecond: Number.NaN,
    connectCpu: {},
    steps: [],
    failures: {},
  };
  let open = 0;
  let lost = 0;
  for (const [i, n] of steps.entries()) {
    if (i === 0) cpu.start();
    const r: OpenResult = await fleet.open({
      target,
      userPrefix: 'idle',
      first: open,
      total: n - open,
      concurrency,
    });
    for (const [k, v] of Object.entries(r.failures)) out.failures[k] = (out.failures[k] ?? 0) + v;
    // A few refused or timed-out connects are reported, not fatal: memory is divided by the
    // connections the server itself counts.
    if (r.failed > (n - open) / 100)
      throw new Error(`${target.label}: ${r.failed} of ${n - open} connects failed: ${JSON.stringify(r.failures)}`);
    lost += r.failed;
    if (i === 0) {
      out.connectsPerSecond = Math.round(r.perSecond);
      out.connectCpu = cpu.stop();
    }
    if (i === 1) out.warmConnectsPerSecond = Math.round(r.perSecond);
    open = n;
    await sleep(settleMs);
    const m = await target.memory();
    const held = n - lost;
    if (Math.abs(m.connections - held) > held / 100)
      throw new Error(`${target.label} reports ${m.connections} connections, expected about ${held}`);
    out.steps.push(perConn(m, base, m.connections));
    note(
      `${target.name} ${n}: ${out.steps.at(-1)?.rssPerConnKB} KB RSS/conn, ${out.steps.at(-1)?.heapPerConnKB} KB heap/conn`,
    );
  }
  return out;
}

export async function runIdle(opts: RunOptions = { smoke: false }): Promise<BenchResult> {
  const TARGETS = chosenTargets();
  const smoke = opts.smoke;
  const steps = smoke ? [100, 200] : [env('BENCH_IDLE_STEP1', 10_000), env('BENCH_IDLE_STEP2', 19_000)];
  const big = smoke ? 0 : env('BENCH_IDLE_BIG', 100_000);
  const rounds = smoke ? 1 : env('BENCH_IDLE_ROUNDS', 3);
  const concurrency = env('BENCH_IDLE_CONCURRENCY', smoke ? 50 : 1000);
  const settleMs = smoke ? 100 : env('BENCH_IDLE_SETTLE_MS', 3000);
  const maxStep = Math.max(...steps);

  const byTarget: Record<string, RoundFigures[]> = {};
  const fleet = LoadFleet.start(LoadFleet.sizeFor(maxStep));
  try {
    await eachTargetRound({ scenario: 'idle', targets: TARGETS, rounds, smoke, fleet }, async (target) => {
      (byTarget[target.name] ??= []).push(await measure(target, fleet, steps, concurrency, settleMs));
    });
  } finally {
    await fleet.stop();
  }

  // Ours at 100k: several edge processes, each under the descriptor limit.
  let wide: RoundFigures | undefined;
  let wideError: string | undefined;
  if (big > 0) {
    await quietFirst(smoke);
    const edges = Math.ceil(big / PER_CHILD);
    note(`idle: ours at ${big} over ${edges} edge processes`);
    const target = await OursTarget.start(edges);
    const wideFleet = LoadFleet.start(edges);
    try {
      wide = await measure(target, wideFleet, [big], concurrency, settleMs);
    } catch (err) {
      // Reported in the summary; the figures of the rounds above still count.
      wideError = err instanceof Error ? err.message : String(err);
      note(`idle at ${big}: ${wideError}`);
    } finally {
      await wideFleet.reset();
      await wideFleet.stop();
      await target.close();
    }
  }

  const fig = (name: string, pick: (r: RoundFigures) => number, digits = 2): Spread =>
    spread((byTarget[name] ?? []).map(pick), digits);
  const summary: SummaryRow[] = [];
  const figures: Record<string, unknown> = { steps, rounds, concurrency, big, targets: {} };
  const targetsFig = figures['targets'] as Record<string, unknown>;
  for (const name of TARGETS) {
    const t: Record<string, unknown> = {
      connectsPerSecond: fig(name, (r) => r.connectsPerSecond, 0),
      warmConnectsPerSecond: fig(name, (r) => r.warmConnectsPerSecond, 0),
      connectCpu: byTarget[name]?.map((r) => r.connectCpu),
    };
    for (const [i, n] of steps.entries()) {
      t[`rssPerConnKB@${n}`] = fig(name, (r) => r.steps[i]?.rssPerConnKB ?? Number.NaN);
      t[`heapPerConnKB@${n}`] = fig(name, (r) => r.steps[i]?.heapPerConnKB ?? Number.NaN);
    }
    targetsFig[name] = t;
  }
  if (wide !== undefined) targetsFig['ours@wide'] = wide;

  const rss = (name: string, i: number): number => fig(name, (r) => r.steps[i]?.rssPerConnKB ?? Number.NaN).median;
  const heap = (name: string, i: number): number => fig(name, (r) => r.steps[i]?.heapPerConnKB ?? Number.NaN).median;
  for (const [i, n] of steps.entries()) {
    const ours = rss('ours', i);
    summary.push({
      bench: 'idle',
      figure: `our edge RSS / heap per connection at ${n.toLocaleString('en-US')}`,
      value: `${ours} / ${heap('ours', i)} KB`,
      target: `< ${MEMORY_TARGET_KB} KB`,
      met: ours < MEMORY_TARGET_KB ? 'yes' : 'no',
    });
    for (const peer of (['uws', 'sio'] as const).filter((p) => TARGETS.includes(p))) {
      const p = rss(peer, i);
      const ratio = round(p / ours, 1);
      summary.push({
        bench: 'idle',
        figure: `${LABELS[peer]} RSS / heap per connection at ${n.toLocaleString('en-US')}`,
        value: `${p} / ${heap(peer, i)} KB (${peer === 'uws' ? `ours is ${round((ours / p) * 100, 0)}% of it` : `${ratio}x ours`})`,
        ...(peer === 'sio'
          ? { target: `>= ${SIO_RATIO_TARGET}x ours`, met: ratio >= SIO_RATIO_TARGET ? 'yes' : 'no' }
          : {}),
      });
    }
  }
  for (const name of TARGETS) {
    const c = fig(name, (r) => r.connectsPerSecond, 0);
    summary.push({
      bench: 'idle',
      figure: `${LABELS[name]}: connects/s (${steps[0]?.toLocaleString('en-US')}, ${concurrency} in flight)`,
      value: showSpread(c, '/s'),
      ...(name === 'ours'
        ? { target: `>= ${CONNECTS_TARGET.toLocaleString('en-US')}/s`, met: c.median >= CONNECTS_TARGET ? 'yes' : 'no' }
        : {}),
    });
  }
  // Issue 16: ours against bare uWS in the same rounds (each round runs both, minutes apart).
  const oursRounds = byTarget['ours'] ?? [];
  const uwsRounds = byTarget['uws'] ?? [];
  const shareOf = (pick: (r: RoundFigures) => number): Spread =>
    spread(oursRounds.map((r, i) => (pick(r) / pick(uwsRounds[i] as RoundFigures)) * 100).filter(Number.isFinite));
  if (oursRounds.length > 0 && uwsRounds.length > 0) {
    const share = shareOf((r) => r.connectsPerSecond);
    summary.push({
      bench: 'idle',
      figure: `our connects/s as a share of bare uWS's, same round (${concurrency} in flight)`,
      value: showSpread(share, '%'),
      target: `>= ${CONNECTS_SHARE_TARGET}%`,
      met: share.median >= CONNECTS_SHARE_TARGET ? 'yes' : 'no',
    });
  }
  // The judged figure above is each server's first connects after its start, which for ours
  // includes warming up its JavaScript (edge CPU a connect 190-225 µs cold against 120-160 µs
  // warm, measured 2026-12-07); the next step shows the same servers warm. Beside it, not judged.
  const next = (steps[1] ?? 0) - (steps[0] ?? 0);
  if (next > 0) {
    for (const name of TARGETS) {
      summary.push({
        bench: 'idle',
        figure: `${LABELS[name]}: connects/s warm (the next ${next.toLocaleString('en-US')}, ${concurrency} in flight)`,
        value: showSpread(
          fig(name, (r) => r.warmConnectsPerSecond, 0),
          '/s',
        ),
      });
    }
    if (oursRounds.length > 0 && uwsRounds.length > 0) {
      summary.push({
        bench: 'idle',
        figure: `our warm connects/s as a share of bare uWS's, same round`,
        value: showSpread(
          shareOf((r) => r.warmConnectsPerSecond),
          '%',
        ),
      });
    }
  }
  if (wideError !== undefined) {
    summary.push({
      bench: 'idle',
      figure: `our edge at ${big.toLocaleString('en-US')}`,
      value: `FAILED: ${wideError}`,
    });
  }
  if (wide !== undefined) {
    const w = wide.steps[0];
    summary.push({
      bench: 'idle',
      figure: `our edge at ${big.toLocaleString('en-US')} (${Math.ceil(big / PER_CHILD)} edge processes): RSS / heap per connection; connects/s`,
      value: `${w?.rssPerConnKB} / ${w?.heapPerConnKB} KB; ${wide.connectsPerSecond.toLocaleString('en-US')}/s`,
      target: `< ${MEMORY_TARGET_KB} KB`,
      met: (w?.rssPerConnKB ?? Infinity) < MEMORY_TARGET_KB ? 'yes' : 'no',
    });
  }

  const categories = steps.map((n) => `${n.toLocaleString('en-US')} conns`);
  return {
    name: 'idle',
    figures,
    summary,
    charts: [
      {
        title: 'Memory per idle connection (RSS, after GC)',
        unit: 'KB',
        categories,
        series: TARGETS.map((name) => ({ name: LABELS[name], values: steps.map((_, i) => rss(name, i)) })),
        note: 'lower is better; median of rounds',
      },
      {
        title: 'Connects per second (handshake to ready)',
        unit: 'connects/s',
        categories: [`${steps[0]?.toLocaleString('en-US')} conns, ${concurrency} in flight`],
        series: TARGETS.map((name) => ({
          name: LABELS[name],
          values: [fig(name, (r) => r.connectsPerSecond, 0).median],
        })),
        note: 'higher is better; ours includes token check, presence, subscription and backlog check',
      },
    ],
  };
}

runIfMain(import.meta.url, () => runIdle({ smoke: process.argv.includes('--smoke') }));
