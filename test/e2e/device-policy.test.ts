import { expect } from 'chai';
import WebSocket from 'ws';
import { PushClient, type CloseInfo } from '@push/client';
import type { Edge } from '@push/edge';
import type { NatsConnection } from '@push/nats';
import { Subjects } from '@push/protocol';
import { Stack, type TestApp } from '../helpers/stack.js';
import { readStream, waitStream, type StoredRecord } from '../helpers/streams.js';
import type { TcpProxy } from '../helpers/tcp-proxy.js';
import { TestClient } from '../helpers/ws-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The app setting `devicePolicy` (issue 17 item 7) through real edges, center and NATS: a new
 * connection of a user closes the user's older ones on every edge with 4006 `replaced`, after its
 * `hello`; two connections racing always leave exactly one.
 */
describe('devicePolicy: one connection per user or per device, across edges', function () {
  this.timeout(60_000);
  let stack: Stack;
  let single: TestApp;
  let perDevice: TestApp;
  let multi: TestApp;
  let nc: NatsConnection;
  let subjects: Subjects;
  const clients: TestClient[] = [];
  const sdks: PushClient[] = [];

  before(async function () {
    stack = await Stack.start();
    await stack.startEdge(); // two edges
    single = await stack.createApp({ devicePolicy: 'single' });
    perDevice = await stack.createApp({ devicePolicy: 'single-per-device' });
    multi = await stack.createApp();
    subjects = new Subjects(stack.prefix);
    nc = await stack.connectNats('test-device-policy');
  });
  after(async function () {
    for (const c of clients) c.terminate();
    for (const s of sdks) s.disconnect();
    await nc?.close();
    await stack?.close();
  });

  async function connect(a: TestApp, user: string, device: string, edge: Edge): Promise<TestClient> {
    const c = await a.connect(user, device, '', edge);
    clients.push(c);
    return c;
  }
  const online = (a: TestApp, user: string, n: number) => a.waitConnections(user, n);
  const edge = (i: number): Edge => stack.edges[i] as Edge;

  it('single: a new connection on another edge closes the older one with 4006 replaced; the new one gets the pushes', async function () {
    const phone = await connect(single, 'alice', 'phone', edge(0));
    const bob = await connect(single, 'bob', 'phone', edge(0));
    const namesake = await connect(multi, 'alice', 'phone', edge(0));
    const laptop = await connect(single, 'alice', 'laptop', edge(1));
    expect(laptop.hello['device']).to.equal('laptop');
    expect(await phone.waitClosed()).to.equal(4006);
    expect(phone.closeReason).to.equal('replaced');
    await laptop.ping();
    await bob.ping(); // another user of the app
    await namesake.ping(); // the same user id in another app
    const seq = await single.pushOk('alice', 'to the laptop');
    const [m] = await laptop.waitForMessages(1);
    expect(m?.seq).to.equal(seq);
    await online(single, 'alice', 1);

    // The events say which connection replaced which.
    const records = await waitStream(nc, subjects.eventsStream(single.id), (r) =>
      r.some((x) => x.body['type'] === 'conn_close' && x.body['user'] === 'alice'),
    );
    const of = (type: string): StoredRecord['body'][] =>
      records.filter((r) => r.body['type'] === type && r.body['user'] === 'alice').map((r) => r.body);
    expect(of('replaced')).to.have.length(1);
    expect(of('replaced')[0]).to.include({ conn: phone.hello['conn'], device: 'phone', by: laptop.hello['conn'] });
    expect(of('conn_close')[0]).to.include({ conn: phone.hello['conn'], code: 4006, reason: 'replaced' });
    expect(of('user_offline')).to.have.length(0);
  });

  it('single on one edge: the second connection replaces the first there too', async function () {
    const first = await connect(single, 'carol', 'd', edge(1));
    const second = await connect(single, 'carol', 'd', edge(1));
    expect(await first.waitClosed()).to.equal(4006);
    await second.ping();
  });

  it('single-per-device: a new connection replaces only the one of the same device, on any edge', async function () {
    const phone = await connect(perDevice, 'dora', 'phone', edge(0));
    const laptop = await connect(perDevice, 'dora', 'laptop', edge(0));
    const tablet = await connect(perDevice, 'dora', 'tablet', edge(1));
    await online(perDevice, 'dora', 3);
    const phone2 = await connect(perDevice, 'dora', 'phone', edge(1));
    expect(await phone.waitClosed()).to.equal(4006);
    await sleep(300); // a wrong close of the others would have come with it
    for (const c of [laptop, tablet, phone2]) await c.ping();
    await online(perDevice, 'dora', 3);
  });

  it('multi (the default): connections of the same user and device stay open on both edges', async function () {
    const a = await connect(multi, 'erin', 'phone', edge(0));
    const b = await connect(multi, 'erin', 'phone', edge(1));
    const c = await connect(multi, 'erin', 'phone', edge(0));
    await online(multi, 'erin', 3);
    await sleep(300);
    const seq = await multi.pushOk('erin', 'to all three');
    for (const x of [a, b, c]) expect((await x.waitForMessages(1))[0]?.seq).to.equal(seq);
    for (const x of [a, b, c]) expect(x.closeCode).to.equal(undefined);
  });

  /**
   * Opens connections at once (tokens signed first), waits until all but one closed (4006), and
   * checks that one still serves. Resolves with it.
   */
  async function race(a: TestApp, user: string, edges: Edge[], device = 'd'): Promise<TestClient> {
    const tokens = await Promise.all(edges.map(() => a.token(user, device)));
    const racers = await Promise.all(edges.map((e, i) => TestClient.connect(stack.wsUrl(e), tokens[i])));
    clients.push(...racers);
    const deadline = Date.now() + 5000;
    while (racers.filter((c) => c.closeCode === undefined).length > 1) {
      if (Date.now() > deadline) throw new Error(`${user}: more than one connection still open`);
      await sleep(10);
    }
    await sleep(300); // a wrong close of the last one would come within this
    const open = racers.filter((c) => c.closeCode === undefined);
    expect(open, `${user}: connections left open`).to.have.length(1);
    for (const c of racers) if (c !== open[0]) expect(c.closeCode).to.equal(4006);
    const survivor = open[0] as TestClient;
    await survivor.ping();
    return survivor;
  }

  it('two connections racing on two edges always leave exactly one (20 rounds)', async function () {
    for (let i = 0; i < 20; i++) {
      await race(single, `racer-${i}`, [edge(0), edge(1)]);
      await online(single, `racer-${i}`, 1);
    }
  });

  it('on an app no edge holds a connection of yet, racers get their hello before any 4006, and each user one user_online, no user_offline', async function () {
    // Each edge's first connection of an app waits for the app's `_all` subscription before its
    // hello: a replacement must wait for the hello too (and conn_open, presence with it).
    const cold = await stack.createApp({ devicePolicy: 'single' });
    const users = Array.from({ length: 10 }, (_, i) => `cold-${i}`);
    await Promise.all(users.map((u) => race(cold, u, [edge(0), edge(1)])));
    await sleep(500);
    const records = await readStream(nc, subjects.eventsStream(cold.id));
    for (const u of users) {
      const of = (type: string) => records.filter((r) => r.body['user'] === u && r.body['type'] === type).length;
      expect([of('conn_open'), of('replaced'), of('user_online'), of('user_offline')], u).to.deep.equal([2, 1, 1, 0]);
      expect((await cold.user(u)).body['online'], u).to.equal(true);
    }
  });

  it('three connections racing, two on one edge, leave exactly one; per device, one per device', async function () {
    for (let i = 0; i < 5; i++) await race(single, `trio-${i}`, [edge(0), edge(1), edge(0)]);
    for (let i = 0; i < 5; i++) {
      const phone = await race(perDevice, `pair-${i}`, [edge(0), edge(1)], 'phone');
      await race(perDevice, `pair-${i}`, [edge(1), edge(0)], 'laptop');
      await phone.ping(); // another device's race leaves it alone
      await online(perDevice, `pair-${i}`, 2);
    }
  });

  it('the SDK stops on 4006: disconnected with code 4006 and reason replaced, and no reconnect', async function () {
    const replaced: CloseInfo[] = [];
    const connecting: CloseInfo[] = [];
    const token = await single.token('fred', 'phone');
    const sdk = new PushClient({ token, edges: [stack.wsUrl(edge(0))], WebSocket });
    sdks.push(sdk);
    sdk.on('disconnected', (why) => replaced.push(why));
    const up = new Promise<void>((resolve) => sdk.once('connected', () => resolve()));
    sdk.connect();
    await up;
    sdk.on('connecting', (why) => connecting.push(why));
    const other = await connect(single, 'fred', 'laptop', edge(1));
    const deadline = Date.now() + 5000;
    while (replaced.length === 0 && Date.now() < deadline) await sleep(20);
    expect(replaced).to.deep.equal([{ code: 4006, reason: 'replaced' }]);
    await sleep(1500); // a reconnect would be under way by now (backoff starts at 0.5 s)
    expect(sdk.state).to.equal('disconnected');
    expect(connecting).to.deep.equal([]);
    await other.ping();
  });

  it('switching an app from multi to single makes the next connection replace those opened before', async function () {
    const app = await stack.createApp();
    const a = await connect(app, 'gina', 'phone', edge(0));
    const b = await connect(app, 'gina', 'laptop', edge(1));
    const r = await stack.http('PATCH', `/v1/admin/apps/${app.id}`, stack.adminKey, {
      settings: { devicePolicy: 'single' },
    });
    expect(r.status).to.equal(200);
    // Edges hear of the change through the apps bucket watch.
    await sleep(500);
    const c = await connect(app, 'gina', 'tablet', edge(0));
    expect(await a.waitClosed()).to.equal(4006);
    expect(await b.waitClosed()).to.equal(4006);
    await c.ping();
  });

  it('refuses a devicePolicy that is not one of multi, single, single-per-device', async function () {
    const r = await stack.http('POST', '/v1/admin/apps', stack.adminKey, { settings: { devicePolicy: 'one' } });
    expect(r.status).to.equal(400);
    expect(r.body['error']).to.deep.include({ code: 'bad_request' });
    expect((r.body['error'] as { message: string }).message).to.contain('devicePolicy must be one of');
  });
});

describe('devicePolicy: a claim missed while an edge was cut from NATS', function () {
  this.timeout(60_000);
  let stack: Stack;
  let proxy: TcpProxy;
  let cut: Edge;
  let app: TestApp;
  const clients: TestClient[] = [];

  before(async function () {
    stack = await Stack.start();
    ({ edge: cut, proxy } = await stack.startEdgeBehindProxy());
    app = await stack.createApp({ devicePolicy: 'single' });
  });
  after(async function () {
    for (const c of clients) c.terminate();
    await stack?.close();
    await proxy?.stop();
  });

  it('closes the older connection once its edge is back: the edge announces its connections again after the reconnect', async function () {
    const old = await app.connect('hana', 'phone', '', cut);
    clients.push(old);
    proxy.setDown(true); // the edge's NATS connections drop; its client stays connected
    await sleep(300);
    const fresh = await app.connect('hana', 'laptop', '', stack.edges[0]);
    clients.push(fresh);
    await sleep(500);
    expect(old.closeCode, 'the claim cannot reach the cut edge').to.equal(undefined);
    proxy.setDown(false);
    expect(await old.waitClosed(15_000)).to.equal(4006);
    expect(old.closeReason).to.equal('replaced');
    await fresh.ping();
  });
});
