/**
 * Runs the benchmarks in sequence (or those named), writes bench/results/<name>.json for each and
 * prints one summary table.
 *
 *   npx tsx bench/run.ts                 # publish, unicast, memory
 *   npx tsx bench/run.ts unicast memory  # only those
 */
import { runMemory } from './memory.js';
import { runCleanups } from './lib/procs.js';
import { note, printSummary, writeResult, type BenchResult, type SummaryRow } from './lib/results.js';
import { runPublish } from './publish.js';
import { runUnicast } from './unicast.js';

const BENCHES: Record<string, () => Promise<BenchResult>> = {
  publish: runPublish,
  unicast: runUnicast,
  memory: runMemory,
};

async function main(): Promise<number> {
  const asked = process.argv.slice(2);
  const unknown = asked.filter((n) => BENCHES[n] === undefined);
  if (unknown.length > 0) {
    process.stderr.write(`unknown benchmark ${unknown.join(', ')}; choose from ${Object.keys(BENCHES).join(', ')}\n`);
    return 2;
  }
  const names = asked.length > 0 ? asked : Object.keys(BENCHES);
  const rows: SummaryRow[] = [];
  let failed = 0;
  for (const name of names) {
    const bench = BENCHES[name] as () => Promise<BenchResult>;
    note(`=== ${name}`);
    try {
      const result = await bench();
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

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    void runCleanups().finally(() => process.exit(1));
  },
);
