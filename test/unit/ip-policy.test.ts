import { expect } from 'chai';
import { DEFAULT_APP_SETTINGS, canonicalIp, parseCidr, settingsProblem, type AppSettings } from '@push/protocol';
import { IpPolicy, MAX_RATE_BUCKETS, ipv4Peer, limitKey } from '../../apps/edge/src/ip-policy.js';

const policy = (trustedProxies: string[] = [], maxConnections = 0, connectRate = 0) =>
  new IpPolicy({ trustedProxies, perIp: { maxConnections, connectRate } });
const settings = (s: Partial<AppSettings>): AppSettings => ({ ...DEFAULT_APP_SETTINGS, ...s });

describe('IpPolicy: client addresses, app CIDRs, per-IP limits (issue 17 item 5)', function () {
  it('reads the peer in canonical form (uWS writes IPv6 in full; IPv4-mapped becomes IPv4)', function () {
    const p = policy();
    expect(p.clientIp('0000:0000:0000:0000:0000:0000:0000:0001', '')).to.equal('::1');
    expect(p.clientIp('0000:0000:0000:0000:0000:ffff:7f00:0001', '')).to.equal('127.0.0.1');
    expect(p.clientIp('203.0.113.5', '198.51.100.1')).to.equal('203.0.113.5'); // no trusted proxies
  });

  it("reads uWS's raw peer address: IPv4 and IPv4-mapped in dotted form, IPv6 left to the text form", function () {
    const mapped = (a: number, b: number, c: number, d: number) =>
      new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, a, b, c, d]);
    expect(ipv4Peer(mapped(127, 0, 0, 2))).to.equal('127.0.0.2');
    expect(ipv4Peer(mapped(203, 0, 113, 255))).to.equal('203.0.113.255');
    expect(ipv4Peer(new Uint8Array([10, 1, 2, 3]))).to.equal('10.1.2.3');
    // ::1, and an address whose bytes 10-11 are ffff but not under the mapped prefix.
    expect(ipv4Peer(new Uint8Array([...new Array<number>(15).fill(0), 1]))).to.equal(undefined);
    const notMapped = mapped(1, 2, 3, 4);
    notMapped[0] = 0x20;
    expect(ipv4Peer(notMapped)).to.equal(undefined);
    expect(ipv4Peer(new Uint8Array(0))).to.equal(undefined);
    // Whatever form it came in, the policy reads the same address.
    expect(policy().clientIp(ipv4Peer(mapped(127, 0, 0, 1)) as string, '')).to.equal(
      policy().clientIp('0000:0000:0000:0000:0000:ffff:7f00:0001', ''),
    );
  });

  it('walks X-Forwarded-For from the right through trusted proxies only', function () {
    const p = policy(['10.0.0.0/8', 'fd00::/8']);
    expect(p.clientIp('192.0.2.1', '198.51.100.7')).to.equal('192.0.2.1'); // untrusted peer
    expect(p.clientIp('10.0.0.1', '198.51.100.7')).to.equal('198.51.100.7');
    expect(p.clientIp('10.0.0.1', '203.0.113.9, 198.51.100.7, 10.2.2.2')).to.equal('198.51.100.7');
    expect(p.clientIp('10.0.0.1', ' 2001:DB8::1 , fd00::5')).to.equal('2001:db8::1');
    expect(p.clientIp('10.0.0.1', '[2001:db8::2]:443')).to.equal('2001:db8::2');
    expect(p.clientIp('10.0.0.1', '198.51.100.8:5000')).to.equal('198.51.100.8');
    // Garbage ends the walk at the last address: here the trusted hop itself.
    expect(p.clientIp('10.0.0.1', 'unknown, 10.3.3.3')).to.equal('10.3.3.3');
    expect(p.clientIp('10.0.0.1', '')).to.equal('10.0.0.1');
  });

  it('counts IPv6 by /64 and IPv4 by address', function () {
    expect(limitKey('2001:db8:1:2::10')).to.equal('2001:db8:1:2::/64');
    expect(limitKey('2001:db8:1:2:ffff::1')).to.equal('2001:db8:1:2::/64');
    expect(limitKey('::1')).to.equal('0:0:0:0::/64');
    expect(limitKey('2001:0db8::')).to.equal('2001:db8:0:0::/64');
    expect(limitKey('198.51.100.7')).to.equal('198.51.100.7');
  });

  it('applies allowedCidrs (empty = any) and deniedCidrs, IPv4 rules also to IPv4-mapped addresses, IPv6 rules never to IPv4', function () {
    const p = policy();
    const s = settings({ allowedCidrs: ['10.0.0.0/8', '2001:db8::/32'], deniedCidrs: ['10.9.0.0/16'] });
    expect(p.appRefusal(s, '10.1.2.3')).to.equal(undefined);
    expect(p.appRefusal(s, '2001:db8::1')).to.equal(undefined);
    expect(p.appRefusal(s, '10.9.1.1')?.code).to.equal('ip_not_allowed');
    expect(p.appRefusal(s, '192.0.2.1')?.code).to.equal('ip_not_allowed');
    expect(p.appRefusal(s, '::ffff:192.0.2.1')?.code).to.equal('ip_not_allowed');
    expect(p.appRefusal(settings({}), '192.0.2.1')).to.equal(undefined);
    expect(p.appRefusal(settings({ deniedCidrs: ['::/0'] }), '192.0.2.1')).to.equal(undefined);
    expect(p.appRefusal(settings({ deniedCidrs: ['::/0'] }), '2001:db8::1')?.code).to.equal('ip_not_allowed');
    expect(p.appRefusal(settings({ allowedCidrs: ['0.0.0.0/0'] }), '2001:db8::1')?.code).to.equal('ip_not_allowed');
  });

  it('limits open connections per IP; a close frees one; nothing is held for an IP with none open', function () {
    const p = policy([], 2);
    for (let i = 0; i < 2; i++) {
      expect(p.admit('192.0.2.1')).to.equal(undefined);
      p.opened('192.0.2.1');
    }
    expect(p.admit('192.0.2.1')?.code).to.equal('ip_connection_limit');
    expect(p.admit('192.0.2.2')).to.equal(undefined);
    p.closed('192.0.2.1');
    expect(p.admit('192.0.2.1')).to.equal(undefined);
    p.closed('192.0.2.1');
    expect(p.trackedIps).to.equal(0);
  });

  it('limits the connect rate per IP, refused attempts counting too', function () {
    const p = policy([], 0, 2);
    expect(p.admit('192.0.2.1', 0)).to.equal(undefined);
    expect(p.admit('192.0.2.1', 0)).to.equal(undefined);
    expect(p.admit('192.0.2.1', 0)?.code).to.equal('ip_rate_limited');
    expect(p.admit('192.0.2.1', 400)?.code).to.equal('ip_rate_limited'); // refill not reached: 0.8 token
    expect(p.admit('192.0.2.1', 1000)).to.equal(undefined);
  });

  it('holds a bounded number of rate buckets under a flood from a million addresses', function () {
    const p = policy([], 0, 5);
    for (let i = 0; i < 1_000_000; i++) {
      p.admit(`${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}.1`, 1000 + Math.floor(i / 1000));
      if (i % 10_000 === 0) expect(p.rateBuckets).to.be.at.most(MAX_RATE_BUCKETS);
    }
    expect(p.rateBuckets).to.be.at.most(MAX_RATE_BUCKETS);
    // Once the flood is over, buckets full again are forgotten in passing.
    p.admit('192.0.2.1', 10_000_000);
    expect(p.rateBuckets).to.equal(1);
  });

  it('parses CIDRs and explains bad ones; settingsProblem names the entry', function () {
    expect(parseCidr('10.0.0.0/8')).to.deep.equal({ address: '10.0.0.0', prefix: 8, family: 'ipv4' });
    expect(parseCidr('::1')).to.deep.equal({ address: '::1', prefix: 128, family: 'ipv6' });
    for (const bad of ['10.0.0.0/33', '10.0.0.0/', '10.0.0/8', 'x', '::1/129', '10.0.0.0/8/8', '10.0.0.0/-1']) {
      expect(parseCidr(bad), bad).to.be.a('string');
    }
    const e = settingsProblem({ deniedCidrs: ['10.0.0.0/8', 'nope'] });
    expect(e?.code).to.equal('invalid_cidr');
    expect(e?.message).to.contain('settings.deniedCidrs[1]');
    expect(settingsProblem({ allowedCidrs: ['2001:db8::/32'] })).to.equal(undefined);
    expect(canonicalIp('fe80::1%eth0')).to.equal('fe80::1');
    expect(canonicalIp('nope')).to.equal(undefined);
  });
});
