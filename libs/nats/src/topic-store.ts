import { headers, type Msg, type NatsConnection } from '@nats-io/nats-core';
import { PushError, decodeEnvelope, encodeEnvelope, type MessagePayload, type Subjects } from '@push/protocol';
import { isLastOfBatch, readStored, storeError, ttlHeaderSeconds, type PublishResult } from './inbox-store.js';
import { headerLastSequence, headerSequence } from './live-subscriber.js';
import { RequestPipeline } from './request-pipeline.js';
import { StoreRequester, readTimeoutMs, storeMessageId } from './store-requester.js';

/** One topic message, read from history (Direct Get) or from the live RePublish. */
export interface TopicStoredMessage {
  seq: number;
  /** The topic's previous sequence (`Nats-Last-Sequence` of the RePublish; 0 from history). */
  prev: number;
  /** Epoch ms when the message was accepted. */
  ts: number;
  /** Epoch ms after which it is not delivered (its ttl, or the app's topic history). */
  expires: number;
  bytes: Uint8Array;
  binary: boolean;
  /** Not an envelope: never delivered (see `tombstone`). */
  malformed?: boolean;
}

export interface TopicPublishOptions {
  /** Lifetime, ms: the `ttl` asked for, or the app's `topicHistorySeconds`. */
  ttlMs: number;
  /** Whether the caller asked for a ttl (sets `Nats-TTL`; the stream's `max_age` covers the rest). */
  explicitTtl: boolean;
  msgId?: string;
  now?: number;
  /** As PublishOptions' `live` (the inbox store's): false ends the store with `app_not_found`. */
  live?: () => boolean;
}

const NUM_PENDING = 'Nats-Num-Pending';
/** Topic history reads in flight at once (each one batch). */
const READS_IN_FLIGHT = 256;

const EMPTY = new Uint8Array(0);

/**
 * What stands for a stored message that is not an envelope (a trusted service published garbage
 * to the subject): already expired, so it is never delivered, but its sequence still counts, so
 * it is no gap.
 */
function tombstone(seq: number, prev: number): TopicStoredMessage {
  return { seq, prev, ts: 0, expires: 0, bytes: EMPTY, binary: false, malformed: true };
}

/**
 * A live (republished) topic message from the live subscriber's headers block and payload;
 * a tombstone (`malformed`) when the payload is not an envelope; undefined without a sequence.
 */
export function readLiveTopicMessage(hdrs: Buffer, payload: Buffer): TopicStoredMessage | undefined {
  const seq = headerSequence(hdrs);
  if (seq <= 0) return undefined;
  const env = decodeEnvelope(payload);
  if (env === undefined) return tombstone(seq, headerLastSequence(hdrs));
  return {
    seq,
    prev: headerLastSequence(hdrs),
    ts: env.meta.ts,
    expires: env.meta.expires,
    bytes: env.payload,
    binary: env.meta.binary,
  };
}

/** Header marking a presence announcement on a topic's live subject (a `join`/`leave` frame, never stored). */
const PRESENCE_HEADER = 'Push-Presence';
const PRESENCE_HEADER_BYTES = Buffer.from(`${PRESENCE_HEADER}:`);
/** Header with the announcement's order stamp (Redis's clock when it decided, µs). */
const ORDER_HEADER = 'Push-Presence-Order';
const ORDER_HEADER_BYTES = Buffer.from(`${ORDER_HEADER}:`);

/**
 * Announces a presence change (`join`/`leave` frame text, ServerFrames) on the topic's live
 * subject, with core NATS: every edge with subscribers of the topic already subscribes there
 * and fans it out once through uWS pub/sub, like topic messages. Not stored: a subscriber that
 * misses one reads the members list. `conn`: the connection whose subscription the `join`
 * announces, carried in the header so that its own edge does not send it its own `join`.
 * `order`: when Redis decided it (µs, from the presence scripts): announcements of one user made
 * by different edges may arrive in another order than they were decided, and an edge drops one
 * older than the last it fanned out for that user (TopicChannels).
 */
export function publishPresenceFrame(
  nc: NatsConnection,
  subjects: Subjects,
  app: string,
  topic: string,
  frame: string,
  conn?: string,
  order?: number,
): void {
  const h = headers();
  h.set(PRESENCE_HEADER, conn ?? '1');
  if (order !== undefined && order > 0) h.set(ORDER_HEADER, String(order));
  nc.publish(subjects.liveTopic(app, topic), frame, { headers: h });
}

/** A header's value in a raw headers block, trimmed; undefined when absent. */
function headerValue(hdrs: Buffer, name: Buffer): string | undefined {
  const at = hdrs.indexOf(name);
  if (at < 0) return undefined;
  const end = hdrs.indexOf('\r\n', at);
  return hdrs.toString('latin1', at + name.length, end < 0 ? hdrs.length : end).trim();
}

/**
 * The frame of a presence announcement from the live subscriber's headers block and payload,
 * with the connection a `join` announces (`conn`, when the announcer named it) and its order
 * stamp (0 when it has none); undefined for anything else (a stored topic message has a
 * sequence instead).
 */
export function readLivePresenceFrame(
  hdrs: Buffer,
  payload: Buffer,
): { t: 'join' | 'leave'; frame: string; conn?: string; order: number } | undefined {
  const conn = headerValue(hdrs, PRESENCE_HEADER_BYTES);
  if (conn === undefined) return undefined;
  const order = Number(headerValue(hdrs, ORDER_HEADER_BYTES) ?? 0) || 0;
  const frame = payload.toString('utf8');
  if (frame.startsWith('{"t":"leave"')) return { t: 'leave', frame, order };
  if (!frame.startsWith('{"t":"join"')) return undefined;
  return conn === '' || conn === '1' ? { t: 'join', frame, order } : { t: 'join', frame, conn, order };
}

/**
 * The apps' topic streams (`PUSH_TOPICS-<app>`): publish (pipelined, store-then-send: the
 * RePublish to edges fires once stored), read a topic's history from a sequence (batched Direct
 * Get `next_by_subj`, as the inbox backlog is read), and the topic's last sequence. No consumers.
 */
export class TopicStore {
  private readonly stores: StoreRequester;
  private readonly reads: RequestPipeline;
  private readonly subjects: Subjects;

  constructor(nc: NatsConnection, subjects: Subjects, opts: { timeoutMs?: number } = {}) {
    this.subjects = subjects;
    this.stores = new StoreRequester(nc, opts);
    this.reads = new RequestPipeline(nc, {
      timeoutMs: readTimeoutMs(opts.timeoutMs),
      maxInFlight: READS_IN_FLIGHT,
      maxQueued: 200_000,
    });
  }

  /** Stores a message in a topic. Rejects with PushError `store_unavailable`. */
  publish(app: string, topic: string, payload: MessagePayload, opts: TopicPublishOptions): Promise<PublishResult> {
    let stored: Buffer;
    const h = headers();
    try {
      const now = opts.now ?? Date.now();
      stored = encodeEnvelope(
        { ts: now, expires: now + opts.ttlMs, binary: payload.binary, from: undefined },
        payload.bytes,
      );
      if (opts.explicitTtl) h.set('Nats-TTL', String(ttlHeaderSeconds(opts.ttlMs)));
      // Every store has an id, so that one whose answer was lost can be sent again.
      h.set('Nats-Msg-Id', opts.msgId ?? storeMessageId());
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return this.stores
      .request(this.subjects.topic(app, topic), stored, h, opts.live)
      .then(readStored, (err: unknown) => {
        throw storeError(err);
      });
  }

  private api(op: string, app: string): string {
    return `$JS.API.${op}.${this.subjects.topicStream(app)}`;
  }

  /**
   * Reads up to `max` messages of a topic from sequence `fromSeq` on, in one batched Direct Get.
   * `more` is true when more remain after the last one returned. A message's `prev` is the one
   * before it in the batch (the first gets 0: the caller knows what it asked from).
   */
  async readBatch(
    app: string,
    topic: string,
    fromSeq: number,
    bounds: { max: number; maxBytes: number },
  ): Promise<{ messages: TopicStoredMessage[]; more: boolean }> {
    let replies: Msg[];
    try {
      replies = await this.reads.requestMany(
        this.api('DIRECT.GET', app),
        `{"seq":${Math.max(1, fromSeq)},"next_by_subj":${JSON.stringify(this.subjects.topic(app, topic))},"batch":${Math.max(1, Math.floor(bounds.max))},"max_bytes":${Math.max(1, Math.floor(bounds.maxBytes))}}`,
        isLastOfBatch,
      );
    } catch (err) {
      throw storeError(err);
    }
    const messages: TopicStoredMessage[] = [];
    let more = false;
    let prev = 0;
    for (const reply of replies) {
      const code = reply.headers?.code ?? 0;
      if (code === 404) break;
      if (code === 204) {
        more = Number(reply.headers?.get(NUM_PENDING) ?? '0') > 0;
        break;
      }
      if (code !== 0 && code !== 200) {
        throw new PushError('store_unavailable', `direct get failed: ${code} ${reply.headers?.description ?? ''}`);
      }
      const seq = Number(reply.headers?.get('Nats-Sequence'));
      if (!Number.isSafeInteger(seq) || seq <= 0) {
        throw new PushError('store_unavailable', 'direct get answer has no sequence');
      }
      const env = decodeEnvelope(reply.data);
      if (env === undefined) {
        messages.push(tombstone(seq, prev));
        prev = seq;
        if (!reply.headers?.has(NUM_PENDING)) more = true;
        continue;
      }
      messages.push({
        seq,
        prev,
        ts: env.meta.ts,
        expires: env.meta.expires,
        bytes: env.payload,
        binary: env.meta.binary,
      });
      prev = seq;
      if (!reply.headers?.has(NUM_PENDING)) more = true;
    }
    return { messages, more };
  }

  /**
   * The sequence of the topic's first message stored at or after `ms` (epoch ms, the server's
   * clock), undefined when there is none. Rejects with `store_unavailable`.
   */
  async firstSeqSince(app: string, topic: string, ms: number): Promise<number | undefined> {
    let reply: Msg;
    try {
      reply = await this.reads.request(
        this.api('DIRECT.GET', app),
        JSON.stringify({ start_time: new Date(ms).toISOString(), next_by_subj: this.subjects.topic(app, topic) }),
      );
    } catch (err) {
      throw storeError(err);
    }
    const code = reply.headers?.code ?? 0;
    if (code === 404) return undefined;
    const seq = Number(reply.headers?.get('Nats-Sequence'));
    if (!Number.isSafeInteger(seq) || seq <= 0)
      throw new PushError('store_unavailable', `first topic message since: ${code}`);
    return seq;
  }

  /** The topic's last sequence (0 when it holds no message). Rejects with `store_unavailable`. */
  async lastSeq(app: string, topic: string): Promise<number> {
    let reply: Msg;
    try {
      reply = await this.reads.request(
        this.api('DIRECT.GET', app),
        JSON.stringify({ last_by_subj: this.subjects.topic(app, topic) }),
      );
    } catch (err) {
      throw storeError(err);
    }
    const code = reply.headers?.code ?? 0;
    if (code === 404) return 0;
    if (code === 503) throw new PushError('store_unavailable', "no stream answers for the app's topics");
    const seq = Number(reply.headers?.get('Nats-Sequence'));
    if (!Number.isSafeInteger(seq)) throw new PushError('store_unavailable', `last topic message: ${code}`);
    return seq;
  }

  /** Resolves true once nothing is in flight, false after `timeoutMs`. */
  async idle(timeoutMs: number): Promise<boolean> {
    const all = await Promise.all([this.stores.idle(timeoutMs), this.reads.idle(timeoutMs)]);
    return all.every(Boolean);
  }

  close(): void {
    this.stores.close();
    this.reads.close();
  }
}
