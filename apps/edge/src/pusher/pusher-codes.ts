/**
 * Pusher Channels protocol 7 codes the door sends (https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol/#error-codes),
 * in `pusher:error` frames and as close codes. 4000-4099: do not reconnect as is; 4100-4199:
 * reconnect with backoff; 4200-4299: reconnect at once; 4300-4399: other errors (no close).
 */
export const PUSHER_CODE = {
  /** Upgrade: no app has this key. */
  APP_NOT_FOUND: 4001,
  /** Upgrade, or later: the app is disabled (or was deleted while connected). */
  APP_DISABLED: 4003,
  /** Upgrade: the query has no `protocol`. */
  NO_PROTOCOL: 4008,
  /** Upgrade: `protocol` is not a number. */
  BAD_PROTOCOL: 4006,
  /** Upgrade: a protocol version other than 5 to 7. */
  UNSUPPORTED_PROTOCOL: 4007,
  /** Upgrade: the page's Origin is not in the app's `allowedOrigins`, or the client's IP not in its `allowedCidrs` (or in `deniedCidrs`). */
  UNAUTHORIZED: 4009,
  /** Upgrade: this edge holds its maximum of connections, or the client's IP its per-IP limit; reconnect with backoff. */
  OVER_CAPACITY: 4100,
  /** The edge is shutting down: reconnect at once (to another edge). */
  RECONNECT: 4200,
  /** A client event past the app's `sendRatePerConnection` (the connection stays open). */
  CLIENT_EVENT_RATE: 4301,
} as const;

/** Lowest and highest Pusher protocol versions the door speaks (pusher-js 8 uses 7). */
export const PUSHER_PROTOCOL_MIN = 5;
export const PUSHER_PROTOCOL_MAX = 7;
/** Largest client event data (JSON text), bytes: Pusher's limit. */
export const PUSHER_CLIENT_EVENT_MAX_BYTES = 10 * 1024;
/** Largest presence `user_info` (JSON text), bytes. */
export const PUSHER_USER_INFO_MAX_BYTES = 1024;
