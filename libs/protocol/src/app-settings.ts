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
  /** Messages each topic keeps for resume (`sub` with `since`); 0 = none (only the newest is held). */
  topicHistory: number;
  /** How long topic messages are kept for resume, seconds (and the longest `ttl` a topic message may ask for). */
  topicHistorySeconds: number;
  /** Most topic messages per second the center accepts for this app, `_all` included (per center process); 0 = no limit. */
  topicRateLimit: number;
  /** Most topics one connection may subscribe to (`_all` not counted); past it `sub` answers `too_many_topics`. */
  maxTopicsPerConnection: number;
}

export const DEFAULT_APP_SETTINGS: Readonly<AppSettings> = Object.freeze({
  defaultTtlSeconds: 7 * 24 * 3600,
  maxPendingPerUser: 1000,
  maxMessageBytes: 64 * 1024,
  clientMessaging: false,
  pushRateLimit: 0,
  sendRatePerConnection: 10,
  sendRatePerUser: 20,
  topicHistory: 100,
  topicHistorySeconds: 24 * 3600,
  topicRateLimit: 0,
  maxTopicsPerConnection: 100,
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
