import { SignJWT } from 'jose';
import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import { MAX_TOPIC_PATTERNS, PushError, idProblem, type AppRecord, type AppSecret } from '@push/protocol';

/** Who a verified client token says the client is. */
export interface ClientIdentity {
  app: string;
  user: string;
  device: string;
  /** Epoch seconds when the token expires. */
  exp: number;
  /** Topic patterns the client may subscribe to (the `topics` claim; see topicMatches); absent: none. */
  topics?: readonly string[];
}

/** A client token split and decoded, not yet verified. */
export interface DecodedToken {
  header: Record<string, unknown>;
  claims: Record<string, unknown>;
  /** `header.payload`, the bytes the signature covers. */
  signed: string;
  signature: Buffer;
}

const BASE64URL = /^[A-Za-z0-9_-]*$/;

function decodeJson(part: string): Record<string, unknown> {
  if (part === '' || !BASE64URL.test(part)) throw new PushError('token_malformed', 'token is not a compact JWS');
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch (err) {
    throw new PushError('token_malformed', 'token header or claims are not JSON', { cause: err });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new PushError('token_malformed', 'token header or claims are not a JSON object');
  return value as Record<string, unknown>;
}

/**
 * Decoded headers by their encoded text: an app's tokens share a handful (one per signing key),
 * so a connect decodes only its claims. Bounded; a header is read, never changed (frozen).
 */
const headers = new Map<string, Record<string, unknown>>();
const MAX_HEADERS = 256;

function decodeHeader(part: string): Record<string, unknown> {
  let header = headers.get(part);
  if (header === undefined) {
    header = Object.freeze(decodeJson(part));
    if (headers.size >= MAX_HEADERS) headers.clear();
    headers.set(part, header);
  }
  return header;
}

/** Splits and decodes a compact JWS (`header.claims.signature`). Throws PushError `token_malformed`. */
export function decodeJws(token: string): DecodedToken {
  const dot1 = token.indexOf('.');
  const dot2 = token.indexOf('.', dot1 + 1);
  if (dot1 < 0 || dot2 < 0 || token.indexOf('.', dot2 + 1) >= 0)
    throw new PushError('token_malformed', 'token is not a compact JWS');
  const sig = token.slice(dot2 + 1);
  if (!BASE64URL.test(sig)) throw new PushError('token_malformed', 'token signature is not base64url');
  return {
    header: decodeHeader(token.slice(0, dot1)),
    claims: decodeJson(token.slice(dot1 + 1, dot2)),
    signed: token.slice(0, dot2),
    signature: Buffer.from(sig, 'base64url'),
  };
}

const macKeys = new Map<string, KeyObject>();

export function macKey(secret: string): KeyObject {
  let key = macKeys.get(secret);
  if (key === undefined) {
    key = createSecretKey(Buffer.from(secret, 'utf8'));
    if (macKeys.size > 10_000) macKeys.clear();
    macKeys.set(secret, key);
  }
  return key;
}

export function signatureMatches(t: DecodedToken, secret: string): boolean {
  const expected = createHmac('sha256', macKey(secret)).update(t.signed).digest();
  return expected.length === t.signature.length && timingSafeEqual(expected, t.signature);
}

function numericClaim(claims: Record<string, unknown>, name: string, required: boolean): number | undefined {
  const v = claims[name];
  if (v === undefined) {
    if (required) throw new PushError('token_malformed', `token claim ${name}: missing`);
    return undefined;
  }
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new PushError('token_malformed', `token claim ${name}: must be a number`);
  return v;
}

/**
 * Reads the app a token claims (the token, or what `decodeJws` made of it, so that a caller that
 * verifies it next decodes it once), without verifying it (to pick the secret that must verify it).
 * Throws PushError `token_malformed`.
 */
export function peekTokenApp(token: string | DecodedToken): string {
  const app = (typeof token === 'string' ? decodeJws(token) : token).claims['app'];
  if (idProblem('app', app) !== undefined) throw new PushError('token_malformed', 'token has no valid app claim');
  return app as string;
}

/**
 * Verifies a client token (HS256 JWT: claims `app`, `sub` = user, `dev` = device, `exp`)
 * against the app's current secrets. Throws PushError `token_malformed`, `token_invalid`
 * (signature, including a token signed by another app's secret), `token_not_yet_valid` (`nbf`
 * in the future), `token_expired`, or `token_exp_too_far` when `exp` lies more than
 * `maxLifetimeSeconds` ahead: an `exp` written in milliseconds would otherwise make a token valid
 * for millennia, unrevocable but by a kick.
 *
 * Synchronous on purpose: the edge verifies inside uWS's upgrade handler and upgrades there,
 * because an upgrade after an await must be corked, and uWS 20.30 then misreads the new socket's
 * state and may close it (uNetworking/uWebSockets#1929). It is also several times faster than an
 * async WebCrypto verify, which matters in a reconnect storm.
 */
export function verifyClientToken(
  token: string | DecodedToken,
  app: AppRecord,
  nowSeconds = Date.now() / 1000,
  maxLifetimeSeconds = Number.POSITIVE_INFINITY,
): ClientIdentity {
  const t = typeof token === 'string' ? decodeJws(token) : token;
  const { header, claims } = t;
  if (header['crit'] !== undefined) throw new PushError('token_malformed', 'token header crit is not supported');
  if (header['alg'] !== 'HS256') throw new PushError('token_invalid', 'token must be signed with HS256');
  const kid = header['kid'];
  const candidates = kid === undefined ? app.secrets : app.secrets.filter((s) => s.kid === kid);
  if (!candidates.some((s) => signatureMatches(t, s.secret))) throw new PushError('token_invalid');
  // The claims are read only once the signature holds (as a JWT library would).
  const now = Math.floor(nowSeconds);
  const exp = numericClaim(claims, 'exp', true) as number;
  const nbf = numericClaim(claims, 'nbf', false);
  numericClaim(claims, 'iat', false);
  if (claims['sub'] === undefined) throw new PushError('token_malformed', 'token claim sub: missing');
  if (nbf !== undefined && nbf > now) throw new PushError('token_not_yet_valid');
  if (exp <= now) throw new PushError('token_expired');
  if (exp - now > maxLifetimeSeconds) throw new PushError('token_exp_too_far');
  const user = claims['sub'];
  const device = claims['dev'] ?? 'default';
  if (claims['app'] !== app.id) throw new PushError('token_invalid', 'token app claim does not match');
  if (idProblem('user', user) !== undefined)
    throw new PushError('token_malformed', 'token sub (user) is not a valid id');
  if (idProblem('device', device) !== undefined)
    throw new PushError('token_malformed', 'token dev (device) is not a valid id');
  // A topic token (signed with the same secret) must not open a connection as its user.
  if (claims['topic'] !== undefined) throw new PushError('token_invalid', 'a topic token is not a client token');
  const topics = topicPatterns(claims['topics']);
  return {
    app: app.id,
    user: user as string,
    device: device as string,
    exp,
    ...(topics !== undefined ? { topics } : {}),
  };
}

/** The `topics` claim: an array of at most MAX_TOPIC_PATTERNS patterns of 1 to 256 characters. */
function topicPatterns(v: unknown): string[] | undefined {
  if (v === undefined) return undefined;
  if (
    !Array.isArray(v) ||
    v.length > MAX_TOPIC_PATTERNS ||
    !v.every((p) => typeof p === 'string' && p.length > 0 && p.length <= 256)
  ) {
    throw new PushError(
      'token_malformed',
      `token claim topics: must be an array of at most ${MAX_TOPIC_PATTERNS} patterns (strings of 1 to 256 characters)`,
    );
  }
  return v as string[];
}

/** Signs a client token with the app's newest secret (for business servers, tests and the CLI). */
export async function signClientToken(
  secret: AppSecret,
  claims: { app: string; user: string; device?: string; ttlSeconds: number; topics?: string[] },
  nowSeconds = Math.floor(Date.now() / 1000),
): Promise<string> {
  return new SignJWT({
    app: claims.app,
    dev: claims.device ?? 'default',
    ...(claims.topics !== undefined ? { topics: claims.topics } : {}),
  })
    .setProtectedHeader({ alg: 'HS256', kid: secret.kid })
    .setSubject(claims.user)
    .setIssuedAt(nowSeconds)
    .setExpirationTime(nowSeconds + claims.ttlSeconds)
    .sign(macKey(secret.secret));
}
