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
  /** Most an RPC may take, ms (the edge's wait; the coordinator's POST gets a little less). */
  rpcTimeoutMs: number;
}

export const DEFAULT_APP_SETTINGS: Readonly<AppSettings> = Object.freeze({
  defaultTtlSeconds: 7 * 24 * 3600,
  maxPendingPerUser: 1000,
  maxMessageBytes: 64 * 1024,
  clientMessaging: false,
  pushRateLimit: 0,
  sendRatePerConnection: 10,
  sendRatePerUser: 20,
  webhookMaxAttempts: 10,
  webhookRetryBaseMs: 1000,
  webhookRetryMaxMs: 300_000,
  webhookTimeoutMs: 10_000,
  webhookConcurrency: 4,
  rpcUrl: '',
  rpcTimeoutMs: 5000,
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
  updatedAt: string;
}
