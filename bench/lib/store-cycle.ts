/**
 * The raw store cycle: what one inbox message costs the store at the least, measured with a bare
 * nats.js connection and nothing of ours. Each message is published to a user's inbox subject
 * (the same envelope and headers InboxStore.publish sends: `Nats-TTL`, `Nats-Msg-Id`), and as
 * soon as its publish ack names its sequence, deleted by that sequence (`STREAM.MSG.DELETE`,
 * `no_erase`). `inFlight` cycles are kept outstanding, both requests pipelined on one
 * subscription of the connection's own inbox (no per-request timer or subscription lookup).
 * Rate = completed cycles (delete answered) / (last answer - start).
 *
 * It is the ceiling the issue compares our unicast path with (issue 16: "publish plus remove of
 * the same messages with a bare nats.js client").
 */
import { createInbox, headers, type NatsConnection } from '@nats-io/nats-core';
import { startFastIngest } from '@nats-io/jetstream/internal';
import { randomBytes } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import { ensureInboxStream } from '@push/nats';
import { Subjects, encodeEnvelope } from '@push/protocol';
import { NATS_URL, benchPrefix, removePrefix } from './stack.js';

export interface CycleFigure {
  msgs: number;
  seconds: number;
  rate: number;
  /** Cycles that failed (a refused publish or delete): 0 in a sound run. */
  failed: number;
}

const SEQ_KEY = '"seq":';

/** The sequence in a publish ack, 0 for anything else. */
function ackSeq(data: Uint8Array): number {
  const s = Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('latin1');
  const at = s.indexOf(SEQ_KEY);
  if (at < 0 || s.includes('"error"')) return 0;
  return Number.parseInt(s.slice(at + SEQ_KEY.length), 10) || 0;
}

export async function rawStoreCycle(o: {
  nc: NatsConnection;
  stream: string;
  inFlight: number;
  seconds: number;
  subjectOf: (i: number) => string;
  data: () => Uint8Array;
  ttlSeconds: number;
  /**
   * How a stored message goes: `delete` by sequence (default), or `purge` of its subject up to
   * it (`STREAM.PURGE` with `filter` and `seq`, what the edge's AckBatcher sends per user).
   */
  remove?: 'delete' | 'purge';
}): Promise<CycleFigure> {
  const { nc, inFlight } = o;
  const inbox = createInbox();
  const purge = o.remove === 'purge';
  const deleteSubject = `$JS.API.STREAM.${purge ? 'PURGE' : 'MSG.DELETE'}.${o.stream}`;
  const idPrefix = `raw.${randomBytes(6).toString('base64url')}.`;
  const start = performance.now();
  const stopAt = start + o.seconds * 1000;
  let issued = 0;
  let done = 0;
  let failed = 0;
  let outstanding = 0;
  let last = start;
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const publishReply = `${inbox}.p`;
  const deleteReply = `${inbox}.d`;
  const removeRequest = (i: number, seq: number): string =>
    purge ? `{"filter":${JSON.stringify(o.subjectOf(i))},"seq":${seq + 1}}` : `{"seq":${seq},"no_erase":true}`;
  const launch = (): void => {
    while (outstanding < inFlight && ((issued & 255) !== 0 || performance.now() < stopAt)) {
      const i = issued++;
      outstanding++;
      const h = headers();
      h.set('Nats-TTL', String(o.ttlSeconds));
      h.set('Nats-Msg-Id', idPrefix + String(i));
      nc.publish(o.subjectOf(i), o.data(), { reply: `${publishReply}.${i}`, headers: h });
    }
    if (outstanding === 0) finish();
  };
  const sub = nc.subscribe(`${inbox}.>`, {
    callback: (err, msg) => {
      if (err !== null) return;
      if (msg.subject.startsWith(publishReply)) {
        const i = Number(msg.subject.slice(publishReply.length + 1));
        const seq = ackSeq(msg.data);
        if (seq > 0) {
          nc.publish(deleteSubject, removeRequest(i, seq), { reply: deleteReply });
          return;
        }
        failed++;
      } else if (msg.data.length > 0 && Buffer.from(msg.data).includes('"success":true')) {
        done++;
      } else {
        failed++;
      }
      outstanding--;
      last = performance.now();
      if (last < stopAt) launch();
      else if (outstanding === 0) finish();
    },
  });
  await nc.flush();
  launch();
  await finished;
  sub.unsubscribe();
  const seconds = (last - start) / 1000;
  return { msgs: done, seconds, rate: done / seconds, failed };
}

/**
 * Fast-ingest batch publishing (nats-server 2.14+, a stream with `allow_batched`): one batch of
 * publishes for `seconds`, acked by the server once per `ackInterval` messages under its flow
 * control, with the same headers per message. Publish only (no remove): what a batch push would
 * save against the pipelined publish of one request per message. The batch ack gives the last
 * sequence and the count, not each message's sequence.
 */
export async function fastIngestPublish(o: {
  nc: NatsConnection;
  seconds: number;
  subjectOf: (i: number) => string;
  data: () => Uint8Array;
  ttlSeconds: number;
  ackInterval: number;
}): Promise<CycleFigure> {
  const idPrefix = `fi.${randomBytes(6).toString('base64url')}.`;
  const hdr = (i: number): ReturnType<typeof headers> => {
    const h = headers();
    h.set('Nats-TTL', String(o.ttlSeconds));
    h.set('Nats-Msg-Id', idPrefix + String(i));
    return h;
  };
  const start = performance.now();
  const stopAt = start + o.seconds * 1000;
  const batch = await startFastIngest(o.nc, o.subjectOf(0), o.data(), {
    allowGaps: false,
    ackInterval: o.ackInterval,
    headers: hdr(0),
  });
  let i = 1;
  for (; (i & 255) !== 0 || performance.now() < stopAt; i++) {
    await batch.add(o.subjectOf(i), o.data(), { headers: hdr(i) });
  }
  const ack = await batch.end();
  const seconds = (performance.now() - start) / 1000;
  return { msgs: ack.count, seconds, rate: ack.count / seconds, failed: i - ack.count };
}

/**
 * The raw store cycle beside a scenario that runs our stack (bench/unicast.ts): its own inbox
 * stream (as ensureInboxStream makes an app's, under a prefix of its own) on the same
 * nats-server, `users` users' subjects, the same envelope size, IN_FLIGHT cycles outstanding.
 * `run` measures one round; `close` deletes the stream and the connection.
 */
export class StoreCycleBeside {
  private constructor(
    private readonly nc: NatsConnection,
    private readonly stream: string,
    private readonly subjects: string[],
    private readonly prefix: string,
  ) {}

  static async open(users: number): Promise<StoreCycleBeside> {
    const prefix = benchPrefix();
    const subjects = new Subjects(prefix);
    const nc = await connect({ servers: NATS_URL.split(','), name: 'bench-store-cycle' });
    const app = { id: 'cycle', settings: { maxPendingPerUser: 10_000 } };
    await ensureInboxStream(nc, subjects, app, {
      maxPerUser: 10_000,
      maxAgeSeconds: 3600,
      duplicateWindowSeconds: 120,
      replicas: 1,
    });
    const userSubjects = Array.from({ length: users }, (_, i) => subjects.inbox(app.id, `c${i}`, 'b'));
    return new StoreCycleBeside(nc, subjects.inboxStream(app.id), userSubjects, prefix);
  }

  run(seconds: number, payloadBytes = 100): Promise<CycleFigure> {
    const body = Buffer.alloc(payloadBytes, 0x78);
    return rawStoreCycle({
      nc: this.nc,
      stream: this.stream,
      inFlight: STORE_CYCLE_IN_FLIGHT,
      seconds,
      subjectOf: (i) => this.subjects[i % this.subjects.length] as string,
      data: () => {
        const now = Date.now();
        return encodeEnvelope({ ts: now, expires: now + 3600_000, binary: false, from: undefined }, body);
      },
      ttlSeconds: 3600,
    });
  }

  async close(): Promise<void> {
    await this.nc.close();
    await removePrefix(this.prefix);
  }
}

/** Cycles kept outstanding by StoreCycleBeside (as bench/publish.ts's rounds). */
export const STORE_CYCLE_IN_FLIGHT = 5000;
