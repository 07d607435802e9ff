import { timingSafeEqual } from 'node:crypto';
import { PushError } from '@push/protocol';

/**
 * Checks the admin key given as `Authorization: Bearer <key>` (HTTP header or NATS header), in
 * constant time. PushError `admin_key_invalid` when it is missing or wrong, or when the admin
 * API is off (no `PUSH_ADMIN_KEY`).
 */
export function checkAdminKey(authorization: string, adminKey: string | undefined): void {
  if (adminKey === undefined) throw new PushError('admin_key_invalid', 'the admin API is off: set PUSH_ADMIN_KEY');
  const given = Buffer.from(authorization.startsWith('Bearer ') ? authorization.slice(7).trim() : '');
  const expected = Buffer.from(adminKey);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new PushError('admin_key_invalid');
}
