/**
 * The stored form of an inbox message: one ASCII line of metadata, a newline, then the payload
 * bytes. Metadata lives in the payload rather than in NATS headers because headers cost about a
 * third of the store's throughput here (encoding in the client, parsing and storing in the
 * server); the line is parsed once per delivery.
 *
 *   `1 <ts> <expires> <enc> <from>\n<payload>`
 *
 * - `1`: envelope version.
 * - `ts`, `expires`: epoch milliseconds (accepted at, not to be delivered after).
 * - `enc`: `j` for UTF-8 JSON text, `b` for raw bytes (delivered base64-encoded).
 * - `from`: subject-token encoding of the sending user, or `!` when the business pushed it (`!` is
 *   never a token: tokens are `[A-Za-z0-9_-]+` or `~` + base64url).
 */
import { decodeToken, encodeToken } from './ids.js';

export interface EnvelopeMeta {
  ts: number;
  expires: number;
  binary: boolean;
  from: string | undefined;
}

const NEWLINE = 0x0a;

/** The `from` field meaning "no sender": outside the token alphabet, so no user id maps to it. */
const NO_SENDER = '!';

/** Builds the stored bytes of a message. */
export function encodeEnvelope(meta: EnvelopeMeta, payload: Uint8Array): Buffer {
  const line = `1 ${meta.ts} ${meta.expires} ${meta.binary ? 'b' : 'j'} ${meta.from === undefined ? NO_SENDER : encodeToken(meta.from)}\n`;
  // One allocation: the line is ASCII, so its length in bytes is its length in characters.
  const out = Buffer.allocUnsafe(line.length + payload.length);
  out.write(line, 0, 'latin1');
  out.set(payload, line.length);
  return out;
}

/** Splits stored bytes into metadata and payload; undefined when they are not an envelope. */
export function decodeEnvelope(stored: Uint8Array): { meta: EnvelopeMeta; payload: Uint8Array } | undefined {
  const nl = stored.indexOf(NEWLINE);
  if (nl < 0 || nl > 600) return undefined;
  const buf = Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength);
  const parts = buf.toString('latin1', 0, nl).split(' ');
  if (parts.length !== 5 || parts[0] !== '1' || (parts[3] !== 'j' && parts[3] !== 'b')) return undefined;
  const ts = Number(parts[1]);
  const expires = Number(parts[2]);
  if (!Number.isFinite(ts) || !Number.isFinite(expires)) return undefined;
  let from: string | undefined;
  if (parts[4] !== NO_SENDER && parts[4] !== undefined) {
    try {
      from = decodeToken(parts[4]);
    } catch {
      return undefined;
    }
  }
  return { meta: { ts, expires, binary: parts[3] === 'b', from }, payload: buf.subarray(nl + 1) };
}
