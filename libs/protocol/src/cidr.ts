import { BlockList, isIP, SocketAddress } from 'node:net';

/** Most CIDRs one list may hold (an app's `allowedCidrs`/`deniedCidrs`, `PUSH_EDGE_TRUSTED_PROXIES`). */
export const MAX_CIDRS = 1000;

/** One parsed CIDR: its network address, prefix length and family. */
export interface Cidr {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/**
 * Parses `10.0.0.0/8`, `2001:db8::/32`, or a bare address (`192.0.2.7` = `/32`, `::1` = `/128`).
 * Host bits past the prefix are ignored (`10.1.2.3/8` is `10.0.0.0/8`). Returns the reason it is
 * not a CIDR, as a string, when it is not.
 */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  const version = isIP(address);
  if (version === 0)
    return `${JSON.stringify(text.slice(0, 100))} is not an IPv4 or IPv6 address or CIDR (such as 10.0.0.0/8 or 2001:db8::/32)`;
  const max = version === 4 ? 32 : 128;
  const prefixText = slash < 0 ? String(max) : text.slice(slash + 1);
  const prefix = Number(prefixText);
  if (!/^\d{1,3}$/.test(prefixText) || prefix > max) {
    return `${JSON.stringify(text.slice(0, 100))}: the prefix length must be 0 to ${max}`;
  }
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** The problem with a list of CIDRs (`name[i]: why`), or undefined when every entry parses. */
export function cidrListProblem(name: string, list: readonly string[]): string | undefined {
  if (list.length > MAX_CIDRS) return `${name} must list at most ${MAX_CIDRS} CIDRs`;
  for (let i = 0; i < list.length; i++) {
    const c = parseCidr(list[i] ?? '');
    if (typeof c === 'string') return `${name}[${i}]: ${c}`;
  }
  return undefined;
}

/**
 * A set of CIDRs to test addresses against. Each family has its own BlockList: node's matches an
 * IPv4 address against IPv6 rules too (as `::ffff:a.b.c.d`), so `::/0` would also take in every
 * IPv4 address. Entries that do not parse are skipped (lists are checked with `cidrListProblem`
 * when they are set).
 */
export class CidrSet {
  private readonly v4 = new BlockList();
  private readonly v6 = new BlockList();

  constructor(list: readonly string[]) {
    for (const text of list) {
      const c = parseCidr(text);
      if (typeof c !== 'string') (c.family === 'ipv4' ? this.v4 : this.v6).addSubnet(c.address, c.prefix, c.family);
    }
  }

  /** Whether a canonical address (`canonicalIp`: IPv4-mapped ones as IPv4) is in the set. */
  has(ip: string): boolean {
    return ip.includes(':') ? this.v6.check(ip, 'ipv6') : this.v4.check(ip, 'ipv4');
  }
}

/**
 * An address in one canonical text form, or undefined when `text` is none: IPv6 compressed and
 * lower case (`2001:db8::1`, as uWS's `0000:...:0001` becomes `::1`), an IPv4-mapped IPv6 address
 * as plain IPv4 (`::ffff:10.0.0.1` -> `10.0.0.1`), a zone id (`%eth0`) dropped.
 */
export function canonicalIp(text: string): string | undefined {
  const version = isIP(text);
  if (version === 4) return text;
  if (version !== 6) return undefined;
  const bare = text.replace(/%.*$/, '');
  const a = new SocketAddress({ address: bare, family: 'ipv6' }).address.toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  return mapped?.[1] ?? a;
}
