import { runCleanups } from './procs.js';
import { isMain, note, printSummary, writeResult, type BenchResult } from './results.js';

/**
 * Runs one benchmark when its module is the entry script: writes bench/results/<name>.json,
 * prints the summary, and cleans up even on failure (exit code 1).
 */
export function runIfMain(moduleUrl: string, bench: () => Promise<BenchResult>): void {
  if (!isMain(moduleUrl)) return;
  const main = async (): Promise<void> => {
    try {
      const result = await bench();
      note(`wrote ${writeResult(result)}`);
      printSummary(result.summary);
    } finally {
      await runCleanups();
    }
  };
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
