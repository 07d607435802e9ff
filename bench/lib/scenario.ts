import type { FleetStats, LoadFleet } from './fleet.js';
import { CpuMeter, natsServerPid, redisServerPid, waitQuiet } from './procs.js';
import { note } from './results.js';
import { NATS_URL, REDIS_URL } from './stack.js';
import { median, round } from './stats.js';
import { startTarget, type Target, type TargetName } from './targets.js';

/** Options every scenario takes: smoke = tiny sizes and one round (runs inside `make test`). */
export interface RunOptions {
  smoke: boolean;
}

export const env = (name: string, def: number): number => Number(process.env[name] ?? def);

/** Median with the spread of the rounds, for JSON and tables. */
export interface Spread {
  median: number;
  min: number;
  max: number;
  rounds: number[];
}

export function spread(values: number[], digits = 0): Spread {
  return {
    median: round(median(values), digits),
    min: round(Math.min(...values), digits),
    max: round(Math.max(...values), digits),
    rounds: values.map((v) => round(v, digits)),
  };
}

/** `12,345 (11,900-12,800)`: a median and its spread over the rounds. */
export function showSpread(s: Spread, unit = ''): string {
  const n = (x: number): string => x.toLocaleString('en-US');
  const u = unit === '' ? '' : ` ${unit}`;
  return s.rounds.length > 1 ? `${n(s.median)}${u} (${n(s.min)}-${n(s.max)})` : `${n(s.median)}${u}`;
}

/** Waits for a quiet machine before a measured run; logs and returns whether it got quiet. */
export async function quietFirst(smoke: boolean): Promise<boolean> {
  if (smoke) return true;
  const q = await waitQuiet();
  if (!q.quiet) note(`machine still busy (${Math.round(q.busy * 100)}% of all cores) after 60 s; going on`);
  return q.quiet;
}

/** Cores used over a measured interval, by kind of process: what bounded the figure. */
export class CpuByRole {
  private readonly meter: CpuMeter;
  private readonly roles: Record<string, string[]> = {};

  /**
   * `splitServers` also reports our edges (summed) and center apart (`edges`, `center`): where a
   * broadcast's cost lands, which one `servers` figure hides.
   */
  constructor(
    target: Target,
    fleet: LoadFleet,
    private readonly splitServers = false,
  ) {
    const pids: Record<string, number | undefined> = {};
    for (const s of target.servers) {
      pids[s.name] = s.pid;
      (this.roles['server'] ??= []).push(s.name);
      (this.roles[s.name.startsWith('edge') ? 'edges' : 'center'] ??= []).push(s.name);
    }
    pids['nats'] = natsServerPid(Number(new URL(NATS_URL).port || 4222));
    pids['redis'] = redisServerPid(Number(new URL(REDIS_URL).port || 6379));
    for (const [i, pid] of fleet.pids.entries()) {
      pids[`load${i}`] = pid;
      (this.roles['clients'] ??= []).push(`load${i}`);
    }
    this.meter = new CpuMeter(pids);
  }

  start(): void {
    this.meter.start();
  }

  /** Cores busy: servers (summed; with splitServers also edges and center), nats, redis, clients (summed). */
  stop(): Record<string, number> {
    const per = this.meter.stop();
    const sum = (names: string[] | undefined): number =>
      round(
        (names ?? []).reduce((s, n) => s + (per[n] ?? 0), 0),
        2,
      );
    return {
      servers: sum(this.roles['server']),
      ...(this.splitServers ? { edges: sum(this.roles['edges']), center: sum(this.roles['center']) } : {}),
      nats: per['nats'] ?? Number.NaN,
      redis: per['redis'] ?? Number.NaN,
      clients: sum(this.roles['clients']),
    };
  }
}

/** Latency percentiles of a fleet's histogram, ms. */
export function latency(s: FleetStats): { count: number; p50: number; p99: number; p999: number; max: number } {
  return {
    count: s.hist.count,
    p50: round(s.hist.percentile(50), 2),
    p99: round(s.hist.percentile(99), 2),
    p999: round(s.hist.percentile(99.9), 2),
    max: round(s.hist.max, 2),
  };
}

/** Checks that a run lost nothing the clients should have seen. */
export function expectAll(what: string, got: number, want: number): void {
  if (got < want) throw new Error(`${what}: clients received ${got} of ${want}`);
}

/** The targets a scenario runs: all three, or those named in BENCH_TARGETS (e.g. `ours,uws`). */
export function chosenTargets(): TargetName[] {
  const all: TargetName[] = ['ours', 'uws', 'sio'];
  const asked = process.env['BENCH_TARGETS'];
  if (asked === undefined || asked === '') return all;
  const names = asked.split(',').map((s) => s.trim());
  const bad = names.filter((n) => !all.includes(n as TargetName));
  if (bad.length > 0) throw new Error(`BENCH_TARGETS: unknown ${bad.join(', ')}; choose from ${all.join(', ')}`);
  return names as TargetName[];
}

/**
 * Runs `measure` `rounds` times on each target, targets interleaved within a round, each started
 * afresh after the machine got quiet; afterwards the fleet's connections are reset and the target
 * stopped, even when `measure` fails.
 */
export async function eachTargetRound(
  o: { scenario: string; targets: TargetName[]; rounds: number; smoke: boolean; fleet: LoadFleet },
  measure: (target: Target, round: number) => Promise<void>,
): Promise<void> {
  for (let r = 0; r < o.rounds; r++) {
    for (const name of o.targets) {
      await quietFirst(o.smoke);
      note(`${o.scenario} round ${r + 1}/${o.rounds}: ${name}`);
      const target = await startTarget(name);
      try {
        await measure(target, r);
      } finally {
        await o.fleet.reset();
        await target.close();
      }
    }
  }
}
