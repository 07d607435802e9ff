import type { OpenCommand } from '../loadgen.js';
import { LatencyHistogram } from './hist.js';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ask, ROOT, sleep, spawnNode, type Child } from './procs.js';
import type { Target } from './targets.js';

/** Connections one load child holds at most (a process here may hold 20,000 file descriptors). */
export const PER_CHILD = 18_000;

export interface OpenResult {
  ok: number;
  /** Connections that never got ready (after any retries). */
  failed: number;
  /** Attempts retried after a failure. */
  retried: number;
  /** Every failed attempt, by kind (`http 503`, `timeout`, `ECONNRESET`, ...). */
  failures: Record<string, number>;
  /** From the first connect to the last connection ready, ms (one clock for every child). */
  ms: number;
  perSecond: number;
}

export interface FleetStats {
  ready: number;
  received: number;
  duplicates: number;
  firstReceiveAt: number;
  lastReceiveAt: number;
  unexpectedCloses: number;
  closeKinds: Record<string, number>;
  hist: LatencyHistogram;
  /** Inbox messages only (no topic messages). */
  unicastHist: LatencyHistogram;
  /** Churn: drop to the reconnect's `hello`. */
  churnHist: LatencyHistogram;
  /** The load children's resident memory, summed. */
  rss: number;
  /** App-level pings sent and pongs received (OpenOptions.pingSeconds). */
  pings: number;
  pongs: number;
}

type Pairs = Array<[number, number]>;

/** One child's counters: the same, with its histograms as bucket pairs. */
type ChildStats = Omit<FleetStats, 'hist' | 'unicastHist' | 'churnHist'> & {
  hist: Pairs;
  histMax: number;
  unicastHist: Pairs;
  unicastHistMax: number;
  churnHist: Pairs;
  churnHistMax: number;
};

/** What the children received of messages carrying a `"k"` id (see loadgen.ts `ids`). */
export interface ReceivedIds {
  unicast: Set<number>;
  /** Per topic message id: how many connections got it, and when the last one did (monoMs). */
  topics: Map<number, { count: number; lastAt: number }>;
}

export interface OpenOptions {
  /** What to connect to: its protocol, its ports (child i connects to ports[i % ports.length]), its token. */
  target: Pick<Target, 'name' | 'protocol' | 'ports' | 'token'>;
  userPrefix: string;
  /** Users [first, first + total) are split evenly over the children (first: 0 by default). */
  total: number;
  first?: number;
  /** Handshakes in flight at once, over the whole fleet. */
  concurrency: number;
  timeoutMs?: number;
  retries?: number;
  /** Topics each connection subscribes to once ready (ours only; see OpenCommand). */
  topics?: number;
  /** How long the whole open may take before the harness gives up (default: timeoutMs + 10 min). */
  waitMs?: number;
  /** Ours only: the ping interval to agree and keep (see OpenCommand). */
  pingSeconds?: number;
}

/**
 * bench/loadgen.ts bundled into one plain JavaScript file (.data/bench/loadgen.mjs) once per
 * run, so that the children run on node alone: through tsx each child held about 45 MB more,
 * which across the 56 children of a million connections is 2.5 GB the servers could not have.
 */
function loadgenBundle(): string {
  const out = '.data/bench/loadgen.mjs';
  mkdirSync(join(ROOT, '.data/bench'), { recursive: true });
  execFileSync(
    join(ROOT, 'node_modules/.bin/esbuild'),
    ['bench/loadgen.ts', '--bundle', '--platform=node', '--format=esm', '--log-level=warning', `--outfile=${out}`],
    { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  return out;
}

/**
 * The load-generator children (bench/loadgen.ts), each connecting from its own loopback address
 * 127.0.0.(2 + i). Users are split evenly, so a user's index tells which child holds it.
 */
export class LoadFleet {
  private constructor(readonly children: Child[]) {}

  static start(count: number): LoadFleet {
    const script = loadgenBundle();
    return new LoadFleet(
      Array.from({ length: count }, (_, i) =>
        spawnNode(`load${i}`, script, { ipc: true, nodeArgs: ['--max-semi-space-size=1'] }),
      ),
    );
  }

  /** How many children `connections` need. */
  static sizeFor(connections: number): number {
    return Math.max(1, Math.ceil(connections / PER_CHILD));
  }

  get pids(): number[] {
    return this.children.map((c) => c.pid);
  }

  /** Users [from, to) of child i. */
  range(i: number, total: number): [number, number] {
    const n = this.children.length;
    return [Math.floor((total * i) / n), Math.floor((total * (i + 1)) / n)];
  }

  async open(o: OpenOptions): Promise<OpenResult> {
    const n = this.children.length;
    const answers = await Promise.all(
      this.children.map((child, i) => {
        const [a, b] = this.range(i, o.total);
        const [from, to] = [a + (o.first ?? 0), b + (o.first ?? 0)];
        const cmd: OpenCommand = {
          type: 'open',
          protocol: o.target.protocol,
          port: o.target.ports[i % o.target.ports.length] as number,
          source: `127.0.0.${2 + i}`,
          userPrefix: o.userPrefix,
          from,
          count: to - from,
          concurrency: Math.max(1, Math.ceil(o.concurrency / n)),
          timeoutMs: o.timeoutMs ?? 60_000,
          retries: o.retries ?? 0,
          ...(o.target.token !== undefined ? { token: o.target.token } : {}),
          ...(o.topics !== undefined ? { topics: o.topics } : {}),
          ...(o.pingSeconds !== undefined ? { pingSeconds: o.pingSeconds } : {}),
        };
        return ask<{
          ok: number;
          failed: number;
          retried: number;
          failures: Record<string, number>;
          startedAt: number;
          endedAt: number;
        }>(
          child,
          cmd as unknown as Record<string, unknown> & { type: string },
          'opened',
          o.waitMs ?? (o.timeoutMs ?? 60_000) + 600_000,
        );
      }),
    );
    const failures: Record<string, number> = {};
    for (const a of answers) for (const [k, v] of Object.entries(a.failures)) failures[k] = (failures[k] ?? 0) + v;
    const ms = Math.max(...answers.map((a) => a.endedAt)) - Math.min(...answers.map((a) => a.startedAt));
    const ok = answers.reduce((s, a) => s + a.ok, 0);
    return {
      ok,
      failed: answers.reduce((s, a) => s + a.failed, 0),
      retried: answers.reduce((s, a) => s + a.retried, 0),
      failures,
      ms,
      perSecond: ms > 0 ? (ok / ms) * 1000 : 0,
    };
  }

  /** Like open(), but fails unless every connection got ready. */
  async openAll(o: OpenOptions): Promise<OpenResult> {
    const r = await this.open(o);
    if (r.failed > 0)
      throw new Error(`${o.target.name}: ${r.failed} of ${o.total} connects failed: ${JSON.stringify(r.failures)}`);
    return r;
  }

  /** Merged counters of every child; `reset` starts them again from zero. */
  async stats(reset = false, histogram = true): Promise<FleetStats> {
    const all = await Promise.all(
      this.children.map((c) => ask<ChildStats>(c, { type: 'stats', reset, histogram }, 'stats')),
    );
    const hist = new LatencyHistogram();
    const unicastHist = new LatencyHistogram();
    const churnHist = new LatencyHistogram();
    const closeKinds: Record<string, number> = {};
    for (const s of all) {
      hist.add(s.hist, s.histMax);
      unicastHist.add(s.unicastHist, s.unicastHistMax);
      churnHist.add(s.churnHist, s.churnHistMax);
      for (const [k, v] of Object.entries(s.closeKinds)) closeKinds[k] = (closeKinds[k] ?? 0) + v;
    }
    const firsts = all.map((s) => s.firstReceiveAt).filter((t) => t > 0);
    return {
      ready: all.reduce((s, a) => s + a.ready, 0),
      received: all.reduce((s, a) => s + a.received, 0),
      duplicates: all.reduce((s, a) => s + a.duplicates, 0),
      firstReceiveAt: firsts.length > 0 ? Math.min(...firsts) : 0,
      lastReceiveAt: Math.max(0, ...all.map((s) => s.lastReceiveAt)),
      unexpectedCloses: all.reduce((s, a) => s + a.unexpectedCloses, 0),
      closeKinds,
      hist,
      unicastHist,
      churnHist,
      rss: all.reduce((sum, a) => sum + a.rss, 0),
      pings: all.reduce((sum, a) => sum + (a.pings ?? 0), 0),
      pongs: all.reduce((sum, a) => sum + (a.pongs ?? 0), 0),
    };
  }

  /**
   * Churn over the whole fleet: `perSecond` connections a second (split over the children) drop
   * and reconnect, for `durationMs`. Resolves when every reconnect is done.
   */
  async churn(perSecond: number, durationMs: number): Promise<{ dropped: number; failed: number }> {
    const n = this.children.length;
    const answers = await Promise.all(
      this.children.map((c) =>
        ask<{ dropped: number; failed: number }>(
          c,
          { type: 'churn', perSecond: perSecond / n, durationMs },
          'churned',
          durationMs + 300_000,
        ),
      ),
    );
    return {
      dropped: answers.reduce((s, a) => s + a.dropped, 0),
      failed: answers.reduce((s, a) => s + a.failed, 0),
    };
  }

  /** The message ids every child received (merged). */
  async ids(): Promise<ReceivedIds> {
    const all = await Promise.all(
      this.children.map((c) =>
        ask<{ unicast: number[]; topics: Array<[number, number, number]> }>(c, { type: 'ids' }, 'ids'),
      ),
    );
    const out: ReceivedIds = { unicast: new Set(), topics: new Map() };
    for (const a of all) {
      for (const k of a.unicast) out.unicast.add(k);
      for (const [k, count, lastAt] of a.topics) {
        const t = out.topics.get(k);
        if (t === undefined) out.topics.set(k, { count, lastAt });
        else {
          t.count += count;
          t.lastAt = Math.max(t.lastAt, lastAt);
        }
      }
    }
    return out;
  }

  /**
   * Waits until the children received `target` messages in all, polling; gives up after
   * `timeoutMs` or when nothing arrived for `idleMs`. Returns the final counters.
   */
  async waitReceived(target: number, timeoutMs: number, idleMs = 15_000): Promise<FleetStats> {
    const deadline = Date.now() + timeoutMs;
    let last = -1;
    let lastChange = Date.now();
    for (;;) {
      const s = await this.stats(false, false);
      if (s.received >= target || Date.now() > deadline) return s;
      if (s.received !== last) {
        last = s.received;
        lastChange = Date.now();
      } else if (Date.now() - lastChange > idleMs) return s;
      await sleep(20);
    }
  }

  /** Closes every connection with RST. */
  async reset(): Promise<number> {
    const answers = await Promise.all(this.children.map((c) => ask<{ closed: number }>(c, { type: 'reset' }, 'reset')));
    return answers.reduce((s, a) => s + a.closed, 0);
  }

  async stop(): Promise<void> {
    await Promise.all(this.children.map((c) => c.stop()));
  }
}
