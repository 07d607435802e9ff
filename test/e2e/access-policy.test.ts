import { expect } from 'chai';
import WebSocket from 'ws';
import type { Edge } from '@push/edge';
import { Stack, type TestApp } from '../helpers/stack.js';

/** What became of one upgrade: a `hello` (open), an HTTP refusal, or a close before any hello. */
interface Outcome {
  open: boolean;
  status?: number;
  code?: string;
  closeCode?: number;
  closeReason?: string;
  /** The first frame (the `hello`, or Pusher's `pusher:connection_established` / `pusher:error`). */
  first?: Record<string, unknown>;
}

interface AttemptOptions {
  headers?: Record<string, string>;
  /** The client's source address (any of 127.0.0.0/8 reaches a loopback edge on Linux). */
  localAddress?: string;
  query?: string;
}

describe('access policy at the edge: CIDRs, per-IP limits, trusted proxies (issue 17 item 5)', function () {
  this.timeout(60_000);
  let stack: Stack;
  let app: TestApp;
  const sockets: WebSocket[] = [];

  before(async function () {
    stack = await Stack.start();
    app = await stack.createApp();
  });
  after(async function () {
    for (const ws of sockets) ws.terminate();
    await stack?.close();
  });

  /** Opens a socket and resolves with its outcome; an open socket stays open (closed by `after`). */
  function attempt(url: string, opts: AttemptOptions = {}): Promise<Outcome> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url + (opts.query ?? ''), {
        headers: opts.headers ?? {},
        ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}),
      });
      sockets.push(ws);
      let first: Record<string, unknown> | undefined;
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => {
          const parsed = JSON.parse(body) as { error?: { code?: string } };
          resolve({ open: false, status: res.statusCode ?? 0, code: parsed.error?.code ?? '' });
        });
      });
      ws.once('error', (err) => {
        if (!/Unexpected server response/.test(err.message)) reject(err);
      });
      ws.once('message', (data: Buffer) => {
        first = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
        if (first['t'] === 'hello' || first['event'] === 'pusher:connection_established')
          resolve({ open: true, first });
      });
      ws.once('close', (code, reason) => {
        resolve({ open: false, closeCode: code, closeReason: reason.toString(), ...(first ? { first } : {}) });
      });
    });
  }

  async function wsUrl(user: string, edge: Edge, target = app, host = '127.0.0.1'): Promise<string> {
    return `ws://${host}:${edge.port}/ws?token=${encodeURIComponent(await target.token(user))}`;
  }

  /** Closes a client's sockets and waits until the edge counted the close. */
  async function closeAll(edge: Edge): Promise<void> {
    for (const ws of sockets.splice(0)) ws.close();
    const deadline = Date.now() + 5000;
    while (edge.connectionCount > 0) {
      if (Date.now() > deadline) throw new Error('the edge did not see the closes');
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  describe('app settings allowedCidrs and deniedCidrs', function () {
    it('refuses an address outside allowedCidrs with 403 ip_not_allowed, and 4403 with refusal=close', async function () {
      const only10 = await stack.createApp({ allowedCidrs: ['10.0.0.0/8'] });
      const url = await wsUrl('u1', stack.edge, only10);
      expect(await attempt(url)).to.include({ open: false, status: 403, code: 'ip_not_allowed' });
      expect(await attempt(url, { query: '&refusal=close' })).to.include({
        open: false,
        closeCode: 4403,
        closeReason: 'ip_not_allowed',
      });
    });

    it('lets allowed addresses in, and deniedCidrs wins over allowedCidrs', async function () {
      const loop = await stack.createApp({ allowedCidrs: ['127.0.0.0/8'], deniedCidrs: ['127.0.0.66'] });
      expect(await attempt(await wsUrl('u2', stack.edge, loop), { localAddress: '127.0.0.5' })).to.include({
        open: true,
      });
      expect(
        await attempt(await wsUrl('u2', stack.edge, loop), { localAddress: '127.0.0.66', query: '&refusal=close' }),
      ).to.include({ closeCode: 4403, closeReason: 'ip_not_allowed' });
    });

    it('applies a change of the settings to the next upgrade', async function () {
      const changing = await stack.createApp();
      expect(await attempt(await wsUrl('u3', stack.edge, changing))).to.include({ open: true });
      const r = await stack.http('PATCH', `/v1/admin/apps/${changing.id}`, stack.adminKey, {
        settings: { deniedCidrs: ['127.0.0.0/8', '::1'] },
      });
      expect(r.status).to.equal(200);
      const deadline = Date.now() + 5000;
      for (;;) {
        const o = await attempt(await wsUrl('u3', stack.edge, changing));
        if (o.code === 'ip_not_allowed') break;
        if (Date.now() > deadline) throw new Error('the edge never applied deniedCidrs');
        await new Promise((res) => setTimeout(res, 20));
      }
    });

    it('rejects settings that are not CIDRs with 400 invalid_cidr naming the entry, and keeps the old ones', async function () {
      for (const bad of [['10.0.0.0/33'], ['nope'], ['10.0.0.0/8', '2001:db8::/129'], ['1.2.3.4/08x']]) {
        const r = await stack.http<{ error: { code: string; message: string } }>(
          'POST',
          '/v1/admin/apps',
          stack.adminKey,
          { settings: { allowedCidrs: bad } },
        );
        expect(r.status, JSON.stringify(bad)).to.equal(400);
        expect(r.body.error.code).to.equal('invalid_cidr');
        expect(r.body.error.message).to.contain(`settings.allowedCidrs[${bad.length - 1}]`);
      }
      const notList = await stack.http<{ error: { code: string } }>('POST', '/v1/admin/apps', stack.adminKey, {
        settings: { deniedCidrs: '10.0.0.0/8' },
      });
      expect(notList.status).to.equal(400);
      expect(notList.body.error.code).to.equal('invalid_cidr');
      const patched = await stack.http<{ error: { code: string } }>(
        'PATCH',
        `/v1/admin/apps/${app.id}`,
        stack.adminKey,
        { settings: { deniedCidrs: ['::g/64'] } },
      );
      expect(patched.body.error.code).to.equal('invalid_cidr');
      const now = await stack.http<{ app: { settings: { deniedCidrs: string[] } } }>(
        'GET',
        `/v1/admin/apps/${app.id}`,
        stack.adminKey,
      );
      expect(now.body.app.settings.deniedCidrs).to.deep.equal([]);
    });
  });

  describe('X-Forwarded-For', function () {
    let proxied: Edge;
    let only203: TestApp;

    before(async function () {
      // The proxy is 127.0.0.1; clients connecting from 127.0.0.2 are not proxies.
      proxied = await stack.startEdge({ PUSH_EDGE_TRUSTED_PROXIES: '127.0.0.1/32, 10.0.0.0/8' });
      only203 = await stack.createApp({ allowedCidrs: ['203.0.113.0/24', '2001:db8::/32'] });
    });

    it('ignores X-Forwarded-For from a peer that is not a trusted proxy (spoofed)', async function () {
      const o = await attempt(await wsUrl('x1', proxied, only203), {
        localAddress: '127.0.0.2',
        headers: { 'x-forwarded-for': '203.0.113.9' },
      });
      expect(o).to.include({ status: 403, code: 'ip_not_allowed' });
    });

    it('ignores X-Forwarded-For entirely on an edge with no trusted proxies', async function () {
      const o = await attempt(await wsUrl('x2', stack.edge, only203), {
        headers: { 'x-forwarded-for': '203.0.113.9' },
      });
      expect(o).to.include({ status: 403, code: 'ip_not_allowed' });
    });

    it("believes a trusted proxy's X-Forwarded-For, IPv4 and IPv6", async function () {
      for (const client of ['203.0.113.9', '2001:db8::7', '[2001:db8::8]:4431', '203.0.113.10:5000']) {
        const o = await attempt(await wsUrl('x3', proxied, only203), {
          localAddress: '127.0.0.1',
          headers: { 'x-forwarded-for': client },
        });
        expect(o, client).to.include({ open: true });
      }
    });

    it('takes the right-most address that is not a trusted proxy: what the client wrote itself is not believed', async function () {
      // The client wrote 203.0.113.9; its proxy (trusted 10.1.1.1 in front of 127.0.0.1) appended
      // the client's real address 198.51.100.7.
      const spoofed = await attempt(await wsUrl('x4', proxied, only203), {
        headers: { 'x-forwarded-for': '203.0.113.9, 198.51.100.7, 10.1.1.1' },
      });
      expect(spoofed).to.include({ status: 403, code: 'ip_not_allowed' });
      const chained = await attempt(await wsUrl('x4', proxied, only203), {
        headers: { 'x-forwarded-for': '198.51.100.7, 203.0.113.9, 10.1.1.1' },
      });
      expect(chained).to.include({ open: true });
    });

    it('counts per-IP limits by the forwarded address, not the proxy', async function () {
      const limited = await stack.startEdge({
        PUSH_EDGE_TRUSTED_PROXIES: '127.0.0.1',
        PUSH_EDGE_MAX_CONNECTIONS_PER_IP: '1',
      });
      const via = (ip: string) => ({ localAddress: '127.0.0.1', headers: { 'x-forwarded-for': ip } });
      expect(await attempt(await wsUrl('x5', limited), via('198.51.100.1'))).to.include({ open: true });
      expect(await attempt(await wsUrl('x5', limited), via('198.51.100.2'))).to.include({ open: true });
      expect(await attempt(await wsUrl('x5', limited), via('198.51.100.1'))).to.include({
        status: 429,
        code: 'ip_connection_limit',
      });
      await closeAll(limited);
    });
  });

  describe('per-IP limits of an edge', function () {
    it('refuses past PUSH_EDGE_MAX_CONNECTIONS_PER_IP with 429 ip_connection_limit (4429), other IPs unaffected, freed on close', async function () {
      const edge = await stack.startEdge({ PUSH_EDGE_MAX_CONNECTIONS_PER_IP: '2', PUSH_EDGE_RETRY_AFTER: '3' });
      const from = (localAddress: string, query = '') => ({ localAddress, query });
      expect(await attempt(await wsUrl('l1', edge), from('127.0.0.2'))).to.include({ open: true });
      expect(await attempt(await wsUrl('l2', edge), from('127.0.0.2'))).to.include({ open: true });
      expect(await attempt(await wsUrl('l3', edge), from('127.0.0.2'))).to.include({
        status: 429,
        code: 'ip_connection_limit',
      });
      expect(await attempt(await wsUrl('l3', edge), from('127.0.0.2', '&refusal=close'))).to.include({
        closeCode: 4429,
        closeReason: 'ip_connection_limit',
      });
      expect(await attempt(await wsUrl('l4', edge), from('127.0.0.3'))).to.include({ open: true });
      // The refusals never counted: closing the three open sockets frees the IP again.
      await closeAll(edge);
      expect(await attempt(await wsUrl('l5', edge), from('127.0.0.2'))).to.include({ open: true });
      expect(await attempt(await wsUrl('l6', edge), from('127.0.0.2'))).to.include({ open: true });
      await closeAll(edge);
    });

    it('holds the per-IP limit exactly under a burst of concurrent upgrades from one address', async function () {
      const edge = await stack.startEdge({ PUSH_EDGE_MAX_CONNECTIONS_PER_IP: '3' });
      const url = await wsUrl('burst', edge);
      const outcomes = await Promise.all(Array.from({ length: 20 }, () => attempt(url, { localAddress: '127.0.0.9' })));
      expect(outcomes.filter((o) => o.open)).to.have.length(3);
      expect(outcomes.filter((o) => o.code === 'ip_connection_limit')).to.have.length(17);
      expect(edge.connectionCount).to.equal(3);
      await closeAll(edge);
    });

    it('refuses connects faster than PUSH_EDGE_CONNECT_RATE_PER_IP with 429 ip_rate_limited; other IPs unaffected', async function () {
      const edge = await stack.startEdge({ PUSH_EDGE_CONNECT_RATE_PER_IP: '2' });
      const outcomes: Outcome[] = [];
      for (let i = 0; i < 4; i++) outcomes.push(await attempt(await wsUrl('r1', edge), { localAddress: '127.0.0.4' }));
      expect(outcomes.filter((o) => o.open)).to.have.length.within(2, 3); // 2 per second, one may refill
      expect(outcomes.at(-1)).to.include({ status: 429, code: 'ip_rate_limited' });
      expect(await attempt(await wsUrl('r2', edge), { localAddress: '127.0.0.5' })).to.include({ open: true });
      // A second later the IP may connect again.
      await new Promise((r) => setTimeout(r, 1100));
      expect(await attempt(await wsUrl('r3', edge), { localAddress: '127.0.0.4' })).to.include({ open: true });
      await closeAll(edge);
    });

    it('IPv6: an edge on ::1 sees ::1, and counts IPv6 clients by their /64', async function () {
      const edge = await stack.startEdge({
        PUSH_EDGE_HOST: '::1',
        PUSH_EDGE_TRUSTED_PROXIES: '::1',
        PUSH_EDGE_MAX_CONNECTIONS_PER_IP: '1',
      });
      const v6only = await stack.createApp({ allowedCidrs: ['::1/128', '2001:db8:1::/48'] });
      const url = async (user: string) => wsUrl(user, edge, v6only, '[::1]');
      expect(await attempt(await url('v1'))).to.include({ open: true });
      // ::1 holds its one connection.
      expect(await attempt(await url('v2'))).to.include({ status: 429, code: 'ip_connection_limit' });
      const xff = (ip: string) => ({ headers: { 'x-forwarded-for': ip } });
      expect(await attempt(await url('v3'), xff('2001:db8:1:2::10'))).to.include({ open: true });
      // Same /64 as the one before: the same client.
      expect(await attempt(await url('v4'), xff('2001:db8:1:2:ffff::1'))).to.include({
        status: 429,
        code: 'ip_connection_limit',
      });
      expect(await attempt(await url('v5'), xff('2001:db8:1:3::10'))).to.include({ open: true });
      expect(await attempt(await url('v6'), xff('2001:db8:2::1'))).to.include({ status: 403, code: 'ip_not_allowed' });
      await closeAll(edge);
    });
  });

  describe('the Pusher door (/app/<key>)', function () {
    it('applies the app CIDRs (4009) and the per-IP limits (4100)', async function () {
      const edge = await stack.startEdge({ PUSH_EDGE_MAX_CONNECTIONS_PER_IP: '1' });
      const denied = await stack.createApp({ deniedCidrs: ['127.0.0.0/8'] });
      const pusherUrl = (key: string) => `ws://127.0.0.1:${edge.port}/app/${key}?protocol=7`;
      const refused = await attempt(pusherUrl(denied.id));
      expect(refused).to.include({ open: false, closeCode: 4009 });
      expect(JSON.stringify(refused.first)).to.contain('ip_not_allowed');
      expect(await attempt(pusherUrl(app.id), { localAddress: '127.0.0.7' })).to.include({ open: true });
      const limited = await attempt(pusherUrl(app.id), { localAddress: '127.0.0.7' });
      expect(limited).to.include({ open: false, closeCode: 4100 });
      expect(JSON.stringify(limited.first)).to.contain('ip_connection_limit');
      // Both doors share the count.
      expect(await attempt(await wsUrl('p1', edge), { localAddress: '127.0.0.7' })).to.include({
        status: 429,
        code: 'ip_connection_limit',
      });
      for (const ws of sockets.splice(0)) ws.close();
    });
  });
});
