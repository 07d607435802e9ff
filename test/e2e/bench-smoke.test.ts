import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SCENARIOS = [
  'idle',
  'storm',
  'unicast',
  'backlog',
  'fanout',
  'publish',
  'jobs',
  'upstream',
  'webhooks',
  'broadcast',
  'million',
  'heartbeat',
];

/**
 * The benchmark harness at tiny sizes (`bench/run.ts --smoke`), so it never rots: every scenario
 * runs against the real services and peers and writes its JSON, table and chart.
 */
describe('benchmark harness (smoke mode)', function () {
  this.timeout(300_000);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-smoke-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('runs every scenario and writes figures, a markdown table and charts', async function () {
    let output = '';
    const code = await new Promise<number | null>((resolve) => {
      const p = spawn(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--smoke'], {
        cwd: ROOT,
        env: { ...process.env, BENCH_RESULTS_DIR: dir },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      p.stdout.on('data', (c: Buffer) => (output += c.toString()));
      p.stderr.on('data', (c: Buffer) => (output += c.toString()));
      p.on('exit', resolve);
    });
    expect(code, output.slice(-3000)).to.equal(0);
    const files = readdirSync(dir);
    for (const name of SCENARIOS) {
      const json = files.find((f) => f.endsWith(`-${name}.json`));
      expect(json, `${name} results in ${files.join(', ')}`).to.be.a('string');
      const doc = JSON.parse(readFileSync(path.join(dir, json as string), 'utf8')) as {
        summary: Array<{ figure: string; value: string }>;
        charts?: unknown[];
      };
      expect(doc.summary.length, name).to.be.greaterThan(0);
      expect(doc.summary.map((r) => r.figure)).not.to.include('FAILED');
      expect(files).to.include((json as string).replace(/\.json$/, '.md'));
      if (doc.charts !== undefined) {
        const svg = readFileSync(path.join(dir, (json as string).replace(/\.json$/, '.svg')), 'utf8');
        expect(svg).to.match(/<svg[\s\S]*<\/svg>\s*$/);
      }
    }
    // Figures a reader relies on: connections really opened, messages really delivered.
    const idle = JSON.parse(
      readFileSync(path.join(dir, files.find((f) => f.endsWith('-idle.json')) as string), 'utf8'),
    ) as { targets: Record<string, { connectsPerSecond: { median: number } }> };
    for (const t of ['ours', 'uws', 'sio']) expect(idle.targets[t]?.connectsPerSecond.median, t).to.be.greaterThan(0);
    // The broadcast through `_all` reached every connection on every edge: N x M receipts.
    const broadcast = JSON.parse(
      readFileSync(path.join(dir, files.find((f) => f.endsWith('-broadcast.json')) as string), 'utf8'),
    ) as { expected: number; delivered: number; allDelivered: boolean; edges: number };
    expect(broadcast.edges).to.be.greaterThan(1);
    expect(broadcast.delivered).to.equal(broadcast.expected);
    expect(broadcast.allDelivered).to.equal(true);
    expect(output).to.match(/fanout\s+our edge as a share of the bare uWS ceiling/);
    // The million scenario at its smoke size: everyone held, and through the churn every push the
    // center accepted reached its user.
    const million = JSON.parse(
      readFileSync(path.join(dir, files.find((f) => f.endsWith('-million.json')) as string), 'utf8'),
    ) as { connections: number; held: number; churn: { pushesAccepted: number; lost: number; dropped: number } };
    expect(million.held).to.equal(million.connections);
    expect(million.churn.dropped).to.be.greaterThan(0);
    expect(million.churn.pushesAccepted).to.be.greaterThan(0);
    expect(million.churn.lost).to.equal(0);
  });
});
