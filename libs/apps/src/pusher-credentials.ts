import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { AppRecord } from '@push/protocol';

/**
 * Pusher credentials of an app (docs/pusher.md). Every app has them, derived, so there is
 * nothing to store or rotate apart from the app's own secrets:
 *
 * - app id and key: the app's id (the key is public: it is in every page that connects);
 * - secret: hex HMAC-SHA256 of `pusher:<app id>` keyed with the UTF-8 bytes of one of the app's
 *   current client-token secrets. Rotating the app's secret rotates it; while two app secrets are
 *   valid, so are both Pusher secrets (the newest first).
 */
export interface PusherCredentials {
  appId: string;
  key: string;
  /** Newest first; signatures made with any of them verify. */
  secrets: string[];
}

/** How many of the app's secrets are valid at once (as for client tokens). */
const VALID_SECRETS = 2;

/** The Pusher credentials of an app. */
export function pusherCredentials(app: Pick<AppRecord, 'id' | 'secrets'>): PusherCredentials {
  return {
    appId: app.id,
    key: app.id,
    secrets: app.secrets
      .slice(0, VALID_SECRETS)
      .map((s) => createHmac('sha256', s.secret).update(`pusher:${app.id}`).digest('hex')),
  };
}

/** Hex HMAC-SHA256 of `text` keyed with `secret`: Pusher's signature everywhere. */
export function pusherSign(secret: string, text: string): string {
  return createHmac('sha256', secret).update(text).digest('hex');
}

/** Whether `signature` (hex) is the signature of `text` by one of the secrets; constant time per secret. */
export function pusherVerify(secrets: readonly string[], text: string, signature: string): boolean {
  const got = Buffer.from(signature, 'utf8');
  let ok = false;
  for (const s of secrets) {
    const want = Buffer.from(pusherSign(s, text), 'utf8');
    if (want.length === got.length && timingSafeEqual(want, got)) ok = true;
  }
  return ok;
}

/** Hex MD5 of a request body (Pusher's `body_md5`). */
export function pusherBodyMd5(body: Uint8Array | string): string {
  return createHash('md5').update(body).digest('hex');
}

/** Longest Pusher channel name (Pusher's documented limit). */
export const PUSHER_CHANNEL_MAX = 164;
const CHANNEL_CHARS = /^[-a-zA-Z0-9_=@,.;]+$/;
/** Prefix of the channel of one signed-in user (user authentication): `#server-to-user-<user id>`. */
export const PUSHER_USER_CHANNEL_PREFIX = '#server-to-user-';

/**
 * Why `name` is not a channel name the Pusher door takes, or undefined. Pusher's rules (at most
 * 164 characters of `A-Z a-z 0-9 _ - = @ , . ;`), plus ours: no leading `_` (topic names starting
 * with `_` are reserved, `_all` is the app's broadcast). `#server-to-user-<user id>` is the
 * channel of a signed-in user (user authentication).
 */
export function pusherChannelProblem(name: unknown): string | undefined {
  if (typeof name !== 'string' || name === '') return 'the channel name is missing';
  if (name.length > PUSHER_CHANNEL_MAX) return `the channel name is longer than ${PUSHER_CHANNEL_MAX} characters`;
  if (name.startsWith(PUSHER_USER_CHANNEL_PREFIX)) {
    const user = name.slice(PUSHER_USER_CHANNEL_PREFIX.length);
    return user !== '' && CHANNEL_CHARS.test(user) ? undefined : 'a #server-to-user- channel names a user id';
  }
  if (!CHANNEL_CHARS.test(name)) return 'a channel name has only the characters A-Z a-z 0-9 _ - = @ , . ;';
  if (name.startsWith('_')) return 'channel names starting with _ are reserved';
  return undefined;
}

/**
 * Whether a channel is a cache channel (`cache-`, `private-cache-`, `private-encrypted-cache-`,
 * `presence-cache-`): a new subscriber gets its last event right after subscribing, from the
 * topic's history, or `pusher:cache_miss`.
 */
export function pusherCacheChannel(name: string): boolean {
  return /^(private-encrypted-|private-|presence-)?cache-/.test(name);
}

/** The kinds of Pusher channel, by name prefix. */
export type PusherChannelKind = 'public' | 'private' | 'encrypted' | 'presence' | 'user';

export function pusherChannelKind(name: string): PusherChannelKind {
  if (name.startsWith(PUSHER_USER_CHANNEL_PREFIX)) return 'user';
  if (name.startsWith('private-encrypted-')) return 'encrypted';
  if (name.startsWith('private-')) return 'private';
  if (name.startsWith('presence-')) return 'presence';
  return 'public';
}
