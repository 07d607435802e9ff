import { SignJWT } from 'jose';
import { PushError, type AppRecord, type AppSecret } from '@push/protocol';
import { decodeJws, macKey, signatureMatches } from './client-token.js';

/**
 * Per-topic subscription tokens: an HS256 JWT signed with the app's secret, claims `app`, `sub`
 * (the user), `topic` and `exp`, that lets one user subscribe to one topic the client token's
 * patterns do not grant (a private topic granted later, like Pusher's channel auth). The
 * business signs one when its user may join, and the client passes it in `sub.token`.
 *
 * Verified synchronously (as client tokens are) against the app's current secrets. Every
 * failure but expiry is `topic_token_invalid`, so the answer tells a client nothing about which
 * claim was wrong; expiry is `topic_token_expired`, so the client knows to ask for a new one.
 */
export function verifyTopicToken(
  token: string,
  app: AppRecord,
  user: string,
  topic: string,
  nowSeconds = Date.now() / 1000,
): void {
  let t;
  try {
    t = decodeJws(token);
  } catch (err) {
    throw new PushError('topic_token_invalid', 'the topic token is not a compact JWS', { cause: err });
  }
  if (t.header['alg'] !== 'HS256' || t.header['crit'] !== undefined) {
    throw new PushError('topic_token_invalid', 'the topic token must be signed with HS256');
  }
  const kid = t.header['kid'];
  const candidates = kid === undefined ? app.secrets : app.secrets.filter((s) => s.kid === kid);
  if (!candidates.some((s) => signatureMatches(t, s.secret))) throw new PushError('topic_token_invalid');
  const { claims } = t;
  if (claims['app'] !== app.id || claims['sub'] !== user || claims['topic'] !== topic) {
    throw new PushError('topic_token_invalid', 'the topic token is for another app, user or topic');
  }
  const exp = claims['exp'];
  if (typeof exp !== 'number' || !Number.isFinite(exp)) {
    throw new PushError('topic_token_invalid', 'the topic token has no numeric exp');
  }
  if (exp <= Math.floor(nowSeconds)) throw new PushError('topic_token_expired');
}

/** Signs a topic token with the app's newest secret (for business servers, tests and the CLI). */
export async function signTopicToken(
  secret: AppSecret,
  claims: { app: string; user: string; topic: string; ttlSeconds: number },
  nowSeconds = Math.floor(Date.now() / 1000),
): Promise<string> {
  return new SignJWT({ app: claims.app, topic: claims.topic })
    .setProtectedHeader({ alg: 'HS256', kid: secret.kid })
    .setSubject(claims.user)
    .setIssuedAt(nowSeconds)
    .setExpirationTime(nowSeconds + claims.ttlSeconds)
    .sign(macKey(secret.secret));
}
