/**
 * Failover (issue 15): our center and an edge on a private 3-node JetStream cluster (R3 streams),
 * 300 single-message pushes/s to 100 online users (acking) and 10 offline users (who connect at
 * the end), while a fault hits the cluster: kill -9 of the inbox stream's leader, of the topic
 * stream's leader (topic publishes to 10 topics of 10 subscribers each instead), of a follower,
 * and rolling restarts of every node with and without lame duck mode. Per fault: pushes
 * refused, the longest refused stretch, accepted messages lost or delivered twice, acked
 * messages left stored, and the accept latency. The driver is bench/lib/failover.ts, which the
 * fault suite (test/faults/) runs too.
 *
 *   npx tsx bench/run.ts failover                    # every fault
 *   BENCH_FAILOVER_FAULTS=leader-kill npx tsx bench/failover.ts
 */
import { DEFAULT_LOAD, FAULT_NAMES, FailoverSystem, type FaultFigures, type FaultName } from './lib/failover.js';
import { atMost, below, type Goal } from './lib/goals.js';
import { runIfMain } from './lib/main.js';
import { note, type BenchResult, type SummaryRow } from './lib/results.js';
import { median } from './lib/stats.js';
import { env, quietFirst, type RunOptions } from './lib/scenario.js';

/** Median of a figure over the runs of one fault, with each run's value, for the summary. */
function over(runs: FaultFigures[], pick: (f: FaultFigures) => number, unit = ''): { median: number; text: string } {
  const values = runs.map(pick);
  const m = median(values);
  return { median: m, text: `${m}${unit}${values.length > 1 ? ` (runs: ${values.join(', ')})` : ''}` };
}

/**
 * The targets of each fault, from issue 15: refusals and the refused stretch as the median of
 * the runs, loss and acked messages left stored as the worst run (one loss in any run is a miss).
 */
function goals(runs: FaultFigures[]): Array<{ figure: string; value: string; goal?: Goal }> {
  const f = runs[0] as FaultFigures;
  const rows: Array<{ figure: string; value: string; goal?: Goal }> = [];
  const leader = f.fault === 'leader-kill' || f.fault === 'topic-leader-kill';
  const refused = over(runs, (r) => r.refusedPercent, '%');
  const refusedCount = over(runs, (r) => r.refused);
  const pushes = over(runs, (r) => r.pushes);
  const refusedValue = `${refusedCount.text} of ${pushes.median} (median ${refused.text})`;
  if (leader) rows.push({ figure: 'pushes refused', value: refusedValue, goal: atMost(refused.median, 0.5, '%') });
  else if (f.fault === 'follower-kill' || f.fault === 'rolling-ldm')
    rows.push({ figure: 'pushes refused', value: refusedValue, goal: atMost(refusedCount.median, 0) });
  else rows.push({ figure: 'pushes refused', value: refusedValue });
  const stretch = over(runs, (r) => r.longestRefusedMs, ' ms');
  rows.push({
    figure: 'longest refused stretch',
    value: stretch.text,
    ...(leader ? { goal: below(stretch.median, 1000, ' ms') } : {}),
  });
  const lost = Math.max(...runs.map((r) => r.lost));
  rows.push({ figure: 'accepted and lost (worst run)', value: String(lost), goal: atMost(lost, 0) });
  rows.push({ figure: 'duplicates delivered (worst run)', value: String(Math.max(...runs.map((r) => r.duplicates))) });
  if (f.ackedLeftStored !== null) {
    const left = Math.max(...runs.map((r) => r.ackedLeftStored ?? 0));
    rows.push({ figure: 'acked left stored (worst run)', value: String(left), goal: atMost(left, 0) });
  }
  rows.push({ figure: 'accept latency p99', value: over(runs, (r) => r.latencyMs.p99, ' ms').text });
  if (f.newLeaderMs !== null)
    rows.push({
      figure: 'stream without a leader after the kill',
      value: over(runs, (r) => r.newLeaderMs ?? 0, ' ms').text,
    });
  return rows;
}

export async function runFailover(opts: RunOptions = { smoke: false }): Promise<BenchResult> {
  const asked = (process.env['BENCH_FAILOVER_FAULTS'] ?? '').split(',').filter((s) => s !== '');
  const bad = asked.filter((a) => !FAULT_NAMES.includes(a as FaultName));
  if (bad.length > 0)
    throw new Error(`BENCH_FAILOVER_FAULTS: unknown ${bad.join(', ')}; choose from ${FAULT_NAMES.join(', ')}`);
  const faults = asked.length > 0 ? (asked as FaultName[]) : FAULT_NAMES;
  const load = {
    ...DEFAULT_LOAD,
    rate: env('BENCH_FAILOVER_RATE', DEFAULT_LOAD.rate),
    onlineUsers: env('BENCH_FAILOVER_ONLINE', DEFAULT_LOAD.onlineUsers),
    offlineUsers: env('BENCH_FAILOVER_OFFLINE', DEFAULT_LOAD.offlineUsers),
    withIds: process.env['BENCH_FAILOVER_IDS'] === '1',
  };
  // Each fault RUNS times (medians of 3 by default: machines are shared and elections vary).
  const runs = Math.max(1, env('BENCH_FAILOVER_RUNS', opts.smoke ? 1 : 3));
  const results: FaultFigures[] = [];
  await quietFirst(opts.smoke);
  const system = await FailoverSystem.start();
  try {
    for (let run = 0; run < runs; run++)
      for (const name of faults) {
        const f = await system.run(name, load, note);
        results.push(f);
        note(
          `${name}: refused ${f.refused}/${f.pushes} (${f.refusedPercent}%, ${JSON.stringify(f.refusals)}), longest ${f.longestRefusedMs} ms, lost ${f.lost}, duplicates ${f.duplicates}, out of order ${f.outOfOrder}, acked left ${String(f.ackedLeftStored)}, p99 ${f.latencyMs.p99} ms${f.refused > 0 ? `, refused after ${f.refusedAfterMs.min}-${f.refusedAfterMs.max} ms` : ''}`,
        );
      }
  } finally {
    await system.close();
  }
  const summary: SummaryRow[] = [];
  for (const name of faults)
    for (const g of goals(results.filter((f) => f.fault === name)))
      summary.push({
        bench: 'failover',
        figure: `${name}: ${g.figure}`,
        value: g.value,
        ...(g.goal !== undefined ? g.goal : {}),
      });
  return {
    name: 'failover',
    figures: {
      config: {
        ...load,
        runs,
        cluster: '3 nodes, R3 streams, one edge and one center connected to every node (PUSH_NATS_URL seeds)',
        pushes:
          'one call per message; inbox faults: round-robin over the online and offline users; topic-leader-kill: over 10 topics of 10 subscribers',
      },
      faults: results,
    },
    summary,
  };
}

runIfMain(import.meta.url, () => runFailover({ smoke: process.argv.includes('--smoke') }));
