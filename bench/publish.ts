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
 *
 * Same payload (a ~100-byte JSON message in the stored envelope), same subjects, same counting
 * rule (a message counts when its ack arrived), rounds interleaved so that the ratio compares
 * rounds measured under the same machine noise. The stream is purged between rounds so each
 * starts empty, and deleted at the end.
 *
 *   npx tsx bench/publish.ts
 */
import { randomBytes } from 'node:crypto';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { InboxStore, ensureInboxStream, inboxStreamConfig } from '@push/nats';
import { Subjects, encodeEnvelope, type MessagePayload } from '@push/protocol';
import { CpuMeter, natsServerPid, onCleanup, runCleanups, sleep } from './lib/procs.js';
import { runIfMain } from './lib/main.js';
import { note, type BenchResult } from './lib/results.js';
import { NATS_URL, benchPrefix, removePrefix } from './lib/stack.js';
import { env, type RunOptions } from './lib/scenario.js';
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

export async function runPublish(opts: RunOptions = { smoke: false }): Promise<BenchResult> {
  const ROUNDS_PIPELINED = opts.smoke ? 1 : env('BENCH_PUBLISH_ROUNDS', 5);
  const ROUNDS_PLAIN = Math.min(3, ROUNDS_PIPELINED);
  const SECONDS_PIPELINED = opts.smoke ? 0.5 : env('BENCH_PUBLISH_SECONDS', 3);
  const SECONDS_PLAIN = opts.smoke ? 0.5 : 2;
  const prefix = benchPrefix();
  const subjects = new Subjects(prefix);
  onCleanup(`streams ${prefix}`, () => removePrefix(prefix));
  const nc = await connect({ servers: NATS_URL, name: 'bench-publish' });
  onCleanup('nats', () => nc.close());
  const streamOpts = { maxPerUser: 10_000, maxAgeSeconds: 3600, duplicateWindowSeconds: 120, replicas: 1 };
  const streamApp = { id: APP, settings: { maxPendingPerUser: streamOpts.maxPerUser } };
  await ensureInboxStream(nc, subjects, streamApp, streamOpts);
  const stream = inboxStreamConfig(subjects, streamApp, streamOpts).name;
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const store = new InboxStore(nc, subjects, { timeoutMs: 30_000 });
  onCleanup('inbox store', () => store.close());

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
  const meter = new CpuMeter({ client: process.pid, nats: natsServerPid(Number(new URL(NATS_URL).port || 4222)) });
  const metered = async (f: () => Promise<RoundFigure>): Promise<RoundFigure> => {
    meter.start();
    const fig = await f();
    return { ...fig, cores: meter.stop() };
  };
  const fresh = async (): Promise<void> => {
    await jsm.streams.purge(stream);
    await sleep(300);
  };

  // Warm up both paths (JIT, connection buffers), not counted.
  await windowed(IN_FLIGHT, 0.5, (i) => store.publish(APP, user(i), body, { ttlMs: TTL_MS }));
  await sequential(js, 0.3, subjectOf, envelope);

  for (let r = 0; r < ROUNDS_PIPELINED; r++) {
    await fresh();
    const seqs: number[] = [];
    const p = await metered(() =>
      windowed(IN_FLIGHT, SECONDS_PIPELINED, (i) =>
        store.publish(APP, user(i), body, { ttlMs: TTL_MS }).then((res) => {
          seqs.push(res.seq);
        }),
      ),
    );
    pipelined.push(p);
    note(
      `publish round ${r + 1}: pipelined ${Math.round(p.rate)}/s (${p.msgs} in ${p.seconds.toFixed(2)} s), cores ${JSON.stringify(p.cores)}`,
    );
    if (r < ROUNDS_PLAIN) {
      const d = await metered(() =>
        windowed(IN_FLIGHT, SECONDS_PLAIN, (i) => store.remove(APP, seqs[i % seqs.length] as number)),
      );
      removals.push(d);
      note(
        `publish round ${r + 1}: remove by sequence ${Math.round(d.rate)}/s (${d.msgs} in ${d.seconds.toFixed(2)} s), cores ${JSON.stringify(d.cores)}`,
      );
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
    ratioPipelinedToPlain: round(mPipe / mPlain, 1),
    ratioPipelinedToConcurrent: round(mPipe / mConc, 2),
    cpuMicrosecondsPerMessage: cpu,
    lastRoundStreamMessages: last.state.messages,
    rounds: {
      pipelined: pipelined.map((x) => ({ ...x, rate: round(x.rate), seconds: round(x.seconds, 3) })),
      plain: plain.map((x) => ({ ...x, rate: round(x.rate), seconds: round(x.seconds, 3) })),
      concurrent: concurrent.map((x) => ({ ...x, rate: round(x.rate), seconds: round(x.seconds, 3) })),
      remove: removals.map((x) => ({ ...x, rate: round(x.rate), seconds: round(x.seconds, 3) })),
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
    ],
  };
}

runIfMain(import.meta.url, () => runPublish({ smoke: process.argv.includes('--smoke') }));
