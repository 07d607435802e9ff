/**
 * JetStream publish throughput into a fresh inbox stream: messages stored and acked per second.
 *
 *   (a) pipelined: InboxStore.publish (libs/nats RequestPipeline) with IN_FLIGHT promises kept
 *       in flight, to USERS users' subjects: what the center and the edges use.
 *   (b) plain: `await js.publish(subject, data)` one at a time (@nats-io/jetstream), the client's
 *       obvious path, bound by the round trip.
 *   (c) concurrent: js.publish with IN_FLIGHT promises in flight (reference: the client's own
 *       request path, a timer and a subscription lookup per request).
 *   (d) remove: InboxStore.remove (STREAM.MSG.DELETE by sequence, what the edge does per acked
 *       message) with IN_FLIGHT in flight, on the messages the pipelined round just stored.
 *   (e) store: the raw store cycle (bench/lib/store-cycle.ts): a bare nats.js connection
 *       publishes each message and deletes it by sequence as soon as its ack comes, IN_FLIGHT
 *       cycles outstanding; beside it (f) ours: InboxStore.publish, then InboxStore.remove of that
 *       sequence (what the edge's AckBatcher sends for one ack; a purge of the user's subject up
 *       to it before 2026-12-06), and (g) the bare cycle with a purge instead of the delete. Same rounds, interleaved.
 *   (h) fast ingest: one fast-ingest batch (nats-server 2.14+, the stream given
 *       `allow_batched`), server ack every 100 messages, same headers; publish only, beside (a)
 *       for the server's CPU per stored message.
 *
 * Same payload (a ~100-byte JSON message in the stored envelope), same subjects, same counting
 * rule (a message counts when its ack arrived), rounds interleaved so that the ratio compares
 * rounds measured under the same machine noise. The stream is purged between rounds so each
 * starts empty, and deleted at the end.
 *
 * Old server beside the new (issue 8): when a second nats-server answers at
 * BENCH_PUBLISH_OLD_NATS_URL (default nats://127.0.0.1:4222, the 2.9.10 these machines run; empty
 * to skip) and it is not the server under test, rounds (a) and (d) also run there, interleaved
 * with the same rounds on the new one (the order alternates per round), and the summary gives
 * both and the ratio new / old. The apps refuse a server older than 2.11; this bench talks to it
 * through the raw nats.js client and InboxStore, which check no version (on 2.9 the `Nats-TTL`
 * header and `allow_msg_ttl` are ignored, so the old server stores what it stored before).
 *
 *   npx tsx bench/publish.ts [--smoke]
 */
import { randomBytes } from 'node:crypto';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import {
  InboxStore,
  MIN_NATS_SERVER_VERSION,
  ensureInboxStream,
  inboxStreamConfig,
  isServerVersionAtLeast,
  type NatsConnection,
} from '@push/nats';
import { Subjects, encodeEnvelope, type MessagePayload } from '@push/protocol';
import { CpuMeter, natsServerPid, onCleanup, runCleanups, sleep } from './lib/procs.js';
import { runIfMain } from './lib/main.js';
import { note, type BenchResult, type SummaryRow } from './lib/results.js';
import { NATS_URL, benchPrefix, removePrefix } from './lib/stack.js';
import { env, type RunOptions } from './lib/scenario.js';
import { fastIngestPublish, rawStoreCycle } from './lib/store-cycle.js';
import { median, round } from './lib/stats.js';

const IN_FLIGHT = 5000;
const USERS = 10_000;
const PAYLOAD_BYTES = 100;
const TTL_MS = 3600_000;
const APP = 'benchapp';
const TARGET_PIPELINED = 100_000;

/** A JSON payload of exactly PAYLOAD_BYTES bytes. */
function payload(): MessagePayload {
  const head = '{"text":"';
  const tail = '"}';
  const text = JSON.stringify({ text: 'x'.repeat(PAYLOAD_BYTES - head.length - tail.length) });
  return { bytes: Buffer.from(text, 'utf8'), binary: false };
}

/** The old server measured beside the one under test, unless set to an empty string. */
const OLD_NATS_URL = process.env['BENCH_PUBLISH_OLD_NATS_URL'] ?? 'nats://127.0.0.1:4222';

/** One nats-server the publish rounds run against, with its own inbox stream. */
interface Server {
  url: string;
  version: string;
  nc: NatsConnection;
  jsm: JetStreamManager;
  store: InboxStore;
  stream: string;
  meter: CpuMeter;
}

/** The port of a nats:// URL (4222 when it names none), to find the server's process. */
function portOf(url: string): number {
  return Number(new URL(url.split(',')[0] ?? url).port || 4222);
}

/**
 * Connects to a nats-server and makes the bench app's inbox stream there, as the center would;
 * the stream is deleted at cleanup. Raw nats.js: no version check, so an old server is usable.
 */
async function openServer(url: string, subjects: Subjects, name: string, deleteStream: boolean): Promise<Server> {
  const nc = await connect({ servers: url, name, timeout: 3000, maxReconnectAttempts: 0 });
  onCleanup(`nats ${url}`, () => nc.close());
  const streamOpts = { maxPerUser: 10_000, maxAgeSeconds: 3600, duplicateWindowSeconds: 120, replicas: 1 };
  const streamApp = { id: APP, settings: { maxPendingPerUser: streamOpts.maxPerUser } };
  const config = inboxStreamConfig(subjects, streamApp, streamOpts);
  const stream = config.name;
  const jsm = await jetstreamManager(nc);
  const version = nc.info?.version ?? 'unknown';
  if (isServerVersionAtLeast(version, MIN_NATS_SERVER_VERSION) || config.republish === undefined) {
    await ensureInboxStream(nc, subjects, streamApp, streamOpts);
  } else {
    // 2.9 refuses a RePublish destination that drops a wildcard (the kind token, which live
    // subjects leave out): republish to one that keeps it, the same work per message.
    const { src, dest } = config.republish;
    await jsm.streams.add({ ...config, republish: { src, dest: `${dest}.{{wildcard(2)}}` } });
  }
  // The server under test's streams go with the prefix (removePrefix); the old server's here.
  if (deleteStream) onCleanup(`stream ${stream} on ${url}`, () => jsm.streams.delete(stream).then(() => undefined));
  const store = new InboxStore(nc, subjects, { timeoutMs: 30_000 });
  onCleanup(`inbox store on ${url}`, () => store.close());
  const meter = new CpuMeter({ client: process.pid, nats: natsServerPid(portOf(url)) });
  return { url, version, nc, jsm, store, stream, meter };
}

/**
 * The old server, when one answers at OLD_NATS_URL and it is another server than `current`
 * (another server id: asked first, so the stream under test is never touched twice);
 * undefined, with a note saying why, otherwise.
 */
async function openOldServer(current: Server, subjects: Subjects): Promise<Server | undefined> {
  if (OLD_NATS_URL === '') return undefined;
  try {
    const probe = await connect({ servers: OLD_NATS_URL, timeout: 3000, maxReconnectAttempts: 0 });
    const same = probe.info?.server_id === current.nc.info?.server_id;
    await probe.close();
    if (same) {
      note(`publish: ${OLD_NATS_URL} is the server under test; one server only`);
      return undefined;
    }
    const old = await openServer(OLD_NATS_URL, subjects, 'bench-publish-old', true);
    note(`publish: old server ${old.version} at ${OLD_NATS_URL} beside ${current.version} at ${current.url}`);
    return old;
  } catch (err) {
    note(`publish: no old server beside the new one (${OLD_NATS_URL}: ${String(err)}); one server only`);
    return undefined;
  }
}

interface RoundFigure {
  msgs: number;
  seconds: number;
  rate: number;
  /** Cores busy during the round: this process (the client) and nats-server. */
  cores?: Record<string, number>;
}

/**
 * Keeps `inFlight` publishes outstanding for `seconds`, then waits for the last acks.
 * Rate = acked messages / (time of last ack - start).
 */
async function windowed(
  inFlight: number,
  seconds: number,
  publishOne: (i: number) => Promise<unknown>,
): Promise<RoundFigure> {
  const start = performance.now();
  const stopAt = start + seconds * 1000;
  let issued = 0;
  let acked = 0;
  let failed = 0;
  let lastAck = start;
  await new Promise<void>((resolve, reject) => {
    let outstanding = 0;
    const launch = (): void => {
      // Checking the clock on every launch would cost more than the publish; every 256 is fine.
      while (outstanding < inFlight && ((issued & 255) !== 0 || performance.now() < stopAt)) {
        const i = issued++;
        outstanding++;
        publishOne(i).then(
          () => {
            acked++;
            outstanding--;
            lastAck = performance.now();
            if (lastAck < stopAt) launch();
            else if (outstanding === 0) resolve();
          },
          (err: unknown) => {
            failed++;
            outstanding--;
            if (failed === 1) reject(err instanceof Error ? err : new Error(String(err)));
          },
        );
      }
      if (outstanding === 0) resolve();
    };
    launch();
  });
  const secondsTaken = (lastAck - start) / 1000;
  return { msgs: acked, seconds: secondsTaken, rate: acked / secondsTaken };
}

/** Plain path: one `await js.publish()` at a time. */
async function sequential(
  js: JetStreamClient,
  seconds: number,
  subjectOf: (i: number) => string,
  data: (i: number) => Uint8Array,
): Promise<RoundFigure> {
  const start = performance.now();
  const stopAt = start + seconds * 1000;
  let n = 0;
  let now = start;
  while (now < stopAt) {
    await js.publish(subjectOf(n), data(n));
    n++;
    now = performance.now();
  }
  const secondsTaken = (now - start) / 1000;
  return { msgs: n, seconds: secondsTaken, rate: n / secondsTaken };
}

/** Summary rows of the old server beside the new: the same rounds, interleaved, and the ratios. */
function oldServerRows(o: {
  version: string;
  newVersion: string;
  pipelinedMsgsPerSec: number;
  removeMsgsPerSec: number;
  ratioNewToOldPipelined: number;
  ratioNewToOldRemove: number;
}): SummaryRow[] {
  const rate = (n: number): string => `${Math.round(n).toLocaleString('en-US')} msgs/s`;
  return [
    {
      bench: 'publish',
      figure: `pipelined InboxStore.publish on the old nats-server ${o.version}, median`,
      value: rate(o.pipelinedMsgsPerSec),
    },
    {
      bench: 'publish',
      figure: `ratio pipelined publish, nats-server ${o.newVersion} / ${o.version} (same rounds, interleaved)`,
      value: `${o.ratioNewToOldPipelined}x`,
    },
    {
      bench: 'publish',
      figure: `remove by sequence on the old nats-server ${o.version}, median`,
      value: rate(o.removeMsgsPerSec),
    },
    {
      bench: 'publish',
      figure: `ratio remove by sequence, nats-server ${o.newVersion} / ${o.version}`,
      value: `${o.ratioNewToOldRemove}x`,
    },
  ];
}

export async function runPublish(opts: RunOptions = { smoke: false }): Promise<BenchResult> {
  const ROUNDS_PIPELINED = opts.smoke ? 1 : env('BENCH_PUBLISH_ROUNDS', 5);
  const ROUNDS_PLAIN = Math.min(3, ROUNDS_PIPELINED);
  const SECONDS_PIPELINED = opts.smoke ? 0.5 : env('BENCH_PUBLISH_SECONDS', 3);
  const SECONDS_PLAIN = opts.smoke ? 0.5 : 2;
  const prefix = benchPrefix();
  const subjects = new Subjects(prefix);
  onCleanup(`streams ${prefix}`, () => removePrefix(prefix));
  const main = await openServer(NATS_URL, subjects, 'bench-publish', false);
  const { jsm, store, stream } = main;
  const js = jetstream(main.nc);
  const old = await openOldServer(main, subjects);

  const body = payload();
  const users = Array.from({ length: USERS }, (_, i) => `u${i}-${randomBytes(2).toString('hex')}`);
  const userSubjects = users.map((u) => subjects.inbox(APP, u, 'b'));
  const user = (i: number): string => users[i % USERS] as string;
  const subjectOf = (i: number): string => userSubjects[i % USERS] as string;
  // The plain paths store exactly what InboxStore.publish stores: an envelope built per message.
  const envelope = (): Uint8Array => {
    const now = Date.now();
    return encodeEnvelope({ ts: now, expires: now + TTL_MS, binary: false, from: undefined }, body.bytes);
  };
  const storedBytes = envelope().length;

  const pipelined: RoundFigure[] = [];
  const plain: RoundFigure[] = [];
  const concurrent: RoundFigure[] = [];
  const removals: RoundFigure[] = [];
  const oldPipelined: RoundFigure[] = [];
  const oldRemovals: RoundFigure[] = [];
  const rawCycles: RoundFigure[] = [];
  const rawPurgeCycles: RoundFigure[] = [];
  const ourCycles: RoundFigure[] = [];
  const fastIngest: RoundFigure[] = [];
  const metered = async (f: () => Promise<RoundFigure>, on: Server = main): Promise<RoundFigure> => {
    on.meter.start();
    const fig = await f();
    return { ...fig, cores: on.meter.stop() };
  };
  const fresh = async (on: Server = main): Promise<void> => {
    await on.jsm.streams.purge(on.stream);
    await sleep(300);
  };
  /** Round (a) on `on`: pipelined publishes; resolves with the figure and the stored sequences. */
  const pipelinedRound = async (on: Server): Promise<{ fig: RoundFigure; seqs: number[] }> => {
    await fresh(on);
    const seqs: number[] = [];
    const fig = await metered(
      () =>
        windowed(IN_FLIGHT, SECONDS_PIPELINED, (i) =>
          on.store.publish(APP, user(i), body, { ttlMs: TTL_MS }).then((res) => {
            seqs.push(res.seq);
          }),
        ),
      on,
    );
    return { fig, seqs };
  };
  /** Round (d) on `on`: deletes by sequence of what its pipelined round stored. */
  const removeRound = (on: Server, seqs: number[]): Promise<RoundFigure> =>
    metered(() => windowed(IN_FLIGHT, SECONDS_PLAIN, (i) => on.store.remove(APP, seqs[i % seqs.length] as number)), on);
  const label = (on: Server): string => (old === undefined ? '' : ` [${on === old ? 'old' : 'new'} ${on.version}]`);

  // Warm up both paths (JIT, connection buffers), not counted.
  await windowed(IN_FLIGHT, 0.5, (i) => store.publish(APP, user(i), body, { ttlMs: TTL_MS }));
  await sequential(js, 0.3, subjectOf, envelope);
  if (old !== undefined)
    await windowed(IN_FLIGHT, 0.5, (i) => old.store.publish(APP, user(i), body, { ttlMs: TTL_MS }));

  for (let r = 0; r < ROUNDS_PIPELINED; r++) {
    // With an old server, both take turns, the one going first alternating per round.
    const order = old === undefined ? [main] : r % 2 === 0 ? [main, old] : [old, main];
    const seqsOf = new Map<Server, number[]>();
    for (const on of order) {
      const { fig: p, seqs } = await pipelinedRound(on);
      seqsOf.set(on, seqs);
      (on === main ? pipelined : oldPipelined).push(p);
      note(
        `publish round ${r + 1}${label(on)}: pipelined ${Math.round(p.rate)}/s (${p.msgs} in ${p.seconds.toFixed(2)} s), cores ${JSON.stringify(p.cores)}`,
      );
    }
    if (r < ROUNDS_PLAIN) {
      for (const on of order) {
        const d = await removeRound(on, seqsOf.get(on) ?? []);
        (on === main ? removals : oldRemovals).push(d);
        note(
          `publish round ${r + 1}${label(on)}: remove by sequence ${Math.round(d.rate)}/s (${d.msgs} in ${d.seconds.toFixed(2)} s), cores ${JSON.stringify(d.cores)}`,
        );
      }
      await fresh();
      const s = await metered(() => sequential(js, SECONDS_PLAIN, subjectOf, envelope));
      plain.push(s);
      note(
        `publish round ${r + 1}: plain await js.publish ${Math.round(s.rate)}/s (${s.msgs} in ${s.seconds.toFixed(2)} s)`,
      );
      await fresh();
      const c = await metered(() =>
        windowed(IN_FLIGHT, SECONDS_PLAIN, (i) => js.publish(subjectOf(i), envelope(), { timeout: 30_000 })),
      );
      concurrent.push(c);
      note(
        `publish round ${r + 1}: concurrent js.publish ${Math.round(c.rate)}/s (${c.msgs} in ${c.seconds.toFixed(2)} s), cores ${JSON.stringify(c.cores)}`,
      );
    }
  }
  // The store cycle: publish then remove each message, raw and ours, interleaved per round.
  const ttlSeconds = Math.ceil(TTL_MS / 1000);
  const cycleRounds: Array<[string, RoundFigure[], () => Promise<RoundFigure>]> = [
    [
      'store (bare nats.js publish + delete by seq)',
      rawCycles,
      () =>
        rawStoreCycle({
          nc: main.nc,
          stream,
          inFlight: IN_FLIGHT,
          seconds: SECONDS_PIPELINED,
          subjectOf,
          data: envelope,
          ttlSeconds,
        }),
    ],
    [
      'ours (InboxStore.publish + remove by its sequence)',
      ourCycles,
      () =>
        windowed(IN_FLIGHT, SECONDS_PIPELINED, (i) =>
          store.publish(APP, user(i), body, { ttlMs: TTL_MS }).then((res) => store.remove(APP, res.seq)),
        ),
    ],
    [
      'bare nats.js publish + purge up to it',
      rawPurgeCycles,
      () =>
        rawStoreCycle({
          nc: main.nc,
          stream,
          inFlight: IN_FLIGHT,
          seconds: SECONDS_PIPELINED,
          subjectOf,
          data: envelope,
          ttlSeconds,
          remove: 'purge',
        }),
    ],
  ];
  // Fast ingest needs `allow_batched` on the stream (2.14+); the apps' streams do not set it.
  const batched = isServerVersionAtLeast(main.version, '2.14.0');
  if (batched) {
    const cfg = (await jsm.streams.info(stream)).config;
    await jsm.streams.update(stream, { ...cfg, allow_batched: true });
    cycleRounds.push([
      'fast-ingest publish (ack every 100)',
      fastIngest,
      () =>
        fastIngestPublish({
          nc: main.nc,
          seconds: SECONDS_PIPELINED,
          subjectOf,
          data: envelope,
          ttlSeconds,
          ackInterval: 100,
        }),
    ]);
  }
  for (let r = 0; r < ROUNDS_PIPELINED; r++) {
    for (let k = 0; k < cycleRounds.length; k++) {
      const [what, into, run] = cycleRounds[(k + r) % cycleRounds.length] as (typeof cycleRounds)[number];
      await fresh();
      const c = await metered(run);
      into.push(c);
      note(
        `publish round ${r + 1}: cycle ${what} ${Math.round(c.rate)}/s (${c.msgs} in ${c.seconds.toFixed(2)} s), cores ${JSON.stringify(c.cores)}`,
      );
    }
  }
  const mRawCycle = median(rawCycles.map((x) => x.rate));
  const mRawPurgeCycle = median(rawPurgeCycles.map((x) => x.rate));
  const mOurCycle = median(ourCycles.map((x) => x.rate));

  // Every ack means stored: check the last round's count against the stream.
  const last = await jsm.streams.info(stream);

  const mPipe = median(pipelined.map((x) => x.rate));
  const mPlain = median(plain.map((x) => x.rate));
  const mConc = median(concurrent.map((x) => x.rate));
  const mRemove = median(removals.map((x) => x.rate));
  // CPU microseconds per stored message, per process (median over rounds).
  const usPerMsg = (rounds: RoundFigure[], who: string): number =>
    round(median(rounds.map((x) => ((x.cores?.[who] ?? Number.NaN) * 1e6) / x.rate)), 1);
  const cpu = {
    pipelined: { client: usPerMsg(pipelined, 'client'), nats: usPerMsg(pipelined, 'nats') },
    plain: { client: usPerMsg(plain, 'client'), nats: usPerMsg(plain, 'nats') },
    concurrent: { client: usPerMsg(concurrent, 'client'), nats: usPerMsg(concurrent, 'nats') },
    remove: { client: usPerMsg(removals, 'client'), nats: usPerMsg(removals, 'nats') },
    storeCycle: { client: usPerMsg(rawCycles, 'client'), nats: usPerMsg(rawCycles, 'nats') },
    storeCyclePurge: { client: usPerMsg(rawPurgeCycles, 'client'), nats: usPerMsg(rawPurgeCycles, 'nats') },
    oursCycle: { client: usPerMsg(ourCycles, 'client'), nats: usPerMsg(ourCycles, 'nats') },
    fastIngest: { client: usPerMsg(fastIngest, 'client'), nats: usPerMsg(fastIngest, 'nats') },
  };
  const mFastIngest = median(fastIngest.map((x) => x.rate));
  const oldServer =
    old === undefined
      ? undefined
      : {
          url: old.url,
          version: old.version,
          newVersion: main.version,
          pipelinedMsgsPerSec: round(median(oldPipelined.map((x) => x.rate))),
          removeMsgsPerSec: round(median(oldRemovals.map((x) => x.rate))),
          ratioNewToOldPipelined: round(mPipe / median(oldPipelined.map((x) => x.rate)), 2),
          ratioNewToOldRemove: round(mRemove / median(oldRemovals.map((x) => x.rate)), 2),
          cpuMicrosecondsPerMessage: {
            pipelined: { client: usPerMsg(oldPipelined, 'client'), nats: usPerMsg(oldPipelined, 'nats') },
            remove: { client: usPerMsg(oldRemovals, 'client'), nats: usPerMsg(oldRemovals, 'nats') },
          },
          rounds: {
            pipelined: oldPipelined.map((x) => ({ ...x, rate: round(x.rate), seconds: round(x.seconds, 3) })),
            remove: oldRemovals.map((x) => ({ ...x, rate: round(x.rate), seconds: round(x.seconds, 3) })),
          },
        };
  await runCleanups();

  const figures = {
    config: {
      inFlight: IN_FLIGHT,
      users: USERS,
      payloadBytes: PAYLOAD_BYTES,
      storedBytes,
      roundsPipelined: ROUNDS_PIPELINED,
      secondsPipelined: SECONDS_PIPELINED,
      roundsPlain: ROUNDS_PLAIN,
      secondsPlain: SECONDS_PLAIN,
      stream: "file storage, 1 replica, RePublish on, as ensureInboxStream makes an app's stream",
    },
    pipelinedMsgsPerSec: round(mPipe),
    plainMsgsPerSec: round(mPlain),
    concurrentJsPublishMsgsPerSec: round(mConc),
    removeMsgsPerSec: round(mRemove),
    /** Raw store cycle (bare nats.js publish + delete by sequence), median cycles/s. */
    storeCycleMsgsPerSec: round(mRawCycle),
    /** The bare cycle with a purge of the subject up to the sequence instead of the delete. */
    storeCyclePurgeMsgsPerSec: round(mRawPurgeCycle),
    /** Ours: InboxStore.publish + InboxStore.remove (the edge's ack), median cycles/s. */
    oursCycleMsgsPerSec: round(mOurCycle),
    ratioOursToStoreCycle: round(mOurCycle / mRawCycle, 2),
    /** Fast-ingest batch publish (ack every 100), median msgs/s; absent before nats-server 2.14. */
    fastIngestMsgsPerSec: batched ? round(mFastIngest) : undefined,
    ratioPipelinedToPlain: round(mPipe / mPlain, 1),
    ratioPipelinedToConcurrent: round(mPipe / mConc, 2),
    cpuMicrosecondsPerMessage: cpu,
    lastRoundStreamMessages: last.state.messages,
    serverVersion: main.version,
    /** The same rounds (a) and (d) on the old server, interleaved with the new; absent without one. */
    oldServer,
    rounds: {
      pipelined: pipelined.map((x) => ({ ...x, rate: round(x.rate), seconds: round(x.seconds, 3) })),
      plain: plain.map((x) => ({ ...x, rate: round(x.rate), seconds: round(x.seconds, 3) })),
      concurrent: concurrent.map((x) => ({ ...x, rate: round(x.rate), seconds: round(x.seconds, 3) })),
      remove: removals.map((x) => ({ ...x, rate: round(x.rate), seconds: round(x.seconds, 3) })),
      storeCycle: rawCycles.map((x) => ({ ...x, rate: round(x.rate), seconds: round(x.seconds, 3) })),
      storeCyclePurge: rawPurgeCycles.map((x) => ({ ...x, rate: round(x.rate), seconds: round(x.seconds, 3) })),
      oursCycle: ourCycles.map((x) => ({ ...x, rate: round(x.rate), seconds: round(x.seconds, 3) })),
      fastIngest: fastIngest.map((x) => ({ ...x, rate: round(x.rate), seconds: round(x.seconds, 3) })),
    },
  };
  const met = (ok: boolean): string => (ok ? 'yes' : 'no');
  return {
    name: 'publish',
    figures,
    summary: [
      {
        bench: 'publish',
        figure: `pipelined InboxStore.publish (${IN_FLIGHT} in flight), median`,
        value: `${Math.round(mPipe).toLocaleString('en-US')} msgs/s`,
        target: '>= 100,000 msgs/s',
        met: met(mPipe >= TARGET_PIPELINED),
      },
      {
        bench: 'publish',
        figure: 'plain await js.publish, median',
        value: `${Math.round(mPlain).toLocaleString('en-US')} msgs/s`,
      },
      {
        bench: 'publish',
        figure: `js.publish, ${IN_FLIGHT} concurrent, median`,
        value: `${Math.round(mConc).toLocaleString('en-US')} msgs/s`,
      },
      { bench: 'publish', figure: 'ratio pipelined / plain', value: `${round(mPipe / mPlain, 1)}x` },
      { bench: 'publish', figure: 'ratio pipelined / concurrent js.publish', value: `${round(mPipe / mConc, 2)}x` },
      {
        bench: 'publish',
        figure: `remove by sequence (edge ack path), ${IN_FLIGHT} in flight, median`,
        value: `${Math.round(mRemove).toLocaleString('en-US')} msgs/s`,
      },
      {
        bench: 'publish',
        figure: 'CPU per remove: client / nats-server',
        value: `${cpu.remove.client} / ${cpu.remove.nats} us`,
      },
      {
        bench: 'publish',
        figure: 'CPU per message, pipelined: client / nats-server',
        value: `${cpu.pipelined.client} / ${cpu.pipelined.nats} us`,
      },
      {
        bench: 'publish',
        figure: `store: raw store cycle, bare nats.js publish + delete by seq (${IN_FLIGHT} in flight), median`,
        value: `${Math.round(mRawCycle).toLocaleString('en-US')} msgs/s (nats-server ${cpu.storeCycle.nats} us/msg)`,
      },
      {
        bench: 'publish',
        figure: 'store: bare nats.js publish + purge of the subject up to it, median',
        value: `${Math.round(mRawPurgeCycle).toLocaleString('en-US')} msgs/s (nats-server ${cpu.storeCyclePurge.nats} us/msg)`,
      },
      {
        bench: 'publish',
        figure: "store: ours, InboxStore.publish + remove (the edge's ack), median; share of the raw cycle",
        value: `${Math.round(mOurCycle).toLocaleString('en-US')} msgs/s (nats-server ${cpu.oursCycle.nats} us/msg); ${Math.round((100 * mOurCycle) / mRawCycle)}%`,
      },
      ...(batched
        ? [
            {
              bench: 'publish',
              figure: 'fast-ingest batch publish (ack every 100), median; CPU per message client / nats-server',
              value: `${Math.round(mFastIngest).toLocaleString('en-US')} msgs/s; ${cpu.fastIngest.client} / ${cpu.fastIngest.nats} us`,
            },
          ]
        : []),
      ...(oldServer === undefined ? [] : oldServerRows(oldServer)),
    ],
  };
}

runIfMain(import.meta.url, () => runPublish({ smoke: process.argv.includes('--smoke') }));
