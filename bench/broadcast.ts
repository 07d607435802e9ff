/**
 * Broadcast at scale (issue 9): N connections (100,000 by default) over several one-worker edge
 * processes (six by default, each under the 20,000 file descriptors a process may hold here), then
 * the center publishes M messages to the app's broadcast topic `_all`, which every connection
 * receives without subscribing (`POST /v1/apps/<app>/topics/_all/messages`), one every
 * INTERVAL_MS. Each client records the latency from the send time carried in the message; the
 * figures are deliveries/s (every delivery over the time from the first publish to the last
 * receipt), p50/p99/p99.9 latency, whether all N x M arrived, and CPU by role. Ours only: the
 * peers are not run this wide (bench/idle.ts says why).
 *
 * The publishes keep a steady pace, each at t0 + k x INTERVAL_MS whether or not the previous call
 * returned, so a system slower than the pace shows as latency (a queue) and not as a slower sender.
 *
 *   npx tsx bench/broadcast.ts
 *   BENCH_BROADCAST_CONNECTIONS=20000 npx tsx bench/broadcast.ts
 */
import { LoadFleet } from './lib/fleet.js';
import { monoMs } from './lib/hist.js';
import { runIfMain } from './lib/main.js';
import { sleep } from './lib/procs.js';
import { note, type BenchResult, type SummaryRow } from './lib/results.js';
import { CpuByRole, env, latency, quietFirst, type RunOptions } from './lib/scenario.js';
import { OursTarget } from './lib/targets.js';

export async function runBroadcast(opts: RunOptions = { smoke: false }): Promise<BenchResult> {
  const smoke = opts.smoke;
  const n = smoke ? 200 : env('BENCH_BROADCAST_CONNECTIONS', 100_000);
  const edges = smoke ? 2 : env('BENCH_BROADCAST_EDGES', 6);
  const messages = smoke ? 3 : env('BENCH_BROADCAST_MESSAGES', 10);
  const intervalMs = smoke ? 100 : env('BENCH_BROADCAST_INTERVAL_MS', 1000);
  const timeoutMs = env('BENCH_BROADCAST_TIMEOUT_MS', 300_000);
  const concurrency = env('BENCH_BROADCAST_CONCURRENCY', smoke ? 50 : 1000);
  const expected = n * messages;
  // One load child per edge (child i connects to edge i % edges) and enough children for N; a
  // multiple of the edges, so each edge gets the same share.
  const children = edges * Math.ceil(LoadFleet.sizeFor(n) / edges);

  await quietFirst(smoke);
  note(`broadcast: ${n} connections over ${edges} edge processes, ${children} load children`);
  const target = await OursTarget.start(edges);
  const fleet = LoadFleet.start(children);
  const { opened, got, cpu, firstPublishAt, publishMs } = await (async () => {
    try {
      const opened = await fleet.openAll({ target, userPrefix: 'bc', total: n, concurrency, retries: 20 });
      note(`broadcast: ${opened.ok} ready in ${Math.round(opened.ms)} ms (${Math.round(opened.perSecond)}/s)`);
      await sleep(smoke ? 100 : 2000); // let the connects' tail (presence writes, backlog checks) settle
      await fleet.stats(true);
      const meter = new CpuByRole(target, fleet, true);
      meter.start();
      const firstPublishAt = monoMs();
      // Calls overlap when one takes longer than the interval; the first failure is kept (and
      // thrown once all returned) rather than left unhandled while the loop sleeps.
      let failure: Error | undefined;
      const calls: Array<Promise<void>> = [];
      for (let k = 0; k < messages && failure === undefined; k++) {
        const due = firstPublishAt + k * intervalMs - monoMs();
        if (due > 0) await sleep(due);
        calls.push(
          target
            .fanout([], { k, s: monoMs() })
            .catch((err: unknown) => void (failure ??= err instanceof Error ? err : new Error(String(err)))),
        );
      }
      await Promise.all(calls);
      if (failure !== undefined) throw failure;
      const publishMs = monoMs() - firstPublishAt;
      const waited = await fleet.waitReceived(expected, timeoutMs);
      const cpu = meter.stop();
      const got = await fleet.stats(true);
      if (waited.received < expected)
        note(`broadcast: only ${waited.received} of ${expected} delivered (no progress for 15 s or timed out)`);
      return { opened, got, cpu, firstPublishAt, publishMs };
    } finally {
      await fleet.reset();
      await fleet.stop();
      await target.close();
    }
  })();

  const l = latency(got);
  const spanMs = got.lastReceiveAt - firstPublishAt;
  const deliveriesPerSecond = spanMs > 0 ? Math.round((got.received / spanMs) * 1000) : 0;
  const allDelivered = got.received === expected && got.unexpectedCloses === 0;
  note(
    `broadcast: ${got.received} of ${expected} in ${Math.round(spanMs)} ms, ${deliveriesPerSecond}/s, ` +
      `p50 ${l.p50} p99 ${l.p99} p99.9 ${l.p999} ms, cpu ${JSON.stringify(cpu)}`,
  );
  const nice = (x: number): string => x.toLocaleString('en-US');
  const what = `${messages} messages to _all, ${nice(n)} connections over ${edges} edge processes`;
  const summary: SummaryRow[] = [
    {
      bench: 'broadcast',
      figure: `our edge: deliveries/s, ${what}`,
      value: `${nice(deliveriesPerSecond)}/s (${nice(got.received)} in ${nice(Math.round(spanMs))} ms)`,
    },
    {
      bench: 'broadcast',
      figure: 'latency from publish to receipt, p50 / p99 / p99.9 / max',
      value: `${l.p50} / ${l.p99} / ${l.p999} / ${l.max} ms`,
    },
    {
      bench: 'broadcast',
      figure: `all ${nice(expected)} delivered, no connection lost`,
      value: `${nice(got.received)} delivered, ${got.unexpectedCloses} closed`,
      target: 'all',
      met: allDelivered ? 'yes' : 'no',
    },
    {
      bench: 'broadcast',
      figure: 'cores busy while broadcasting: edges / center / nats / redis / clients',
      value: `${cpu['edges']} / ${cpu['center']} / ${cpu['nats']} / ${cpu['redis']} / ${cpu['clients']}`,
    },
  ];
  return {
    name: 'broadcast',
    figures: {
      connections: n,
      edges,
      loadChildren: children,
      messages,
      intervalMs,
      expected,
      delivered: got.received,
      allDelivered,
      unexpectedCloses: got.unexpectedCloses,
      closeKinds: got.closeKinds,
      connectsPerSecond: Math.round(opened.perSecond),
      connectRetries: opened.retried,
      publishMs: Math.round(publishMs),
      spanMs: Math.round(spanMs),
      deliveriesPerSecond,
      latencyMs: l,
      cpu,
    },
    summary,
  };
}

runIfMain(import.meta.url, () => runBroadcast({ smoke: process.argv.includes('--smoke') }));
