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
  /** uWebSockets.js, when a frame exceeds the edge's hard frame limit: reconnect; send smaller frames. */
  FRAME_TOO_LARGE: 1009,
} as const;

export type CloseCode = (typeof CLOSE)[keyof typeof CLOSE];
