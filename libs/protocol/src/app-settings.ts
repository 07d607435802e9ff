/** Per-app settings, stored in Postgres and mirrored to edges. */
export interface AppSettings {
  /** Default message time to live, seconds (also the most a push may ask for). */
  defaultTtlSeconds: number;
  /** Most messages kept per user; older ones are evicted when more arrive. */
  maxPendingPerUser: number;
  /** Largest message payload, bytes. */
  maxMessageBytes: number;
  /** Whether clients may send messages to other users of the app. */
  clientMessaging: boolean;
  /** Most messages per second the center accepts for this app (per center process); 0 = no limit. */
  pushRateLimit: number;
  /**
   * Most client `send`s per second on one connection (bursts up to one second's worth); past it
   * the edge answers `rate_limited`. 0 = no limit.
   */
  sendRatePerConnection: number;
  /** Most client `send`s per second by one user, across their connections on one edge; 0 = no limit. */
  sendRatePerUser: number;
  /**
   * Inbox writes per second of the app's fan-out jobs (they run one at a time per app, so this is
   * the app's total across centers); 0 = as fast as the store takes them.
   */
  fanoutRate: number;
  /**
   * Origins (`https://host[:port]`, exact match) of the browser pages that may connect; empty =
   * any. The edge refuses an upgrade whose Origin header is not listed (`origin_not_allowed`);
   * clients that send no Origin (servers, apps) are not pages and are not checked.
   */
  allowedOrigins: string[];
  /**
   * Whether clients may send `up` frames (stored in the app's upstream stream for the business).
   * Off by default: nothing reads the stream until the business sets up a webhook or a consumer.
   */
  upstream: boolean;
  /** Most `up` frames per second on one connection (bursts up to one second's worth); 0 = no limit. */
  upRatePerConnection: number;
  /** Largest `up` payload, bytes (the JSON text of `data`, or the decoded `b64`). */
  maxUpBytes: number;
  /** How long the upstream stream keeps a message, seconds (its `max_age`). */
  upstreamRetentionSeconds: number;
  /** How long the event stream keeps an event, seconds (its `max_age`). */
  eventRetentionSeconds: number;
  /** Whether the edge emits `delivered` and `acked` events (one per message, so off by default). */
  deliveryEvents: boolean;
  /** Most an RPC may take, ms (the edge's wait; the coordinator's POST to `rpcUrl` gets a little less). */
  rpcTimeoutMs: number;
  /** Most `rpc` frames per second on one connection; 0 = no limit. */
  rpcRatePerConnection: number;

  // --- Webhooks and RPC (issue 10) -------------------------------------------------------
  /**
   * Deliveries a webhook message gets (the first and its retries) before its batch goes to the
   * endpoint's dead letters.
   */
  webhookMaxAttempts: number;
  /** Backoff of webhook retries: full jitter over base * 2^attempt, ms (see backoffDelay). */
  webhookRetryBaseMs: number;
  /** Longest wait before a webhook retry, ms. */
  webhookRetryMaxMs: number;
  /** Most a webhook POST may take (connect to last byte of the answer), ms. */
  webhookTimeoutMs: number;
  /** Webhook POSTs in flight at once per endpoint. */
  webhookConcurrency: number;
  /** The business's RPC endpoint (http/https URL) the coordinator forwards `rpc` frames to; '' = none. */
  rpcUrl: string;
  /** Messages each topic keeps for resume (`sub` with `since`); 0 = none (only the newest is held). */
  topicHistory: number;
  /** How long topic messages are kept for resume, seconds (and the longest `ttl` a topic message may ask for). */
  topicHistorySeconds: number;
  /** Most topic messages per second the center accepts for this app, `_all` included (per center process); 0 = no limit. */
  topicRateLimit: number;
  /** Most topics one connection may subscribe to (`_all` not counted); past it `sub` answers `too_many_topics`. */
  maxTopicsPerConnection: number;
  // --- Presence on topics (issue 9 item 6) -------------------------------------------------
  /**
   * Topic patterns (as in the client token's `topics` claim: `*` one segment, `>` the rest) whose
   * members are listed (`GET .../topics/<topic>/presence`) and announced to subscribers with
   * `join`/`leave` frames and `presence_join`/`presence_leave` events. Empty = none.
   */
  presenceTopics: string[];
  // --- Access policy at the edge (issue 17 item 5) -----------------------------------------
  /**
   * IPv4/IPv6 CIDRs (`10.0.0.0/8`, `2001:db8::/32`, or one address) clients may connect from;
   * empty = any address. Checked at the upgrade on both doors, against the client's address
   * (`X-Forwarded-For` counts only from `PUSH_EDGE_TRUSTED_PROXIES`); refused: `ip_not_allowed`.
   */
  allowedCidrs: string[];
  /** CIDRs clients may not connect from, even when `allowedCidrs` lists them (`ip_not_allowed`). */
  deniedCidrs: string[];
  // --- Never-ack loops (issue 17 part 3) ---------------------------------------------------
  /**
   * Deliveries a message may get without an ack (connections that closed with it in flight)
   * before it leaves the user's inbox for the app's undeliverable list; 0 = no limit.
   */
  maxDeliveries: number;
  // --- One device at a time (issue 17 item 7) ---------------------------------------------
  /**
   * `multi`: a user may hold any number of connections. `single`: a new connection of a user
   * closes the user's older ones on every edge (close code 4006, reason `replaced`) after its
   * `hello`. `single-per-device`: the same among connections with the same `dev` claim.
   */
  devicePolicy: DevicePolicyName;
  // --- Adaptive heartbeats (issue 17 item 2) -----------------------------------------------
  /**
   * Lowest and highest app-level ping interval, seconds, a connection of this app may agree
   * (within the edge's `PUSH_EDGE_PING_MIN`..`PUSH_EDGE_PING_MAX`; the edge's bounds win where
   * they do not overlap). The edge drops a connection silent for twice the agreed interval.
   */
  pingMinSeconds: number;
  pingMaxSeconds: number;
}

/** The values of the app setting `devicePolicy`. */
export const DEVICE_POLICIES = ['multi', 'single', 'single-per-device'] as const;
export type DevicePolicyName = (typeof DEVICE_POLICIES)[number];

export const DEFAULT_APP_SETTINGS: Readonly<AppSettings> = Object.freeze({
  defaultTtlSeconds: 7 * 24 * 3600,
  maxPendingPerUser: 1000,
  maxMessageBytes: 64 * 1024,
  clientMessaging: false,
  pushRateLimit: 0,
  sendRatePerConnection: 10,
  sendRatePerUser: 20,
  fanoutRate: 5000,
  allowedOrigins: Object.freeze([]) as unknown as string[],
  upstream: false,
  upRatePerConnection: 50,
  maxUpBytes: 64 * 1024,
  upstreamRetentionSeconds: 7 * 24 * 3600,
  eventRetentionSeconds: 7 * 24 * 3600,
  deliveryEvents: false,
  rpcTimeoutMs: 5000,
  rpcRatePerConnection: 20,
  webhookMaxAttempts: 10,
  webhookRetryBaseMs: 1000,
  webhookRetryMaxMs: 300_000,
  webhookTimeoutMs: 10_000,
  webhookConcurrency: 4,
  rpcUrl: '',
  topicHistory: 100,
  topicHistorySeconds: 24 * 3600,
  topicRateLimit: 0,
  maxTopicsPerConnection: 100,
  presenceTopics: Object.freeze([]) as unknown as string[],
  allowedCidrs: Object.freeze([]) as unknown as string[],
  deniedCidrs: Object.freeze([]) as unknown as string[],
  maxDeliveries: 20,
  devicePolicy: 'multi',
  pingMinSeconds: 10,
  pingMaxSeconds: 600,
});

/** A signing secret for client tokens; `kid` names it in the token header. */
export interface AppSecret {
  kid: string;
  secret: string;
  createdAt: string;
}

/** What edges and centers know of an app (mirrored from Postgres into the apps KV bucket). */
export interface AppRecord {
  id: string;
  name: string;
  disabled: boolean;
  /** Newest first; at most two are valid at once (rotation). */
  secrets: AppSecret[];
  settings: AppSettings;
  /** SHA-256 hashes of the app's API keys (never the keys), so centers verify without Postgres. */
  apiKeys: Array<{ id: string; hash: string }>;
  /**
   * When the app was created: an app deleted and created again with its id has another, which
   * tells a process that missed the delete (its watch lagged both) that this is a new app.
   * Absent in records written before it existed.
   */
  createdAt?: string;
  updatedAt: string;
}
