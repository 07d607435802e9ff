import { createHmac, randomBytes } from 'node:crypto';

/** Prefix of a Standard Webhooks signing secret; the rest is the key, base64. */
const SECRET_PREFIX = 'whsec_';

/** A new webhook signing secret: `whsec_` + base64 of 24 random bytes (192 bits, as Svix makes them). */
export function generateWebhookSecret(): string {
  return SECRET_PREFIX + randomBytes(24).toString('base64');
}

/** The key bytes of a `whsec_...` secret (what the HMAC is keyed with). */
function secretBytes(secret: string): Buffer {
  return Buffer.from(secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret, 'base64');
}

/** The three headers of a signed request. */
export interface WebhookSignatureHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

/**
 * Signs a webhook body the Standard Webhooks way (standardwebhooks.com): `webhook-signature` is
 * `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">` keyed with the secret's bytes, one per
 * secret, space-separated, so a receiver holding either the old or the new secret verifies
 * during a rotation. `timestamp` is epoch seconds.
 */
export function signWebhook(
  secrets: readonly string[],
  id: string,
  timestampSeconds: number,
  body: string | Buffer,
): WebhookSignatureHeaders {
  const ts = String(Math.floor(timestampSeconds));
  const signatures = secrets.map((s) => {
    const mac = createHmac('sha256', secretBytes(s));
    mac.update(`${id}.${ts}.`);
    mac.update(body);
    return `v1,${mac.digest('base64')}`;
  });
  return { 'webhook-id': id, 'webhook-timestamp': ts, 'webhook-signature': signatures.join(' ') };
}
