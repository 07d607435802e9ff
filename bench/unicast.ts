/**
 * Scenario 3, unicast end to end. For our system: center HTTP push -> JetStream stored ->
 * RePublish -> edge -> WebSocket client -> ack -> removed. The peers get the same messages through
 * their /send (no store, no ack).
 *
 * USERS users each hold one connection in a load child (bench/loadgen.ts), which acks every
 * message (ours). This process drives the load:
 * - latency rounds: RATES msgs/s for SECONDS each, what is due sent every 5 ms, through batch
 *   calls (up to 1,000 messages per call) and, for ours, single-message calls too. Latency =
 *   client receive time - send time carried in the message (CLOCK_MONOTONIC, one clock for every
 *   process): p50 / p99 / p99.9 over every message. The rate actually sent is reported: a driver
 *   that cannot keep up says so.
 * - throughput: as fast as the server takes it (8 batch calls of 1,000 in flight) for SECONDS;
 *   delivered rate = messages the clients got / (last receive - start). For ours, also the rate
 *   at which they were acked and removed (the inbox stream back to 0).
 * Every round checks that every accepted message arrived. ROUNDS rounds, medians and spread.
 *
 *   npx tsx bench/unicast.ts
 */
import { LoadFleet } from './lib/fleet.js';
import { monoMs } from './lib/hist.js';
import { runIfMain } from './lib/main.js';
import { sleep } from './lib/procs.js';
import { note, type BenchResult, type SummaryRow } from './lib/results.js';
import {
  CpuByRole,
  env,
  expectAll,
  latency,
  showSpread,
  spread,
  type RunOptions,
  chosenTargets,
  eachTargetRound,
} from './lib/scenario.js';
import { waitStreamEmpty } from './lib/stack.js';
import { StoreCycleBeside, type CycleFigure } from './lib/store-cycle.js';
import { median, round } from './lib/stats.js';
import { LABELS, OursTarget, type Message, type Target } from './lib/targets.js';

const TICK_MS = 5;
const PAYLOAD_BYTES = 100;
const THROUGHPUT_TARGET = 50_000;
const P99_TARGET_MS = 10;
/** Our delivered/s, batch calls, when issue 16 was filed: the store's limit on this machine then. */
const ISSUE16_BASELINE = 17_633;
const MAX_IN_FLIGHT = { batch: 64, single: 512 };

export type Mode = 'batch' | 'single';

interface LatencyRound {
  rate: number;
  mode: Mode;
  sentPerSecond: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  cpu: Record<string, number>;
}

interface ThroughputRound {
  accepted: number;
  deliveredPerSecond: number;
  duplicates: number;
  removedPerSecond?: number;
  leftInStore?: number;
  cpu: Record<string, number>;
}

/**
 * Builds messages whose data carries the send time, padded to about PAYLOAD_BYTES; with
 * `transient`, transient pushes (bench/transient.ts).
 */
export class Messages {
  private next = 0;
  private readonly pad: string;
  constructor(
    private readonly users: string[],
    private readonly transient = false,
  ) {
    this.pad = 'x'.repeat(PAYLOAD_BYTES - `{"s":${monoMs()},"p":""}`.length);
  }
  take(n: number): Message[] {
    const out: Message[] = [];
    const s = monoMs();
    for (let i = 0; i < n; i++) {
      const user = this.users[this.next % this.users.length] as string;
      out.push(
        this.transient ? { user, data: { s, p: this.pad }, transient: true } : { user, data: { s, p: this.pad } },
      );
      this.next++;
    }
    return out;
  }
}

/** Sends `rate` msgs/s for `seconds`; returns how many were accepted and the rate really sent. */
export async function drive(
  target: Target,
  msgs: Messages,
  rate: number,
  seconds: number,
  mode: Mode,
): Promise<{ accepted: number; sentPerSecond: number; failed: number }> {
  let issued = 0;
  let accepted = 0;
  let failed = 0;
  let inFlight = 0;
  const calls = new Set<Promise<void>>();
  const call = (p: Promise<void>, n: number): void => {
    inFlight++;
    const tracked = p.then(
      () => {
        accepted += n;
      },
      () => {
        failed += n;
      },
    );
    calls.add(tracked);
    void tracked.finally(() => {
      inFlight--;
      calls.delete(tracked);
    });
  };
  const t0 = monoMs();
  const end = t0 + seconds * 1000;
  for (let now = monoMs(); now < end; now = monoMs()) {
    const due = Math.floor(((now - t0) / 1000) * rate) - issued;
    if (mode === 'batch') {
      for (let left = due; left > 0 && inFlight < MAX_IN_FLIGHT.batch;) {
        const n = Math.min(1000, left);
        call(target.send(msgs.take(n)), n);
        issued += n;
        left -= n;
      }
    } else {
      for (let k = 0; k < due && inFlight < MAX_IN_FLIGHT.single; k++) {
        const [m] = msgs.take(1);
        call(target.sendOne(m as Message), 1);
        issued++;
      }
    }
    await sleep(TICK_MS);
  }
  const elapsed = (monoMs() - t0) / 1000;
  await Promise.all(calls);
  return { accepted, failed, sentPerSecond: Math.round(issued / elapsed) };
}

async function latencyRound(
  target: Target,
  fleet: LoadFleet,
  msgs: Messages,
  rate: number,
  seconds: number,
  mode: Mode,
): Promise<LatencyRound> {
  await fleet.stats(true);
  const cpu = new CpuByRole(target, fleet);
  cpu.start();
  const d = await drive(target, msgs, rate, seconds, mode);
  const got = await fleet.waitReceived(d.accepted, 60_000);
  const used = cpu.stop();
  expectAll(`${target.name} ${mode} at ${rate}/s`, got.received, d.accepted);
  const s = await fleet.stats(true);
  const l = latency(s);
  note(`${target.name} ${mode} ${rate}/s: sent ${d.sentPerSecond}/s, p50 ${l.p50} p99 ${l.p99} p99.9 ${l.p999} ms`);
  return { rate, mode, sentPerSecond: d.sentPerSecond, p50: l.p50, p99: l.p99, p999: l.p999, max: l.max, cpu: used };
}

/**
 * Pushes as fast as the server takes it for `seconds`: 8 batch calls of 1,000 in flight. Returns
 * when it started (monoMs) and how many messages were accepted.
 */
export async function flatOut(
  target: Target,
  msgs: Messages,
  seconds: number,
): Promise<{ t0: number; accepted: number }> {
  const t0 = monoMs();
  const end = t0 + seconds * 1000;
  let accepted = 0;
  const worker = async (): Promise<void> => {
    while (monoMs() < end) {
      await target.send(msgs.take(1000));
      accepted += 1000;
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return { t0, accepted };
}

async function throughputRound(
  target: Target,
  fleet: LoadFleet,
  msgs: Messages,
  seconds: number,
): Promise<ThroughputRound> {
  // Start on an empty store: deletes still owed by the latency rounds would take nats-server's CPU.
  if (target instanceof OursTarget) await waitStreamEmpty(target.inboxStream, 180_000);
  await fleet.stats(true);
  const cpu = new CpuByRole(target, fleet);
  cpu.start();
  const { t0, accepted } = await flatOut(target, msgs, seconds);
  const got = await fleet.waitReceived(accepted, 120_000);
  const used = cpu.stop();
  expectAll(`${target.name} throughput`, got.received, accepted);
  const out: ThroughputRound = {
    accepted,
    deliveredPerSecond: Math.round((got.received / (got.lastReceiveAt - t0)) * 1000),
    duplicates: got.duplicates,
    cpu: used,
  };
  if (target instanceof OursTarget) {
    const drained = await waitStreamEmpty(target.inboxStream, 120_000);
    out.leftInStore = drained.left;
    out.removedPerSecond = Math.round(((accepted - drained.left) / (monoMs() - t0)) * 1000);
  }
  note(`${target.name} throughput: ${out.deliveredPerSecond}/s delivered, cpu ${JSON.stringify(used)}`);
  await fleet.stats(true);
  return out;
}

export async function runUnicast(opts: RunOptions = { smoke: false }): Promise<BenchResult> {
  const TARGETS = chosenTargets();
  const smoke = opts.smoke;
  const users = Array.from({ length: smoke ? 50 : env('BENCH_UNICAST_USERS', 1000) }, (_, i) => `uc${i}`);
  const rates = smoke
    ? [200]
    : (process.env['BENCH_UNICAST_RATES'] ?? '1000,5000,20000')
        .split(',')
        .filter((r) => r.trim() !== '')
        .map(Number);
  const seconds = smoke ? 1 : env('BENCH_UNICAST_SECONDS', 10);
  const rounds = smoke ? 1 : env('BENCH_UNICAST_ROUNDS', 3);
  const lat: Record<string, LatencyRound[]> = {};
  const thr: Record<string, ThroughputRound[]> = {};
  // The raw store cycle (bench/lib/store-cycle.ts) after each of our throughput rounds, on the
  // same nats-server: the ceiling our delivered/s is compared with in the same run (issue 16).
  const cycles: CycleFigure[] = [];
  let cycle: StoreCycleBeside | undefined;
  const fleet = LoadFleet.start(1);
  try {
    // One round of targets: the rounds run inside, on the same connections.
    await eachTargetRound({ scenario: 'unicast', targets: TARGETS, rounds: 1, smoke, fleet }, async (target) => {
      await fleet.openAll({ target, userPrefix: 'uc', total: users.length, concurrency: 200, retries: 20 });
      const msgs = new Messages(users);
      // Warm-up (not measured): connections to the center, JIT, buffers.
      if (!smoke && rates.length > 0) await latencyRound(target, fleet, msgs, 1000, 3, 'batch');

      const modes: Mode[] = target.name === 'ours' ? ['batch', 'single'] : ['batch'];
      for (let r = 0; r < rounds; r++) {
        for (const rate of rates)
          for (const mode of modes)
            (lat[target.name] ??= []).push(await latencyRound(target, fleet, msgs, rate, seconds, mode));
        (thr[target.name] ??= []).push(await throughputRound(target, fleet, msgs, seconds));
        if (target instanceof OursTarget) {
          cycle ??= await StoreCycleBeside.open(users.length);
          const c = await cycle.run(seconds, PAYLOAD_BYTES);
          cycles.push(c);
          note(`raw store cycle: ${Math.round(c.rate)}/s (${c.msgs} in ${c.seconds.toFixed(2)} s, ${c.failed} failed)`);
        }
      }
    });
  } finally {
    await cycle?.close();
    await fleet.stop();
  }

  const pick = (name: string, rate: number, mode: Mode, f: (r: LatencyRound) => number): number =>
    median((lat[name] ?? []).filter((r) => r.rate === rate && r.mode === mode).map(f));
  const summary: SummaryRow[] = [];
  for (const name of TARGETS) {
    const t = spread((thr[name] ?? []).map((r) => r.deliveredPerSecond));
    summary.push({
      bench: 'unicast',
      figure: `${LABELS[name]}: delivered/s, batch calls, as fast as possible`,
      value: showSpread(t, '/s'),
      ...(name === 'ours'
        ? {
            target: `>= ${THROUGHPUT_TARGET.toLocaleString('en-US')}/s`,
            met: t.median >= THROUGHPUT_TARGET ? 'yes' : 'no',
          }
        : {}),
    });
    for (const rate of rates) {
      for (const mode of ['batch', 'single'] as Mode[]) {
        if ((lat[name] ?? []).every((r) => r.mode !== mode)) continue;
        const p99 = pick(name, rate, mode, (r) => r.p99);
        summary.push({
          bench: 'unicast',
          figure: `${LABELS[name]}: latency p50 / p99 / p99.9 at ${rate.toLocaleString('en-US')}/s, ${mode} calls`,
          value: `${round(
            pick(name, rate, mode, (r) => r.p50),
            2,
          )} / ${round(p99, 2)} / ${round(
            pick(name, rate, mode, (r) => r.p999),
            2,
          )} ms (sent ${Math.round(pick(name, rate, mode, (r) => r.sentPerSecond)).toLocaleString('en-US')}/s)`,
          ...(name === 'ours' && rate === 5000 && mode === 'batch'
            ? { target: `p99 < ${P99_TARGET_MS} ms`, met: p99 < P99_TARGET_MS ? 'yes' : 'no' }
            : {}),
        });
      }
    }
  }
  const ours = thr['ours'] ?? [];
  if (ours.length > 0 && cycles.length > 0) {
    const delivered = median(ours.map((r) => r.deliveredPerSecond));
    const raw = median(cycles.map((c) => c.rate));
    const share = delivered / raw;
    summary.push({
      bench: 'unicast',
      figure: 'raw store cycle (bare nats.js publish + delete by seq, same nats-server, after each round)',
      value: showSpread(spread(cycles.map((c) => Math.round(c.rate))), '/s'),
    });
    summary.push({
      bench: 'unicast',
      figure: 'our system: delivered/s, batch calls, vs 17.6k/s (issue 16) and vs the raw store cycle, same run',
      value: `${round(delivered / ISSUE16_BASELINE, 2)}x; ${Math.round(share * 100)}% of the raw cycle`,
      target: '>= 1.7x and >= 100%',
      met: delivered >= 1.7 * ISSUE16_BASELINE && share >= 1 ? 'yes' : 'no',
    });
  }
  if (ours.length > 0) {
    summary.push({
      bench: 'unicast',
      figure: 'our system: acked and removed/s (stream back to 0); left in store after 120 s',
      value: `${showSpread(spread(ours.map((r) => r.removedPerSecond ?? 0)), '/s')}; ${ours.map((r) => r.leftInStore).join(' / ')}`,
    });
  }
  const categories = rates.map((r) => `${r.toLocaleString('en-US')}/s`);
  return {
    name: 'unicast',
    figures: {
      users: users.length,
      rates,
      seconds,
      rounds,
      latency: lat,
      throughput: thr,
      storeCycle: cycles.map((c) => ({ ...c, rate: Math.round(c.rate), seconds: round(c.seconds, 3) })),
    },
    summary,
    charts: [
      {
        title: 'Unicast delivered per second (batch calls, as fast as possible)',
        unit: 'msgs/s',
        categories: ['delivered'],
        series: TARGETS.map((name) => ({
          name: LABELS[name],
          values: [median((thr[name] ?? []).map((r) => r.deliveredPerSecond))],
        })),
        note: 'higher is better; ours stores every message in JetStream and removes it on ack; the peers store nothing',
      },
      ...(['p50', 'p99', 'p999'] as const).map((p) => ({
        title: `Unicast latency ${p === 'p999' ? 'p99.9' : p}, batch calls`,
        unit: 'ms',
        categories,
        series: TARGETS.map((name) => ({
          name: LABELS[name],
          values: rates.map((rate) => pick(name, rate, 'batch', (r) => r[p])),
        })),
        note: 'lower is better; send to receive, one clock',
        log: true,
      })),
    ],
  };
}

runIfMain(import.meta.url, () => runUnicast({ smoke: process.argv.includes('--smoke') }));
