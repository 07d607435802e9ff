/**
 * Scenario `million`: as many authenticated connections as one host holds (1,000,000 by default),
 * over several one-worker edge processes on this machine, with the load generator beside them.
 *
 * 1. Connect: N connections, 1,000 handshakes in flight, then hold them (BENCH_MILLION_HOLD_S).
 *    Then one broadcast (`_all`): the time until every connection has it.
 * 2. Churn (BENCH_MILLION_CHURN_S): N/1000 connections a second drop (RST) and reconnect, while
 *    the business pushes BENCH_MILLION_PUSH_RATE unicasts a second to random users and a
 *    broadcast once every BENCH_MILLION_BROADCAST_S.
 * 3. Nothing lost: every push the center accepted reached its user (checked by message id).
 *
 * A time series is sampled every few seconds with no forced GC: connections, each edge's RSS and
 * heap, the edges' event-loop delay (p99 and max since the previous sample: the GC pauses), the
 * load generator's own memory, and the receive rate. After the hold, one forced GC per edge gives
 * the after-GC memory beside the settled one.
 *
 * A process here may hold 20,000 file descriptors (a hard limit only root can raise), so the
 * load children hold 18,000 connections each, each child's to an edge of its own: a million
 * takes 56 edges and 56 load processes. Host settings: see bench/README.md ("million").
 *
 *   npx tsx bench/run.ts million
 *   BENCH_MILLION_CONNECTIONS=200000 BENCH_MILLION_HOLD_S=60 npx tsx bench/run.ts million
 */
import { LoadFleet } from './lib/fleet.js';
import { atMost, below } from './lib/goals.js';
import { monoMs } from './lib/hist.js';
import { runIfMain } from './lib/main.js';
import { MemoryGuard, sleep } from './lib/procs.js';
import { note, writeResult, type BenchResult, type SummaryRow } from './lib/results.js';
import { env, type RunOptions } from './lib/scenario.js';
import { round } from './lib/stats.js';
import { OursTarget, type EdgeSample } from './lib/targets.js';

/**
 * V8's young generation, kept small: by default each semi-space may grow to 16 MB, and an edge
 * that just took a burst of connects keeps that garbage resident until the next GC; 56 edges
 * would hold a gigabyte of it. BENCH_MILLION_EDGE_NODE_ARGS overrides ('' for V8's defaults).
 */
const EDGE_NODE_ARGS = (process.env['BENCH_MILLION_EDGE_NODE_ARGS'] ?? '--max-semi-space-size=2')
  .split(' ')
  .filter((a) => a !== '');

interface Sample {
  /** Seconds since the scenario started. */
  t: number;
  phase: string;
  /** Ready connections as the clients count them. */
  ready: number;
  /** Open connections as the edges count them. */
  edgeConnections: number;
  edgeRssMB: number;
  edgeHeapMB: number;
  /** The worst edge's event-loop delay since the previous sample, ms. */
  loopP99Ms: number;
  loopMaxMs: number;
  loadRssMB: number;
  /** Messages the clients received per second since the previous sample. */
  receivedPerSecond: number;
}

const MB = 1024 * 1024;

function sum(xs: EdgeSample[], f: (e: EdgeSample) => number): number {
  return xs.reduce((s, e) => s + f(e), 0);
}

function worst(xs: EdgeSample[], f: (e: EdgeSample) => number): number {
  return Math.max(0, ...xs.map(f).filter((v) => Number.isFinite(v)));
}

export async function runMillion(opts: RunOptions = { smoke: false }): Promise<BenchResult> {
  const smoke = opts.smoke;
  const n = smoke ? 400 : env('BENCH_MILLION_CONNECTIONS', 1_000_000);
  const holdS = smoke ? 3 : env('BENCH_MILLION_HOLD_S', 300);
  const churnS = smoke ? 6 : env('BENCH_MILLION_CHURN_S', 300);
  const churnRate = smoke ? 40 : env('BENCH_MILLION_CHURN_RATE', Math.round(n / 1000));
  const pushRate = smoke ? 100 : env('BENCH_MILLION_PUSH_RATE', 2000);
  const broadcastS = smoke ? 3 : env('BENCH_MILLION_BROADCAST_S', 60);
  const sampleMs = smoke ? 1000 : env('BENCH_MILLION_SAMPLE_MS', 5000);
  // The heartbeat the devices agree (`?ping=`): an SDK on a steady network climbs to minutes
  // (docs/sdk.md, adaptive heartbeats); at 25 s a million connections cost 27,000 pings a second.
  const pingS = env('BENCH_MILLION_PING_S', 300);
  // One edge per load child: child i connects to edge i (LoadFleet.open), so no edge gets more
  // than a child holds.
  const edges = LoadFleet.sizeFor(n);
  note(`million: ${n.toLocaleString('en-US')} connections over ${edges} edges; hold ${holdS} s, churn ${churnS} s`);

  // At a million the churn can use up the host's memory: fail the run before the OOM killer
  // takes a server (and with it the run's cleanup).
  const memory = new MemoryGuard();
  const fleet = LoadFleet.start(LoadFleet.sizeFor(n));
  const target = await OursTarget.start(edges, {}, [...EDGE_NODE_ARGS, '--expose-gc']);
  const samples: Sample[] = [];
  const t0 = monoMs();
  let phase = 'start';
  let lastReceived = 0;
  let lastAt = t0;
  let sampling = true;
  const takeSample = async (): Promise<Sample> => {
    const [es, fs] = await Promise.all([target.sample(), fleet.stats(false, false)]);
    const now = monoMs();
    const s: Sample = {
      t: round((now - t0) / 1000, 1),
      phase,
      ready: fs.ready,
      edgeConnections: sum(es, (e) => e.connections),
      edgeRssMB: round(sum(es, (e) => e.rss) / MB, 1),
      edgeHeapMB: round(sum(es, (e) => e.heapUsed) / MB, 1),
      loopP99Ms: round(worst(es, (e) => e.loopP99) * 1000, 1),
      loopMaxMs: round(worst(es, (e) => e.loopMax) * 1000, 1),
      loadRssMB: round(fs.rss / MB, 1),
      receivedPerSecond: round(((fs.received - lastReceived) / (now - lastAt)) * 1000),
    };
    lastReceived = fs.received;
    lastAt = now;
    samples.push(s);
    return s;
  };
  const sampler = (async () => {
    while (sampling) {
      const s = await takeSample().catch((err: unknown) => {
        note(`million: sample failed: ${String(err)}`);
        return undefined;
      });
      if (s !== undefined && !smoke)
        note(
          `  t=${s.t}s ${s.phase}: ${s.ready} ready, edges ${s.edgeRssMB} MB RSS, loop max ${s.loopMaxMs} ms, load ${s.loadRssMB} MB`,
        );
      await sleep(sampleMs);
    }
  })();

  const accepted = new Set<number>();
  let nextId = 0;
  const broadcasts: Array<{ k: number; at: number; phase: string }> = [];
  const broadcast = async (): Promise<void> => {
    const k = nextId++;
    broadcasts.push({ k, at: monoMs(), phase });
    await target.fanout([], { s: monoMs(), k });
  };
  /** Figures of the phases done so far, kept in the results when a later phase fails. */
  const done: Record<string, unknown> = {};
  try {
    const base = await target.sample();
    const baseRss = sum(base, (e) => e.rss);
    const basePss = await target.pss();
    const baseHeap = sum(base, (e) => e.heapUsed);

    // 1. Connect and hold.
    phase = 'connect';
    const open = await memory.guard(
      fleet.open({
        target,
        userPrefix: 'm',
        total: n,
        concurrency: 1000,
        retries: 20,
        pingSeconds: pingS,
        timeoutMs: 60_000,
        // The target is 6 minutes; a slower connect is a figure to report, not a reason to stop.
        waitMs: 3_600_000,
      }),
    );
    note(
      `million: ${open.ok} connected in ${Math.round(open.ms / 1000)} s (${Math.round(open.perSecond)}/s), ${open.failed} failed`,
    );
    done['connect'] = { ok: open.ok, failed: open.failed, seconds: round(open.ms / 1000, 1) };
    phase = 'hold';
    await memory.guard(sleep(holdS * 1000));
    const settled = await target.sample();
    const settledRss = sum(settled, (e) => e.rss);
    const settledHeap = sum(settled, (e) => e.heapUsed);
    const settledPss = await target.pss();
    const held = (await fleet.stats(false, false)).ready;
    done['settled'] = {
      held,
      edgeRssMB: round(settledRss / MB, 1),
      edgePssMB: round(settledPss / MB, 1),
      totalPssPerConnB: Math.round(settledPss / Math.max(1, held)),
      rssPerConnB: Math.round((settledRss - baseRss) / Math.max(1, held)),
      heapPerConnB: Math.round((settledHeap - baseHeap) / Math.max(1, held)),
    };

    // The broadcast to everyone connected: the time until each connection has it.
    phase = 'broadcast';
    await broadcast();
    const first = broadcasts[0] as { k: number; at: number };
    let reachedAll = Number.POSITIVE_INFINITY;
    const bDeadline = monoMs() + (smoke ? 20_000 : 120_000);
    let got = 0;
    while (monoMs() < bDeadline) {
      const t = (await fleet.ids()).topics.get(first.k);
      got = t?.count ?? 0;
      if (got >= held && t !== undefined) {
        reachedAll = t.lastAt - first.at;
        break;
      }
      await sleep(smoke ? 100 : 1000);
    }
    note(
      `million: broadcast reached ${got} of ${held} connections${Number.isFinite(reachedAll) ? ` in ${Math.round(reachedAll)} ms` : ''}`,
    );
    done['broadcast'] = { reached: got, of: held, ms: Number.isFinite(reachedAll) ? Math.round(reachedAll) : null };

    // After a forced GC, for comparison (the operator never sees this one): one full GC per
    // edge, after the broadcast. V8's thorough collection (several full GCs) held a starved edge's
    // loop past its presence lease at a million (2026-12-07), and every connection of the edge was
    // then swept and recorded again, during the broadcast and the phases after it.
    phase = 'gc';
    const gc = await target.memory(true);
    await sleep(smoke ? 100 : 5000);

    // 2. Churn, with unicasts and a broadcast a minute. BENCH_MILLION_CHURN_S=0 skips it (its
    // rows then say so and are not met): a host that holds N but has no memory left for the
    // churn still gets its connect, hold, memory and broadcast figures in a results file.
    const churnRan = churnS > 0;
    await fleet.stats(true, false); // latency histograms from here on
    phase = 'churn';
    const churnStart = samples.length;
    const churning = churnRan ? fleet.churn(churnRate, churnS * 1000) : Promise.resolve({ dropped: 0, failed: 0 });
    let pushing = churnRan;
    let pushFailures = 0;
    const pusher = (async () => {
      let carry = 0;
      let lastBroadcast = monoMs();
      while (pushing) {
        const tick = monoMs();
        carry += pushRate / 10;
        const count = Math.floor(carry);
        carry -= count;
        const messages = Array.from({ length: count }, () => {
          const k = nextId++;
          return { k, user: `m${Math.floor(Math.random() * n)}` };
        });
        if (messages.length > 0) {
          void target.pushResults(messages.map((m) => ({ user: m.user, data: { s: monoMs(), k: m.k } }))).then(
            (results) =>
              results.forEach((r, i) => {
                if (typeof r.seq === 'number') accepted.add((messages[i] as { k: number }).k);
              }),
            () => {
              pushFailures += messages.length;
            },
          );
        }
        if (monoMs() - lastBroadcast >= broadcastS * 1000) {
          lastBroadcast = monoMs();
          await broadcast().catch(() => undefined);
        }
        await sleep(Math.max(0, 100 - (monoMs() - tick)));
      }
    })();
    const churned = await memory.guard(churning).finally(() => {
      pushing = false;
    });
    await pusher;
    const churnEnd = samples.length;

    // 3. Nothing lost: wait for every accepted push to arrive.
    phase = 'drain';
    let missing = [...accepted];
    const dDeadline = monoMs() + (smoke ? 30_000 : 120_000);
    while (monoMs() < dDeadline) {
      const ids = await memory.guard(fleet.ids());
      missing = [...accepted].filter((k) => !ids.unicast.has(k));
      if (missing.length === 0) break;
      await sleep(1000);
    }
    const end = await fleet.stats(false, true);
    sampling = false;
    await sampler;

    const churnSamples = samples.slice(churnStart, Math.max(churnStart + 1, churnEnd));
    const loopMaxChurn = Math.max(0, ...churnSamples.map((s) => s.loopMaxMs));
    const rssPerConn = (settledRss - baseRss) / Math.max(1, held);
    const heapPerConn = (settledHeap - baseHeap) / Math.max(1, held);
    const gcRssPerConn = (gc.rss - baseRss) / Math.max(1, held);
    const gcHeapPerConn = (gc.heapUsed - baseHeap) / Math.max(1, held);
    const p99Push = churnRan ? end.unicastHist.percentile(99) : Number.NaN;
    const p99Reconnect = churnRan ? end.churnHist.percentile(99) : Number.NaN;
    const notRun = 'not run (BENCH_MILLION_CHURN_S=0)';
    const ids = await fleet.ids();
    const later = broadcasts.slice(1).map((b) => ({
      phase: b.phase,
      reached: ids.topics.get(b.k)?.count ?? 0,
    }));

    const figures = {
      connections: n,
      edges,
      loadProcesses: fleet.children.length,
      holdSeconds: holdS,
      churnSeconds: churnS,
      pingSeconds: pingS,
      churnPerSecond: churnRate,
      pushesPerSecond: pushRate,
      connect: {
        ok: open.ok,
        failed: open.failed,
        retried: open.retried,
        seconds: round(open.ms / 1000, 1),
        perSecond: Math.round(open.perSecond),
        failures: open.failures,
      },
      held,
      memory: {
        edgeBaseRssMB: round(baseRss / MB, 1),
        /** The idle edges' PSS summed (shared pages charged in shares, see OursTarget.pss). */
        edgeBasePssMB: round(basePss / MB, 1),
        edgeNodeArgs: [...EDGE_NODE_ARGS, '--expose-gc'],
        settled: {
          edgeRssMB: round(settledRss / MB, 1),
          edgePssMB: round(settledPss / MB, 1),
          /** Every edge's whole RSS (its base included) per connection: shared pages counted per edge. */
          totalRssPerConnB: Math.round(settledRss / Math.max(1, held)),
          /** Every edge's whole PSS per connection: what the edges cost the host, base included. */
          totalPssPerConnB: Math.round(settledPss / Math.max(1, held)),
          rssPerConnB: Math.round(rssPerConn),
          heapPerConnB: Math.round(heapPerConn),
        },
        afterGc: {
          edgeRssMB: round(gc.rss / MB, 1),
          rssPerConnB: Math.round(gcRssPerConn),
          heapPerConnB: Math.round(gcHeapPerConn),
        },
        loadGeneratorRssMB: samples.at(-1)?.loadRssMB,
      },
      broadcast: { reached: got, of: held, ms: Number.isFinite(reachedAll) ? Math.round(reachedAll) : null },
      churn: {
        ran: churnRan,
        dropped: churned.dropped,
        neverBack: churned.failed,
        reconnectP50Ms: round(end.churnHist.percentile(50), 1),
        reconnectP99Ms: round(p99Reconnect, 1),
        pushesAccepted: accepted.size,
        pushesRefused: pushFailures,
        lost: missing.length,
        duplicates: end.duplicates,
        pushP50Ms: round(end.unicastHist.percentile(50), 1),
        pushP99Ms: round(p99Push, 1),
        loopMaxMs: loopMaxChurn,
        broadcasts: later,
      },
      samples,
    };
    const show = (x: number): string => x.toLocaleString('en-US');
    const summary: SummaryRow[] = [
      {
        bench: 'million',
        figure: 'connections held, authenticated, live',
        value: `${show(held)} of ${show(n)} for ${holdS} s (${edges} edges)`,
        target: `>= 1,000,000 for 300 s`,
        met: held >= 1_000_000 && holdS >= 300 ? 'yes' : 'no',
      },
      {
        bench: 'million',
        figure: `time to connect all ${show(n)}`,
        value: `${round(open.ms / 1000, 1)} s (${show(Math.round(open.perSecond))}/s), ${open.failed} failed`,
        ...atMost(open.failed === 0 ? open.ms / 1000 : Number.NaN, 360, ' s'),
      },
      {
        bench: 'million',
        figure: 'edge RSS per connection, settled, no forced GC (after GC)',
        value: `${show(Math.round(rssPerConn))} B above the idle edges (${show(Math.round(gcRssPerConn))} B); with the edges' base: ${show(Math.round(settledPss / Math.max(1, held)))} B as PSS (${show(Math.round(settledRss / Math.max(1, held)))} B summing each edge's RSS); heap ${show(Math.round(heapPerConn))} B (${show(Math.round(gcHeapPerConn))} B)`,
        // Judged with the edges' base: an operator pays for the processes too. As PSS: summed RSS
        // counts the node binary's shared pages once per edge (56 edges at 1M: about 2.5 GB that
        // the host holds once).
        ...atMost(settledPss / Math.max(1, held), 4096, ' B'),
      },
      {
        bench: 'million',
        figure: 'churn: accepted pushes lost',
        value: churnRan ? `${missing.length} of ${show(accepted.size)} (refused: ${pushFailures})` : notRun,
        ...atMost(churnRan ? missing.length : Number.NaN, 0),
      },
      {
        bench: 'million',
        figure: 'churn: push to deliver p99',
        value: churnRan ? `${round(p99Push, 1)} ms` : notRun,
        ...below(p99Push, 250, ' ms'),
      },
      {
        bench: 'million',
        figure: 'churn: reconnect to hello p99',
        value: churnRan
          ? `${round(p99Reconnect, 1)} ms (${show(churned.dropped)} dropped, ${churned.failed} never back)`
          : notRun,
        ...below(p99Reconnect, 1000, ' ms'),
      },
      {
        bench: 'million',
        figure: 'edge event-loop delay max during churn',
        value: churnRan ? `${loopMaxChurn} ms` : notRun,
        ...below(churnRan ? loopMaxChurn : Number.NaN, 100, ' ms'),
      },
      {
        bench: 'million',
        figure: 'broadcast: time until every connection has it',
        value: Number.isFinite(reachedAll)
          ? `${show(Math.round(reachedAll))} ms`
          : `${show(got)} of ${show(held)} reached`,
        ...below(reachedAll, 30_000, ' ms'),
      },
    ];
    return {
      name: 'million',
      figures,
      summary,
      charts: timeline(samples),
    };
  } catch (err) {
    // A run that fails midway (out of memory, a phase past its deadline) still leaves its time
    // series and where it stopped: the samples are the figures of a run that size.
    const message = err instanceof Error ? err.message : String(err);
    sampling = false; // not awaited: on a starved host a sample in flight can take minutes
    const path = writeResult({
      name: 'million',
      figures: {
        connections: n,
        edges,
        holdSeconds: holdS,
        churnSeconds: churnS,
        failedIn: phase,
        error: message,
        /** The figures of the phases that completed. */
        ...done,
        samples,
      },
      summary: [{ bench: 'million', figure: 'run', value: `FAILED in phase ${phase}: ${message.slice(0, 200)}` }],
      charts: timeline(samples),
    });
    note(`million: failed in phase ${phase}; what it measured until then is in ${path}`);
    throw err;
  } finally {
    memory.stop();
    sampling = false;
    await fleet.stop();
    await target.close();
    await sampler; // its requests to the stopped processes fail at once
  }
}

/** The time series as bar charts over time: connections, memory, event-loop delay (at most 40 bars). */
function timeline(samples: Sample[]): BenchResult['charts'] {
  const step = Math.max(1, Math.ceil(samples.length / 40));
  const picked = samples.filter((_, i) => i % step === 0);
  const at = picked.map((s) => `${Math.round(s.t)}s`);
  return [
    {
      title: 'Connections over time',
      unit: 'connections',
      categories: at,
      series: [{ name: 'ready (clients)', values: picked.map((s) => s.ready) }],
      note: `phases: ${[...new Set(samples.map((s) => s.phase))].join(', ')}`,
    },
    {
      title: 'Memory over time (no forced GC)',
      unit: 'MB',
      categories: at,
      series: [
        { name: 'edges RSS', values: picked.map((s) => s.edgeRssMB) },
        { name: 'edges heap', values: picked.map((s) => s.edgeHeapMB) },
        { name: 'load generator RSS', values: picked.map((s) => s.loadRssMB) },
      ],
    },
    {
      title: 'Worst edge event-loop delay over time',
      unit: 'ms',
      categories: at,
      series: [
        { name: 'p99', values: picked.map((s) => s.loopP99Ms) },
        { name: 'max', values: picked.map((s) => s.loopMaxMs) },
      ],
    },
  ];
}

runIfMain(import.meta.url, () => runMillion({ smoke: process.argv.includes('--smoke') }));
