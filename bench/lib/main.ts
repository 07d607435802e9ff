import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { runCleanups } from './procs.js';
import { isMain, note, printSummary, writeResult, type BenchResult } from './results.js';

/**
 * Runs one benchmark when its module is the entry script: writes bench/results/<name>.json,
 * prints the summary, and cleans up even on failure (exit code 1).
 */
export function runIfMain(moduleUrl: string, bench: () => Promise<BenchResult>): void {
  if (!isMain(moduleUrl) || leaveTsxCli(moduleUrl)) return;
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

/**
 * Under the tsx CLI (`npx tsx bench/run.ts`), runs the benchmark again as `node --import tsx` in
 * a child and only relays signals and the exit code; returns true when it did (the caller must
 * not run the benchmark itself). Why: on Ctrl-C the tsx CLI kills its child with SIGKILL unless
 * the child's event loop reports the signal within 30 ms, and a benchmark stopping 56 edges is
 * busy for longer than that: it died halfway through its cleanup and left servers, streams and
 * databases behind. This process stays idle, so it always answers in time.
 */
export function leaveTsxCli(moduleUrl: string): boolean {
  if (!process.execArgv.some((a) => a.includes('tsx/dist/preflight'))) return false;
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(moduleUrl), ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  // A Ctrl-C reaches the child from the terminal too; it handles every repeat (procs.ts).
  const relay = (signal: NodeJS.Signals): void => {
    child.kill(signal);
  };
  process.on('SIGINT', relay);
  process.on('SIGTERM', relay);
  child.on('exit', (code, signal) => process.exit(code ?? (signal !== null ? 1 : 0)));
  return true;
}
