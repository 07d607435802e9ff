/**
 * The error registry: every failure a client, a business server or an operator can see has a
 * stable code here, with its HTTP status (for the center API and refused upgrades) and a default
 * message. docs/protocol.md and docs/api.md list the same codes; test/unit/docs-complete.test.ts
 * fails when one is missing there.
 */
export const ERRORS = {
  // --- Input (400) ------------------------------------------------------------------------
  bad_request: { status: 400, message: 'the request is malformed' },
  bad_json: { status: 400, message: 'the body is not valid JSON' },
  invalid_id: { status: 400, message: 'an id is empty, too long or contains control characters' },
  invalid_ttl: { status: 400, message: 'ttl must be a positive number of seconds' },
  invalid_data: { status: 400, message: 'give exactly one of data (JSON) or b64 (base64 bytes)' },
  bad_frame: { status: 400, message: 'the frame is not a JSON object with a known shape' },
  unknown_frame: { status: 400, message: 'the frame type is not known' },
  invalid_kind: { status: 400, message: 'kind must be 1 to 64 characters of A-Z a-z 0-9 _ -' },
  transient_conflict: {
    status: 400,
    message: 'a transient message is never stored: it takes no ttl or id, and topics take no transient messages',
  },
  token_malformed: { status: 400, message: 'the token is not a well-formed signed token' },
  invalid_cidr: { status: 400, message: 'an entry is not an IPv4 or IPv6 address or CIDR (such as 10.0.0.0/8)' },
  // --- Topics -----------------------------------------------------------------------------
  invalid_topic: {
    status: 400,
    message: 'the topic name is empty, too long, has control characters, or is reserved (starts with _)',
  },
  topic_forbidden: { status: 403, message: 'neither the client token nor a topic token grants this topic' },
  topic_token_invalid: { status: 403, message: 'the topic token does not verify for this app, user and topic' },
  topic_token_expired: { status: 403, message: 'the topic token has expired' },
  too_many_topics: { status: 400, message: 'this connection holds as many topics as the app allows' },
  too_many_bindings: {
    status: 409,
    message: 'the user is bound to as many topics as the app allows (its maxTopicsPerConnection)',
  },
  // --- Auth (401/403) ---------------------------------------------------------------------
  token_missing: { status: 401, message: 'no token was presented' },
  token_invalid: { status: 401, message: 'the token signature does not verify' },
  token_expired: { status: 401, message: 'the token has expired' },
  token_not_yet_valid: { status: 401, message: 'the token is not valid yet (its nbf is in the future)' },
  token_exp_too_far: {
    status: 401,
    message: 'the token exp lies further ahead than the edge accepts (exp is in epoch seconds, not milliseconds)',
  },
  api_key_missing: { status: 401, message: 'no API key was presented (Authorization: Bearer <key>)' },
  api_key_invalid: { status: 401, message: 'the API key is not valid' },
  admin_key_invalid: { status: 401, message: 'the admin key is missing or not valid' },
  signature_invalid: {
    status: 401,
    message:
      "the Pusher request's auth_key, body_md5 or auth_signature does not verify with the app's Pusher key and secret",
  },
  timestamp_expired: {
    status: 401,
    message: "the Pusher request's auth_timestamp is more than 600 seconds away from the server's clock",
  },
  wrong_app: { status: 403, message: 'the credential belongs to another app' },
  app_disabled: { status: 403, message: 'the app is disabled' },
  upstream_disabled: { status: 403, message: 'this app does not take upstream (up) frames from clients' },
  client_messaging_disabled: { status: 403, message: 'this app does not let clients message other users' },
  origin_not_allowed: { status: 403, message: "the page's origin is not in the app's allowedOrigins" },
  ip_not_allowed: {
    status: 403,
    message: "the client's IP address is in the app's deniedCidrs, or not in its allowedCidrs",
  },
  // --- Not found / conflict ---------------------------------------------------------------
  app_not_found: { status: 404, message: 'no such app' },
  api_key_not_found: { status: 404, message: 'no such API key (or it was already revoked)' },
  not_found: { status: 404, message: 'no such route' },
  method_not_allowed: { status: 405, message: 'method not allowed on this route' },
  app_exists: { status: 409, message: 'an app with this id exists' },
  webhook_not_found: { status: 404, message: 'no such webhook endpoint in this app' },
  // --- Size and rate ----------------------------------------------------------------------
  payload_too_large: { status: 413, message: 'the message is larger than the app allows' },
  body_too_large: { status: 413, message: 'the request body is too large' },
  batch_too_large: { status: 413, message: 'the batch has too many messages' },
  rate_limited: { status: 429, message: 'too many requests; slow down' },
  ip_connection_limit: {
    status: 429,
    message: 'this IP address holds as many connections to this edge as it allows (PUSH_EDGE_MAX_CONNECTIONS_PER_IP)',
  },
  ip_rate_limited: {
    status: 429,
    message: 'this IP address opens connections faster than this edge allows (PUSH_EDGE_CONNECT_RATE_PER_IP); back off',
  },
  // --- Fan-out jobs -----------------------------------------------------------------------
  job_not_found: { status: 404, message: 'no such fan-out job in this app' },
  job_not_open: { status: 409, message: 'the job is started, finished or cancelled: it takes no more users' },
  job_too_large: { status: 413, message: 'the job would have more users than the deployment allows' },
  // --- Several apps on one connection (attach) ---------------------------------------------
  app_attached: { status: 409, message: 'this app already has a session on the connection' },
  app_not_attached: { status: 404, message: 'no session of this app is on the connection' },
  too_many_apps: { status: 409, message: 'the connection holds as many app sessions as the edge allows' },
  // --- Acks -------------------------------------------------------------------------------
  ack_unknown: { status: 400, message: 'ack for a sequence not delivered to this connection (or already acked)' },
  // --- Server side ------------------------------------------------------------------------
  edge_full: { status: 503, message: 'this edge is at its connection limit; retry later or elsewhere' },
  shutting_down: { status: 503, message: 'the server is shutting down; reconnect elsewhere' },
  rpc_unavailable: { status: 503, message: 'no service answers rpc for this app' },
  rpc_timeout: { status: 504, message: 'the rpc got no answer in time' },
  rpc_failed: { status: 502, message: 'the service answering the rpc reported an error' },
  store_unavailable: { status: 503, message: 'the message store is unavailable; retry' },
  database_unavailable: {
    status: 503,
    message: 'the database (Postgres) is unavailable; retry after the Retry-After seconds',
  },
  console_not_built: { status: 503, message: 'the web console was not built on this center (make build builds it)' },
  internal: { status: 500, message: 'internal error' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

/**
 * Base error of the system: a stable `code`, its HTTP status, a message, an optional cause and,
 * for a failure that passes (`rate_limited`, `database_unavailable`), when to retry: the HTTP
 * adapter sends it as `Retry-After`, the NATS adapter as `error.retryAfter`.
 */
export class PushError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Whole seconds to wait before trying again, when the failure says. */
  readonly retryAfter: number | undefined;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; retryAfter?: number }) {
    super(message ?? ERRORS[code].message, options);
    this.name = 'PushError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.retryAfter = options?.retryAfter;
  }

  /** The JSON body the API and the edge send for this error. */
  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** `rate_limited` with when to retry (whole seconds before the same request is allowed). */
export class RateLimitedError extends PushError {
  declare readonly retryAfter: number;

  constructor(retryAfter: number, message?: string) {
    super('rate_limited', message, { retryAfter });
    this.name = 'RateLimitedError';
  }
}

/**
 * A refused client frame that answers a `send`: `id` is the send's id (when it was a string,
 * even an invalid one), which the edge echoes in the `error` frame.
 */
export class FrameError extends PushError {
  readonly id: string | undefined;

  constructor(code: ErrorCode, message: string | undefined, id: string | undefined, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'FrameError';
    this.id = id;
  }
}

const ERROR_NAMES = new Set(['PushError', 'RateLimitedError', 'FrameError']);

/** True when `err` is a PushError (also across package copies). */
export function isPushError(err: unknown): err is PushError {
  if (err instanceof PushError) return true;
  if (!(err instanceof Error) || !ERROR_NAMES.has(err.name)) return false;
  const { code, status } = err as Partial<PushError>;
  return typeof code === 'string' && Object.hasOwn(ERRORS, code) && status === ERRORS[code].status;
}
