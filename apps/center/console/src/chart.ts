import uPlot from 'uplot';
import { h } from './dom.js';

/** Series colors that read on light and dark backgrounds. */
const COLORS = ['#4c8bf5', '#e8710a', '#1e8e3e', '#d93025', '#9334e6', '#12b5cb', '#f9ab00', '#e52592'];
/** Points kept per chart: five minutes at one sample every two seconds. */
const KEEP = 150;

/**
 * A uPlot time-series chart fed one sample at a time. The set of series may change (an app or
 * an edge appears): the chart is then built again with the history it has. The figures the chart
 * draws are also in a table on the same page (charts are images to screen readers).
 */
export class LiveChart {
  readonly el: HTMLElement;
  private readonly box: HTMLElement;
  private plot: uPlot | undefined;
  private labels: string[] = [];
  private xs: number[] = [];
  private ys = new Map<string, Array<number | null>>();

  constructor(
    readonly title: string,
    private readonly unit: string,
  ) {
    this.box = h('div', {
      class: 'chart',
      role: 'img',
      'aria-label': `${title} chart; the figures are in the tables below`,
    });
    this.el = h('section', { class: 'card' }, h('h2', {}, title), this.box);
  }

  /** Adds one sample at `t` (epoch ms): a value per series label. */
  push(t: number, values: Record<string, number>): void {
    const labels = Object.keys(values).sort();
    this.xs.push(t / 1000);
    for (const l of labels)
      if (!this.ys.has(l))
        this.ys.set(
          l,
          this.xs.slice(0, -1).map(() => null),
        );
    for (const [l, arr] of this.ys) arr.push(values[l] ?? null);
    if (this.xs.length > KEEP) {
      this.xs.shift();
      for (const arr of this.ys.values()) arr.shift();
    }
    const all = [...this.ys.keys()].sort();
    if (this.plot === undefined || all.join('\u0000') !== this.labels.join('\u0000')) this.build(all);
    else this.plot.setData(this.data());
  }

  /** Fits the chart to its box's width (on window resize). */
  resize(): void {
    this.plot?.setSize({ width: this.width(), height: 180 });
  }

  destroy(): void {
    this.plot?.destroy();
    this.plot = undefined;
  }

  private width(): number {
    return Math.max(280, this.box.clientWidth || 360);
  }

  private data(): uPlot.AlignedData {
    return [this.xs, ...this.labels.map((l) => this.ys.get(l) ?? [])];
  }

  private build(labels: string[]): void {
    this.plot?.destroy();
    this.labels = labels;
    const unit = this.unit;
    const axisColor = getComputedStyle(document.documentElement).getPropertyValue('--muted').trim() || '#888';
    const grid = getComputedStyle(document.documentElement).getPropertyValue('--line').trim() || '#ccc';
    this.plot = new uPlot(
      {
        width: this.width(),
        height: 180,
        series: [
          {},
          ...labels.map((label, i) => ({
            label,
            stroke: COLORS[i % COLORS.length],
            width: 2,
            spanGaps: false,
          })),
        ],
        axes: [
          { stroke: axisColor, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } },
          {
            stroke: axisColor,
            grid: { stroke: grid, width: 1 },
            ticks: { stroke: grid },
            size: 50,
            label: unit,
            labelSize: 18,
          },
        ],
        scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
        cursor: { y: false },
        // Labels only: the values are in the tables below the charts.
        legend: { live: false },
      },
      this.data(),
      this.box,
    );
  }
}
