import { createHash, randomBytes } from 'node:crypto';

/** A new API key: `pk_` + 32 random bytes, base64url. Shown once; only its hash is stored. */
export function generateApiKey(): string {
  return `pk_${randomBytes(32).toString('base64url')}`;
}

/** A new token signing secret: 32 random bytes, base64url. */
export function generateSecret(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * The stored form of an API key. Keys carry 256 bits of randomness, so a plain SHA-256 is enough
 * (a slow password hash would only slow every API call).
 */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}
