import { mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { renderCharts, type BarChart } from './chart.js';

/**
 * Where each benchmark writes its figures: bench/results/<date>-<name>.json, .md and .svg
 * (BENCH_RESULTS_DIR elsewhere, as the smoke test does). A `--smoke` run without it writes to a
 * temp dir: its tiny figures must never overwrite the committed results of the same day.
 */
export function resultsDir(): string {
  const dir =
    process.env['BENCH_RESULTS_DIR'] ??
    (process.argv.includes('--smoke')
      ? path.join(os.tmpdir(), `bench-smoke-${process.pid}`)
      : fileURLToPath(new URL('../results/', import.meta.url)));
  return dir.endsWith('/') ? dir : `${dir}/`;
}

/** One line of the summary table printed by bench/run.ts. */
export interface SummaryRow {
  bench: string;
  figure: string;
  value: string;
  target?: string;
  /** 'yes' | 'no' when the figure has a target. */
  met?: string;
}

/** What a benchmark hands back: its figures (written to JSON), summary rows and charts. */
export interface BenchResult {
  name: string;
  figures: Record<string, unknown>;
  summary: SummaryRow[];
  charts?: BarChart[];
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

/**
 * Writes <date>-<name>.json (figures, date, machine, summary, charts), .md (the summary table)
 * and, when there are charts, .svg into resultsDir(); returns the JSON path.
 */
export function writeResult(result: BenchResult): string {
  const dir = resultsDir();
  mkdirSync(dir, { recursive: true });
  const date = new Date().toISOString();
  const base = `${dir}${date.slice(0, 10)}-${result.name}`;
  const doc = {
    name: result.name,
    date,
    machine: machine(),
    ...result.figures,
    summary: result.summary,
    ...(result.charts !== undefined ? { charts: result.charts } : {}),
  };
  writeFileSync(`${base}.json`, `${JSON.stringify(doc, null, 2)}\n`);
  writeFileSync(`${base}.md`, `# ${result.name} (${date})\n\n${markdownSummary(result.summary)}`);
  if (result.charts !== undefined && result.charts.length > 0)
    writeFileSync(`${base}.svg`, renderCharts(result.charts));
  return `${base}.json`;
}

/** Summary rows as a markdown table. */
export function markdownSummary(rows: readonly SummaryRow[]): string {
  const esc = (v: string | undefined): string => (v ?? '').replace(/\|/g, '\\|');
  const lines = ['| bench | figure | value | target | met |', '| --- | --- | --- | --- | --- |'];
  for (const r of rows) lines.push(`| ${[r.bench, r.figure, r.value, r.target, r.met].map(esc).join(' | ')} |`);
  return `${lines.join('\n')}\n`;
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
