// A small dependency-free SVG renderer for grouped bar charts of benchmark results.
// Output is deterministic: the same input always gives the same SVG text.

/** One bar per category; null means "not measured" (no bar, labelled "n/a"). */
export interface ChartSeries {
  name: string;
  values: Array<number | null>;
}

export interface BarChart {
  /** e.g. "Edge memory per idle connection" */
  title: string;
  /** e.g. "KB", "msgs/s", "ms"; drawn as the y-axis label. */
  unit: string;
  /** x-axis groups, e.g. ["10k", "19k"]. */
  categories: string[];
  /** One bar per series in each group; values.length === categories.length. */
  series: ChartSeries[];
  /** One line of small text under the chart, e.g. "lower is better". */
  note?: string;
  /** Logarithmic value axis; values <= 0 are then drawn as n/a. */
  log?: boolean;
}

const WIDTH = 720;
const HEIGHT = 400;
const PLOT = { left: 80, right: 700, top: 50, bottom: 290 };
const FONT = 'font-family="Helvetica, Arial, sans-serif"';
/** Fixed colour per series index (Tableau 10 subset), reused cyclically past six series. */
const COLOURS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#b07aa1', '#76b7b2'];

/** Escapes text for use in XML content and attribute values. */
function esc(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/** A coordinate rounded to 0.1 px, so output stays short and stable. */
function px(n: number): string {
  return String(Math.round(n * 10) / 10);
}

/** Drops floating-point noise such as 0.15000000000000002. */
function clean(n: number): number {
  return Number(n.toPrecision(12));
}

/** Formats a value for labels: 1.5k, 20k, 1.2M, 3G; up to 2 decimals below 1000. */
export function formatNumber(value: number): string {
  const abs = Math.abs(value);
  if (!Number.isFinite(value)) return String(value);
  if (abs < 1000) {
    if (abs !== 0 && abs < 0.01) return String(Number(value.toPrecision(2)));
    const rounded = Number(value.toFixed(2));
    return Math.abs(rounded) >= 1000 ? formatNumber(rounded) : String(rounded);
  }
  let power = Math.min(4, Math.floor(Math.log10(abs) / 3));
  const round = (p: number): number => {
    const scaled = value / 1000 ** p;
    return Number(scaled.toFixed(Math.abs(scaled) < 10 ? 2 : Math.abs(scaled) < 100 ? 1 : 0));
  };
  // 999,999 rounds to 1000k: show it as 1M instead.
  if (Math.abs(round(power)) >= 1000 && power < 4) power += 1;
  return `${round(power)}${['', 'k', 'M', 'G', 'T'][power]}`;
}

/** The 1, 2 or 5 x 10^n step nearest to `rough` (on a log scale). */
function niceStep(rough: number): number {
  const power = 10 ** Math.floor(Math.log10(rough));
  const f = rough / power;
  return (f < Math.SQRT2 ? 1 : f < Math.sqrt(10) ? 2 : f < Math.sqrt(50) ? 5 : 10) * power;
}

interface Scale {
  /** Maps a value to its y pixel. */
  y: (value: number) => number;
  /** Where bars start (y pixel of 0, or of the axis bottom on a log scale). */
  base: number;
  ticks: number[];
  /** Whether a value can be drawn on this scale. */
  drawable: (value: number | null) => value is number;
}

function linearScale(values: number[]): Scale {
  let lo = Math.min(0, ...values);
  let hi = Math.max(0, ...values);
  if (lo === hi) hi = 1;
  const step = niceStep((hi - lo) / 5);
  lo = Math.floor(clean(lo / step)) * step;
  hi = Math.ceil(clean(hi / step)) * step;
  const ticks: number[] = [];
  for (let i = 0; lo + i * step <= hi + step / 2; i++) ticks.push(clean(lo + i * step));
  const y = (v: number): number => PLOT.bottom - ((v - lo) / (hi - lo)) * (PLOT.bottom - PLOT.top);
  const drawable = (v: number | null): v is number => v !== null && Number.isFinite(v);
  return { y, base: y(0), ticks, drawable };
}

function logScale(values: number[]): Scale {
  const positive = values.filter((v) => v > 0);
  let loExp = positive.length > 0 ? Math.floor(Math.log10(Math.min(...positive))) : 0;
  // Start a decade below an exact power of ten so the smallest bar stays visible.
  if (positive.length === 0 || 10 ** loExp >= Math.min(...positive)) loExp -= 1;
  let hiExp = positive.length > 0 ? Math.ceil(Math.log10(Math.max(...positive))) : 1;
  if (hiExp <= loExp) hiExp = loExp + 1;
  const ticks: number[] = [];
  for (let e = loExp; e <= hiExp; e++) ticks.push(clean(10 ** e));
  const y = (v: number): number => PLOT.bottom - ((Math.log10(v) - loExp) / (hiExp - loExp)) * (PLOT.bottom - PLOT.top);
  const drawable = (v: number | null): v is number => v !== null && Number.isFinite(v) && v > 0;
  return { y, base: PLOT.bottom, ticks, drawable };
}

function validate(chart: BarChart): void {
  const name = JSON.stringify(chart.title);
  if (chart.categories.length === 0) throw new Error(`chart ${name}: no categories`);
  if (chart.series.length === 0) throw new Error(`chart ${name}: no series`);
  for (const s of chart.series) {
    if (s.values.length !== chart.categories.length) {
      throw new Error(
        `chart ${name}: series ${JSON.stringify(s.name)} has ${s.values.length} values ` +
          `but there are ${chart.categories.length} categories`,
      );
    }
  }
}

/** The chart's elements, drawn in a WIDTH x HEIGHT box at the origin. */
function chartBody(chart: BarChart): string[] {
  validate(chart);
  const all = chart.series.flatMap((s) => s.values).filter((v): v is number => v !== null && Number.isFinite(v));
  const scale = chart.log ? logScale(all) : linearScale(all);
  const out: string[] = [];
  const text = (x: number, y: number, attrs: string, content: string): void => {
    out.push(`<text x="${px(x)}" y="${px(y)}" ${attrs}>${esc(content)}</text>`);
  };

  out.push(`<rect class="background" x="0" y="0" width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`);
  text(WIDTH / 2, 30, 'class="title" font-size="17" font-weight="bold" text-anchor="middle"', chart.title);

  // Gridlines and tick labels.
  for (const tick of scale.ticks) {
    const y = scale.y(tick);
    out.push(`<line class="grid" x1="${PLOT.left}" y1="${px(y)}" x2="${PLOT.right}" y2="${px(y)}" stroke="#e0e0e0"/>`);
    text(PLOT.left - 8, y + 4, 'class="tick" font-size="12" fill="#555555" text-anchor="end"', formatNumber(tick));
  }
  const midY = (PLOT.top + PLOT.bottom) / 2;
  out.push(
    `<text class="unit" x="20" y="${px(midY)}" font-size="13" fill="#333333" text-anchor="middle" ` +
      `transform="rotate(-90 20 ${px(midY)})">${esc(chart.unit)}</text>`,
  );

  // Bars, grouped by category.
  const groupWidth = (PLOT.right - PLOT.left) / chart.categories.length;
  const barWidth = Math.min(70, (groupWidth * 0.8) / chart.series.length);
  const valueFont = barWidth < 30 ? 9 : 11;
  chart.categories.forEach((category, c) => {
    const groupX = PLOT.left + c * groupWidth + (groupWidth - barWidth * chart.series.length) / 2;
    chart.series.forEach((s, i) => {
      const value = s.values[c] ?? null;
      const x = groupX + i * barWidth;
      const centre = x + barWidth / 2;
      const labelAttrs = `class="value" font-size="${valueFont}" text-anchor="middle"`;
      if (!scale.drawable(value)) {
        text(centre, scale.base - 4, `${labelAttrs} fill="#888888"`, 'n/a');
        return;
      }
      const y = scale.y(value);
      const top = Math.min(y, scale.base);
      const height = Math.abs(scale.base - y);
      out.push(
        `<rect class="bar" x="${px(x + 1)}" y="${px(top)}" width="${px(barWidth - 2)}" height="${px(height)}" ` +
          `fill="${COLOURS[i % COLOURS.length]}"><title>${esc(`${s.name}: ${formatNumber(value)} ${chart.unit}`)}</title></rect>`,
      );
      const labelY = value < 0 && !chart.log ? y + valueFont + 2 : y - 4;
      text(centre, labelY, `${labelAttrs} fill="#333333"`, formatNumber(value));
    });
    text(
      PLOT.left + (c + 0.5) * groupWidth,
      PLOT.bottom + 20,
      'class="category" font-size="13" text-anchor="middle"',
      category,
    );
  });
  out.push(
    `<line class="axis" x1="${PLOT.left}" y1="${px(scale.base)}" x2="${PLOT.right}" y2="${px(scale.base)}" stroke="#333333"/>`,
  );

  // Legend: swatch + name, wrapping onto a second row when needed.
  let lx = PLOT.left;
  let ly = PLOT.bottom + 48;
  chart.series.forEach((s, i) => {
    const itemWidth = 26 + s.name.length * 7;
    if (lx > PLOT.left && lx + itemWidth > PLOT.right) {
      lx = PLOT.left;
      ly += 20;
    }
    out.push(
      `<rect class="swatch" x="${px(lx)}" y="${px(ly - 10)}" width="12" height="12" fill="${COLOURS[i % COLOURS.length]}"/>`,
    );
    text(lx + 18, ly, 'class="legend" font-size="12"', s.name);
    lx += itemWidth + 14;
  });

  if (chart.note !== undefined && chart.note !== '') {
    text(PLOT.left, HEIGHT - 12, 'class="note" font-size="11" fill="#666666" font-style="italic"', chart.note);
  }
  return out;
}

function svgDocument(height: number, body: string[]): string {
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" ${FONT}>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

/** Renders one grouped bar chart as a complete standalone SVG document. */
export function renderBarChart(chart: BarChart): string {
  return svgDocument(HEIGHT, chartBody(chart));
}

/** Renders several charts stacked vertically in one SVG document. */
export function renderCharts(charts: BarChart[]): string {
  if (charts.length === 0) throw new Error('renderCharts: no charts');
  const body = charts.flatMap((chart, i) => [
    `<g class="chart" transform="translate(0 ${i * HEIGHT})">`,
    ...chartBody(chart).map((line) => `  ${line}`),
    '</g>',
  ]);
  return svgDocument(HEIGHT * charts.length, body);
}
