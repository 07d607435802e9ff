// Renders the bar charts that benchmarks put in their results JSON (a top-level `charts` array)
// as SVG files next to them: bench/results/<name>.json -> bench/results/<name>.svg.
//
//   npx tsx bench/charts.ts [results-dir]     (default: bench/results/)
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { renderCharts, type BarChart } from './lib/chart.js';
import { isMain, resultsDir } from './lib/results.js';

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isBarChart(value: unknown): value is BarChart {
  if (!isObject(value)) return false;
  const { title, unit, categories, series, note, log } = value;
  return (
    typeof title === 'string' &&
    typeof unit === 'string' &&
    Array.isArray(categories) &&
    categories.every((c) => typeof c === 'string') &&
    Array.isArray(series) &&
    series.every(
      (s) =>
        isObject(s) &&
        typeof s.name === 'string' &&
        Array.isArray(s.values) &&
        s.values.every((v) => v === null || typeof v === 'number'),
    ) &&
    (note === undefined || typeof note === 'string') &&
    (log === undefined || typeof log === 'boolean')
  );
}

/** The document's `charts` when it is a non-empty array of BarChart; undefined when absent or empty. */
function chartsOf(doc: unknown, file: string): BarChart[] | undefined {
  if (!isObject(doc) || doc.charts === undefined) return undefined;
  const { charts } = doc;
  if (!Array.isArray(charts) || !charts.every(isBarChart)) {
    throw new Error(`${file}: "charts" is not an array of BarChart`);
  }
  return charts.length > 0 ? charts : undefined;
}

/** Writes <name>.svg for every <name>.json in `dir` that has charts; returns the written paths. */
export async function renderResultCharts(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const names = entries
    .filter((e) => e.isFile() && e.name.endsWith('.json'))
    .map((e) => e.name)
    .sort();
  const written: string[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    let svg: string;
    try {
      const charts = chartsOf(JSON.parse(await readFile(file, 'utf8')) as unknown, file);
      if (charts === undefined) continue;
      svg = renderCharts(charts);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      throw new Error(message.startsWith(file) ? message : `${file}: ${message}`, { cause: err });
    }
    const out = path.join(dir, `${path.basename(name, '.json')}.svg`);
    await writeFile(out, svg);
    written.push(out);
  }
  return written;
}

if (isMain(import.meta.url)) {
  renderResultCharts(process.argv[2] ?? resultsDir()).then(
    (paths) => {
      for (const p of paths) process.stdout.write(`wrote ${p}\n`);
    },
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
