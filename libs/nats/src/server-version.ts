/**
 * The oldest nats-server the store accepts. 2.11 brought what the inbox store builds on: the
 * batched Direct Get (a user's backlog in one request), per-message TTL (`Nats-TTL`) and a purge
 * of one subject up to a sequence without the 2.9 consumer bug; 2.9 also costs 4-5x the server
 * CPU per delete (issue 8's measurements).
 */
export const MIN_NATS_SERVER_VERSION = '2.11.0';

/** How an operator gets a current server; part of every "too old" message. */
export const NATS_SERVER_HOWTO =
  'get one with scripts/nats-server.sh (prints the path of a current binary, fetching it when needed), ' +
  'a release from https://github.com/nats-io/nats-server/releases, ' +
  '`go install github.com/nats-io/nats-server/v2@latest`, or the official image nats:2.11-alpine or newer';

/** A parsed `major.minor.patch[-prerelease]` version. */
interface Version {
  major: number;
  minor: number;
  patch: number;
  /** Dot-separated prerelease identifiers (`RC.1` -> ['RC', '1']), empty for a release. */
  pre: string[];
}

const VERSION_RE = /^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/;

/** Parses a server version such as `2.15.1`, `v2.9.10` or `2.12.0-RC.1`; undefined when it is not one. */
export function parseServerVersion(text: string): Version | undefined {
  const m = VERSION_RE.exec(text.trim());
  if (m === null) return undefined;
  const [, major, minor, patch, pre] = m;
  return {
    major: Number(major),
    minor: Number(minor),
    patch: Number(patch),
    pre: pre === undefined ? [] : pre.split('.'),
  };
}

/** Semver precedence of two prerelease lists (an empty list, a release, ranks highest). */
function comparePre(a: string[], b: string[]): number {
  if (a.length === 0 || b.length === 0) return b.length - a.length;
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i] ?? '';
    const y = b[i] ?? '';
    if (x === y) continue;
    const xn = /^\d+$/.test(x);
    const yn = /^\d+$/.test(y);
    if (xn && yn) return Number(x) - Number(y);
    if (xn !== yn) return xn ? -1 : 1;
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

/**
 * Compares two versions by semver precedence: negative when `a` is older, 0 when equal, positive
 * when newer. A prerelease ranks below its release (2.11.0-RC.1 < 2.11.0 < 2.11.1). Throws on
 * text that is not a version.
 */
export function compareServerVersions(a: string, b: string): number {
  const x = parseServerVersion(a);
  const y = parseServerVersion(b);
  if (x === undefined) throw new Error(`not a version: ${JSON.stringify(a)}`);
  if (y === undefined) throw new Error(`not a version: ${JSON.stringify(b)}`);
  return x.major - y.major || x.minor - y.minor || x.patch - y.patch || comparePre(x.pre, y.pre);
}

/**
 * True when `found` is `needed` or newer. A missing or unreadable version is not new enough:
 * a server that cannot say what it is cannot be trusted to have the features the store uses.
 */
export function isServerVersionAtLeast(found: string | undefined, needed = MIN_NATS_SERVER_VERSION): boolean {
  if (found === undefined || parseServerVersion(found) === undefined) return false;
  return compareServerVersions(found, needed) >= 0;
}

/**
 * The server the apps connected to is older than they need. Thrown by `connectNats` (after it has
 * closed the connection) so that a process refuses to start instead of failing later in odd ways.
 * `code` is stable; the message names the version found, the version needed and how to get one.
 */
export class NatsServerTooOldError extends Error {
  readonly code = 'nats_server_too_old';

  constructor(
    /** The version the server reported (`unknown` when it reported none). */
    readonly found: string,
    /** The oldest version accepted. */
    readonly needed: string,
    /** The server that answered. */
    readonly server: string,
  ) {
    super(
      `nats-server ${found} at ${server} is too old: push needs nats-server ${needed} or newer; ${NATS_SERVER_HOWTO}, ` +
        'and point PUSH_NATS_URL at it',
    );
    this.name = 'NatsServerTooOldError';
  }
}
