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
import { randomBytes } from 'node:crypto';

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
    purge
      ? `{"filter":${JSON.stringify(o.subjectOf(i))},"seq":${seq + 1}}`
      : `{"seq":${seq},"no_erase":true}`;
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
