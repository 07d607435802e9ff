/**
 * Scenario 5, fan-out: the same message to N connected users, MESSAGES times, measured as
 * deliveries per second at the clients (first send to last receive) and delivery latency.
 * Ours goes through the batch push API (one stored copy per user: topics and broadcast do not
 * exist yet); bare uWS publishes to a topic every socket joined (its native pub/sub, the
 * ceiling); Socket.IO emits to all through its Redis adapter. Each in turn, ROUNDS times; ours
 * is reported as a percentage of the bare uWS ceiling of the same round.
 *
 *   npx tsx bench/fanout.ts
 */
import { LoadFleet } from './lib/fleet.js';
import { monoMs } from './lib/hist.js';
import { runIfMain } from './lib/main.js';
import { note, type BenchResult, type SummaryRow } from './lib/results.js';
import {
  CpuByRole,
  env,
  expectAll,
  latency,
  showSpread,
  spread,
  type RunOptions,
  chosenTargets,
  eachTargetRound,
} from './lib/scenario.js';
import { round } from './lib/stats.js';
import { LABELS } from './lib/targets.js';

const CEILING_TARGET = 0.7;

interface FanoutRound {
  deliveriesPerSecond: number;
  p50: number;
  p99: number;
  cpu: Record<string, number>;
}

export async function runFanout(opts: RunOptions = { smoke: false }): Promise<BenchResult> {
  const TARGETS = chosenTargets();
  const smoke = opts.smoke;
  const n = smoke ? 200 : env('BENCH_FANOUT_CONNECTIONS', 10_000);
  const messages = smoke ? 3 : env('BENCH_FANOUT_MESSAGES', 20);
  const rounds = smoke ? 1 : env('BENCH_FANOUT_ROUNDS', 3);
  const users = Array.from({ length: n }, (_, i) => `fo${i}`);
  const byTarget: Record<string, FanoutRound[]> = {};
  const fleet = LoadFleet.start(LoadFleet.sizeFor(n));
  try {
    await eachTargetRound({ scenario: 'fanout', targets: TARGETS, rounds, smoke, fleet }, async (target, r) => {
      await fleet.openAll({ target, userPrefix: 'fo', total: n, concurrency: 1000, retries: 20 });
      await fleet.stats(true);
      const cpu = new CpuByRole(target, fleet);
      cpu.start();
      const t0 = monoMs();
      for (let k = 0; k < messages; k++) await target.fanout(users, { k, s: monoMs() });
      const got = await fleet.waitReceived(n * messages, 300_000);
      const used = cpu.stop();
      expectAll(`${target.name} fan-out`, got.received, n * messages);
      const s = await fleet.stats(true);
      const l = latency(s);
      const res: FanoutRound = {
        deliveriesPerSecond: Math.round((got.received / (got.lastReceiveAt - t0)) * 1000),
        p50: l.p50,
        p99: l.p99,
        cpu: used,
      };
      note(
        `fanout round ${r + 1}/${rounds} ${target.name}: ${res.deliveriesPerSecond}/s, p99 ${res.p99} ms, cpu ${JSON.stringify(used)}`,
      );
      (byTarget[target.name] ??= []).push(res);
    });
  } finally {
    await fleet.stop();
  }
  const ratios = (byTarget['ours'] ?? []).map(
    (o, i) => o.deliveriesPerSecond / (byTarget['uws']?.[i]?.deliveriesPerSecond ?? Number.NaN),
  );
  const ratio = spread(ratios.map((x) => x * 100));
  const summary: SummaryRow[] = TARGETS.map((name) => ({
    bench: 'fanout',
    figure: `${LABELS[name]}: deliveries/s, ${messages} messages to ${n.toLocaleString('en-US')} users; p99`,
    value: `${showSpread(spread((byTarget[name] ?? []).map((x) => x.deliveriesPerSecond)), '/s')}; ${round(
      spread(
        (byTarget[name] ?? []).map((x) => x.p99),
        2,
      ).median,
      2,
    )} ms`,
  }));
  summary.push({
    bench: 'fanout',
    figure: 'our edge as a share of the bare uWS ceiling (same round)',
    value: showSpread(ratio, '%'),
    target: `>= ${CEILING_TARGET * 100}%`,
    met: ratio.median >= CEILING_TARGET * 100 ? 'yes' : 'no',
  });
  return {
    name: 'fanout',
    figures: { connections: n, messages, rounds, targets: byTarget, oursPercentOfUws: ratio },
    summary,
    charts: [
      {
        title: `Fan-out: ${messages} messages to ${n.toLocaleString('en-US')} users`,
        unit: 'deliveries/s',
        categories: ['deliveries per second'],
        series: TARGETS.map((name) => ({
          name: LABELS[name],
          values: [spread((byTarget[name] ?? []).map((x) => x.deliveriesPerSecond)).median],
        })),
        note: 'higher is better; ours stores a copy per user (batch API), the peers store nothing',
        log: true,
      },
    ],
  };
}

runIfMain(import.meta.url, () => runFanout({ smoke: process.argv.includes('--smoke') }));
