import { headers, type Msg, type NatsConnection } from '@nats-io/nats-core';
import {
  PushError,
  decodeEnvelope,
  encodeEnvelope,
  type InboxKind,
  type MessagePayload,
  type Subjects,
} from '@push/protocol';
import {
  headerDescription,
  headerHas,
  headerLastSequence,
  headerSequence,
  headerStatus,
  headerValue,
  liveWire,
  type LiveReply,
  type LiveSubscriber,
} from './live-subscriber.js';
import {
  PipelineFullError,
  RequestAbandonedError,
  RequestLostError,
  RequestPipeline,
  RequestTimeoutError,
} from './request-pipeline.js';
import { StoreRequester, readTimeoutMs, storeMessageId } from './store-requester.js';

/** One message read from a user's inbox (by Direct Get or from the live RePublish). */
export interface InboxMessage {
  /** The message's sequence in the inbox stream; 0 for a transient message (never stored, live only). */
  seq: number;
  /** Epoch ms when the message was accepted. */
  ts: number;
  /** Epoch ms after which it must not be delivered. */
  expires: number;
  bytes: Uint8Array;
  binary: boolean;
  /** Sending user, for client-to-client messages. */
  from: string | undefined;
  /**
   * Live messages only: the sequence of the previous message of the same user and kind
   * (`Nats-Last-Sequence` of the RePublish; 0 when none), for gap detection. Undefined when read
   * from the store.
   */
  prev?: number;
}

export interface PublishOptions {
  ttlMs: number;
  /** Nats-Msg-Id: a repeat within the stream's duplicate window is stored once. */
  msgId?: string;
  from?: string;
  now?: number;
  /**
   * Holds while the app is the one the message is for (`AppDirectory.holds`): asked before each
   * send, false ends the store with PushError `app_not_found` (the app was deleted meanwhile).
   */
  live?: () => boolean;
}

export interface PublishResult {
  seq: number;
  duplicate: boolean;
}

const API = '$JS.API';
const TTL_HEADER = 'Nats-TTL';
const NUM_PENDING = 'Nats-Num-Pending';
const SEQUENCE = 'Nats-Sequence';
const SUBJECT = 'Nats-Subject';

/**
 * `Nats-TTL` in whole seconds, rounded up (the server's unit; 1 s is its minimum, so a TTL below
 * a second, already past in the envelope, still gets 1). The envelope keeps the exact expiry in
 * ms, which the edge checks again before delivering. Callers validate TTLs; a non-finite one is
 * refused with `invalid_ttl`.
 */
export function ttlHeaderSeconds(ttlMs: number): number {
  if (!Number.isFinite(ttlMs)) throw new PushError('invalid_ttl', 'the TTL must be a finite number');
  return Math.max(1, Math.ceil(ttlMs / 1000));
}

/**
 * What InboxStore reads of a reply, whichever connection it came on: a nats.js message, or the
 * headers block and payload the edge's live connection hands over as bytes (no headers object
 * made and no header decoded that is not asked for).
 */
interface ReplyView<M> {
  /** The status code of its headers (`NATS/1.0 404`), 0 when none. */
  status(m: M): number;
  /** A header's value, undefined when absent. */
  header(m: M, name: string): string | undefined;
  /** Whether it has the header (read once per message read: no value made). */
  has(m: M, name: string): boolean;
  /** Its `Nats-Sequence`, NaN when absent or not a positive integer. */
  sequence(m: M): number;
  /** The status line's description, '' when none. */
  description(m: M): string;
  data(m: M): Uint8Array;
}

const natsReplies: ReplyView<Msg> = {
  status: (m) => m.headers?.code ?? 0,
  header: (m, name) => (m.headers?.has(name) === true ? m.headers.get(name) : undefined),
  has: (m, name) => m.headers?.has(name) === true,
  sequence: (m) => {
    const seq = Number(m.headers?.get(SEQUENCE) || NaN);
    return seq > 0 ? seq : Number.NaN;
  },
  description: (m) => m.headers?.description ?? '',
  data: (m) => m.data,
};

const liveReplies: ReplyView<LiveReply> = {
  status: (m) => headerStatus(m.headers),
  header: (m, name) => headerValue(m.headers, name),
  has: (m, name) => headerHas(m.headers, name),
  sequence: (m) => headerSequence(m.headers) || Number.NaN,
  description: (m) => headerDescription(m.headers),
  data: (m) => m.payload,
};

/**
 * The last reply of a batched Direct Get, read through `view`: a status (end of batch, not
 * found, error), or a message without `Nats-Num-Pending` (a server that ignores `batch` answers
 * with one message).
 */
function lastOfBatch<M>(view: ReplyView<M>): (m: M) => boolean {
  return (m) => view.status(m) !== 0 || !view.has(m, NUM_PENDING);
}

/** `lastOfBatch` of a nats.js reply (the topic store's reads). */
export const isLastOfBatch: (msg: Msg) => boolean = lastOfBatch(natsReplies);

/** A message from its sequence and stored bytes; undefined for a bad sequence or envelope. */
function inboxMessage(seq: number, stored: Uint8Array): InboxMessage | undefined {
  if (seq <= 0) return undefined;
  return envelopeMessage(seq, stored);
}

/** A message from its envelope, with `seq` as given (0 for a transient one). */
function envelopeMessage(seq: number, stored: Uint8Array): InboxMessage | undefined {
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

/** Reads the answer to a store: the sequence, or PushError store_unavailable (also for the upstream and event streams). */
export function readStored(reply: Msg): PublishResult {
  return readStoredBytes(reply.headers?.code ?? 0, reply.data);
}

/** `readStored` from a reply's status code (0 when none) and bytes, however they were received. */
export function readStoredBytes(status: number, data: Uint8Array): PublishResult {
  if (status === 503) throw new PushError('store_unavailable', "no stream answers for the app's inboxes");
  const fast = readPubAck(data);
  if (fast !== undefined) return fast;
  const ack = parseJsonBytes(data) as { seq?: number; duplicate?: boolean; error?: JsApiError };
  if (ack.error !== undefined || typeof ack.seq !== 'number') {
    throw new PushError('store_unavailable', `store refused the message: ${ack.error?.description ?? 'no sequence'}`);
  }
  return { seq: ack.seq, duplicate: ack.duplicate === true };
}

/**
 * Reads a live message from the live subscriber's headers block and payload: a republished one
 * (its `Nats-Sequence` and `Nats-Last-Sequence` headers), or a transient one (`seq` 0), which
 * the center publishes with no headers at all (publishTransient).
 */
export function readLiveMessage(headers: Buffer, payload: Buffer): InboxMessage | undefined {
  if (headers.length === 0) return envelopeMessage(0, payload);
  const m = inboxMessage(headerSequence(headers), payload);
  if (m !== undefined) m.prev = headerLastSequence(headers);
  return m;
}

/**
 * Publishes a transient message to a user's live subject (`push.live.u.<app>.<user>`), on core
 * NATS: never stored, so only the edges holding a connection of the user now get it. No headers:
 * that is what tells the edge it is transient (a republished copy always has `Nats-Sequence`).
 * Throws when the NATS connection is closed; while it reconnects nats.js buffers the publish.
 */
export function publishTransient(
  nc: NatsConnection,
  subjects: Subjects,
  app: string,
  user: string,
  payload: MessagePayload,
  now = Date.now(),
): void {
  nc.publish(
    subjects.liveUser(app, user),
    encodeEnvelope({ ts: now, expires: now, binary: payload.binary, from: undefined }, payload.bytes),
  );
}

/** A pipeline failure (timeout, full queue) as the PushError `store_unavailable` a caller reports. */
export function storeError(err: unknown): PushError {
  if (err instanceof PushError) return err;
  if (err instanceof RequestAbandonedError) {
    return new PushError('app_not_found', 'the app was deleted before the message was stored', { cause: err });
  }
  const message =
    err instanceof RequestTimeoutError
      ? 'the message store did not answer in time'
      : err instanceof PipelineFullError
        ? 'the message store is not keeping up; retry later'
        : err instanceof RequestLostError
          ? 'the connection to the message store was lost before it answered'
          : undefined;
  return new PushError('store_unavailable', message, { cause: err });
}

interface JsApiError {
  code: number;
  err_code?: number;
  description?: string;
}

/**
 * Whether a `STREAM.MSG.DELETE` refusal says the message was not there (deleted already):
 * 10057, no message found at that sequence. nats-server 2.15 answers "sequence N not found" (a
 * 10057 too, or without a code) for a sequence already purged below the stream's first.
 */
export function deletedNothing(error: { err_code?: number; description?: string } | undefined): boolean {
  return error?.err_code === 10057 || /no message found|sequence \d+ not found/i.test(error?.description ?? '');
}

/** Deletes in flight at once: enough to keep the server busy, few enough not to crowd reads. */
const REMOVALS_IN_FLIGHT = 1024;
/** Deadline of a delete, from when it is sent (`PUSH_STORE_TIMEOUT_MS` when larger). */
const REMOVAL_TIMEOUT_MS = 5_000;
/**
 * Backlog reads in flight at once (each a batch of up to a window of messages). nats-server
 * serves them one after another, scanning from each cursor to the user's next messages, so more
 * in flight only queue at the server and time out there. The rest wait here without a deadline
 * (it starts when a read is sent: `deadlineFromSend`): when every queued read had the store
 * deadline from its call, 10,000 users reconnecting at once saw nearly all reads expire, be
 * retried and expire again, and almost nothing was delivered.
 */
const READS_IN_FLIGHT = 64;

/** Most subjects nats-server answers in one `multi_last` Direct Get (more is 413 Too Many Results). */
const MULTI_LAST_MAX_RESULTS = 1024;

/** Users one `lastSeqs` may ask about: two subjects each, so the answer always fits. */
export const LAST_SEQS_MAX_USERS = MULTI_LAST_MAX_RESULTS / 2;

/** Bytes one `lastSeqs` answer may carry (the last messages come with it; only their sequences are used). */
const LAST_SEQS_MAX_BYTES = 256 * 1024;

/**
 * Users' inboxes in their app's inbox stream: store (pipelined publish with a per-message TTL),
 * read the backlog (batched Direct Get `next_by_subj` over both of a user's subjects), remove on
 * ack (purge of the user's subjects up to a sequence, or delete by sequence), count pending. No
 * consumers. Needs nats-server 2.11+ (batched Direct Get, `Nats-TTL`).
 *
 * Removals go through their own pipeline with an in-flight bound, so a burst of acks does not
 * queue ahead of the reads and stores that clients wait for. A removal that fails leaves the
 * message stored (it may be delivered again: at-least-once); the edge's AckBatcher retries it.
 * Backlog reads have a pipeline of their own too (see READS_IN_FLIGHT).
 */
export class InboxStore {
  private readonly stores: StoreRequester;
  /** Reads and removals, on nats.js or on the live connection (`live`), and how their replies are read. */
  private readonly reads: RequestPipeline<unknown, unknown>;
  private readonly removals: RequestPipeline<unknown, unknown>;
  private readonly replies: ReplyView<unknown>;
  private readonly isLast: (m: unknown) => boolean;
  private readonly subjects: Subjects;

  /**
   * `live`: the edge's LiveSubscriber, on which backlog reads and removals then go (stores stay
   * on `nc`): a batched read's replies are then bytes whose few needed headers are read in
   * place, instead of a nats.js message and a decoded headers object each, which were a fifth
   * of the edge's CPU and much of its garbage while it delivered a backlog storm.
   */
  constructor(
    nc: NatsConnection,
    subjects: Subjects,
    opts: { timeoutMs?: number; maxInFlight?: number; live?: LiveSubscriber } = {},
  ) {
    this.subjects = subjects;
    this.stores = new StoreRequester(nc, opts);
    const wire = opts.live === undefined ? nc : (liveWire(opts.live) as never);
    this.replies = opts.live === undefined ? natsReplies : liveReplies;
    this.isLast = lastOfBatch(this.replies);
    // A read in flight when the connection is lost fails at once (its reply never comes) and is
    // retried once it is back, instead of at its deadline; reads waiting meanwhile go then
    // (RequestPipeline follows its connection).
    this.reads = new RequestPipeline<unknown, unknown>(wire, {
      timeoutMs: readTimeoutMs(opts.timeoutMs),
      deadlineFromSend: true,
      maxInFlight: READS_IN_FLIGHT,
      maxQueued: 200_000,
    });
    // A delete queued behind others waits for its slot however long (deadline from send): the
    // server works through a burst of acks at its own pace. Once sent, a delete not answered
    // within the deadline (lost with a killed stream leader) fails, and the ack path sends it
    // again; one sent on a connection that is then lost fails at once, and those asked while
    // it reconnects wait for it.
    this.removals = new RequestPipeline<unknown, unknown>(wire, {
      deadlineFromSend: true,
      timeoutMs: Math.max(REMOVAL_TIMEOUT_MS, opts.timeoutMs ?? 0),
      maxInFlight: REMOVALS_IN_FLIGHT,
      maxQueued: 200_000,
    });
  }

  /** A JetStream API answer's JSON; PushError `store_unavailable` when no server answered (503, JetStream off). */
  private apiAnswer(reply: unknown): unknown {
    const status = this.replies.status(reply);
    if (status === 503) throw new PushError('store_unavailable', 'no JetStream answers for the message store');
    return parseJsonBytes(this.replies.data(reply));
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
    let ttlSeconds: number;
    try {
      const now = opts.now ?? Date.now();
      stored = encodeEnvelope(
        { ts: now, expires: now + opts.ttlMs, binary: payload.binary, from: opts.from },
        payload.bytes,
      );
      // Client messages on their own subject: the per-subject cap counts them apart (DESIGN.md).
      subject = this.subjects.inbox(app, user, opts.from === undefined ? 'b' : 'c');
      ttlSeconds = ttlHeaderSeconds(opts.ttlMs);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    // Every store has an id, so that one whose answer was lost can be sent again (StoreRequester).
    const h = headers();
    h.set(TTL_HEADER, String(ttlSeconds));
    h.set('Nats-Msg-Id', opts.msgId ?? storeMessageId());
    // One promise per message on this hot path, mapped once. Held through an election and sent
    // again after a lost answer (see StoreRequester).
    return this.stores.request(subject, stored, h, opts.live).then(readStored, (err: unknown) => {
      throw storeError(err);
    });
  }

  /**
   * Reads up to `max` of the user's messages (both kinds, in sequence order) from sequence
   * `fromSeq` on, in ONE batched Direct Get (nats-server 2.11+): the server answers with the
   * messages, then an end-of-batch status telling how many more match. `maxBytes` bounds the
   * answer (the server always sends at least one message). `more` is true when messages remain
   * after the last one returned. Rejects with PushError `store_unavailable`.
   */
  async readBatch(
    app: string,
    user: string,
    fromSeq: number,
    bounds: { max: number; maxBytes: number },
  ): Promise<{ messages: InboxMessage[]; more: boolean }> {
    const { messages, more } = await this.directBatch(app, this.subjects.inboxOfUser(app, user), fromSeq, bounds);
    return { messages, more };
  }

  /**
   * Reads up to `max` messages of ANY user of the app from sequence `fromSeq` on, in stream
   * order, each with the subject token of its user (`subjects.inboxUserToken`): one sequential
   * pass over a range of the stream, for when many connections wait for their backlogs at once
   * (see BacklogReader). `want`, when given, says which users' messages to return (the others
   * are skipped undecoded); `last` is the last sequence the answer covered, returned or not (0
   * when none). Rejects with PushError `store_unavailable`.
   */
  readRange(
    app: string,
    fromSeq: number,
    bounds: { max: number; maxBytes: number },
    want?: (userToken: string) => boolean,
  ): Promise<{ messages: InboxMessage[]; userTokens: string[]; last: number; more: boolean }> {
    return this.directBatch(app, this.subjects.inboxOfApp(app), fromSeq, bounds, want);
  }

  /**
   * The last stored sequence of each given user (either kind), in ONE batched Direct Get
   * (`multi_last` over the users' subjects): what a connect needs to know whether there is a
   * backlog to read at all (see BacklogReader). `last` maps a user's subject token
   * (`subjects.inboxUserToken`) to its last sequence; a user with nothing stored is absent.
   * `complete` is false when the server cut the answer (more than 1,024 subjects matched, or past
   * `maxBytes`): a user absent from `last` may then still have messages. Pass at most
   * LAST_SEQS_MAX_USERS users (two subjects each). Rejects with PushError `store_unavailable`.
   */
  async lastSeqs(app: string, users: string[]): Promise<{ last: Map<string, number>; complete: boolean }> {
    const filters = users.map((u) => this.subjects.inboxOfUser(app, u));
    const v = this.replies;
    let replies: unknown[];
    try {
      replies = await this.reads.requestMany(
        this.api('DIRECT.GET', app),
        `{"multi_last":${JSON.stringify(filters)},"batch":${MULTI_LAST_MAX_RESULTS},"max_bytes":${LAST_SEQS_MAX_BYTES}}`,
        this.isLast,
      );
    } catch (err) {
      throw storeError(err);
    }
    const last = new Map<string, number>();
    let complete = false;
    for (const reply of replies) {
      const code = v.status(reply);
      if (code === 404) {
        complete = true; // none of the subjects has a message
        break;
      }
      if (code === 413) break; // more subjects matched than the server answers: not complete
      if (code === 204) {
        complete = Number(v.header(reply, NUM_PENDING) ?? '1') === 0;
        break;
      }
      if (code !== 0 && code !== 200) {
        throw new PushError('store_unavailable', `direct get failed: ${code} ${v.description(reply)}`);
      }
      const seq = v.sequence(reply);
      if (!Number.isSafeInteger(seq)) throw new PushError('store_unavailable', 'direct get answer has no sequence');
      const token = this.subjects.inboxUserToken(v.header(reply, SUBJECT) ?? '');
      last.set(token, Math.max(seq, last.get(token) ?? 0));
    }
    return { last, complete };
  }

  private async directBatch(
    app: string,
    filter: string,
    fromSeq: number,
    bounds: { max: number; maxBytes: number },
    want?: (userToken: string) => boolean,
  ): Promise<{ messages: InboxMessage[]; userTokens: string[]; last: number; more: boolean }> {
    const v = this.replies;
    let replies: unknown[];
    try {
      replies = await this.reads.requestMany(
        this.api('DIRECT.GET', app),
        `{"seq":${fromSeq},"next_by_subj":${JSON.stringify(filter)},"batch":${Math.max(1, Math.floor(bounds.max))},"max_bytes":${Math.max(1, Math.floor(bounds.maxBytes))}}`,
        this.isLast,
      );
    } catch (err) {
      throw storeError(err);
    }
    const messages: InboxMessage[] = [];
    const userTokens: string[] = [];
    let last = 0;
    let more = false;
    for (const reply of replies) {
      const code = v.status(reply);
      if (code === 404) break; // nothing (more) at or after fromSeq
      if (code === 204) {
        // End of batch: Nats-Num-Pending counts the matching messages after the last one sent.
        more = Number(v.header(reply, NUM_PENDING) ?? '0') > 0;
        break;
      }
      if (code !== 0 && code !== 200) {
        throw new PushError('store_unavailable', `direct get failed: ${code} ${v.description(reply)}`);
      }
      const seq = v.sequence(reply);
      if (!Number.isSafeInteger(seq)) throw new PushError('store_unavailable', 'direct get answer has no sequence');
      last = seq;
      // A server without batches answers one message and no end-of-batch: ask again after it.
      if (!v.has(reply, NUM_PENDING)) more = true;
      const token = this.subjects.inboxUserToken(v.header(reply, SUBJECT) ?? '');
      if (want !== undefined && !want(token)) continue;
      const m = envelopeMessage(seq, v.data(reply));
      if (m === undefined) throw new PushError('store_unavailable', 'direct get answer has no envelope');
      messages.push(m);
      userTokens.push(token);
    }
    return { messages, userTokens, last, more };
  }

  /**
   * Removes the user's messages of one kind (both kinds when `kind` is undefined) with a
   * sequence below `belowSeq` in one request (`STREAM.PURGE` with a filter and a sequence).
   * Resolves with how many were removed. A literal subject costs nats-server 2.15 about a third
   * of what the wildcard of both kinds does (bench/acks.ts), so the edge names the kind.
   */
  async purge(app: string, user: string, belowSeq: number, kind?: InboxKind): Promise<number> {
    const filter = kind === undefined ? this.subjects.inboxOfUser(app, user) : this.subjects.inbox(app, user, kind);
    let reply: unknown;
    try {
      reply = await this.removals.request(
        this.api('STREAM.PURGE', app),
        `{"filter":${JSON.stringify(filter)},"seq":${belowSeq}}`,
      );
    } catch (err) {
      throw storeError(err);
    }
    const r = this.apiAnswer(reply) as { success?: boolean; purged?: number; error?: JsApiError };
    if (r.success === true) return r.purged ?? 0;
    throw new PushError('store_unavailable', `purge failed: ${r.error?.description ?? 'unknown'}`);
  }

  /**
   * Removes one message by sequence. Resolves true when it was removed, false when it was
   * already gone (acked by another device, expired or evicted, or the app's stream deleted).
   */
  async remove(app: string, seq: number): Promise<boolean> {
    let reply: unknown;
    try {
      reply = await this.removals.request(this.api('STREAM.MSG.DELETE', app), `{"seq":${seq},"no_erase":true}`);
    } catch (err) {
      throw storeError(err);
    }
    const r = this.apiAnswer(reply) as { success?: boolean; error?: JsApiError };
    if (r.success === true) return true;
    // 10059: the app's stream is gone (the app was deleted), and its messages with it.
    if (deletedNothing(r.error) || r.error?.err_code === 10059) return false;
    throw new PushError('store_unavailable', `delete failed: ${r.error?.description ?? 'unknown'}`);
  }

  /** Messages stored for the user (not yet acked, evicted or aged out). */
  async pending(app: string, user: string): Promise<number> {
    const subject = this.subjects.inboxOfUser(app, user);
    let reply: Msg;
    try {
      reply = await this.stores.single(this.api('STREAM.INFO', app), JSON.stringify({ subjects_filter: subject }));
    } catch (err) {
      throw storeError(err);
    }
    const r = parseJson(reply) as { state?: { subjects?: Record<string, number> }; error?: JsApiError };
    if (r.error !== undefined) throw new PushError('store_unavailable', r.error.description);
    // Both kinds; expired messages are already gone (per-message TTL), so all are deliverable.
    let n = 0;
    for (const count of Object.values(r.state?.subjects ?? {})) n += count;
    return n;
  }

  /**
   * Resolves true once no store, read or delete is in flight or waiting, false when `timeoutMs`
   * passes first: a shutdown lets in-flight sends and removals reach the store, up to a deadline.
   */
  async idle(timeoutMs: number): Promise<boolean> {
    const all = await Promise.all([
      this.stores.idle(timeoutMs),
      this.reads.idle(timeoutMs),
      this.removals.idle(timeoutMs),
    ]);
    return all.every(Boolean);
  }

  close(): void {
    this.stores.close();
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

export function parseJson(msg: Msg): unknown {
  return parseJsonBytes(msg.data);
}

function parseJsonBytes(data: Uint8Array): unknown {
  try {
    return JSON.parse(decoder.decode(data));
  } catch (err) {
    throw new PushError('store_unavailable', 'the store answered with malformed JSON', { cause: err });
  }
}
