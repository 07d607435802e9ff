import { PushError } from './errors.js';
import { idProblem } from './ids.js';

/**
 * WebSocket frames. Every frame is a JSON text message with a type field `t`. docs/protocol.md
 * describes each one; this module is the one place that parses what clients send.
 */

/** Client -> edge: acknowledge delivered messages by sequence (removes them from the inbox). */
export interface AckFrame {
  t: 'ack';
  seqs: number[];
}
/** Client -> edge: app-level ping, answered by a `pong` (for browsers, which cannot see WS pings). */
export interface PingFrame {
  t: 'ping';
}
/** Client -> edge: send data to another user of the same app. Answered by `sent` or `error`. */
export interface SendFrame {
  t: 'send';
  to: string;
  /** Client's id for this message: dedupes retries and correlates the answer. */
  id: string;
  payload: MessagePayload;
  /** Seconds until the message expires (defaults to the app's TTL, capped by it). */
  ttl?: number;
}
export type ClientFrame = AckFrame | PingFrame | SendFrame;

/** The bytes of a message and how they are encoded on the wire. */
export interface MessagePayload {
  /** Stored bytes: UTF-8 JSON text when `binary` is false, raw bytes otherwise. */
  bytes: Uint8Array;
  binary: boolean;
}

/** Most sequences one ack frame may carry. */
export const MAX_ACKS_PER_FRAME = 1000;

/**
 * Reads `data` (any JSON value) or `b64` (base64 bytes) from a parsed object: exactly one must be
 * present. Shared by the center API and client sends so both store the same thing.
 */
export function readPayload(obj: Record<string, unknown>): MessagePayload {
  const hasData = obj['data'] !== undefined;
  const hasB64 = obj['b64'] !== undefined;
  if (hasData === hasB64) throw new PushError('invalid_data');
  if (hasData) {
    let text: string;
    try {
      text = JSON.stringify(obj['data']);
    } catch (err) {
      // JSON.parse takes any depth but JSON.stringify recurses: deep nesting overflows the stack.
      throw new PushError('invalid_data', 'data is nested too deeply', { cause: err });
    }
    return { bytes: Buffer.from(text, 'utf8'), binary: false };
  }
  const b64 = obj['b64'];
  // Standard or URL-safe alphabet (not mixed), optional padding; a length that leaves one
  // character over cannot be base64 (Node would silently drop it).
  if (
    typeof b64 !== 'string' ||
    !/^(?:[A-Za-z0-9+/]*|[A-Za-z0-9_-]*)={0,2}$/.test(b64) ||
    b64.replace(/=+$/, '').length % 4 === 1
  ) {
    throw new PushError('invalid_data', 'b64 must be a base64 string');
  }
  return { bytes: Buffer.from(b64, 'base64'), binary: true };
}

/** Reads an optional `ttl` in seconds: a positive finite number. */
export function readTtl(obj: Record<string, unknown>): number | undefined {
  const ttl = obj['ttl'];
  if (ttl === undefined) return undefined;
  if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl <= 0) throw new PushError('invalid_ttl');
  return ttl;
}

/** Reads a required id field, throwing `invalid_id` with the field's name on a bad one. */
export function readId(obj: Record<string, unknown>, field: string, kind: Parameters<typeof idProblem>[0]): string {
  const value = obj[field];
  const problem = idProblem(kind, value);
  if (problem !== undefined) throw new PushError('invalid_id', `${field}: ${problem}`);
  return value as string;
}

/** True for plain JSON objects (not arrays, not null). */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Parses one text frame from a client. Throws a PushError (`bad_frame`, `unknown_frame`,
 * `invalid_id`, `invalid_data`, `invalid_ttl`) that the edge sends back as an `error` frame.
 */
export function parseClientFrame(text: string): ClientFrame {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new PushError('bad_frame', 'frame is not valid JSON');
  }
  if (!isObject(value)) throw new PushError('bad_frame', 'frame must be a JSON object');
  switch (value['t']) {
    case 'ack': {
      const seqs = value['seqs'];
      if (!Array.isArray(seqs) || seqs.length === 0 || seqs.length > MAX_ACKS_PER_FRAME) {
        throw new PushError('bad_frame', `ack.seqs must be an array of 1 to ${MAX_ACKS_PER_FRAME} sequences`);
      }
      for (const s of seqs) {
        if (!Number.isSafeInteger(s) || (s as number) <= 0) {
          throw new PushError('bad_frame', 'ack.seqs must hold positive integers');
        }
      }
      return { t: 'ack', seqs: seqs as number[] };
    }
    case 'ping':
      return { t: 'ping' };
    case 'send': {
      const to = readId(value, 'to', 'user');
      const id = readId(value, 'id', 'clientMessageId');
      const payload = readPayload(value);
      const ttl = readTtl(value);
      return ttl === undefined ? { t: 'send', to, id, payload } : { t: 'send', to, id, payload, ttl };
    }
    default:
      if (typeof value['t'] !== 'string') throw new PushError('bad_frame', 'frame needs a string field t');
      throw new PushError('unknown_frame', `unknown frame type ${JSON.stringify(value['t']).slice(0, 40)}`);
  }
}

/** Server -> client frames, built as strings on the hot path. */
export const ServerFrames = {
  hello(fields: {
    conn: string;
    app: string;
    user: string;
    device: string;
    ping: number;
    window: number;
    maxMessageBytes: number;
  }): string {
    return JSON.stringify({ t: 'hello', ...fields });
  },
  pong(): string {
    return '{"t":"pong"}';
  },
  sent(id: string, seq: number, duplicate: boolean): string {
    return JSON.stringify({ t: 'sent', id, seq, dup: duplicate });
  },
  error(code: string, message: string, extra?: { id?: string; seqs?: number[]; retryAfter?: number }): string {
    return JSON.stringify({ t: 'error', code, message, ...extra });
  },
  /**
   * A stored message. `json` is the stored JSON text, spliced in without re-parsing; binary
   * payloads go out base64-encoded in `b64`.
   */
  message(seq: number, ts: number, bytes: Uint8Array, binary: boolean, from: string | undefined): string {
    const body = binary
      ? `"b64":"${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')}"`
      : `"data":${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8')}`;
    const fromPart = from === undefined ? '' : `,"from":${JSON.stringify(from)}`;
    return `{"t":"msg","seq":${seq},"ts":${ts}${fromPart},${body}}`;
  },
};
