import { TokenBucket } from '@push/apps';
import type { Config } from '@push/config';
import { CidrSet, PushError, canonicalIp, type AppSettings } from '@push/protocol';

/**
 * Connect-rate buckets held at most: past it, buckets full again are forgotten at once, then the
 * oldest (forgetting a bucket only gives its IP a fresh burst), so a flood from many addresses
 * holds a bounded map (about 100 bytes a bucket).
 */
export const MAX_RATE_BUCKETS = 100_000;

/** How often, at most, full buckets are forgotten in passing, ms. */
const PRUNE_EVERY_MS = 5_000;

/**
 * The peer's IPv4 address in dotted form from uWS's raw address (4 bytes, or 16 with the
 * IPv4-mapped prefix `::ffff:` a dual-stack socket gives IPv4 clients); undefined for IPv6, whose
 * text form `clientIp` reads. The text form of a mapped address is eight hex groups that only a
 * full IPv6 parse (`canonicalIp`) turns back into dotted form, on every connect.
 */
export function ipv4Peer(b: Uint8Array): string | undefined {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length !== 16 || b[10] !== 255 || b[11] !== 255) return undefined;
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return undefined;
  return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
}

/** An app's CIDR lists as CidrSets, built once per settings object (a change brings a new one). */
interface AppCidrs {
  allowed: CidrSet | undefined;
  denied: CidrSet | undefined;
}

/**
 * The edge's access policy by client address (docs/operations.md "Access policy"), shared by both
 * doors (`/ws` and the Pusher door):
 * - the client's address: the socket's peer, or, when the peer is one of
 *   `PUSH_EDGE_TRUSTED_PROXIES`, the right-most address of `X-Forwarded-For` that is not a
 *   trusted proxy (what a client writes in the header itself is left of what its proxy appends,
 *   so it is never believed);
 * - per app: `allowedCidrs` and `deniedCidrs`;
 * - per edge: open connections per IP and upgrades per second per IP (an IPv6 client counts by
 *   its /64, the block one subscriber holds), each kept in memory bounded by the open
 *   connections and `MAX_RATE_BUCKETS`.
 */
export class IpPolicy {
  private readonly trusted: CidrSet | undefined;
  private readonly maxPerIp: number;
  private readonly rate: number;
  /** Open connections by limit key; an entry goes when its count reaches 0. */
  private readonly open = new Map<string, number>();
  private readonly buckets = new Map<string, TokenBucket>();
  private prunedAt = 0;
  private readonly appCidrs = new WeakMap<AppSettings, AppCidrs>();

  constructor(config: Pick<Config['edge'], 'perIp' | 'trustedProxies'>) {
    this.trusted = config.trustedProxies.length > 0 ? new CidrSet(config.trustedProxies) : undefined;
    this.maxPerIp = config.perIp.maxConnections;
    this.rate = config.perIp.connectRate;
  }

  /** Limit keys with open connections now (for tests and metrics). */
  get trackedIps(): number {
    return this.open.size;
  }

  /** Connect-rate buckets held now. */
  get rateBuckets(): number {
    return this.buckets.size;
  }

  /**
   * The client's address from the socket's peer address (uWS text form, or `ipv4Peer`'s) and the
   * `X-Forwarded-For` header: see the class comment. An entry of the header that is no address
   * ends the walk at the last address that was one.
   */
  clientIp(peer: string, forwardedFor: string): string {
    let ip = canonicalIp(peer) ?? peer;
    if (this.trusted === undefined || forwardedFor === '') return ip;
    const hops = forwardedFor.split(',');
    for (let i = hops.length - 1; i >= 0 && this.isTrusted(ip); i--) {
      const hop = canonicalIp(stripPort((hops[i] ?? '').trim()));
      if (hop === undefined) break;
      ip = hop;
    }
    return ip;
  }

  private isTrusted(ip: string): boolean {
    return this.trusted?.has(ip) ?? false;
  }

  /**
   * Whether an upgrade from `ip` may go on under the edge's per-IP limits: a PushError
   * (`ip_rate_limited`, `ip_connection_limit`) when not. Every call counts toward the connect
   * rate, refused or not, so a client retrying in a loop stays refused until it slows down.
   */
  admit(ip: string, now = Date.now()): PushError | undefined {
    const key = limitKey(ip);
    if (this.rate > 0 && this.bucket(key, now).admitOne(this.rate, now) > 0) {
      return new PushError('ip_rate_limited');
    }
    if (this.maxPerIp > 0 && (this.open.get(key) ?? 0) >= this.maxPerIp) return new PushError('ip_connection_limit');
    return undefined;
  }

  /** A connection from `ip` opened: it counts toward `PUSH_EDGE_MAX_CONNECTIONS_PER_IP` until `closed`. */
  opened(ip: string): void {
    if (this.maxPerIp <= 0) return;
    const key = limitKey(ip);
    this.open.set(key, (this.open.get(key) ?? 0) + 1);
  }

  /** A connection counted by `opened` closed. */
  closed(ip: string): void {
    if (this.maxPerIp <= 0) return;
    const key = limitKey(ip);
    const n = (this.open.get(key) ?? 0) - 1;
    if (n > 0) this.open.set(key, n);
    else this.open.delete(key);
  }

  /**
   * Whether the app's `allowedCidrs` (empty: any) and `deniedCidrs` let `ip` connect: a
   * PushError `ip_not_allowed` when not.
   */
  appRefusal(settings: AppSettings, ip: string): PushError | undefined {
    const allowedList = settings.allowedCidrs;
    const deniedList = settings.deniedCidrs;
    if (allowedList.length === 0 && deniedList.length === 0) return undefined;
    let cidrs = this.appCidrs.get(settings);
    if (cidrs === undefined) {
      cidrs = {
        allowed: allowedList.length > 0 ? new CidrSet(allowedList) : undefined,
        denied: deniedList.length > 0 ? new CidrSet(deniedList) : undefined,
      };
      this.appCidrs.set(settings, cidrs);
    }
    if (cidrs.denied?.has(ip) === true || cidrs.allowed?.has(ip) === false) {
      return new PushError('ip_not_allowed', `this app does not take connections from ${ip}`);
    }
    return undefined;
  }

  private bucket(key: string, now: number): TokenBucket {
    let b = this.buckets.get(key);
    if (b !== undefined) return b;
    if (this.buckets.size >= MAX_RATE_BUCKETS || now - this.prunedAt >= PRUNE_EVERY_MS) this.prune(now);
    b = new TokenBucket(this.rate, now);
    this.buckets.set(key, b);
    return b;
  }

  /** Forgets full buckets; past the cap, also the oldest (down to 90% of it). */
  private prune(now: number): void {
    this.prunedAt = now;
    for (const [key, b] of this.buckets) if (b.isFull(now)) this.buckets.delete(key);
    let excess = this.buckets.size - Math.floor(MAX_RATE_BUCKETS * 0.9);
    for (const key of this.buckets.keys()) {
      if (excess-- <= 0) break;
      this.buckets.delete(key);
    }
  }
}

/** `1.2.3.4:5678` -> `1.2.3.4`, `[2001:db8::1]:443` -> `2001:db8::1` (some proxies write ports). */
function stripPort(hop: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(hop);
  if (bracketed !== null) return bracketed[1] ?? hop;
  const v4 = /^(\d+\.\d+\.\d+\.\d+):\d+$/.exec(hop);
  return v4?.[1] ?? hop;
}

/**
 * What the per-IP limits count by: an IPv4 address as is, an IPv6 address by its /64 (one
 * subscriber's block: counting each of its 2^64 addresses would be no limit at all).
 */
export function limitKey(ip: string): string {
  if (!ip.includes(':')) return ip;
  const [head = '', tail = ''] = ip.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  const groups = ip.includes('::')
    ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right]
    : left;
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}
