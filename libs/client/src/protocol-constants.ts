/**
 * The protocol constants the SDK relies on, mirrored from @push/protocol so that the browser
 * bundle carries no server code (TypeBox, Buffer). test/unit/client-constants.test.ts fails when
 * they drift from libs/protocol/src/close-codes.ts and backoff policy of docs/protocol.md.
 */

/** WebSocket close codes the edge sends (docs/protocol.md#close-codes), and what the SDK does. */
export const CLOSE = {
  /** Edge drain/shutdown; reason `reconnect:<ms>`: wait that long, then the next edge. */
  SHUTDOWN: 4001,
  /** The app was disabled or deleted: stop. */
  APP_GONE: 4003,
  /** The business kicked this user or device: stop. */
  KICKED: 4004,
  /** The token expired while connected: get a new token, reconnect at once. */
  TOKEN_EXPIRED: 4005,
  /** A newer connection of this user (or device) took over (app setting `devicePolicy`): stop. */
  REPLACED: 4006,
  /** A frame over the edge's hard limit (in practice seen as 1006): reconnect. */
  FRAME_TOO_LARGE: 1009,
  /**
   * A refused upgrade reported as a close (`refusal=close`): 4000 + the HTTP status the refusal
   * would have had; the reason is the error code. The SDK always asks for this form.
   */
  REFUSED_BASE: 4000,
} as const;

/** The refusal close codes the edge sends for `refusal=close`, by HTTP status. */
export const REFUSED = {
  /** 400: `token_malformed`, `bad_request`. Get a new token, back off. */
  BAD_REQUEST: 4400,
  /** 401: `token_missing`, `token_invalid`, `token_expired`, ... Get a new token, back off. */
  UNAUTHORIZED: 4401,
  /** 403: `app_disabled`, `wrong_app`, `origin_not_allowed`, `ip_not_allowed`. Stop. */
  FORBIDDEN: 4403,
  /** 404: `app_not_found` (an edge may hear of a new app a moment late). Back off. */
  NOT_FOUND: 4404,
  /** 429: `ip_connection_limit`, `ip_rate_limited` (per-IP limits of one edge). Try the next edge, back off. */
  TOO_MANY_REQUESTS: 4429,
  /** 500: `internal`. Back off. */
  INTERNAL: 4500,
  /** 503: `edge_full`, `shutting_down`. Try the next edge, back off. */
  UNAVAILABLE: 4503,
} as const;

/** The query parameter value that asks the edge to report refusals as close codes. */
export const REFUSAL_AS_CLOSE = 'close';

/** Reconnect backoff of docs/protocol.md#reconnecting: full jitter, 0.5 s doubling up to 30 s. */
export const RECONNECT_BACKOFF = { baseMs: 500, capMs: 30_000 } as const;

/** Most sequences in one `ack` frame. */
export const MAX_ACKS_PER_FRAME = 1000;
