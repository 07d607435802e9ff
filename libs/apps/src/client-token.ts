import { SignJWT, decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';
import { webcrypto } from 'node:crypto';
import { PushError, idProblem, type AppRecord, type AppSecret } from '@push/protocol';

/** Who a verified client token says the client is. */
export interface ClientIdentity {
  app: string;
  user: string;
  device: string;
  /** Epoch seconds when the token expires. */
  exp: number;
}

type CryptoKey = webcrypto.CryptoKey;

const keyCache = new Map<string, CryptoKey>();

async function hmacKey(secret: string): Promise<CryptoKey> {
  let key = keyCache.get(secret);
  if (key === undefined) {
    key = await webcrypto.subtle.importKey(
      'raw',
      Buffer.from(secret, 'utf8'),
      { name: 'HMAC', hash: 'SHA-256' },
      false,
      ['sign', 'verify'],
    );
    if (keyCache.size > 10_000) keyCache.clear();
    keyCache.set(secret, key);
  }
  return key;
}

/**
 * Reads the app a token claims, without verifying it (to pick the secret that must verify it).
 * Throws PushError `token_malformed`.
 */
export function peekTokenApp(token: string): string {
  let claims: Record<string, unknown>;
  try {
    claims = decodeJwt(token);
    decodeProtectedHeader(token);
  } catch (err) {
    throw new PushError('token_malformed', undefined, { cause: err });
  }
  const app = claims['app'];
  if (idProblem('app', app) !== undefined) throw new PushError('token_malformed', 'token has no valid app claim');
  return app as string;
}

/**
 * Verifies a client token (HS256 JWT: claims `app`, `sub` = user, `dev` = device, `exp`)
 * against the app's current secrets. Throws PushError `token_malformed`, `token_invalid`
 * (signature, including a token signed by another app's secret) or `token_expired`.
 */
export async function verifyClientToken(
  token: string,
  app: AppRecord,
  nowSeconds = Date.now() / 1000,
): Promise<ClientIdentity> {
  let kid: string | undefined;
  try {
    kid = decodeProtectedHeader(token).kid;
  } catch (err) {
    throw new PushError('token_malformed', undefined, { cause: err });
  }
  const candidates = kid === undefined ? app.secrets : app.secrets.filter((s) => s.kid === kid);
  let lastErr: unknown = new PushError('token_invalid');
  for (const s of candidates) {
    try {
      const { payload } = await jwtVerify(token, await hmacKey(s.secret), {
        algorithms: ['HS256'],
        currentDate: new Date(nowSeconds * 1000),
        requiredClaims: ['exp', 'sub'],
      });
      const user = payload.sub;
      const device = payload['dev'] ?? 'default';
      if (payload['app'] !== app.id) throw new PushError('token_invalid', 'token app claim does not match');
      if (idProblem('user', user) !== undefined)
        throw new PushError('token_malformed', 'token sub (user) is not a valid id');
      if (idProblem('device', device) !== undefined)
        throw new PushError('token_malformed', 'token dev (device) is not a valid id');
      return { app: app.id, user: user as string, device: device as string, exp: payload.exp as number };
    } catch (err) {
      if (err instanceof PushError) throw err;
      if (err instanceof joseErrors.JWTExpired) throw new PushError('token_expired', undefined, { cause: err });
      if (err instanceof joseErrors.JWTClaimValidationFailed) {
        throw new PushError('token_malformed', `token claim ${err.claim}: ${err.reason}`, { cause: err });
      }
      if (err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JWTInvalid) {
        throw new PushError('token_malformed', undefined, { cause: err });
      }
      lastErr = err;
    }
  }
  if (lastErr instanceof PushError) throw lastErr;
  throw new PushError('token_invalid', undefined, { cause: lastErr });
}

/** Signs a client token with the app's newest secret (for business servers, tests and the CLI). */
export async function signClientToken(
  secret: AppSecret,
  claims: { app: string; user: string; device?: string; ttlSeconds: number },
  nowSeconds = Math.floor(Date.now() / 1000),
): Promise<string> {
  return new SignJWT({ app: claims.app, dev: claims.device ?? 'default' })
    .setProtectedHeader({ alg: 'HS256', kid: secret.kid })
    .setSubject(claims.user)
    .setIssuedAt(nowSeconds)
    .setExpirationTime(nowSeconds + claims.ttlSeconds)
    .sign(await hmacKey(secret.secret));
}
