import { FrameError, PushError, type ErrorCode } from './errors.js';
import { idProblem } from './ids.js';
import {
  AckFrameSchema,
  MAX_PING_SECONDS,
  PingFrameSchema,
  MAX_ACKS_PER_FRAME,
  RpcFrameWireSchema,
  SendFrameWireSchema,
  UpFrameWireSchema,
  SubFrameSchema,
  UnsubFrameSchema,
  type AckFrame,
  type ErrorFrame,
  type HelloFrame,
  type PingFrame,
  type SubFrame,
  type UnsubFrame,
} from './schemas.js';
import { AttachFrameSchema, DetachFrameSchema, type AttachFrame, type DetachFrame } from './session-frames.js';
import { ALL_TOPIC, topicProblem } from './topics.js';
import { compile } from './validate.js';

/**
 * WebSocket frames. Every frame is a JSON text message with a type field `t`; schemas.ts holds
 * each frame's schema and docs/protocol.md describes it. This module is the one place that parses
 * what clients send and builds what the edge sends.
 */

export { MAX_ACKS_PER_FRAME };
export type { AckFrame, PingFrame };

/** Client -> edge: send data to another user of the same app, as the edge uses it. */
export interface SendFrame {
  t: 'send';
  to: string;
  /** Client's id for this message: dedupes retries and correlates the answer. */
  id: string;
  payload: MessagePayload;
  /** Seconds until the message expires (defaults to the app's TTL, capped by it). */
  ttl?: number;
}
/** Client -> edge: data up to the business, as the edge uses it. */
export interface UpFrame {
  t: 'up';
  /** Client's id: dedupes retries (within the stream's duplicate window) and correlates the answer. */
  id: string;
  /** Subject token the business filters on; `default` when the client gave none. */
  kind: string;
  payload: MessagePayload;
}

/** Client -> edge: a request for the business, as the edge uses it. */
export interface RpcFrame {
  t: 'rpc';
  id: string;
  method: string;
  /** The client's JSON value (`null` when it gave none). */
  data: unknown;
}

export type ClientFrame =
  AckFrame | PingFrame | SendFrame | UpFrame | RpcFrame | SubFrame | UnsubFrame | AttachFrame | DetachFrame;

/** The kind of an `up` frame that names none. */
export const DEFAULT_UP_KIND = 'default';
export type { SubFrame, UnsubFrame };

/**
 * A refused `sub` or `unsub`: the error frame carries the topic (when it was a string) so the
 * client knows which subscription failed.
 */
export class TopicFrameError extends PushError {
  constructor(
    code: ErrorCode,
    message: string | undefined,
    readonly topic: string | undefined,
  ) {
    super(code, message);
    this.name = 'PushError';
  }
}

/** The bytes of a message and how they are encoded on the wire. */
export interface MessagePayload {
  /** Stored bytes: UTF-8 JSON text when `binary` is false, raw bytes otherwise. */
  bytes: Uint8Array;
  binary: boolean;
}

/**
 * Turns `data` (any JSON value) or `b64` (base64 bytes, its alphabet already checked by the
 * schema) into stored bytes: exactly one must be present. Shared by the center API and client
 * sends so both store the same thing. PushError `invalid_data`.
 */
export function readPayload(obj: { data?: unknown; b64?: string }): MessagePayload {
  const hasData = obj.data !== undefined;
  const hasB64 = obj.b64 !== undefined;
  if (hasData === hasB64) throw new PushError('invalid_data');
  if (obj.b64 === undefined) {
    let text: string;
    try {
      text = JSON.stringify(obj.data);
    } catch (err) {
      // JSON.parse takes any depth but JSON.stringify recurses: deep nesting overflows the stack.
      throw new PushError('invalid_data', 'data is nested too deeply', { cause: err });
    }
    return { bytes: Buffer.from(text, 'utf8'), binary: false };
  }
  // A length that leaves one character over cannot be base64 (Node would silently drop it).
  if (obj.b64.replace(/=+$/, '').length % 4 === 1) throw new PushError('invalid_data', 'b64 must be a base64 string');
  return { bytes: Buffer.from(obj.b64, 'base64'), binary: true };
}

/** The `invalid_id` error for a field whose value `idProblem` refuses, or undefined. */
export function idFieldProblem(
  field: string,
  kind: Parameters<typeof idProblem>[0],
  value: unknown,
): PushError | undefined {
  const problem = idProblem(kind, value);
  return problem === undefined ? undefined : new PushError('invalid_id', `${field}: ${problem}`);
}

/** True for plain JSON objects (not arrays, not null). */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const ackFrame = compile(AckFrameSchema);
const pingFrame = compile(PingFrameSchema);
const subFrame = compile(SubFrameSchema, { order: ['t', 'topic', 'since', 'token'] });
const unsubFrame = compile(UnsubFrameSchema);
const attachFrame = compile(AttachFrameSchema);
const detachFrame = compile(DetachFrameSchema);

/**
 * Reads a `sub` or `unsub`: the schema, then the topic rules clients obey (`_all` is subscribed
 * at open and cannot be left, a `sub` of it resumes it; other `_` names are reserved).
 * TopicFrameError with the topic.
 */
function parseTopicFrame(value: Record<string, unknown>): SubFrame | UnsubFrame {
  const raw = value['topic'];
  const topic = typeof raw === 'string' ? raw : undefined;
  const v = value['t'] === 'sub' ? subFrame : unsubFrame;
  const bad = v.problem(value);
  // The topic is echoed as sent (even too long: the frame that carried it was within the edge's
  // frame limit), so the client can match the answer to its `sub`.
  if (bad !== undefined) throw new TopicFrameError(bad.code, bad.message, topic);
  const t = value as SubFrame | UnsubFrame;
  const why =
    t.topic !== ALL_TOPIC
      ? topicProblem(t.topic)
      : t.t === 'unsub'
        ? `every connection receives ${ALL_TOPIC}; it cannot be left`
        : undefined; // a `sub` of _all resumes it from `since`
  if (why !== undefined) throw new TopicFrameError('invalid_topic', why, t.topic);
  return t;
}
/** Fields of `send` in the order they are checked: the first bad one answers. */
const sendFrame = compile(SendFrameWireSchema, { order: ['t', 'to', 'id', 'data', 'b64', 'ttl'] });

/**
 * Reads a `send` frame. Every refusal is a FrameError carrying the frame's `id` when it is a
 * string, so the client can tell which send failed (even when that id is itself refused).
 */
function parseSend(value: Record<string, unknown>): SendFrame {
  const rawId = value['id'];
  const replyTo = typeof rawId === 'string' ? rawId : undefined;
  try {
    if (!sendFrame.check(value)) throw explainSend(value);
    const bad = idFieldProblem('to', 'user', value.to) ?? idFieldProblem('id', 'clientMessageId', value.id);
    if (bad !== undefined) throw bad;
    const payload = readPayload(value);
    return value.ttl === undefined
      ? { t: 'send', to: value.to, id: value.id, payload }
      : { t: 'send', to: value.to, id: value.id, payload, ttl: value.ttl };
  } catch (err) {
    if (!(err instanceof PushError)) throw err;
    throw new FrameError(err.code, err.message, replyTo, { cause: err.cause });
  }
}

/** The error for a `send` the schema refused, in field order: ids, then the payload, then ttl. */
function explainSend(value: Record<string, unknown>): PushError {
  const first = sendFrame.problem(value) ?? new PushError('bad_frame');
  if (first.code !== 'invalid_ttl') return first;
  const bad = idFieldProblem('to', 'user', value['to']) ?? idFieldProblem('id', 'clientMessageId', value['id']);
  if (bad !== undefined) return bad;
  readPayload(value); // throws invalid_data before a ttl is judged
  return first;
}

const upFrame = compile(UpFrameWireSchema, { order: ['t', 'id', 'kind', 'data', 'b64'] });
const rpcFrame = compile(RpcFrameWireSchema, { order: ['t', 'id', 'method', 'data'] });

/** Runs `read` and turns its PushError into a FrameError carrying the frame's `id` (when a string). */
function withFrameId<T>(value: Record<string, unknown>, read: () => T): T {
  const rawId = value['id'];
  try {
    return read();
  } catch (err) {
    if (!(err instanceof PushError)) throw err;
    throw new FrameError(err.code, err.message, typeof rawId === 'string' ? rawId : undefined, { cause: err.cause });
  }
}

/** Reads an `up` frame; refusals carry its id (see `withFrameId`). */
function parseUp(value: Record<string, unknown>): UpFrame {
  return withFrameId(value, () => {
    const bad = upFrame.problem(value);
    if (bad !== undefined || !upFrame.check(value)) throw bad ?? new PushError('bad_frame');
    return { t: 'up', id: value.id, kind: value.kind ?? DEFAULT_UP_KIND, payload: readPayload(value) };
  });
}

/** Reads an `rpc` frame; refusals carry its id. */
function parseRpc(value: Record<string, unknown>): RpcFrame {
  return withFrameId(value, () => {
    const bad = rpcFrame.problem(value);
    if (bad !== undefined || !rpcFrame.check(value)) throw bad ?? new PushError('bad_frame');
    return { t: 'rpc', id: value.id, method: value.method, data: value.data ?? null };
  });
}

/**
 * Parses one text frame from a client. Throws a PushError (`bad_frame`, `unknown_frame`) or,
 * answering a `send`, a FrameError (`invalid_id`, `invalid_data`, `invalid_ttl`) with the send's
 * id (also for `up` and `rpc`); the edge sends either back as an `error` frame.
 */
export function parseClientFrame(text: string): ClientFrame {
  return clientFrameOf(jsonObject(text));
}

/**
 * A client frame read with the app it names (`app`, a string, or undefined), or why it was
 * refused; `connection`: a refused `attach`, which is about the connection, not a session.
 */
export type AppFrameResult =
  { app: string | undefined; frame: ClientFrame } | { app: string | undefined; error: unknown; connection?: true };

/**
 * Reads a client frame and the app it is about (its `app` field, on a connection holding several
 * apps' sessions). A refusal comes back with the app too, so its `error` goes to that session.
 */
export function parseAppFrame(text: string): AppFrameResult {
  let value: Record<string, unknown>;
  try {
    value = jsonObject(text);
  } catch (error) {
    return { app: undefined, error };
  }
  const raw = value['app'];
  // A `detach` names its app as its own field. An `app` that is not a string (null is taken as
  // absent) names no session: '' (never an app id), answered `app_not_attached`.
  const app =
    value['t'] === 'detach' || raw === undefined || raw === null ? undefined : typeof raw === 'string' ? raw : '';
  try {
    return { app, frame: clientFrameOf(value) };
  } catch (error) {
    return value['t'] === 'attach' ? { app: undefined, error, connection: true } : { app, error };
  }
}

function jsonObject(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new PushError('bad_frame', 'frame is not valid JSON');
  }
  if (!isObject(value)) throw new PushError('bad_frame', 'frame must be a JSON object');
  return value;
}

/** A frame's schema problem as `bad_frame`, with its message. */
function badFrame(problem: PushError | undefined): PushError {
  return new PushError('bad_frame', problem?.message);
}

function clientFrameOf(value: Record<string, unknown>): ClientFrame {
  switch (value['t']) {
    case 'ack':
      if (ackFrame.check(value)) return { t: 'ack', seqs: value.seqs };
      throw ackFrame.problem(value) ?? new PushError('bad_frame');
    case 'ping':
      if (value['ping'] === undefined) return { t: 'ping' };
      if (pingFrame.check(value)) return { t: 'ping', ping: value.ping };
      throw new PushError('bad_frame', `ping.ping must be an integer number of seconds from 1 to ${MAX_PING_SECONDS}`);
    case 'send':
      return parseSend(value);
    case 'up':
      return parseUp(value);
    case 'rpc':
      return parseRpc(value);
    case 'sub':
    case 'unsub':
      return parseTopicFrame(value);
    case 'attach':
      if (attachFrame.check(value)) return { t: 'attach', token: value.token };
      throw badFrame(attachFrame.problem(value));
    case 'detach':
      if (detachFrame.check(value)) return { t: 'detach', app: value.app };
      throw badFrame(detachFrame.problem(value));
    default:
      if (typeof value['t'] !== 'string') throw new PushError('bad_frame', 'frame needs a string field t');
      throw new PushError('unknown_frame', `unknown frame type ${JSON.stringify(value['t']).slice(0, 40)}`);
  }
}

/**
 * A message's payload field: the stored JSON text spliced in as `data` without re-parsing, or
 * binary bytes base64-encoded as `b64`.
 */
function payloadField(bytes: Uint8Array, binary: boolean): string {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return binary ? `"b64":"${buf.toString('base64')}"` : `"data":${buf.toString('utf8')}`;
}

/** `,"from":...` for a message another client sent; empty for one the business pushed. */
function fromField(from: string | undefined): string {
  return from === undefined ? '' : `,"from":${JSON.stringify(from)}`;
}

/**
 * Server -> client frames, built as strings on the hot path; their shapes are the server frame
 * schemas in schemas.ts (a unit test checks each builder's output against its schema).
 */
export const ServerFrames = {
  hello(fields: Omit<HelloFrame, 't'>): string {
    return JSON.stringify({ t: 'hello', ...fields } satisfies HelloFrame);
  },
  /** A `pong`; with the agreed interval when the `ping` proposed one. */
  pong(agreedSeconds?: number): string {
    return agreedSeconds === undefined ? '{"t":"pong"}' : `{"t":"pong","ping":${agreedSeconds}}`;
  },
  sent(id: string, seq: number, duplicate: boolean): string {
    return JSON.stringify({ t: 'sent', id, seq, dup: duplicate });
  },
  upsent(id: string, seq: number, duplicate: boolean): string {
    return JSON.stringify({ t: 'upsent', id, seq, dup: duplicate });
  },
  /** The answer to an `rpc`; `json` is the business's `data` as JSON text (spliced, not re-parsed). */
  rpc(id: string, json: string): string {
    return `{"t":"rpc","id":${JSON.stringify(id)},"data":${json}}`;
  },
  error(code: ErrorCode, message: string, extra?: Pick<ErrorFrame, 'id' | 'seqs' | 'retryAfter' | 'topic'>): string {
    return JSON.stringify({ t: 'error', code, message, ...extra } satisfies ErrorFrame);
  },
  /**
   * A stored message. `json` is the stored JSON text, spliced in without re-parsing; binary
   * payloads go out base64-encoded in `b64`.
   */
  message(seq: number, ts: number, bytes: Uint8Array, binary: boolean, from: string | undefined): string {
    return `{"t":"msg","seq":${seq},"ts":${ts}${fromField(from)},${payloadField(bytes, binary)}}`;
  },
  /**
   * A transient message (never stored): no `seq`, nothing to ack. Built once per message per edge
   * and sent to each of the user's connections there.
   */
  transientMessage(ts: number, bytes: Uint8Array, binary: boolean, from: string | undefined): string {
    return `{"t":"msg","transient":true,"ts":${ts}${fromField(from)},${payloadField(bytes, binary)}}`;
  },
  /**
   * A topic message: built once per message per edge and published to every local subscriber.
   * `topicJson` is the topic name as a JSON string (encoded once per topic by the caller).
   */
  topicMessage(topicJson: string, seq: number, prev: number, ts: number, bytes: Uint8Array, binary: boolean): string {
    return `{"t":"msg","topic":${topicJson},"seq":${seq},"prev":${prev},"ts":${ts},${payloadField(bytes, binary)}}`;
  },
  subscribed(topic: string, seq: number): string {
    return JSON.stringify({ t: 'subscribed', topic, seq });
  },
  unsubscribed(topic: string): string {
    return JSON.stringify({ t: 'unsubscribed', topic });
  },
  lost(topicJson: string, first: number): string {
    return `{"t":"lost","topic":${topicJson},"first":${first}}`;
  },
  /** A presence topic's member arrived (its user's first subscribed connection). */
  join(topic: string, user: string, device: string, since: number): string {
    return JSON.stringify({ t: 'join', topic, user, device, since });
  },
  /** A presence topic's member left (its user's last subscribed connection). */
  leave(topic: string, user: string): string {
    return JSON.stringify({ t: 'leave', topic, user });
  },
};
