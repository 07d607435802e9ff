import net from 'node:net';
import { expect } from 'chai';
import type { Edge } from '@push/edge';
import { Stack, type TestApp } from '../helpers/stack.js';
import { TestClient } from '../helpers/ws-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One Prometheus sample: `name{labels} value`, labels given as a subset to match. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = new Map<string, string>();
    for (const kv of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) have.set(kv[1]!, kv[2]!);
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) return Number(m[4]);
  }
  return undefined;
}

async function get(url: string): Promise<{ status: number; text: string; type: string }> {
  const r = await fetch(url);
  return { status: r.status, text: await r.text(), type: r.headers.get('content-type') ?? '' };
}

/** Sends a raw HTTP request on an already open TCP connection; resolves with the raw answer. */
function rawExchange(socket: net.Socket, request: string): Promise<string> {
  return new Promise((resolve) => {
    let answer = '';
    socket.on('data', (c: Buffer) => {
      answer += c.toString('utf8');
      // A refusal is a small response with a JSON body: done once the body closed.
      if (/\r\n\r\n[\s\S]*\}\}$/.test(answer)) resolve(answer);
    });
    socket.on('close', () => resolve(answer));
    socket.write(request);
  });
}

describe('limits, drain and health', function () {
  this.timeout(30_000);
  let stack: Stack;
  let app: TestApp;
  const clients: TestClient[] = [];

  before(async function () {
    stack = await Stack.start();
    app = await stack.createApp();
  });
  after(async function () {
    for (const c of clients) c.terminate();
    await stack?.close();
  });

  async function connect(user: string, edge: Edge, device = 'default'): Promise<TestClient> {
    const c = await app.connect(user, device, '', edge);
    clients.push(c);
    return c;
  }

  describe('connection limit', function () {
    it('refuses the upgrade past PUSH_EDGE_MAX_CONNECTIONS with 503 edge_full and Retry-After; the others keep working', async function () {
      const edge = await stack.startEdge({ PUSH_EDGE_MAX_CONNECTIONS: '3', PUSH_EDGE_RETRY_AFTER: '7' });
      const open = [await connect('full-a', edge), await connect('full-b', edge), await connect('full-c', edge)];

      const refusal = await TestClient.refused(stack.wsUrl(edge), await app.token('full-d'));
      expect(refusal.status).to.equal(503);
      expect(refusal.body.error?.code).to.equal('edge_full');
      expect(refusal.headers['retry-after']).to.equal('7');

      const metrics = (await get(`http://127.0.0.1:${edge.port}/metrics`)).text;
      expect(sample(metrics, 'push_edge_upgrades_refused_total', { code: 'edge_full' })).to.equal(1);
      expect(sample(metrics, 'push_edge_connections')).to.equal(3);

      // The three open connections still get their messages.
      for (const [i, c] of open.entries()) {
        const user = ['full-a', 'full-b', 'full-c'][i] as string;
        const seq = await app.pushOk(user, { to: user });
        const [m] = await c.waitForMessages(1);
        expect(m?.seq).to.equal(seq);
        expect(m?.data).to.deep.equal({ to: user });
      }

      // One leaves: a new connection is accepted again.
      open[0]!.close();
      await open[0]!.waitClosed();
      const deadline = Date.now() + 5000;
      let d: TestClient | undefined;
      while (d === undefined) {
        try {
          d = await connect('full-d', edge);
        } catch (err) {
          // The close may not have reached the edge yet: only edge_full is an acceptable answer.
          expect((err as { refusal?: { body: { error?: { code: string } } } }).refusal?.body.error?.code).to.equal(
            'edge_full',
          );
          if (Date.now() > deadline) throw err;
          await sleep(25);
        }
      }
      const seq = await app.pushOk('full-d', 'welcome');
      expect((await d.waitForMessages(1))[0]?.seq).to.equal(seq);
      expect(edge.connectionCount).to.equal(3);
    });
  });

  describe('graceful stop', function () {
    it('closes clients with 4001 and a reconnect:<ms> reason within the drain window, and refuses upgrades while stopping', async function () {
      const edge = await stack.startEdge({ PUSH_EDGE_DRAIN_MS: '3000' });
      const a = await connect('drain-a', edge);
      const b = await connect('drain-b', edge, 'tablet');

      // A TCP connection opened before the stop, whose upgrade request arrives during it.
      const socket = net.connect(edge.port, '127.0.0.1');
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      });
      const stopped = edge.stop();
      const token = await app.token('drain-late');
      const answer = await rawExchange(
        socket,
        `GET /ws?token=${encodeURIComponent(token)} HTTP/1.1\r\nHost: 127.0.0.1:${edge.port}\r\nUpgrade: websocket\r\n` +
          'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
      );
      socket.destroy();
      expect(answer).to.match(/^HTTP\/1\.1 503 /);
      expect(answer.toLowerCase()).to.match(/\r\nretry-after: \d+\r\n/);
      expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).to.deep.include({
        error: { code: 'shutting_down', message: 'the server is shutting down; reconnect elsewhere' },
      });

      for (const c of [a, b]) {
        expect(await c.waitClosed()).to.equal(4001);
        const m = /^reconnect:(\d+)$/.exec(c.closeReason);
        expect(m, `reason ${c.closeReason}`).to.not.equal(null);
        expect(Number(m?.[1])).to.be.within(0, 2999);
      }
      await stopped;
      expect(edge.connectionCount).to.equal(0);
      // After the stop nothing listens any more.
      const err = await TestClient.connect(stack.wsUrl(edge), token).then(
        (c) => {
          c.close();
          return undefined;
        },
        (e: unknown) => e as NodeJS.ErrnoException,
      );
      expect(err?.code).to.equal('ECONNREFUSED');
    });
  });

  describe('health and metrics', function () {
    it('edge: /healthz and /readyz answer 200; /metrics counts connections, users and messages', async function () {
      const edge = await stack.startEdge();
      const base = `http://127.0.0.1:${edge.port}`;
      const health = await get(`${base}/healthz`);
      expect(health.status).to.equal(200);
      expect(JSON.parse(health.text)).to.deep.equal({ ok: true });
      const ready = await get(`${base}/readyz`);
      expect(ready.status).to.equal(200);
      expect(JSON.parse(ready.text)).to.deep.equal({ ready: true });

      const before = await get(`${base}/metrics`);
      expect(before.status).to.equal(200);
      expect(before.type).to.match(/^text\/plain/);
      for (const name of [
        'push_edge_connections',
        'push_edge_users',
        'push_edge_upgrades_refused_total',
        'push_edge_messages_out_total',
        'push_edge_messages_in_total',
        'push_edge_acks_total',
        'push_edge_inbox_removed_total',
        'push_edge_expired_total',
        'push_edge_backlog_loads_total',
        'push_edge_backlog_messages_total',
        'push_edge_stalls_total',
        'push_edge_errors_total',
      ]) {
        expect(before.text, name).to.include(`# TYPE ${name} `);
      }
      expect(sample(before.text, 'push_edge_connections')).to.equal(0);
      expect(sample(before.text, 'push_edge_messages_out_total')).to.equal(0);

      const x1 = await connect('metrics-x', edge, 'phone');
      const x2 = await connect('metrics-x', edge, 'laptop');
      const y = await connect('metrics-y', edge);
      const seq = await app.pushOk('metrics-x', 'counted');
      await x1.waitForMessages(1);
      await x2.waitForMessages(1);
      x1.ack([seq]);
      await x1.ping();

      let text = (await get(`${base}/metrics`)).text;
      expect(sample(text, 'push_edge_connections')).to.equal(3);
      expect(sample(text, 'push_edge_users')).to.equal(2);
      expect(sample(text, 'push_edge_messages_out_total')).to.equal(2);
      expect(sample(text, 'push_edge_acks_total')).to.equal(1);

      x2.close();
      y.close();
      await x2.waitClosed();
      await y.waitClosed();
      const deadline = Date.now() + 3000;
      while (sample(text, 'push_edge_connections') !== 1 && Date.now() < deadline) {
        await sleep(20);
        text = (await get(`${base}/metrics`)).text;
      }
      expect(sample(text, 'push_edge_connections')).to.equal(1);
      expect(sample(text, 'push_edge_users')).to.equal(1);
    });

    it('center: /healthz and /readyz answer 200; /metrics counts pushes, duplicates, requests and errors', async function () {
      const base = stack.httpUrl;
      expect((await get(`${base}/healthz`)).status).to.equal(200);
      const ready = await get(`${base}/readyz`);
      expect(ready.status).to.equal(200);
      expect(JSON.parse(ready.text)).to.deep.equal({ ready: true });

      const metric = async (name: string, labels: Record<string, string> = {}) =>
        sample((await get(`${base}/metrics`)).text, name, labels) ?? 0;
      const text = (await get(`${base}/metrics`)).text;
      for (const name of [
        'push_center_messages_total',
        'push_center_duplicates_total',
        'push_center_requests_total',
        'push_center_errors_total',
      ]) {
        expect(text, name).to.include(`# TYPE ${name} `);
      }

      const messages = await metric('push_center_messages_total');
      const duplicates = await metric('push_center_duplicates_total');
      const ok = await metric('push_center_requests_total', { op: 'push', transport: 'http', status: '200' });
      const bad = await metric('push_center_errors_total', { code: 'invalid_data' });

      await app.pushOk('metrics-c', 1, { id: 'once' });
      await app.pushOk('metrics-c', 1, { id: 'once' });
      await app.push({
        messages: [
          { user: 'metrics-c', data: 2 },
          { user: 'metrics-d', data: 3 },
        ],
      });
      const r = await app.push({ user: 'metrics-c' });
      expect(r.status).to.equal(400);

      expect(await metric('push_center_messages_total')).to.equal(messages + 3);
      expect(await metric('push_center_duplicates_total')).to.equal(duplicates + 1);
      expect(await metric('push_center_requests_total', { op: 'push', transport: 'http', status: '200' })).to.equal(
        ok + 3,
      );
      expect(
        await metric('push_center_requests_total', { op: 'push', transport: 'http', status: '400' }),
      ).to.be.at.least(1);
      expect(await metric('push_center_errors_total', { code: 'invalid_data' })).to.equal(bad + 1);
    });
  });
});
