/**
 * Scenario 2, connect storm, as after an edge restart: N clients connected to one server process
 * lose their connection, the server is killed (SIGKILL) and started again on its port, and every
 * client comes back at once, every handshake in flight together. Measured: time until all are connected again, then until each has received
 * one message pushed after the last one got back ("back and receiving"), and the errors seen.
 * Our edge (where a reconnect means token check, presence, subscription and backlog check) and the
 * peers, each in turn, ROUNDS times.
 *
 *   npx tsx bench/storm.ts
 */
import { LoadFleet } from './lib/fleet.js';
import { monoMs } from './lib/hist.js';
import { runIfMain } from './lib/main.js';
import { sleep } from './lib/procs.js';
import { note, type BenchResult, type SummaryRow } from './lib/results.js';
import { env, expectAll, showSpread, spread, type RunOptions, chosenTargets, eachTargetRound } from './lib/scenario.js';
import { LABELS } from './lib/targets.js';

/** Issue 16: the storm's "all receiving" at most this multiple of bare uWS's, same run. */
const RECEIVING_RATIO_TARGET = 1.5;

interface StormRound {
  reconnectMs: number;
  receivingMs: number;
  /** Clients that never got back (after 20 retries). */
  failed: number;
  /** Every failed attempt, by kind: the errors a client saw. */
  failures: Record<string, number>;
}

export async function runStorm(opts: RunOptions = { smoke: false }): Promise<BenchResult> {
  const TARGETS = chosenTargets();
  const smoke = opts.smoke;
  const n = smoke ? 200 : env('BENCH_STORM_CONNECTIONS', 19_000);
  const rounds = smoke ? 1 : env('BENCH_STORM_ROUNDS', 3);
  const byTarget: Record<string, StormRound[]> = {};
  const fleet = LoadFleet.start(LoadFleet.sizeFor(n));
  try {
    await eachTargetRound({ scenario: 'storm', targets: TARGETS, rounds, smoke, fleet }, async (target) => {
      const open = { target, userPrefix: 'st', total: n };
      // Before the storm, connect everyone (retrying like an SDK: Socket.IO's listen queue
      // overflows at 1,000 handshakes in flight and resets a few).
      await fleet.openAll({ ...open, concurrency: 1000, retries: 20 });
      await sleep(smoke ? 100 : 2000);
      await fleet.stats(true);
      // The storm: the server dies with every connection (clients RST theirs first, so no
      // TIME_WAIT blocks the same 4-tuples), comes back on its port, and every client
      // reconnects at once.
      await fleet.reset();
      await target.restart();
      const t0 = monoMs();
      const back = await fleet.open({ ...open, concurrency: n, timeoutMs: 30_000, retries: 20 });
      const reconnectMs = monoMs() - t0;
      const users = Array.from({ length: n }, (_, i) => `st${i}`);
      await target.send(users.map((user) => ({ user, data: { s: monoMs() } })));
      const got = await fleet.waitReceived(back.ok, 120_000);
      expectAll(`${target.name} storm`, got.received, back.ok);
      const round: StormRound = {
        reconnectMs,
        receivingMs: got.lastReceiveAt - t0,
        failed: back.failed,
        failures: back.failures,
      };
      note(
        `${target.name}: all back in ${Math.round(reconnectMs)} ms, receiving after ${Math.round(round.receivingMs)} ms, ${back.failed} failed`,
      );
      (byTarget[target.name] ??= []).push(round);
    });
  } finally {
    await fleet.stop();
  }
  const summary: SummaryRow[] = [];
  const figures: Record<string, unknown> = { connections: n, rounds, targets: byTarget };
  for (const name of TARGETS) {
    const rs = byTarget[name] ?? [];
    const back = spread(rs.map((x) => x.reconnectMs));
    const recv = spread(rs.map((x) => x.receivingMs));
    const failed = rs.reduce((s, x) => s + x.failed, 0);
    const errors: Record<string, number> = {};
    for (const x of rs) for (const [k, v] of Object.entries(x.failures)) errors[k] = (errors[k] ?? 0) + v;
    const seen = Object.entries(errors)
      .map(([k, v]) => `${k}: ${v}`)
      .join(', ');
    summary.push({
      bench: 'storm',
      figure: `${LABELS[name]}: ${n.toLocaleString('en-US')} reconnect at once: all back / all receiving`,
      value: `${showSpread(back, 'ms')} / ${showSpread(recv, 'ms')}; errors seen (all rounds): ${seen === '' ? 'none' : seen}; never back: ${failed}`,
    });
  }
  // Issue 16: ours against bare uWS in the same rounds (each round runs both, minutes apart).
  const ours = byTarget['ours'] ?? [];
  const uws = byTarget['uws'] ?? [];
  if (ours.length > 0 && uws.length > 0) {
    const ratio = spread(
      ours.map((r, i) => r.receivingMs / (uws[i]?.receivingMs ?? Number.NaN)).filter(Number.isFinite),
      2,
    );
    summary.push({
      bench: 'storm',
      figure: `${n.toLocaleString('en-US')} reconnect at once, all receiving: ours / bare uWS, same round`,
      value: showSpread(ratio, 'x'),
      target: `<= ${RECEIVING_RATIO_TARGET}x`,
      met: ratio.median <= RECEIVING_RATIO_TARGET ? 'yes' : 'no',
    });
  }
  return {
    name: 'storm',
    figures,
    summary,
    charts: [
      {
        title: `Connect storm: ${n.toLocaleString('en-US')} clients reconnecting at once`,
        unit: 'ms',
        categories: ['all connected again', 'all receiving'],
        series: TARGETS.map((name) => ({
          name: LABELS[name],
          values: [
            spread((byTarget[name] ?? []).map((x) => x.reconnectMs)).median,
            spread((byTarget[name] ?? []).map((x) => x.receivingMs)).median,
          ],
        })),
        note: 'lower is better; median of rounds',
      },
    ],
  };
}

runIfMain(import.meta.url, () => runStorm({ smoke: process.argv.includes('--smoke') }));
