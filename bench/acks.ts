/**
 * The store's ack and backlog paths measured at the InboxStore level (no edge, no sockets), to
 * choose between the ways the edge can remove acked messages and read a backlog:
 *
 *   remove, delete:        one STREAM.MSG.DELETE per acked message (the edge before the AckBatcher)
 *   remove, purge/window:  one STREAM.PURGE of the user's subjects (wildcard of both kinds) up to a
 *                          sequence per window of acks in order
 *   remove, purge .b/window: the same with the literal subject of the kind (what the AckBatcher
 *                          sends when a client acks in order)
 *   remove, purge/ack:     one purge per acked message (the batcher's worst case: one ack a turn)
 *   read, one a request:   a batched Direct Get asking for 1 message (as many requests as messages)
 *   read, batched:         a batched Direct Get asking for a window of messages
 *
 * Each round stores USERS x PER_USER messages, then removes or reads all of them with IN_FLIGHT
 * requests in flight, and prints messages per second and requests per second.
 *
 *   npx tsx bench/acks.ts   (PUSH_BENCH_NATS_URL=nats://127.0.0.1:<port> for a 2.11+ server;
 *   BENCH_ACKS_USERS, BENCH_ACKS_PER_USER, BENCH_ACKS_WINDOW, BENCH_ACKS_ROUNDS; BENCH_ACKS_ONLY, a
 *   comma-separated list of delete | purge | purge-b | purge-ack | read, runs only those)
 */
import { connect } from '@nats-io/transport-node';
import { InboxStore, ensureInboxStream } from '@push/nats';
import { Subjects } from '@push/protocol';
import { benchPrefix, NATS_URL, removePrefix } from './lib/stack.js';

const env = (name: string, fallback: number): number => Number(process.env[name] ?? fallback);
const USERS = env('BENCH_ACKS_USERS', 1000);
const PER_USER = env('BENCH_ACKS_PER_USER', 50);
const WINDOW = env('BENCH_ACKS_WINDOW', 25);
const ROUNDS = env('BENCH_ACKS_ROUNDS', 2);
const IN_FLIGHT = 1000;
const ONLY = process.env['BENCH_ACKS_ONLY']?.split(',');
const want = (method: string): boolean => ONLY === undefined || ONLY.includes(method);
const APP = 'bench';

/** Runs `jobs` with at most IN_FLIGHT at once; resolves with the seconds it took. */
async function timed(jobs: Array<() => Promise<unknown>>): Promise<number> {
  const t0 = process.hrtime.bigint();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const job = jobs[next++] as () => Promise<unknown>;
      await job();
    }
  };
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, jobs.length) }, worker));
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

const prefix = benchPrefix();
const subjects = new Subjects(prefix);
const nc = await connect({ servers: NATS_URL, name: 'bench-acks' });
const store = new InboxStore(nc, subjects, { timeoutMs: 60_000 });
const server = nc.info?.version ?? '?';
try {
  await ensureInboxStream(
    nc,
    subjects,
    { id: APP, settings: { maxPendingPerUser: 10_000 } },
    { maxPerUser: 10_000, maxAgeSeconds: 3600, duplicateWindowSeconds: 60, replicas: 1 },
  );
  const users = Array.from({ length: USERS }, (_, i) => `u${i}`);
  const body = { bytes: Buffer.from(JSON.stringify({ text: 'x'.repeat(100) })), binary: false };

  /** Stores PER_USER messages for every user, interleaved; returns each user's sequences. */
  const fill = async (): Promise<Map<string, number[]>> => {
    const seqs = new Map<string, number[]>(users.map((u) => [u, []]));
    const jobs: Array<() => Promise<unknown>> = [];
    for (let k = 0; k < PER_USER; k++) {
      for (const u of users) {
        jobs.push(() => store.publish(APP, u, body, { ttlMs: 3_600_000 }).then((r) => seqs.get(u)?.push(r.seq)));
      }
    }
    await timed(jobs);
    for (const s of seqs.values()) s.sort((a, b) => a - b);
    return seqs;
  };

  const total = USERS * PER_USER;
  const line = (name: string, seconds: number, requests: number): void => {
    console.log(
      `${name.padEnd(28)} ${Math.round(total / seconds)
        .toLocaleString('en-US')
        .padStart(9)} msgs/s  ${Math.round(requests / seconds)
        .toLocaleString('en-US')
        .padStart(8)} requests/s  (${requests.toLocaleString('en-US')} requests, ${seconds.toFixed(2)} s)`,
    );
  };
  const pendingAll = async (): Promise<number> => {
    let n = 0;
    for (const u of users.slice(0, 10)) n += await store.pending(APP, u);
    return n;
  };

  console.log(`nats-server ${server}: ${USERS} users x ${PER_USER} messages, window ${WINDOW}, ${IN_FLIGHT} in flight`);
  for (let round = 1; round <= ROUNDS; round++) {
    console.log(`round ${round}`);
    let seqs: Map<string, number[]>;
    if (want('delete')) {
      seqs = await fill();
      const jobs = [...seqs.values()].flatMap((s) => s.map((seq) => () => store.remove(APP, seq)));
      line('remove, delete', await timed(jobs), jobs.length);
      if ((await pendingAll()) !== 0) throw new Error('deletes left messages behind');
    }
    if (want('purge')) {
      seqs = await fill();
      // One purge per user per window, in order per user (a user's windows follow each other).
      const byUser = [...seqs.entries()].map(([u, s]) => async (): Promise<void> => {
        for (let i = WINDOW - 1; i < s.length + WINDOW - 1; i += WINDOW) {
          await store.purge(APP, u, (s[Math.min(i, s.length - 1)] as number) + 1);
        }
      });
      line(`remove, purge/window of ${WINDOW}`, await timed(byUser), USERS * Math.ceil(PER_USER / WINDOW));
      if ((await pendingAll()) !== 0) throw new Error('purges left messages behind');
    }
    if (want('purge-b')) {
      // The same with the literal subject of the kind (every message here is the business's).
      seqs = await fill();
      const byUserLiteral = [...seqs.entries()].map(([u, s]) => async (): Promise<void> => {
        for (let i = WINDOW - 1; i < s.length + WINDOW - 1; i += WINDOW) {
          await store.purge(APP, u, (s[Math.min(i, s.length - 1)] as number) + 1, 'b');
        }
      });
      line(`remove, purge .b/window`, await timed(byUserLiteral), USERS * Math.ceil(PER_USER / WINDOW));
      if ((await pendingAll()) !== 0) throw new Error('purges left messages behind');
    }
    if (want('purge-ack')) {
      seqs = await fill();
      const perAck = [...seqs.entries()].map(([u, s]) => async (): Promise<void> => {
        for (const seq of s) await store.purge(APP, u, seq + 1);
      });
      line('remove, purge/ack', await timed(perAck), total);
    }
    if (!want('read')) continue;

    seqs = await fill();
    const readAll = (max: number) =>
      users.map((u) => async (): Promise<number> => {
        let from = 1;
        let requests = 0;
        for (;;) {
          const r = await store.readBatch(APP, u, from, { max, maxBytes: 1 << 20 });
          requests++;
          const lastMsg = r.messages[r.messages.length - 1];
          if (lastMsg !== undefined) from = lastMsg.seq + 1;
          if (!r.more) return requests;
        }
      });
    line('read, one a request', await timed(readAll(1)), total);
    line(`read, batched (${WINDOW * 4})`, await timed(readAll(WINDOW * 4)), USERS * Math.ceil(PER_USER / (WINDOW * 4)));
    for (const [u, s] of seqs) await store.purge(APP, u, (s[s.length - 1] as number) + 1);
  }
} finally {
  store.close();
  await nc.close();
  await removePrefix(prefix);
}
