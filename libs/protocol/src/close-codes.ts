/**
 * WebSocket close codes the edge sends. Who sends it, and whether the client should reconnect.
 * Codes 4000-4999 are application codes (RFC 6455 section 7.4.2).
 */
export const CLOSE = {
  /** Edge, on drain/shutdown: reconnect after the jittered delay given in the reason (ms). */
  SHUTDOWN: 4001,
  /** Edge, when the app was disabled or deleted: do not reconnect. */
  APP_GONE: 4003,
  /** Edge, on a kick or logout for this user/device: do not reconnect with the same token. */
  KICKED: 4004,
  /** Edge, when the connection's token expired while connected: get a new token, then reconnect. */
  TOKEN_EXPIRED: 4005,
  /**
   * Edge, under the app's `devicePolicy` `single` / `single-per-device`: a newer connection of the
   * same user (or device) took over. Reason `replaced`. Do not reconnect (two clients would take
   * turns replacing each other).
   */
  REPLACED: 4006,
  /** uWebSockets.js, when a frame exceeds the edge's hard frame limit: reconnect; send smaller frames. */
  FRAME_TOO_LARGE: 1009,
} as const;

export type CloseCode = (typeof CLOSE)[keyof typeof CLOSE];

/**
 * A refused upgrade reported as a close frame, for clients that ask with `refusal=close` (the SDK
 * always does; browsers cannot read the HTTP status of a refused upgrade, only a close code). The
 * edge accepts the upgrade, sends no `hello`, and closes at once with 4000 + the HTTP status the
 * refusal would have had; the reason is the error code (`token_expired`, `edge_full`, ...).
 */
export const REFUSED = {
  /** 400 `token_malformed`: get a new token, back off. */
  BAD_REQUEST: 4400,
  /** 401 `token_missing`, `token_invalid`, `token_expired`, `token_not_yet_valid`, `token_exp_too_far`: new token, back off. */
  UNAUTHORIZED: 4401,
  /** 403 `app_disabled`, `wrong_app`, `origin_not_allowed`, `ip_not_allowed`: do not reconnect. */
  FORBIDDEN: 4403,
  /** 404 `app_not_found`: back off (an edge hears of a new app a moment after it is created). */
  NOT_FOUND: 4404,
  /** 429 `ip_connection_limit`, `ip_rate_limited` (limits per IP of this edge): try the next edge, back off. */
  TOO_MANY_REQUESTS: 4429,
  /** 500 `internal`: back off. */
  INTERNAL: 4500,
  /** 503 `edge_full`, `shutting_down`: try the next edge, back off. */
  UNAVAILABLE: 4503,
} as const;

/** The value of the upgrade's `refusal` query parameter that asks for refusals as close codes. */
export const REFUSAL_AS_CLOSE = 'close';

/** The close code that reports a refusal with this HTTP status (`4000 + status`). */
export function refusalCloseCode(status: number): number {
  return 4000 + status;
}
