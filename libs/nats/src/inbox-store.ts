import { headers, type Msg, type MsgHdrs, type NatsConnection } from '@nats-io/nats-core';
import { PushError, decodeEnvelope, encodeEnvelope, type MessagePayload, type Subjects } from '@push/protocol';
import { headerSequence } from './live-subscriber.js';
import { PipelineFullError, RequestPipeline, RequestTimeoutError } from './request-pipeline.js';

/** One message read from a user's inbox (by Direct Get or from the live RePublish). */
export interface InboxMessage {
  seq: number;
  /** Epoch ms when the message was accepted. */
  ts: number;
  /** Epoch ms after which it must not be delivered. */
  expires: number;
  bytes: Uint8Array;
  binary: boolean;
  /** Sending user, for client-to-client messages. */
  from: string | undefined;
}

export interface PublishOptions {
  ttlMs: number;
  /** Nats-Msg-Id: a repeat within the stream's duplicate window is stored once. */
  msgId?: string;
  from?: string;
  now?: number;
}

export interface PublishResult {
  seq: number;
  duplicate: boolean;
}

const API = '$JS.API';

/**
 * Reads a stored or republished inbox message. Returns undefined for a message without a
 * sequence or envelope (never produced by the system; ignored rather than trusted).
 */
export function readInboxMessage(msg: Msg): InboxMessage | undefined {
  const seq = Number(msg.headers?.get('Nats-Sequence'));
  return Number.isSafeInteger(seq) ? inboxMessage(seq, msg.data) : undefined;
}

/** A message from its sequence and stored bytes; undefined for a bad sequence or envelope. */
function inboxMessage(seq: number, stored: Uint8Array): InboxMessage | undefined {
  if (seq <= 0) return undefined;
  const env = decodeEnvelope(stored);
  if (env === undefined) return undefined;
  return {
    seq,
    ts: env.meta.ts,
    expires: env.meta.expires,
    bytes: env.payload,
    binary: env.meta.binary,
    from: env.meta.from,
  };
}

/** Reads the answer to a store: the sequence, or PushError store_unavailable. */
function readStored(reply: Msg): PublishResult {
  if (reply.headers?.code === 503) throw new PushError('store_unavailable', "no stream answers for the app's inboxes");
  const fast = readPubAck(reply.data);
  if (fast !== undefined) return fast;
  const ack = parseJson(reply) as { seq?: number; duplicate?: boolean; error?: JsApiError };
  if (ack.error !== undefined || typeof ack.seq !== 'number') {
    throw new PushError('store_unavailable', `store refused the message: ${ack.error?.description ?? 'no sequence'}`);
  }
  return { seq: ack.seq, duplicate: ack.duplicate === true };
}

/** Reads a live (republished) message from the live subscriber's headers block and payload. */
export function readLiveMessage(headers: Buffer, payload: Buffer): InboxMessage | undefined {
  return inboxMessage(headerSequence(headers), payload);
}

function storeError(err: unknown): PushError {
  if (err instanceof PushError) return err;
  const message =
    err instanceof RequestTimeoutError
      ? 'the message store did not answer in time'
      : err instanceof PipelineFullError
        ? 'the message store is not keeping up; retry later'
        : undefined;
  return new PushError('store_unavailable', message, { cause: err });
}

interface JsApiError {
  code: number;
  err_code?: number;
  description?: string;
}

/** Deletes in flight at once: enough to keep the server busy, few enough not to crowd reads. */
const REMOVALS_IN_FLIGHT = 1024;
/** Deadline of a delete, queued time included. */
const REMOVAL_TIMEOUT_MS = 120_000;
/**
 * Backlog reads in flight at once. Each Direct Get `next_by_subj` costs nats-server 2.9.10 a scan
 * from the cursor to the user's next message, which is long when many users' messages interleave:
 * with 10,000 users reading 100 stored messages each, 10,000 reads in flight all timed out and
 * were retried, and nothing got through. A few hundred at a time complete; the rest wait, and
 * those still waiting at the store deadline fail without being sent (their connection retries).
 */
const READS_IN_FLIGHT = 256;

/**
 * Users' inboxes in their app's inbox stream: store (pipelined publish), read the backlog (Direct Get
 * `next_by_subj`), remove on ack (delete by sequence), count pending. No consumers.
 *
 * Deletes go through their own pipeline with a small in-flight bound: nats-server 2.9 spends
 * more than ten times the CPU on a delete than on a store, so a burst of acks must not queue
 * ahead of the reads and stores that clients wait for. When deletes fall far behind they fail
 * (the message stays stored and may be delivered again: at-least-once). Backlog reads have a
 * pipeline of their own too (see READS_IN_FLIGHT).
 */
export class InboxStore {
  readonly pipeline: RequestPipeline;
  private readonly reads: RequestPipeline;
  private readonly removals: RequestPipeline;
  private readonly subjects: Subjects;

  constructor(nc: NatsConnection, subjects: Subjects, opts: { timeoutMs?: number; maxInFlight?: number } = {}) {
    this.subjects = subjects;
    this.pipeline = new RequestPipeline(nc, opts);
    this.reads = new RequestPipeline(nc, {
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
      maxInFlight: READS_IN_FLIGHT,
      maxQueued: 200_000,
    });
    // A delete is worth waiting for: the server works through a backlog of them at its own
    // pace, and one given up on leaves the message stored (delivered again on reconnect).
    this.removals = new RequestPipeline(nc, {
      timeoutMs: Math.max(REMOVAL_TIMEOUT_MS, opts.timeoutMs ?? 0),
      maxInFlight: REMOVALS_IN_FLIGHT,
      maxQueued: 200_000,
    });
  }

  /** `$JS.API.<op>.<stream of the app>`. */
  private api(op: string, app: string): string {
    return `${API}.${op}.${this.subjects.inboxStream(app)}`;
  }

  /**
   * Stores a message in a user's inbox; resolves once JetStream has it (and so once it has been
   * republished live). Rejects with PushError `store_unavailable` when the store cannot take it.
   */
  publish(app: string, user: string, payload: MessagePayload, opts: PublishOptions): Promise<PublishResult> {
    let stored: Buffer;
    let subject: string;
    try {
      const now = opts.now ?? Date.now();
      stored = encodeEnvelope(
        { ts: now, expires: now + opts.ttlMs, binary: payload.binary, from: opts.from },
        payload.bytes,
      );
      subject = this.subjects.inbox(app, user);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    let h: MsgHdrs | undefined;
    if (opts.msgId !== undefined) {
      h = headers();
      h.set('Nats-Msg-Id', opts.msgId);
    }
    // One promise per message on this hot path: the pipeline's, mapped once.
    return this.pipeline.request(subject, stored, h).then(readStored, (err: unknown) => {
      throw storeError(err);
    });
  }

  /** The first message of the user's inbox with sequence >= `fromSeq`, or null when none. */
  async next(app: string, user: string, fromSeq: number): Promise<InboxMessage | null> {
    let reply: Msg;
    try {
      reply = await this.reads.request(
        this.api('DIRECT.GET', app),
        `{"seq":${fromSeq},"next_by_subj":${JSON.stringify(this.subjects.inbox(app, user))}}`,
      );
    } catch (err) {
      throw storeError(err);
    }
    const code = reply.headers?.code ?? 0;
    if (code === 404) return null;
    if (code !== 0 && code !== 200) {
      throw new PushError('store_unavailable', `direct get failed: ${code} ${reply.headers?.description ?? ''}`);
    }
    const m = readInboxMessage(reply);
    if (m === undefined) throw new PushError('store_unavailable', 'direct get answer has no sequence');
    return m;
  }

  /**
   * Removes one message by sequence. Resolves true when it was removed, false when it was
   * already gone (acked by another device, expired or evicted).
   */
  async remove(app: string, seq: number): Promise<boolean> {
    let reply: Msg;
    try {
      reply = await this.removals.request(this.api('STREAM.MSG.DELETE', app), `{"seq":${seq},"no_erase":true}`);
    } catch (err) {
      throw storeError(err);
    }
    const r = parseJson(reply) as { success?: boolean; error?: JsApiError };
    if (r.success === true) return true;
    // 10057: no message found at that sequence.
    if (r.error?.err_code === 10057 || /no message found/i.test(r.error?.description ?? '')) return false;
    throw new PushError('store_unavailable', `delete failed: ${r.error?.description ?? 'unknown'}`);
  }

  /** Messages stored for the user (not yet acked, evicted or aged out). */
  async pending(app: string, user: string): Promise<number> {
    const subject = this.subjects.inbox(app, user);
    let reply: Msg;
    try {
      reply = await this.pipeline.request(this.api('STREAM.INFO', app), JSON.stringify({ subjects_filter: subject }));
    } catch (err) {
      throw storeError(err);
    }
    const r = parseJson(reply) as { state?: { subjects?: Record<string, number> }; error?: JsApiError };
    if (r.error !== undefined) throw new PushError('store_unavailable', r.error.description);
    return r.state?.subjects?.[subject] ?? 0;
  }

  /**
   * Resolves true once no store, read or delete is in flight or waiting, false when `timeoutMs`
   * passes first: a shutdown lets in-flight sends and removals reach the store, up to a deadline.
   */
  async idle(timeoutMs: number): Promise<boolean> {
    const all = await Promise.all([
      this.pipeline.idle(timeoutMs),
      this.reads.idle(timeoutMs),
      this.removals.idle(timeoutMs),
    ]);
    return all.every(Boolean);
  }

  close(): void {
    this.pipeline.close();
    this.reads.close();
    this.removals.close();
  }
}

const decoder = new TextDecoder();

const SEQ_KEY = Buffer.from('"seq":');
const DUPLICATE_KEY = Buffer.from('"duplicate"');
const ERROR_KEY = Buffer.from('"error"');

/**
 * Reads a JetStream publish ack (`{"stream":"S","seq":N}`) straight from its bytes: the store's hot path, where decoding and parsing JSON per message cost a
 * measurable share of the client's CPU and garbage. Undefined for anything else (an error,
 * a duplicate, an unexpected shape), which the caller then parses in full.
 */
export function readPubAck(data: Uint8Array): PublishResult | undefined {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  // Errors and duplicates (the server formats those by hand, with spaces) take the full parse.
  if (buf.length > 512 || buf.includes(ERROR_KEY) || buf.includes(DUPLICATE_KEY)) return undefined;
  const at = buf.indexOf(SEQ_KEY);
  if (at < 0) return undefined;
  let seq = 0;
  let i = at + SEQ_KEY.length;
  const start = i;
  for (; i < buf.length; i++) {
    const c = buf[i] as number;
    if (c < 0x30 || c > 0x39) break;
    seq = seq * 10 + (c - 0x30);
  }
  if (i === start || seq === 0 || !Number.isSafeInteger(seq)) return undefined;
  const next = buf[i];
  if (next !== 0x2c && next !== 0x7d) return undefined; // ',' or '}'
  return { seq, duplicate: false };
}

function parseJson(msg: Msg): unknown {
  try {
    return JSON.parse(decoder.decode(msg.data));
  } catch (err) {
    throw new PushError('store_unavailable', 'the store answered with malformed JSON', { cause: err });
  }
}
