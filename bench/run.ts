/**
 * Runs the benchmark scenarios in sequence (or those named), writes
 * bench/results/<date>-<name>.json, .md and .svg for each, and prints one summary table.
 *
 *   npx tsx bench/run.ts                    # every scenario (about 25 minutes)
 *   npx tsx bench/run.ts idle fanout        # only those (idle | storm | ... | million | heartbeat)
 *   npx tsx bench/run.ts --smoke            # tiny sizes, one round each (minutes; make bench-smoke),
 *                                           # written to a temp dir unless BENCH_RESULTS_DIR is set
 */
import { runBacklog } from './backlog.js';
import { runBroadcast } from './broadcast.js';
import { runFailover } from './failover.js';
import { runFanout } from './fanout.js';
import { runHeartbeat } from './heartbeat.js';
import { runIdle } from './idle.js';
import { runJobs } from './jobs.js';
import { runMillion } from './million.js';
import { runMultiApp } from './multi-app.js';
import { leaveTsxCli } from './lib/main.js';
import { runCleanups } from './lib/procs.js';
import { note, printSummary, writeResult, type BenchResult, type SummaryRow } from './lib/results.js';
import type { RunOptions } from './lib/scenario.js';
import { runPublish } from './publish.js';
import { runStorm } from './storm.js';
import { runTransient } from './transient.js';
import { runUnicast } from './unicast.js';
import { runUpstream } from './upstream.js';
import { runWebhooks } from './webhooks.js';

const BENCHES: Record<string, (o: RunOptions) => Promise<BenchResult>> = {
  idle: runIdle,
  storm: runStorm,
  unicast: runUnicast,
  transient: runTransient,
  backlog: runBacklog,
  fanout: runFanout,
  publish: runPublish,
  jobs: runJobs,
  upstream: runUpstream,
  webhooks: runWebhooks,
  broadcast: runBroadcast,
  failover: runFailover,
  million: runMillion,
  heartbeat: runHeartbeat,
  'multi-app': runMultiApp,
};

const NOT_IN_SMOKE = ['failover'];
/** Run at full size only when named: a million connections take this machine most of an hour. */
const ONLY_WHEN_NAMED = ['million'];

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const smoke = args.includes('--smoke');
  const asked = args.filter((a) => a !== '--smoke');
  const unknown = asked.filter((n) => BENCHES[n] === undefined);
  if (unknown.length > 0) {
    process.stderr.write(`unknown benchmark ${unknown.join(', ')}; choose from ${Object.keys(BENCHES).join(', ')}\n`);
    return 2;
  }
  // failover runs five faults on a private cluster, minutes even small: the fault suite (make
  // test-faults) runs its driver, so the smoke run of every scenario leaves it out unless named.
  // million at full size holds most of the machine for most of an hour: only when named (its
  // smoke size runs with the others).
  const names =
    asked.length > 0
      ? asked
      : Object.keys(BENCHES).filter((n) => (smoke ? !NOT_IN_SMOKE.includes(n) : !ONLY_WHEN_NAMED.includes(n)));
  const rows: SummaryRow[] = [];
  let failed = 0;
  for (const name of names) {
    const bench = BENCHES[name] as (o: RunOptions) => Promise<BenchResult>;
    note(`=== ${name}${smoke ? ' (smoke)' : ''}`);
    try {
      const result = await bench({ smoke });
      note(`wrote ${writeResult(result)}`);
      rows.push(...result.summary);
    } catch (err) {
      failed++;
      process.stderr.write(`${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      rows.push({
        bench: name,
        figure: 'FAILED',
        value: err instanceof Error ? (err.message.split('\n')[0] ?? '') : String(err),
      });
    } finally {
      await runCleanups();
    }
  }
  process.stdout.write('\n');
  printSummary(rows);
  return failed > 0 ? 1 : 0;
}

if (!leaveTsxCli(import.meta.url))
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`${String(err)}\n`);
      void runCleanups().finally(() => process.exit(1));
    },
  );
