/**
 * Transient pushes against stored ones, same run, same connections (issue 17, part 4). Ours only:
 * the peers store nothing, so for them every push is "transient" (bench/unicast.ts compares them).
 *
 * USERS users each hold one connection in a load child (bench/loadgen.ts), which acks every
 * stored message and none of the transient ones. Each round, alternating the two kinds:
 * - latency at RATE msgs/s for SECONDS, batch calls (what is due sent every 5 ms): stored (center
 *   -> JetStream -> RePublish -> edge -> client -> ack -> removed) and transient (center -> core
 *   NATS -> edge -> client; the center also reads presence per message for its answer);
 *   p50 / p99 / p99.9 of send -> receive on one clock;
 * - throughput: 8 batch calls of 1,000 in flight for SECONDS; delivered/s = received / (last
 *   receive - start). The stored run starts on an empty store.
 * A stored message must arrive (the run fails otherwise); a transient one may be dropped by
 * design (a socket past its high-water mark): the run counts what was lost instead.
 *
 *   npx tsx bench/transient.ts
 */
import { LoadFleet } from './lib/fleet.js';
import { runIfMain } from './lib/main.js';
import { note, type BenchResult, type SummaryRow } from './lib/results.js';
import {
  CpuByRole,
  env,
  expectAll,
  latency,
  showSpread,
  spread,
  eachTargetRound,
  type RunOptions,
} from './lib/scenario.js';
import { waitStreamEmpty } from './lib/stack.js';
import { median, round } from './lib/stats.js';
import { OursTarget, type Target } from './lib/targets.js';
import { Messages, drive, flatOut } from './unicast.js';

type Kind = 'stored' | 'transient';
const KINDS: Kind[] = ['stored', 'transient'];

interface Round {
  kind: Kind;
  /** Messages accepted by the center. */
  accepted: number;
  /** Messages the clients got. */
  received: number;
  /** Latency rounds: the rate really sent; throughput rounds: delivered/s. */
  perSecond: number;
  p50: number;
  p99: number;
  p999: number;
  cpu: Record<string, number>;
}

/** What the clients got of `accepted` messages of `kind`: all of a stored kind, or as many as came. */
async function received(fleet: LoadFleet, kind: Kind, accepted: number, what: string) {
  // Transient messages are not kept: once none has come for 2 s, the rest is not coming.
  const got = await fleet.waitReceived(accepted, 60_000, kind === 'transient' ? 2000 : 15_000);
  if (kind === 'stored') expectAll(what, got.received, accepted);
  return got;
}

/**
 * One measured run of one kind: at `rate` msgs/s for `seconds` (a latency round; `perSecond` is
 * the rate really sent), or as fast as possible when `rate` is undefined (a throughput round;
 * `perSecond` is the delivered rate).
 */
async function measure(
  target: OursTarget,
  fleet: LoadFleet,
  users: string[],
  kind: Kind,
  rate: number | undefined,
  seconds: number,
): Promise<Round> {
  if (kind === 'stored') await waitStreamEmpty(target.inboxStream, 180_000);
  await fleet.stats(true);
  const cpu = new CpuByRole(target, fleet);
  cpu.start();
  const msgs = new Messages(users, kind === 'transient');
  const what = rate === undefined ? `${kind} throughput` : `${kind} at ${rate}/s`;
  let accepted: number;
  let perSecond: number;
  if (rate === undefined) {
    const run = await flatOut(target, msgs, seconds);
    accepted = run.accepted;
    const got = await received(fleet, kind, accepted, what);
    perSecond = Math.round((got.received / (got.lastReceiveAt - run.t0)) * 1000);
  } else {
    const d = await drive(target, msgs, rate, seconds, 'batch');
    accepted = d.accepted;
    await received(fleet, kind, accepted, what);
    perSecond = d.sentPerSecond;
  }
  const used = cpu.stop();
  const s = await fleet.stats(true);
  const l = latency(s);
  note(
    `${what}: ${perSecond}/s, got ${s.received}/${accepted}, p50 ${l.p50} p99 ${l.p99} ms, cpu ${JSON.stringify(used)}`,
  );
  return { kind, accepted, received: s.received, perSecond, p50: l.p50, p99: l.p99, p999: l.p999, cpu: used };
}

export async function runTransient(opts: RunOptions = { smoke: false }): Promise<BenchResult> {
  const smoke = opts.smoke;
  const users = Array.from({ length: smoke ? 50 : env('BENCH_TRANSIENT_USERS', 1000) }, (_, i) => `tr${i}`);
  const rate = smoke ? 200 : env('BENCH_TRANSIENT_RATE', 5000);
  const seconds = smoke ? 1 : env('BENCH_TRANSIENT_SECONDS', 10);
  const rounds = smoke ? 1 : env('BENCH_TRANSIENT_ROUNDS', 3);
  const lat: Round[] = [];
  const thr: Round[] = [];
  const fleet = LoadFleet.start(1);
  try {
    await eachTargetRound({ scenario: 'transient', targets: ['ours'], rounds: 1, smoke, fleet }, async (t: Target) => {
      const target = t as OursTarget;
      await fleet.openAll({ target, userPrefix: 'tr', total: users.length, concurrency: 200, retries: 20 });
      // Warm-up (not measured): connections to the center, JIT, buffers.
      if (!smoke) for (const kind of KINDS) await measure(target, fleet, users, kind, 1000, 2);
      for (let r = 0; r < rounds; r++) {
        // Alternate which kind goes first, so neither always meets the other's leftovers.
        const order = r % 2 === 0 ? KINDS : [...KINDS].reverse();
        for (const kind of order) lat.push(await measure(target, fleet, users, kind, rate, seconds));
        for (const kind of order) thr.push(await measure(target, fleet, users, kind, undefined, seconds));
      }
    });
  } finally {
    await fleet.stop();
  }

  const of = (rs: Round[], kind: Kind) => rs.filter((r) => r.kind === kind);
  const lost = (rs: Round[]) => rs.reduce((s, r) => s + Math.max(0, r.accepted - r.received), 0);
  const summary: SummaryRow[] = [];
  for (const kind of KINDS) {
    const label = kind === 'stored' ? 'stored push' : 'transient push';
    const t = of(thr, kind);
    summary.push({
      bench: 'transient',
      figure: `${label}: delivered/s, batch calls, as fast as possible (p99)`,
      value: `${showSpread(spread(t.map((r) => r.perSecond)), '/s')} (p99 ${round(median(t.map((r) => r.p99)), 1)} ms)`,
    });
    const l = of(lat, kind);
    summary.push({
      bench: 'transient',
      figure: `${label}: latency p50 / p99 / p99.9 at ${rate.toLocaleString('en-US')}/s, batch calls`,
      value: `${round(median(l.map((r) => r.p50)), 2)} / ${round(median(l.map((r) => r.p99)), 2)} / ${round(
        median(l.map((r) => r.p999)),
        2,
      )} ms (sent ${Math.round(median(l.map((r) => r.perSecond))).toLocaleString('en-US')}/s)`,
    });
  }
  summary.push({
    bench: 'transient',
    figure: 'transient messages not delivered (dropped at a slow socket), all rounds',
    value: `${lost(of([...lat, ...thr], 'transient'))} of ${of([...lat, ...thr], 'transient').reduce((s, r) => s + r.accepted, 0)}`,
  });
  return {
    name: 'transient',
    figures: { users: users.length, rate, seconds, rounds, latency: lat, throughput: thr },
    summary,
    charts: [
      {
        title: 'Stored and transient pushes delivered per second (batch calls, as fast as possible)',
        unit: 'msgs/s',
        categories: ['delivered'],
        series: KINDS.map((kind) => ({ name: kind, values: [median(of(thr, kind).map((r) => r.perSecond))] })),
        note: 'higher is better; stored: JetStream store, RePublish, ack and removal; transient: core NATS only',
      },
      {
        title: `Latency at ${rate.toLocaleString('en-US')}/s, batch calls`,
        unit: 'ms',
        categories: ['p50', 'p99', 'p99.9'],
        series: KINDS.map((kind) => ({
          name: kind,
          values: (['p50', 'p99', 'p999'] as const).map((p) => median(of(lat, kind).map((r) => r[p]))),
        })),
        note: 'lower is better; send to receive, one clock',
        log: true,
      },
    ],
  };
}

runIfMain(import.meta.url, () => runTransient({ smoke: process.argv.includes('--smoke') }));
