import { mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** Where each benchmark writes its figures: bench/results/<name>.json. */
export const RESULTS_DIR = fileURLToPath(new URL('../results/', import.meta.url));

/** One line of the summary table printed by bench/run.ts. */
export interface SummaryRow {
  bench: string;
  figure: string;
  value: string;
  target?: string;
  /** 'yes' | 'no' when the figure has a target. */
  met?: string;
}

/** What a benchmark hands back: its figures (written to JSON) and summary rows. */
export interface BenchResult {
  name: string;
  figures: Record<string, unknown>;
  summary: SummaryRow[];
}

/** The machine a figure was measured on. */
export function machine(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    node: process.version,
    cores: os.availableParallelism(),
    cpu: cpus[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    platform: `${process.platform}-${process.arch}`,
    kernel: os.release(),
  };
}

/** Writes bench/results/<name>.json with the date and machine; returns its path. */
export function writeResult(result: BenchResult): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const path = `${RESULTS_DIR}${result.name}.json`;
  const doc = {
    name: result.name,
    date: new Date().toISOString(),
    machine: machine(),
    ...result.figures,
    summary: result.summary,
  };
  writeFileSync(path, `${JSON.stringify(doc, null, 2)}\n`);
  return path;
}

/** Prints summary rows as an aligned table. */
export function printSummary(rows: readonly SummaryRow[]): void {
  const head: SummaryRow = { bench: 'bench', figure: 'figure', value: 'value', target: 'target', met: 'met' };
  const all = [head, ...rows];
  const cols: Array<keyof SummaryRow> = ['bench', 'figure', 'value', 'target', 'met'];
  const widths = cols.map((c) => Math.max(...all.map((r) => (r[c] ?? '').length)));
  const line = (r: SummaryRow): string =>
    cols
      .map((c, i) => (r[c] ?? '').padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  process.stdout.write(`${line(head)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n`);
  for (const r of rows) process.stdout.write(`${line(r)}\n`);
}

/** Logs a progress line to stderr with the time since the process started. */
export function note(msg: string): void {
  process.stderr.write(`[${process.uptime().toFixed(1).padStart(6)}s] ${msg}\n`);
}

/** True when the module at `moduleUrl` is the script node was started with. */
export function isMain(moduleUrl: string): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  return moduleUrl === pathToFileURL(realpathSync(script)).href || moduleUrl === pathToFileURL(script).href;
}
