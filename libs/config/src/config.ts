import os from 'node:os';
import { REGION_LABEL, cidrListProblem } from '@push/protocol';

/**
 * One setting: reads its variable (undefined when unset or empty) into its value, or throws an
 * Error whose message says what is wrong with it (ConfigError prefixes the variable's name).
 */
type Setting<T> = (raw: string | undefined) => T;

const quoted = (raw: string): string => JSON.stringify(raw.length > 60 ? `${raw.slice(0, 60)}...` : raw);

const int =
  (def: number, min: number, max = Number.MAX_SAFE_INTEGER): Setting<number> =>
  (raw) => {
    if (raw === undefined) return def;
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isSafeInteger(n)) throw new Error(`expected an integer, got ${quoted(raw)}`);
    if (n < min) throw new Error(`must be at least ${min}, got ${n}`);
    if (n > max) throw new Error(`must be at most ${max}, got ${n}`);
    return n;
  };
const oneOf =
  <T extends string>(values: readonly T[], def: T): Setting<T> =>
  (raw) => {
    if (raw === undefined) return def;
    if (!(values as readonly string[]).includes(raw))
      throw new Error(`expected one of ${values.join(', ')}, got ${quoted(raw)}`);
    return raw as T;
  };
const BOOLEANS = ['true', 'false', '1', '0', 'yes', 'no'] as const;
const bool =
  (def: boolean): Setting<boolean> =>
  (raw) => {
    const v = oneOf(BOOLEANS, def ? 'true' : 'false')(raw);
    return v === 'true' || v === '1' || v === 'yes';
  };
/** Any text; `def` when unset. */
const str =
  (def: string): Setting<string> =>
  (raw) =>
    raw ?? def;
/** Text matching `re` (`what` names the shape in the error). */
const matching =
  (re: RegExp, what: string): Setting<string | undefined> =>
  (raw) => {
    if (raw !== undefined && !re.test(raw)) throw new Error(`expected ${what}, got ${quoted(raw)}`);
    return raw;
  };
const withDefault =
  <T>(setting: Setting<T | undefined>, def: T): Setting<T> =>
  (raw) =>
    setting(raw) ?? def;
/**
 * A URL of one of `schemes` (without the colon); `list`: several, separated by commas (NATS
 * cluster seeds). A NATS entry may leave out its scheme (`host:port`), as the client takes it.
 * Checked here so that a bad one names its variable instead of failing later with a stack.
 */
const urls =
  (def: string, schemes: readonly string[], opts: { list?: boolean; bare?: string } = {}): Setting<string> =>
  (raw) => {
    if (raw === undefined) return def;
    const entries = opts.list === true ? raw.split(',').map((e) => e.trim()) : [raw];
    for (const entry of entries) {
      const text = opts.bare !== undefined && !entry.includes('://') ? `${opts.bare}://${entry}` : entry;
      if (entry === '' || !isUrlOf(text, schemes)) {
        const what = schemes.map((x) => `${x}://`).join(' or ');
        throw new Error(
          `expected a ${what} URL${opts.list === true ? ' (or several, comma-separated)' : ''}, got ${quoted(entry)}`,
        );
      }
    }
    return raw;
  };
/** Whether `text` is a URL (no whitespace) of one of `schemes` (without the colon). */
function isUrlOf(text: string, schemes: readonly string[]): boolean {
  if (/\s/.test(text)) return false;
  try {
    return schemes.includes(new URL(text).protocol.slice(0, -1));
  } catch {
    return false;
  }
}

/** Optional text of at least `min` characters. */
const optional =
  (min = 1): Setting<string | undefined> =>
  (raw) => {
    if (raw !== undefined && raw.length < min) throw new Error(`must be at least ${min} characters long`);
    return raw;
  };

/**
 * Every setting, by environment variable. README.md's configuration table lists the same names,
 * defaults and meanings.
 */
const schema = {
  PUSH_PREFIX: withDefault(
    matching(/^[a-z][a-z0-9_]{0,31}$/, 'a lowercase letter, then up to 31 lowercase letters, digits or _'),
    'push',
  ),
  PUSH_NATS_URL: urls('nats://127.0.0.1:4222', ['nats', 'tls'], { list: true, bare: 'nats' }),
  PUSH_NATS_USER: optional(),
  PUSH_NATS_PASSWORD: optional(),
  PUSH_REDIS_URL: urls('redis://127.0.0.1:6379', ['redis', 'rediss']),
  PUSH_DATABASE_URL: urls('postgres://postgres@127.0.0.1:5432/push', ['postgres', 'postgresql']),
  PUSH_LOG_LEVEL: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info'),
  PUSH_LOG_PRETTY: bool(false),
  PUSH_PRESENCE_LEASE: int(15, 1, 3600),
  PUSH_TOKEN_MAX_LIFETIME: int(30 * 24 * 3600, 60),

  PUSH_INBOX_MAX_PER_USER: int(10_000, 1, 1_000_000),
  // At most 100 years: JetStream's max age is int64 nanoseconds (about 292 years).
  PUSH_INBOX_MAX_AGE: int(30 * 24 * 3600, 60, 100 * 365 * 24 * 3600),
  PUSH_DUPLICATE_WINDOW: int(120, 1, 24 * 3600),
  PUSH_REPLICAS: int(1, 1, 5),
  PUSH_STORE_TIMEOUT_MS: int(15_000, 100, 60_000),

  PUSH_EDGE_HOST: str('0.0.0.0'),
  PUSH_EDGE_PORT: int(8081, 0, 65535),
  PUSH_EDGE_WORKERS: int(0, 0, 256),
  PUSH_EDGE_MAX_CONNECTIONS: int(19_000, 1, 10_000_000),
  PUSH_EDGE_LISTEN_SOCKETS: int(4, 1, 64),
  PUSH_EDGE_WINDOW: int(100, 1, 10_000),
  PUSH_EDGE_MAX_BACKPRESSURE: int(64 * 1024, 1024, 64 * 1024 * 1024),
  PUSH_EDGE_MAX_FRAME: int(1024 * 1024, 1024, 64 * 1024 * 1024),
  PUSH_EDGE_IDLE_TIMEOUT: int(60, 8, 960),
  PUSH_EDGE_PING_DEFAULT: int(25, 1, 900),
  PUSH_EDGE_PING_MIN: int(10, 1, 900),
  PUSH_EDGE_PING_MAX: int(600, 1, 900),
  PUSH_EDGE_RETRY_AFTER: int(5, 1, 3600),
  PUSH_EDGE_DRAIN_MS: int(5000, 0, 120_000),
  PUSH_EDGE_MAX_APPS_PER_CONNECTION: int(16, 1, 1024),
  PUSH_EDGE_ID: matching(/^[A-Za-z0-9_-]{1,64}$/, '1 to 64 letters, digits, _ or -'),
  PUSH_EDGE_MAX_CONNECTIONS_PER_IP: int(0, 0, 10_000_000),
  PUSH_EDGE_CONNECT_RATE_PER_IP: int(0, 0, 1_000_000),
  PUSH_EDGE_TRUSTED_PROXIES: str(''),

  PUSH_CENTER_HOST: str('0.0.0.0'),
  PUSH_CENTER_PORT: int(8080, 0, 65535),
  PUSH_CENTER_MAX_BODY: int(4 * 1024 * 1024, 1024, 256 * 1024 * 1024),
  PUSH_CENTER_MAX_BATCH: int(1000, 1, 100_000),
  PUSH_ADMIN_KEY: optional(16),

  PUSH_JOB_RUNNERS: int(4, 0, 1000),
  PUSH_JOB_LEASE: int(15, 1, 3600),
  PUSH_JOB_MAX_USERS: int(1_000_000, 1, 100_000_000),

  PUSH_COORDINATOR_HOST: str('0.0.0.0'),
  PUSH_COORDINATOR_PORT: int(8083, 0, 65535),
  PUSH_WEBHOOK_BATCH_MAX: int(100, 1, 10_000),
  PUSH_WEBHOOK_BATCH_BYTES: int(256 * 1024, 1024, 16 * 1024 * 1024),
  PUSH_WEBHOOK_LINGER_MS: int(20, 0, 60_000),
  PUSH_DISPATCHER_HOST: str('0.0.0.0'),
  PUSH_DISPATCHER_PORT: int(8082, 0, 65535),
  PUSH_DISPATCHER_EDGES: str('ws://127.0.0.1:8081/ws'),

  // The center's API holds API and admin keys: no page of another origin unless named. The
  // dispatcher's answers are public: any page by default.
  PUSH_CORS_ORIGINS: str('none'),
  PUSH_DISPATCHER_CORS: str('*'),
} satisfies Record<string, Setting<unknown>>;

export type RawConfig = { [K in keyof typeof schema]: ReturnType<(typeof schema)[K]> };

/** Every setting read from `env` (its `PUSH_*` variables, an empty one as unset), and the problems. */
function parseSettings(env: Record<string, string>): { raw: RawConfig; problems: string[] } {
  const raw: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [name, setting] of Object.entries(schema) as Array<[string, Setting<unknown>]>) {
    try {
      raw[name] = setting(env[name]);
    } catch (err) {
      problems.push(`${name}: ${(err as Error).message}`);
    }
  }
  return { raw: raw as RawConfig, problems };
}

/** The parsed, frozen configuration of a process. */
export interface Config {
  prefix: string;
  /** One NATS URL, or several separated by commas (cluster seeds). */
  natsUrl: string;
  /** User and password for NATS (accounts, see nats/accounts.conf), when set. */
  natsAuth: { user: string; pass: string } | undefined;
  redisUrl: string;
  databaseUrl: string;
  /**
   * Seconds an edge's presence lease lasts unrenewed; the entries of an edge that died without a
   * goodbye are removed within 4/3 of it.
   */
  presenceLeaseSeconds: number;
  /** Most seconds a client token's `exp` may lie ahead; a later one is refused (`token_exp_too_far`). */
  tokenMaxLifetimeSeconds: number;
  log: { level: RawConfig['PUSH_LOG_LEVEL']; pretty: boolean };
  inbox: {
    maxPerUser: number;
    maxAgeSeconds: number;
    duplicateWindowSeconds: number;
    replicas: number;
    timeoutMs: number;
  };
  edge: {
    host: string;
    port: number;
    /** Worker processes sharing the port (SO_REUSEPORT); resolved from 0 to the core count. */
    workers: number;
    maxConnections: number;
    /** Listen sockets per worker on the port (SO_REUSEPORT): the accept backlog is 512 per socket. */
    listenSockets: number;
    /** Most unacked messages in flight per connection. */
    window: number;
    maxBackpressureBytes: number;
    maxFrameBytes: number;
    idleTimeoutSeconds: number;
    ping: { defaultSeconds: number; minSeconds: number; maxSeconds: number };
    retryAfterSeconds: number;
    drainMs: number;
    id: string | undefined;
    /** Access policy (issue 17): per client IP (or IPv6 /64), 0 = no limit. */
    perIp: {
      /** Most open connections from one IP on this edge (both doors). */
      maxConnections: number;
      /** Upgrades per second from one IP (bursts up to one second's worth). */
      connectRate: number;
    };
    /** CIDRs of the proxies whose `X-Forwarded-For` is believed (empty: none). */
    trustedProxies: string[];
    /** Most app sessions one connection may hold (its first app and those it `attach`es). */
    maxAppsPerConnection: number;
  };
  center: {
    host: string;
    port: number;
    maxBodyBytes: number;
    maxBatch: number;
    adminKey: string | undefined;
    /** Browser origins the center's HTTP API answers with CORS headers (exact origins, `*`, or none). */
    corsOrigins: string[];
  };
  /** Fan-out jobs (run by centers). */
  jobs: {
    /** Jobs one center runs at once (of different apps); 0 = this center runs none. */
    runners: number;
    /**
     * Seconds a center's claim on a job lasts unrenewed: a job whose center died is taken over
     * by another once it lapses (renewed every 250 ms while the job runs).
     */
    leaseSeconds: number;
    /** Most users one job may have. */
    maxUsers: number;
  };
  coordinator: {
    host: string;
    port: number;
    /** Webhook batches: most items, most bytes of items, and the longest wait for more before a POST (ms). */
    webhookBatch: { maxItems: number; maxBytes: number; lingerMs: number };
  };
  /** `corsOrigins`: browser origins the dispatcher answers with CORS headers (`*` by default). */
  dispatcher: {
    host: string;
    port: number;
    /** Edge URLs, in the order configured. */
    edges: string[];
    /** The region label of each labelled edge (`eu=ws://...` in PUSH_DISPATCHER_EDGES), by URL. */
    regions: Record<string, string>;
    corsOrigins: string[];
  };
}

/** Thrown when the environment does not describe a valid configuration; lists every problem. */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/**
 * `PUSH_*` variables in `env` that no setting reads: most likely misspelled, and silently
 * ignored otherwise. Variables of the tests and benchmarks (`PUSH_TEST_*`, `PUSH_BENCH_*`) and of
 * the scripts (`PUSH_NATS_SERVER_BIN`, which make dev and make test export from
 * .data/services.env) are not settings and not reported.
 */
export function unknownSettings(env: Record<string, string | undefined> = process.env): string[] {
  const known = new Set(Object.keys(schema));
  return Object.keys(env)
    .filter((k) => k.startsWith('PUSH_') && !known.has(k) && !/^PUSH_(TEST|BENCH)_|^PUSH_NATS_SERVER_BIN$/.test(k))
    .sort();
}

/**
 * Parses the environment (process.env by default) into a frozen Config. Throws ConfigError
 * listing every bad variable at once.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const relevant: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (k.startsWith('PUSH_') && v !== undefined && v !== '') relevant[k] = v;
  const parsed = parseSettings(relevant);
  if (parsed.problems.length > 0) throw new ConfigError(parsed.problems);
  const r = parsed.raw;
  const problems: string[] = [];
  if (r.PUSH_EDGE_PING_MIN > r.PUSH_EDGE_PING_MAX)
    problems.push('PUSH_EDGE_PING_MIN: must not exceed PUSH_EDGE_PING_MAX');
  if (r.PUSH_EDGE_PING_DEFAULT < r.PUSH_EDGE_PING_MIN || r.PUSH_EDGE_PING_DEFAULT > r.PUSH_EDGE_PING_MAX) {
    problems.push('PUSH_EDGE_PING_DEFAULT: must lie between PUSH_EDGE_PING_MIN and PUSH_EDGE_PING_MAX');
  }
  if (r.PUSH_DUPLICATE_WINDOW > r.PUSH_INBOX_MAX_AGE)
    problems.push('PUSH_DUPLICATE_WINDOW: must not exceed PUSH_INBOX_MAX_AGE (a message is not kept longer)');
  // A job's copies keep their idempotency ids; a center that takes over a job whose center died
  // after its lease redoes the last chunk, which the window must still dedupe.
  if (r.PUSH_JOB_LEASE >= r.PUSH_DUPLICATE_WINDOW)
    problems.push(
      'PUSH_JOB_LEASE: must be below PUSH_DUPLICATE_WINDOW (a resumed job relies on it to store nothing twice)',
    );
  if ((r.PUSH_NATS_USER === undefined) !== (r.PUSH_NATS_PASSWORD === undefined)) {
    problems.push('PUSH_NATS_USER: set it together with PUSH_NATS_PASSWORD');
  }
  const centerCors = originList('PUSH_CORS_ORIGINS', r.PUSH_CORS_ORIGINS, problems);
  const dispatcherCors = originList('PUSH_DISPATCHER_CORS', r.PUSH_DISPATCHER_CORS, problems);
  const dispatcherEdges = labelledEdges(r.PUSH_DISPATCHER_EDGES, problems);
  const trustedProxies = commaList(r.PUSH_EDGE_TRUSTED_PROXIES);
  const proxyProblem = cidrListProblem('PUSH_EDGE_TRUSTED_PROXIES', trustedProxies);
  if (proxyProblem !== undefined) problems.push(proxyProblem);
  if (problems.length > 0) throw new ConfigError(problems);
  const config: Config = {
    prefix: r.PUSH_PREFIX,
    natsUrl: r.PUSH_NATS_URL,
    natsAuth:
      r.PUSH_NATS_USER !== undefined && r.PUSH_NATS_PASSWORD !== undefined
        ? { user: r.PUSH_NATS_USER, pass: r.PUSH_NATS_PASSWORD }
        : undefined,
    redisUrl: r.PUSH_REDIS_URL,
    databaseUrl: r.PUSH_DATABASE_URL,
    presenceLeaseSeconds: r.PUSH_PRESENCE_LEASE,
    tokenMaxLifetimeSeconds: r.PUSH_TOKEN_MAX_LIFETIME,
    log: { level: r.PUSH_LOG_LEVEL, pretty: r.PUSH_LOG_PRETTY },
    inbox: {
      maxPerUser: r.PUSH_INBOX_MAX_PER_USER,
      maxAgeSeconds: r.PUSH_INBOX_MAX_AGE,
      duplicateWindowSeconds: r.PUSH_DUPLICATE_WINDOW,
      replicas: r.PUSH_REPLICAS,
      timeoutMs: r.PUSH_STORE_TIMEOUT_MS,
    },
    edge: {
      host: r.PUSH_EDGE_HOST,
      port: r.PUSH_EDGE_PORT,
      workers: r.PUSH_EDGE_WORKERS === 0 ? os.availableParallelism() : r.PUSH_EDGE_WORKERS,
      maxConnections: r.PUSH_EDGE_MAX_CONNECTIONS,
      listenSockets: r.PUSH_EDGE_LISTEN_SOCKETS,
      window: r.PUSH_EDGE_WINDOW,
      maxBackpressureBytes: r.PUSH_EDGE_MAX_BACKPRESSURE,
      maxFrameBytes: r.PUSH_EDGE_MAX_FRAME,
      idleTimeoutSeconds: r.PUSH_EDGE_IDLE_TIMEOUT,
      ping: {
        defaultSeconds: r.PUSH_EDGE_PING_DEFAULT,
        minSeconds: r.PUSH_EDGE_PING_MIN,
        maxSeconds: r.PUSH_EDGE_PING_MAX,
      },
      retryAfterSeconds: r.PUSH_EDGE_RETRY_AFTER,
      drainMs: r.PUSH_EDGE_DRAIN_MS,
      id: r.PUSH_EDGE_ID,
      perIp: { maxConnections: r.PUSH_EDGE_MAX_CONNECTIONS_PER_IP, connectRate: r.PUSH_EDGE_CONNECT_RATE_PER_IP },
      trustedProxies,
      maxAppsPerConnection: r.PUSH_EDGE_MAX_APPS_PER_CONNECTION,
    },
    center: {
      host: r.PUSH_CENTER_HOST,
      port: r.PUSH_CENTER_PORT,
      maxBodyBytes: r.PUSH_CENTER_MAX_BODY,
      maxBatch: r.PUSH_CENTER_MAX_BATCH,
      adminKey: r.PUSH_ADMIN_KEY,
      corsOrigins: centerCors,
    },
    jobs: { runners: r.PUSH_JOB_RUNNERS, leaseSeconds: r.PUSH_JOB_LEASE, maxUsers: r.PUSH_JOB_MAX_USERS },
    coordinator: {
      host: r.PUSH_COORDINATOR_HOST,
      port: r.PUSH_COORDINATOR_PORT,
      webhookBatch: {
        maxItems: r.PUSH_WEBHOOK_BATCH_MAX,
        maxBytes: r.PUSH_WEBHOOK_BATCH_BYTES,
        lingerMs: r.PUSH_WEBHOOK_LINGER_MS,
      },
    },
    dispatcher: {
      host: r.PUSH_DISPATCHER_HOST,
      port: r.PUSH_DISPATCHER_PORT,
      edges: dispatcherEdges.map((e) => e.url),
      regions: Object.fromEntries(dispatcherEdges.filter((e) => e.region !== '').map((e) => [e.url, e.region])),
      corsOrigins: dispatcherCors,
    },
  };
  return deepFreeze(config);
}

/** The non-empty entries of a comma-separated list, trimmed. */
function commaList(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/**
 * PUSH_DISPATCHER_EDGES: edge URLs, each optionally labelled with its region (`eu=wss://a/ws`).
 * A label is 1-32 of `a-z 0-9 -`; an edge listed twice is a problem (rendezvous ranks URLs).
 */
function labelledEdges(value: string, problems: string[]): Array<{ url: string; region: string }> {
  const out: Array<{ url: string; region: string }> = [];
  for (const entry of commaList(value)) {
    const m = /^([^=:/]*)=(.*)$/.exec(entry);
    const region = m?.[1] ?? '';
    const url = (m?.[2] ?? entry).trim();
    if (m !== null && !REGION_LABEL.test(region)) {
      problems.push(
        `PUSH_DISPATCHER_EDGES: ${JSON.stringify(entry)}: a region label is 1 to 32 of a-z 0-9 - (eu=wss://host/ws)`,
      );
    } else if (!isUrlOf(url, ['ws', 'wss'])) {
      problems.push(`PUSH_DISPATCHER_EDGES: ${JSON.stringify(url)} is not a ws:// or wss:// URL`);
    } else if (out.some((e) => e.url === url)) {
      problems.push(`PUSH_DISPATCHER_EDGES: ${JSON.stringify(url)} is listed twice`);
    } else out.push({ url, region });
  }
  return out;
}

/**
 * A comma-separated list of browser origins: `*` (any page), exact origins
 * (`scheme://host[:port]`, as a browser sends them in `Origin`: no path, no trailing slash), or
 * `none` (an empty variable means the default). A value that is no origin could never match and
 * would silently leave CORS off, so it is a problem.
 */
function originList(name: string, value: string, problems: string[]): string[] {
  const out: string[] = [];
  for (const o of value.split(',').map((s) => s.trim())) {
    if (o === '' || o === 'none') continue;
    let origin = '';
    try {
      origin = new URL(o).origin;
    } catch {
      // Not a URL: reported below.
    }
    if (o !== '*' && origin !== o) {
      problems.push(`${name}: ${JSON.stringify(o)} is not an origin (scheme://host[:port], no path), * or none`);
    } else out.push(o);
  }
  return out;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
