import net from 'node:net';
import { expect } from 'chai';
import WebSocket from 'ws';
import { PushClient } from '@push/client';
import type { NatsConnection } from '@push/nats';
import { Subjects } from '@push/protocol';
import { Stack, type TestApp } from '../helpers/stack.js';
import { readStream, waitStream } from '../helpers/streams.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A raw client that answers nothing on its own: no automatic WebSocket pong, so only its app
 * `ping` frames keep it alive (a truly silent client when it sends none). Records the frames,
 * the edge's WebSocket pings and the close.
 */
class RawClient {
  readonly frames: Array<Record<string, unknown>> = [];
  wsPings = 0;
  closed: { code: number; at: number } | undefined;
  helloAt = 0;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (d: Buffer) => this.frames.push(JSON.parse(d.toString('utf8')) as Record<string, unknown>));
    ws.on('ping', () => this.wsPings++);
    ws.on('close', (code) => (this.closed = { code, at: Date.now() }));
    ws.on('error', () => undefined);
  }

  static async open(url: string, token: string, query: string): Promise<RawClient> {
    const c = new RawClient(new WebSocket(`${url}?token=${encodeURIComponent(token)}${query}`, { autoPong: false }));
    await c.waitFor((f) => f['t'] === 'hello');
    c.helloAt = Date.now();
    return c;
  }

  get hello(): Record<string, unknown> {
    return this.frames.find((f) => f['t'] === 'hello') ?? {};
  }

  async waitFor(pred: (f: Record<string, unknown>) => boolean, timeoutMs = 5000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = this.frames.find(pred);
      if (f !== undefined) return f;
      if (this.closed !== undefined) throw new Error(`closed (${this.closed.code}) before the frame came`);
      if (Date.now() > deadline) throw new Error(`no such frame; have ${JSON.stringify(this.frames).slice(0, 300)}`);
      await sleep(10);
    }
  }

  /** Sends an app-level ping (optionally proposing an interval); resolves with its pong. */
  async ping(propose?: number): Promise<Record<string, unknown>> {
    const before = this.frames.length;
    this.ws.send(JSON.stringify(propose === undefined ? { t: 'ping' } : { t: 'ping', ping: propose }));
    return this.waitFor((f) => f['t'] === 'pong' && this.frames.indexOf(f) >= before);
  }

  async waitClosed(timeoutMs: number): Promise<{ code: number; at: number }> {
    const deadline = Date.now() + timeoutMs;
    while (this.closed === undefined) {
      if (Date.now() > deadline) throw new Error('still open');
      await sleep(20);
    }
    return this.closed;
  }
}

/**
 * A NAT between client and edge that forgets a connection idle (no byte either way) for longer
 * than `idleMs`: from then on it forwards nothing, and tells neither side (no FIN, no RST).
 */
class ForgetfulNat {
  readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  forgotten = 0;

  constructor(edgePort: number, idleMs: number) {
    this.server = net.createServer((client) => {
      const upstream = net.connect(edgePort, '127.0.0.1');
      this.sockets.add(client).add(upstream);
      let last = Date.now();
      let alive = true;
      const forward = (from: net.Socket, to: net.Socket) =>
        from.on('data', (b: Buffer) => {
          if (alive && Date.now() - last > idleMs) {
            alive = false; // the mapping is gone: this packet and all after it are lost
            this.forgotten++;
          }
          if (!alive) return;
          last = Date.now();
          to.write(b);
        });
      forward(client, upstream);
      forward(upstream, client);
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end).on('close', () => alive && end());
      upstream.on('error', end).on('close', () => alive && end());
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return (this.server.address() as net.AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

describe('heartbeats: intervals agreed per connection, silent connections dropped (issue 17)', function () {
  this.timeout(60_000);
  let stack: Stack;
  let nc: NatsConnection;
  const clients: RawClient[] = [];

  before(async function () {
    // Seconds instead of minutes: the edge's floor is lowered so tests can agree 1-4 s intervals.
    stack = await Stack.start({ PUSH_EDGE_PING_MIN: '1' });
    nc = await stack.connectNats('test-heartbeat');
  });
  after(async function () {
    for (const c of clients) c.ws.terminate();
    await nc?.close();
    await stack?.close();
  });

  async function open(app: TestApp, user: string, query: string, edge = stack.edge): Promise<RawClient> {
    const c = await RawClient.open(stack.wsUrl(edge), await app.token(user), query);
    clients.push(c);
    return c;
  }

  it('clamps what the client asks to the app bounds and the server cap, in hello and on a ping that proposes', async function () {
    const wide = await stack.createApp();
    expect((await open(wide, 'w1', '&ping=300')).hello['ping']).to.equal(300);
    // The server-wide cap (PUSH_EDGE_PING_MAX, 600 by default) bounds what the app allows.
    expect((await open(wide, 'w2', '&ping=5000')).hello['ping']).to.equal(600);
    // Nothing asked, or nothing that is a number (blank included): the server default.
    expect((await open(wide, 'w3', '')).hello['ping']).to.equal(25);
    for (const blank of ['%20', '%09', 'abc', '']) {
      expect((await open(wide, `w3${blank}`, `&ping=${blank}`)).hello['ping'], `ping=${blank}`).to.equal(25);
    }

    const narrow = await stack.createApp({ pingMinSeconds: 30, pingMaxSeconds: 120 });
    expect((await open(narrow, 'n1', '&ping=5')).hello['ping']).to.equal(30);
    expect((await open(narrow, 'n2', '&ping=1000')).hello['ping']).to.equal(120);
    expect((await open(narrow, 'n3', '')).hello['ping']).to.equal(30);
    const c = await open(narrow, 'n4', '&ping=60');
    expect(await c.ping(900)).to.deep.equal({ t: 'pong', ping: 120 });
    expect(await c.ping(2)).to.deep.equal({ t: 'pong', ping: 30 });
    // A plain ping is answered as before.
    expect(await c.ping()).to.deep.equal({ t: 'pong' });

    // An edge with a lower cap wins over the app's wider bounds.
    const capped = await stack.startEdge({ PUSH_EDGE_PING_MIN: '1', PUSH_EDGE_PING_MAX: '60' });
    expect((await open(wide, 'w4', '&ping=300', capped)).hello['ping']).to.equal(60);
  });

  it('keeps a connection that pings at its agreed interval, also after re-agreeing a longer one', async function () {
    const app = await stack.createApp({ pingMinSeconds: 1 });
    const c = await open(app, 'steady', '&ping=1');
    expect(c.hello['ping']).to.equal(1);
    // From 1 s (dropped after 2 s of silence) to 3 s: pings every 2.5 s keep it up.
    expect(await c.ping(3)).to.deep.equal({ t: 'pong', ping: 3 });
    for (let i = 0; i < 4; i++) {
      await sleep(2500);
      await c.ping();
    }
    expect(c.closed).to.equal(undefined);
    // Never silent for 1.5 intervals: the edge sent no WebSocket ping of its own.
    expect(c.wsPings).to.equal(0);
  });

  it('pings a silent connection at 1.5 intervals and drops it after 2 (within a tick), with reason silent', async function () {
    const app = await stack.createApp({ pingMinSeconds: 1 });
    const c = await open(app, 'mute', '&ping=2');
    expect(c.hello['ping']).to.equal(2);
    const closed = await c.waitClosed(8000);
    // Dropped without a close frame, as a dead TCP connection would be.
    expect(closed.code).to.equal(1006);
    const silentMs = closed.at - c.helloAt;
    expect(silentMs).to.be.within(4000, 5500);
    // It was given its chance: a WebSocket ping (any client answers those, browsers included).
    expect(c.wsPings).to.equal(1);

    const subjects = new Subjects(stack.prefix);
    await waitStream(nc, subjects.eventsStream(app.id), (r) =>
      r.some((e) => e.body['type'] === 'conn_close' && e.body['user'] === 'mute'),
    );
    const close = (await readStream(nc, subjects.eventsStream(app.id))).find(
      (e) => e.body['type'] === 'conn_close' && e.body['user'] === 'mute',
    );
    expect(close?.body).to.include({ reason: 'silent', code: 1006 });
    const metrics = await (await fetch(`http://127.0.0.1:${stack.edge.port}/metrics`)).text();
    expect(metrics).to.match(/^push_edge_heartbeat_drops_total(\{[^}]*\})? [1-9]/m);
  });

  it('keeps a client that pings late but answers the edge WebSocket ping (a throttled tab)', async function () {
    const app = await stack.createApp({ pingMinSeconds: 1 });
    // 2 s: pinged after 3 s of silence, dropped after 4 (at 1 s the one-second wheel could not tell them apart).
    const c = await open(app, 'late', '&ping=2');
    c.ws.on('ping', (data: Buffer) => c.ws.pong(data));
    await sleep(9000);
    expect(c.closed).to.equal(undefined);
    expect(c.wsPings).to.be.greaterThan(1);
    await c.ping();
  });

  it('refuses bad ping settings with 400 bad_request that says why, and a bad proposal with bad_frame', async function () {
    for (const [settings, why] of [
      [{ pingMinSeconds: 0 }, /pingMinSeconds/],
      [{ pingMaxSeconds: 901 }, /pingMaxSeconds/],
      [{ pingMaxSeconds: 'long' }, /pingMaxSeconds/],
      [{ pingMinSeconds: 100, pingMaxSeconds: 50 }, /pingMinSeconds \(100\) must not exceed pingMaxSeconds \(50\)/],
    ] as const) {
      const r = await stack.http('POST', '/v1/admin/apps', stack.adminKey, { settings });
      expect(r.status, JSON.stringify(settings)).to.equal(400);
      const err = r.body['error'] as { code: string; message: string };
      expect(err.code).to.equal('bad_request');
      expect(err.message).to.match(why);
    }
    // A patch of one bound is checked against the other one already set.
    const app = await stack.createApp({ pingMaxSeconds: 120 });
    const r = await stack.http('PATCH', `/v1/admin/apps/${app.id}`, stack.adminKey, {
      settings: { pingMinSeconds: 300 },
    });
    expect(r.status).to.equal(400);
    expect((r.body['error'] as { message: string }).message).to.match(/must not exceed pingMaxSeconds \(120\)/);

    const c = await open(app, 'bad-ping', '');
    c.ws.send('{"t":"ping","ping":0}');
    const e = await c.waitFor((f) => f['t'] === 'error');
    expect(e['code']).to.equal('bad_frame');
    expect(await c.ping()).to.deep.equal({ t: 'pong' });
  });

  it('SDK: steps the interval up while pongs come, steps back and sticks below what a NAT forgets', async function () {
    const app = await stack.createApp({ pingMinSeconds: 1 });
    // Forgets connections idle for 2.5 s: 1 s and 2 s pass, 3 s and 4 s do not.
    const nat = new ForgetfulNat(stack.edge.port, 2500);
    const port = await nat.listen();
    const client = new PushClient({
      edges: [`ws://127.0.0.1:${port}/ws`],
      token: await app.token('nat-user'),
      WebSocket: WebSocket,
      backoff: { baseMs: 50, capMs: 200 },
      pingSeconds: 1,
      heartbeat: { confirmAfter: 1, stepFactor: 2, maxSeconds: 8, pongTimeoutMs: 1000, storage: null },
    });
    const intervals: number[] = [];
    const lost: string[] = [];
    client.on('connected', (c) => intervals.push(c.ping));
    client.on('connecting', (why) => lost.push(why.reason));
    const data: unknown[] = [];
    client.on('message', (m) => data.push(m.data));
    try {
      client.connect();
      // 1 -> 2 -> 4 (forgotten: no pong) -> back to 2, probe 3 (forgotten) -> 2, stuck.
      const deadline = Date.now() + 40_000;
      while (lost.filter((r) => r === 'no pong').length < 2 || client.state !== 'connected') {
        if (Date.now() > deadline) throw new Error(`no second failure: ${JSON.stringify({ intervals, lost })}`);
        await sleep(100);
      }
      expect(nat.forgotten).to.equal(2);
      // Each new connection asks for the interval that worked, not the one that failed.
      expect(intervals).to.deep.equal([1, 2, 2]);
      expect(client.heartbeat).to.deep.equal({ seconds: 2, network: 'default' });
      // Stuck at 2 s: the connection stays up through the NAT, and delivers.
      await sleep(7000);
      expect(client.state).to.equal('connected');
      expect(client.heartbeat.seconds).to.equal(2);
      expect(nat.forgotten).to.equal(2);
      await app.pushOk('nat-user', 'through the nat');
      const until = Date.now() + 5000;
      while (!data.includes('through the nat') && Date.now() < until) await sleep(20);
      expect(data).to.include('through the nat');
    } finally {
      client.disconnect();
      await nat.close();
    }
  });
});
