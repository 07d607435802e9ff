/**
 * Scenario 5, fan-out: the same message to N connected users, MESSAGES times, one message at a
 * time (each reaches every client before the next is sent), measured as deliveries per second
 * of fan-out time (each message's send to its last receive, summed) and delivery latency.
 * Ours publishes to the app's broadcast topic `_all`, which every connection is subscribed to
 * (one stored copy, fanned out by the edge with uWS pub/sub); bare uWS publishes a frame of the
 * same bytes to a topic every socket joined (its native pub/sub, the ceiling); Socket.IO emits to
 * all through its Redis adapter. Each in turn, ROUNDS times; ours is reported as a percentage of
 * the bare uWS ceiling of the same round.
 *
 * One at a time, because uWS drains everything published in one event-loop turn with one write
 * per socket: messages that reach a server together cost one syscall per socket for all of them.
 * Sent back to back, ours (whose API answers once the message is stored, before the fan-out)
 * took several per write while the peer (which answers after its publish) took one each, and
 * ours measured 385% of the "ceiling". In lockstep every delivery is one frame in its own write
 * on both.
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
import { sleep } from './lib/procs.js';
import { atLeast, below } from './lib/goals.js';
import { round, sameRoundPercent } from './lib/stats.js';
import { LABELS, startTarget } from './lib/targets.js';

/** Goal for the memory one topic subscription of one connection costs the edge (issue 9). */
const TOPIC_SUB_BYTES_TARGET = 150;

/**
 * Memory per topic subscription per connection on our edge: N connections with no topic, then N
 * more each subscribed to K topics (`sub` frames, the token granting `*`); the second batch's
 * cost less the first's, over N x K. Both after a forced GC (the target's `memory()`).
 */
async function topicMemory(fleet: LoadFleet, n: number, k: number): Promise<{ rssBytes: number; heapBytes: number }> {
  const target = await startTarget('ours');
  try {
    await sleep(1000);
    const base = await target.memory();
    await fleet.openAll({ target, userPrefix: 'tm', first: 0, total: n, concurrency: 1000, retries: 20 });
    await sleep(1000);
    const plain = await target.memory();
    await fleet.openAll({ target, userPrefix: 'tm', first: n, total: n, concurrency: 1000, retries: 20, topics: k });
    await sleep(2000); // the subs are answered after the hello
    const subbed = await target.memory();
    const per = (a: number, b: number, c: number) => round((a - b - (b - c)) / (n * k), 1);
    return {
      rssBytes: per(subbed.rss, plain.rss, base.rss),
      heapBytes: per(subbed.heapUsed, plain.heapUsed, base.heapUsed),
    };
  } finally {
    await fleet.reset();
    await target.close();
  }
}

const CEILING_TARGET = 0.7;

interface FanoutRound {
  deliveriesPerSecond: number;
  /** Sum over the messages of send to last receive, ms. */
  fanoutMs: number;
  p50: number;
  p99: number;
  cpu: Record<string, number>;
  /** CPU of the server processes per delivery, microseconds. */
  serverUsPerDelivery: number;
}

export async function runFanout(opts: RunOptions = { smoke: false }): Promise<BenchResult> {
  const TARGETS = chosenTargets();
  const smoke = opts.smoke;
  const n = smoke ? 200 : env('BENCH_FANOUT_CONNECTIONS', 10_000);
  const messages = smoke ? 3 : env('BENCH_FANOUT_MESSAGES', 20);
  const rounds = smoke ? 1 : env('BENCH_FANOUT_ROUNDS', 3);
  const users = Array.from({ length: n }, (_, i) => `fo${i}`);
  const byTarget: Record<string, FanoutRound[]> = {};
  let topicMem: { connections: number; topics: number; rssBytes: number; heapBytes: number } | undefined;
  const fleet = LoadFleet.start(LoadFleet.sizeFor(n));
  try {
    await eachTargetRound({ scenario: 'fanout', targets: TARGETS, rounds, smoke, fleet }, async (target, r) => {
      await fleet.openAll({ target, userPrefix: 'fo', total: n, concurrency: 1000, retries: 20 });
      // A connection whose `_all` join failed (its read timed out on a busy store) still gets its
      // `hello`, and joins again 1-2 s later: a broadcast sent sooner can miss it (the smoke run
      // saw 0 of 200 twice when `hello` did not wait for the join at all).
      await new Promise((r) => setTimeout(r, 3000));
      await fleet.stats(true);
      const cpu = new CpuByRole(target, fleet);
      cpu.start();
      const t0 = monoMs();
      let fanoutMs = 0;
      for (let k = 0; k < messages; k++) {
        const sentAt = monoMs();
        await target.fanout(users, { k, s: sentAt });
        const got = await fleet.waitReceived(n * (k + 1), 60_000);
        expectAll(`${target.name} fan-out of message ${k + 1}`, got.received, n * (k + 1));
        fanoutMs += got.lastReceiveAt - sentAt;
      }
      const used = cpu.stop();
      const windowMs = monoMs() - t0;
      const s = await fleet.stats(true);
      const l = latency(s);
      const res: FanoutRound = {
        deliveriesPerSecond: Math.round(((n * messages) / fanoutMs) * 1000),
        fanoutMs: Math.round(fanoutMs),
        p50: l.p50,
        p99: l.p99,
        cpu: used,
        serverUsPerDelivery: round((((used['servers'] ?? Number.NaN) * windowMs) / (n * messages)) * 1000, 2),
      };
      note(
        `fanout round ${r + 1}/${rounds} ${target.name}: ${res.deliveriesPerSecond}/s, p99 ${res.p99} ms, server ${res.serverUsPerDelivery} us/delivery, cpu ${JSON.stringify(used)}`,
      );
      (byTarget[target.name] ??= []).push(res);
    });
    if (TARGETS.includes('ours')) {
      // 2 x tn connections on one edge process: 9,000 stays below its 19,000-connection cap.
      const tn = smoke ? 200 : env('BENCH_TOPIC_MEMORY_CONNECTIONS', 9_000);
      const tk = env('BENCH_TOPIC_MEMORY_TOPICS', 10);
      topicMem = { connections: tn, topics: tk, ...(await topicMemory(fleet, tn, tk)) };
      note(`topic memory: ${JSON.stringify(topicMem)}`);
    }
  } finally {
    await fleet.stop();
  }
  const rates = (name: string): number[] => (byTarget[name] ?? []).map((x) => x.deliveriesPerSecond);
  const shares = sameRoundPercent(rates('ours'), rates('uws'));
  const ratio = shares.length > 0 ? spread(shares) : undefined;
  const summary: SummaryRow[] = TARGETS.map((name) => ({
    bench: 'fanout',
    figure: `${LABELS[name]}: deliveries/s, ${messages} messages one at a time to ${n.toLocaleString('en-US')} users; p99; server CPU per delivery`,
    value: `${showSpread(spread(rates(name)), '/s')}; ${spread(
      (byTarget[name] ?? []).map((x) => x.p99),
      2,
    ).median.toLocaleString('en-US')} ms; ${spread(
      (byTarget[name] ?? []).map((x) => x.serverUsPerDelivery),
      2,
    ).median.toLocaleString('en-US')} us`,
  }));
  // Only when bare uWS ran in the same rounds (BENCH_TARGETS may leave it out): no share, no row.
  if (ratio !== undefined)
    summary.push({
      bench: 'fanout',
      figure: 'our edge as a share of the bare uWS ceiling (same round)',
      value: showSpread(ratio, '%'),
      ...atLeast(ratio.median, CEILING_TARGET * 100, '%'),
    });
  if (topicMem !== undefined) {
    summary.push({
      bench: 'fanout',
      figure: `our edge: memory per topic subscription per connection (${topicMem.connections.toLocaleString('en-US')} connections x ${topicMem.topics} topics), RSS; heap`,
      value: `${topicMem.rssBytes} B; ${topicMem.heapBytes} B`,
      ...below(topicMem.rssBytes, TOPIC_SUB_BYTES_TARGET, ' B'),
    });
  }
  return {
    name: 'fanout',
    figures: { connections: n, messages, rounds, targets: byTarget, oursPercentOfUws: ratio, topicMemory: topicMem },
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
        note: 'higher is better; one message at a time; ours stores one copy (the _all topic) and fans it out at the edge, the peers store nothing',
        log: true,
      },
    ],
  };
}

runIfMain(import.meta.url, () => runFanout({ smoke: process.argv.includes('--smoke') }));
