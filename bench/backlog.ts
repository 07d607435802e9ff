/**
 * Scenario 4, offline backlog: USERS users each with PENDING messages stored while they were
 * offline connect (1,000 handshakes in flight): time until every message has reached its client
 * (each client acks as it goes), and until the store is empty again (every message removed).
 * Our system only: the peers keep nothing for an offline user.
 *
 *   npx tsx bench/backlog.ts
 */
import { LoadFleet } from './lib/fleet.js';
import { monoMs } from './lib/hist.js';
import { runIfMain } from './lib/main.js';
import { note, type BenchResult, type SummaryRow } from './lib/results.js';
import { atMost } from './lib/goals.js';
import { CpuByRole, env, quietFirst, showSpread, spread, type RunOptions } from './lib/scenario.js';
import { streamMessages, waitStreamEmpty } from './lib/stack.js';
import { OursTarget, type Message } from './lib/targets.js';

/**
 * Goals of issue 16 for 10,000 users x 100 pending: every message delivered within 30 s of the
 * first connect, and the store empty within 30 s of the last ack (the last receive: a client acks
 * in the event-loop turn it receives). Seconds.
 */
const ALL_DELIVERED_S = 30;
const EMPTY_AFTER_LAST_ACK_S = 30;

interface BacklogRound {
  storedPerSecond: number;
  /** Messages the clients got; `complete` when that is every one stored. */
  delivered: number;
  complete: boolean;
  drainMs: number;
  deliveredPerSecond: number;
  duplicates: number;
  removeMs: number;
  /** From the last receive to the store found empty, ms; absent when it was not empty in the wait. */
  emptyAfterLastAckMs?: number;
  leftInStore: number;
  cpu: Record<string, number>;
}

export async function runBacklog(opts: RunOptions = { smoke: false }): Promise<BenchResult> {
  const smoke = opts.smoke;
  const users = smoke ? 50 : env('BENCH_BACKLOG_USERS', 10_000);
  const pending = smoke ? 5 : env('BENCH_BACKLOG_PENDING', 100);
  const rounds = smoke ? 1 : env('BENCH_BACKLOG_ROUNDS', 1);
  const removeWaitMs = smoke ? 30_000 : env('BENCH_BACKLOG_REMOVE_WAIT_MS', 180_000);
  const total = users * pending;
  const out: BacklogRound[] = [];
  const fleet = LoadFleet.start(LoadFleet.sizeFor(users));
  try {
    for (let r = 0; r < rounds; r++) {
      await quietFirst(smoke);
      const target = await OursTarget.start(1);
      try {
        note(`backlog round ${r + 1}/${rounds}: storing ${total} messages for ${users} offline users`);
        const t0 = monoMs();
        const messages: Message[] = [];
        for (let k = 0; k < pending; k++)
          for (let u = 0; u < users; u++) messages.push({ user: `bl${u}`, data: { k } });
        await target.send(messages);
        const storedPerSecond = Math.round((total / (monoMs() - t0)) * 1000);
        const stored = await streamMessages(target.inboxStream);
        if (stored !== total) throw new Error(`stored ${stored} of ${total}`);
        await fleet.stats(true);
        const cpu = new CpuByRole(target, fleet);
        cpu.start();
        const t1 = monoMs();
        await fleet.openAll({ target, userPrefix: 'bl', total: users, concurrency: 1000, retries: 20 });
        const got = await fleet.waitReceived(total, 600_000);
        const used = cpu.stop();
        const drainMs = got.lastReceiveAt - t1;
        const complete = got.received >= total;
        note(
          complete
            ? `backlog: ${total} delivered in ${Math.round(drainMs)} ms; waiting for the store to empty`
            : `backlog: only ${got.received} of ${total} delivered (10 minutes passed, or nothing came for 15 s)`,
        );
        const removed = complete
          ? await waitStreamEmpty(target.inboxStream, removeWaitMs)
          : { left: await streamMessages(target.inboxStream) };
        const emptyAt = monoMs();
        out.push({
          storedPerSecond,
          delivered: got.received,
          complete,
          drainMs: Math.round(drainMs),
          deliveredPerSecond: Math.round((got.received / drainMs) * 1000),
          duplicates: got.duplicates,
          removeMs: Math.round(emptyAt - t1),
          ...(removed.left === 0 ? { emptyAfterLastAckMs: Math.round(emptyAt - got.lastReceiveAt) } : {}),
          leftInStore: removed.left,
          cpu: used,
        });
      } finally {
        await fleet.reset();
        await target.close();
      }
    }
  } finally {
    await fleet.stop();
  }
  const drain = spread(out.map((r) => r.drainMs));
  const allComplete = out.every((r) => r.complete);
  const allEmpty = out.every((r) => r.emptyAfterLastAckMs !== undefined);
  const emptyAfter = spread(out.map((r) => r.emptyAfterLastAckMs ?? Number.POSITIVE_INFINITY));
  const summary: SummaryRow[] = [
    {
      bench: 'backlog',
      figure: `${users.toLocaleString('en-US')} users x ${pending} pending connect: all delivered, from the first connect`,
      value: allComplete
        ? `${showSpread(drain, 'ms')} (${showSpread(spread(out.map((r) => r.deliveredPerSecond)), 'msgs/s')})`
        : `NOT COMPLETE: delivered ${out.map((r) => `${r.delivered.toLocaleString('en-US')} of ${total.toLocaleString('en-US')}`).join(' / ')} when the wait ended (10 minutes, or 15 s without a message)`,
      ...atMost(allComplete ? drain.median / 1000 : Number.POSITIVE_INFINITY, ALL_DELIVERED_S, ' s'),
    },
    {
      bench: 'backlog',
      figure: 'store empty again (acked and removed), from the last ack',
      value: out
        .map((r) =>
          r.emptyAfterLastAckMs !== undefined
            ? `${r.emptyAfterLastAckMs.toLocaleString('en-US')} ms (${r.removeMs.toLocaleString('en-US')} ms from the first connect)`
            : `${r.leftInStore.toLocaleString('en-US')} left after ${r.removeMs.toLocaleString('en-US')} ms from the first connect`,
        )
        .join(' / '),
      ...atMost(allEmpty ? emptyAfter.median / 1000 : Number.POSITIVE_INFINITY, EMPTY_AFTER_LAST_ACK_S, ' s'),
    },
    {
      bench: 'backlog',
      figure: 'stored beforehand (batch calls)',
      value: showSpread(spread(out.map((r) => r.storedPerSecond)), 'msgs/s'),
    },
  ];
  return {
    name: 'backlog',
    figures: { users, pending, rounds, runs: out },
    summary,
    charts: [
      {
        title: `Offline backlog: ${users.toLocaleString('en-US')} users x ${pending} messages`,
        unit: 's',
        categories: ['all delivered', 'store empty again'],
        series: [
          {
            name: 'our system',
            values: [
              drain.median / 1000,
              out.every((r) => r.leftInStore === 0) ? spread(out.map((r) => r.removeMs)).median / 1000 : null,
            ],
          },
        ],
        note: 'from the first connect; n/a = the store was not empty within the wait',
      },
    ],
  };
}

runIfMain(import.meta.url, () => runBacklog({ smoke: process.argv.includes('--smoke') }));
