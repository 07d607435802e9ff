import { pusherBodyMd5, pusherCredentials, pusherVerify } from '@push/apps';
import { PushError, type AppRecord } from '@push/protocol';

/** How far `auth_timestamp` may be from the server's clock, seconds (Pusher's window). */
export const PUSHER_TIMESTAMP_WINDOW_SECONDS = 600;

/** A request to the Pusher HTTP door, as its signature covers it. */
export interface PusherRequest {
  method: string;
  /** The URL path, as sent (`/apps/<id>/events`). */
  path: string;
  /** The raw query string (without `?`). */
  query: string;
  /** The body bytes (POST), or undefined. */
  body: Buffer | undefined;
}

/**
 * Checks Pusher's request signature (https://pusher.com/docs/channels/library_auth_reference/rest-api/#authentication):
 * `auth_key` is the app's Pusher key; `auth_timestamp` within 600 s of now; `body_md5` the hex
 * MD5 of a non-empty body; `auth_signature` the hex HMAC-SHA256, keyed with one of the app's
 * Pusher secrets, of `METHOD\n<path>\n<every query parameter but auth_signature, keys
 * lowercased, sorted by key, as key=value joined with &>`. Throws PushError
 * `signature_invalid` or `timestamp_expired` (both 401); answers the parsed query.
 */
export function verifyPusherRequest(
  app: AppRecord,
  req: PusherRequest,
  nowSeconds = Date.now() / 1000,
): URLSearchParams {
  const params = new URLSearchParams(req.query);
  const creds = pusherCredentials(app);
  const key = params.get('auth_key');
  const signature = params.get('auth_signature');
  const timestamp = params.get('auth_timestamp');
  if (key === null || signature === null || timestamp === null) {
    throw new PushError('signature_invalid', 'auth_key, auth_timestamp and auth_signature are required');
  }
  if (key !== creds.key) throw new PushError('signature_invalid', "auth_key is not the app's Pusher key");
  const ts = Number(timestamp);
  if (!/^\d+$/.test(timestamp) || Math.abs(nowSeconds - ts) > PUSHER_TIMESTAMP_WINDOW_SECONDS) {
    throw new PushError(
      'timestamp_expired',
      `auth_timestamp ${timestamp.slice(0, 20)} is more than ${PUSHER_TIMESTAMP_WINDOW_SECONDS} s from the server's time ${Math.floor(nowSeconds)}`,
    );
  }
  if (req.body !== undefined && req.body.length > 0) {
    if (params.get('body_md5') !== pusherBodyMd5(req.body)) {
      throw new PushError('signature_invalid', 'body_md5 is not the MD5 of the body');
    }
  }
  const signed = [...params.entries()]
    .filter(([k]) => k !== 'auth_signature')
    .map(([k, v]) => [k.toLowerCase(), v] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const text = `${req.method.toUpperCase()}\n${req.path}\n${signed}`;
  if (!pusherVerify(creds.secrets, text, signature)) {
    throw new PushError('signature_invalid', `auth_signature is not the HMAC-SHA256 of ${JSON.stringify(text)}`);
  }
  return params;
}
