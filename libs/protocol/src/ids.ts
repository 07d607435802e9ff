/**
 * Identifier validation and subject-token encoding.
 *
 * Every id that reaches a NATS subject, a Redis key or a message id comes from user input (app
 * ids, user ids, device ids, topics). This module is the security boundary that keeps such input
 * from forming a wildcard (`*`, `>`), an extra token (`.`) or whitespace: ids made only of the
 * safe alphabet pass through unchanged, anything else is encoded as `~` + base64url(utf-8). `~` is
 * not in the safe alphabet, so the encoding is reversible and two different ids never share a
 * token.
 */

/** Characters an id may use verbatim in a subject token. */
const SAFE = /^[A-Za-z0-9_-]+$/;
/** Marker that starts an encoded token; never part of a verbatim one. */
const ENCODED_MARKER = '~';

/** Limits on id lengths, in UTF-8 bytes of the raw id. */
export const ID_LIMITS = Object.freeze({
  app: 64,
  user: 256,
  device: 128,
  clientMessageId: 128,
  idempotencyId: 256,
  /** API key ids (`key_` + 12 base64url characters today; room to change the scheme). */
  apiKey: 64,
  /** Method name of a client `rpc`. */
  rpcMethod: 128,
  /** Topic names (validated and encoded like user ids; see topics.ts for the reserved ones). */
  topic: 256,
});

export type IdKind = keyof typeof ID_LIMITS;

/**
 * Checks that `value` is usable as an id of the given kind: a non-empty string of at most the
 * kind's byte limit, with no control characters (U+0000-U+001F, U+007F) and valid UTF-16.
 * Returns an explanation when it is not, `undefined` when it is.
 */
export function idProblem(kind: IdKind, value: unknown): string | undefined {
  if (typeof value !== 'string') return `${kind} id must be a string`;
  if (value.length === 0) return `${kind} id must not be empty`;
  const limit = ID_LIMITS[kind];
  // Fast path: every UTF-16 unit is at most 3 UTF-8 bytes.
  if (value.length * 3 > limit && Buffer.byteLength(value, 'utf8') > limit) {
    return `${kind} id is longer than ${limit} bytes`;
  }
  if (SAFE.test(value)) return undefined;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) return `${kind} id must not contain control characters`;
  if (!value.isWellFormed()) return `${kind} id is not well-formed unicode`;
  return undefined;
}

/**
 * Encodes a validated id as one subject token. Callers must validate first (see `idProblem`);
 * the result never contains `.`, `*`, `>`, whitespace or control characters.
 */
export function encodeToken(id: string): string {
  if (SAFE.test(id)) return id;
  return ENCODED_MARKER + Buffer.from(id, 'utf8').toString('base64url');
}

/** Reverses `encodeToken`. Throws on a token that `encodeToken` cannot have produced. */
export function decodeToken(token: string): string {
  if (SAFE.test(token)) return token;
  if (token.startsWith(ENCODED_MARKER) && /^[A-Za-z0-9_-]+$/.test(token.slice(1))) {
    return Buffer.from(token.slice(1), 'base64url').toString('utf8');
  }
  throw new Error(`not a subject token: ${JSON.stringify(token)}`);
}

/** An edge's region label (`eu`, `us-east-1`): in PUSH_DISPATCHER_EDGES and the dispatcher's `region=`. */
export const REGION_LABEL = /^[a-z0-9][a-z0-9-]{0,31}$/;
