import { expect } from 'chai';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { renderBarChart, renderCharts, type BarChart } from '../../bench/lib/chart.js';
import { renderResultCharts } from '../../bench/charts.js';

/**
 * Throws unless `xml` is well-formed enough for an SVG viewer: every opened element is closed in
 * order, attribute values are quoted, and every `&` starts an entity. Returns the element names seen.
 */
function checkXml(xml: string): string[] {
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, '');
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  const stack: string[] = [];
  const seen: string[] = [];
  let last = 0;
  for (let m = tag.exec(body); m !== null; m = tag.exec(body)) {
    const text = body.slice(last, m.index);
    if (text.includes('<')) throw new Error(`stray "<" or malformed tag before offset ${m.index}`);
    last = tag.lastIndex;
    const [, closing, name = '', , selfClosing] = m;
    if (closing) {
      const open = stack.pop();
      if (open !== name) throw new Error(`</${name}> closes <${open ?? 'nothing'}>`);
    } else {
      seen.push(name);
      if (!selfClosing) stack.push(name);
    }
  }
  if (body.slice(last).trim() !== '') throw new Error('content after the root element');
  if (stack.length > 0) throw new Error(`unclosed elements: ${stack.join(', ')}`);
  if (seen[0] !== 'svg') throw new Error('root element is not <svg>');
  const badAmp = /&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/.exec(body);
  if (badAmp) throw new Error(`unescaped "&" at offset ${badAmp.index}`);
  return seen;
}

function count(haystack: string, needle: string): number {
  return haystack.split(needle).length - 1;
}

const memory: BarChart = {
  title: 'Edge memory per idle connection',
  unit: 'KB',
  categories: ['10k', '19k'],
  series: [
    { name: 'ours', values: [12.4, 11.9] },
    { name: 'bare uWS', values: [4.1, 3.8] },
    { name: 'Socket.IO', values: [48.2, null] },
  ],
  note: 'lower is better',
};

describe('bench chart renderer', () => {
  it('renders a well-formed standalone SVG document', () => {
    const svg = renderBarChart(memory);
    expect(svg).to.match(/<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    expect(() => checkXml(svg)).not.to.throw();
    expect(svg).to.include('sans-serif');
  });

  it('draws one bar per measured value and "n/a" for a null value', () => {
    const svg = renderBarChart(memory);
    expect(count(svg, 'class="bar"')).to.equal(5);
    expect(count(svg, '>n/a</text>')).to.equal(1);
  });

  it('prints the title, unit, legend, categories, note and values', () => {
    const svg = renderBarChart(memory);
    for (const text of ['Edge memory per idle connection', 'KB', 'ours', 'bare uWS', 'Socket.IO', '10k', '19k']) {
      expect(svg).to.include(`>${text}</text>`);
    }
    expect(svg).to.include('>lower is better</text>');
    expect(svg).to.include('>48.2</text>');
  });

  it('escapes all text', () => {
    const svg = renderBarChart({
      title: 'a & b <c>',
      unit: 'msgs/s "q"',
      categories: ['x<y'],
      series: [{ name: 'S&P', values: [1] }],
      note: '> 1 & < 2',
    });
    expect(() => checkXml(svg)).not.to.throw();
    expect(svg).to.include('>a &amp; b &lt;c&gt;</text>');
    expect(svg).to.include('>x&lt;y</text>');
    expect(svg).to.include('>S&amp;P</text>');
    expect(svg).to.include('>msgs/s &quot;q&quot;</text>');
    expect(svg).to.include('>&gt; 1 &amp; &lt; 2</text>');
    expect(svg).not.to.include('a & b');
  });

  it('uses nice tick values and short labels for large numbers', () => {
    const svg = renderBarChart({
      title: 'Throughput',
      unit: 'msgs/s',
      categories: ['1 node'],
      series: [{ name: 'ours', values: [1_234_567] }],
    });
    const ticks = [...svg.matchAll(/class="tick"[^>]*>([^<]*)</g)].map((m) => m[1]);
    expect(ticks).to.deep.equal(['0', '200k', '400k', '600k', '800k', '1M', '1.2M', '1.4M']);
    expect(svg).to.include('>1.23M</text>');
  });

  it('draws a log scale with power-of-ten ticks for values from 1 to 1,000,000', () => {
    const svg = renderBarChart({
      title: 'Throughput',
      unit: 'msgs/s',
      categories: ['a', 'b'],
      log: true,
      series: [
        { name: 'small', values: [1, 1000] },
        { name: 'large', values: [1_000_000, 0] },
      ],
    });
    expect(() => checkXml(svg)).not.to.throw();
    const ticks = [...svg.matchAll(/class="tick"[^>]*>([^<]*)</g)].map((m) => m[1]);
    expect(ticks).to.deep.equal(['0.1', '1', '10', '100', '1k', '10k', '100k', '1M']);
    // 0 cannot be drawn on a log scale: three bars, one n/a.
    expect(count(svg, 'class="bar"')).to.equal(3);
    expect(count(svg, '>n/a</text>')).to.equal(1);
    const heights = [...svg.matchAll(/class="bar"[^>]*height="([\d.]+)"/g)].map((m) => Number(m[1]));
    expect(heights).to.have.length(3);
    // Equal decades get equal heights: 1 -> 1 decade, 1000 -> 4, 1M -> 7 above the 0.1 baseline.
    // Bars are drawn group by group: a/small (1), a/large (1M), b/small (1000).
    const [one = 0, million = 0, thousand = 0] = heights;
    expect(one).to.be.greaterThan(0);
    expect(thousand / one).to.be.closeTo(4, 0.05);
    expect(million / one).to.be.closeTo(7, 0.05);
  });

  it('is deterministic', () => {
    expect(renderBarChart(memory)).to.equal(renderBarChart(structuredClone(memory)));
  });

  it('throws a clear error for mismatched lengths or empty charts', () => {
    const bad: BarChart = { ...memory, series: [{ name: 'short', values: [1] }] };
    expect(() => renderBarChart(bad)).to.throw(/"short" has 1 values but there are 2 categories/);
    expect(() => renderBarChart({ ...memory, categories: [] })).to.throw(/no categories/);
    expect(() => renderBarChart({ ...memory, series: [] })).to.throw(/no series/);
  });

  it('stacks several charts in one SVG document', () => {
    const svg = renderCharts([memory, { ...memory, title: 'Second' }]);
    expect(() => checkXml(svg)).not.to.throw();
    expect(count(svg, '<svg ')).to.equal(1);
    expect(svg).to.include('height="800"');
    expect(count(svg, 'class="bar"')).to.equal(10);
    expect(svg).to.include('>Second</text>');
  });
});

describe('bench/charts.ts renderResultCharts', () => {
  let dir = '';
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'push-charts-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes an .svg for a results file with charts and skips one without', async () => {
    await writeFile(path.join(dir, 'memory.json'), JSON.stringify({ name: 'memory', charts: [memory] }));
    await writeFile(path.join(dir, 'publish.json'), JSON.stringify({ name: 'publish', rate: 5 }));
    const written = await renderResultCharts(dir);
    expect(written).to.deep.equal([path.join(dir, 'memory.svg')]);
    expect((await readdir(dir)).sort()).to.deep.equal(['memory.json', 'memory.svg', 'publish.json']);
    const svg = await readFile(path.join(dir, 'memory.svg'), 'utf8');
    expect(() => checkXml(svg)).not.to.throw();
    expect(count(svg, 'class="bar"')).to.equal(5);
  });

  it('names the file when its charts are malformed', async () => {
    await writeFile(path.join(dir, 'bad.json'), JSON.stringify({ charts: [{ title: 'x' }] }));
    let error: unknown;
    try {
      await renderResultCharts(dir);
    } catch (err) {
      error = err;
    }
    expect(error).to.be.instanceOf(Error);
    expect((error as Error).message).to.include('bad.json');
  });
});
