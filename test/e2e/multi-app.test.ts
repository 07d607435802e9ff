import { expect } from 'chai';
import { Stack, type TestApp } from '../helpers/stack.js';
import type { Frame, TestClient } from '../helpers/ws-client.js';

/** One Prometheus sample: `name{labels} value`, labels given as a subset to match (summed over the rest). */
function sampleSum(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = new Map<string, string>();
    for (const kv of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) have.set(kv[1]!, kv[2]!);
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) sum += Number(m[4]);
  }
  return sum;
}

/**
 * Several apps on one connection (issue 17, part 1): a connection opened with one app's token
 * attaches other apps' sessions with their own tokens; every frame about an app then carries
 * `app`; each session has its own inbox, acks, kick and disable, through the real edge, center
 * and NATS.
 */
describe('several apps on one connection', function () {
  let stack: Stack;
  let a: TestApp;
  let b: TestApp;
  let c: TestApp;
  const clients: TestClient[] = [];

  before(async function () {
    stack = await Stack.start({ PUSH_EDGE_MAX_APPS_PER_CONNECTION: '3' });
    a = await stack.createApp();
    b = await stack.createApp();
    c = await stack.createApp();
  });
  after(async function () {
    for (const x of clients) x.terminate();
    await stack?.close();
  });

  async function open(app: TestApp, user: string): Promise<TestClient> {
    const x = await app.connect(user, 'phone');
    clients.push(x);
    return x;
  }
  /** Sends `attach` with the app's token for `user`; resolves with the `attached` or `error` answer about it. */
  async function attach(x: TestClient, app: TestApp, user: string, token?: string): Promise<Frame> {
    const before = x.frames.length;
    x.send({ t: 'attach', token: token ?? (await app.token(user, 'phone')) });
    return x.waitFor(
      (f) => x.frames.indexOf(f) >= before && (f.t === 'attached' || f.t === 'error') && f['app'] === app.id,
    );
  }
  const msgOf = (x: TestClient, app: TestApp, seq: number) => (f: Frame) =>
    f.t === 'msg' && f['app'] === app.id && f['seq'] === seq && x.frames.includes(f);
  /** Waits until presence lists `n` connections of the user. */
  async function online(app: TestApp, user: string, n: number): Promise<void> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const got = ((await app.user(user)).body['connections'] as unknown[]).length;
      if (got === n) return;
      if (Date.now() > deadline) throw new Error(`presence of ${user}: ${got} connections, wanted ${n}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('a connection with one app is unchanged on the wire: no frame carries app', async function () {
    const x = await open(a, 'solo');
    const seq = await a.pushOk('solo', { hi: 1 });
    const [m] = await x.waitForMessages(1);
    expect(m?.seq).to.equal(seq);
    x.ack([seq]);
    x.send({ t: 'ack', seqs: [999] }); // ack_unknown: an error frame about the app
    await x.waitFor((f) => f.t === 'error');
    await x.ping();
    for (const f of x.frames) if (f.t !== 'hello') expect(f, JSON.stringify(f)).to.not.have.property('app');
  });

  it('attaches a second and third app (other users): each gets its own hello-like answer, its own pushes with app, acks per session', async function () {
    const x = await open(a, 'ann');
    const hb = await attach(x, b, 'bob');
    expect(hb).to.include({ t: 'attached', app: b.id, user: 'bob', device: 'phone', conn: x.hello['conn'] });
    expect(hb['window']).to.be.a('number');
    const hc = await attach(x, c, 'cat');
    expect(hc).to.include({ t: 'attached', app: c.id, user: 'cat' });
    await online(b, 'bob', 1);
    await online(c, 'cat', 1);

    const sa = await a.pushOk('ann', 'for ann');
    const sb = await b.pushOk('bob', 'for bob');
    const sc = await c.pushOk('cat', 'for cat');
    const ma = await x.waitFor(msgOf(x, a, sa));
    const mb = await x.waitFor(msgOf(x, b, sb));
    const mc = await x.waitFor(msgOf(x, c, sc));
    expect([ma['data'], mb['data'], mc['data']]).to.deep.equal(['for ann', 'for bob', 'for cat']);
    // Pushes of one app never reach another's session: one msg per app, each with its own app.
    expect(x.frames.filter((f) => f.t === 'msg').map((f) => f['app'])).to.have.members([a.id, b.id, c.id]);

    // Acks go to the session named: b's ack removes b's message only.
    x.send({ t: 'ack', app: b.id, seqs: [sb] });
    await b.waitPending('bob', 0);
    expect((await a.user('ann')).body['pending']).to.equal(1);
    // The same seq acked for an app it was not delivered to: ack_unknown about that app.
    x.send({ t: 'ack', app: c.id, seqs: [sc + 100] });
    const err = await x.waitFor((f) => f.t === 'error' && f['code'] === 'ack_unknown');
    expect(err['app']).to.equal(c.id);
    x.send({ t: 'ack', app: a.id, seqs: [sa] });
    x.send({ t: 'ack', app: c.id, seqs: [sc] });
    await a.waitPending('ann', 0);
    await c.waitPending('cat', 0);
  });

  it('refuses a bad attach with a clear code each, and the connection stays usable', async function () {
    const x = await open(a, 'eve');
    // The connection's own app again, and an app already attached: app_attached.
    expect((await attach(x, a, 'eve2'))['code']).to.equal('app_attached');
    expect((await attach(x, b, 'eve'))['t']).to.equal('attached');
    expect((await attach(x, b, 'eve3'))['code']).to.equal('app_attached');
    // A token signed with the wrong secret: token_invalid; an expired one: token_expired.
    const forged = (await c.token('eve')).replace(/\.[^.]+$/, '.AAAA');
    expect((await attach(x, c, 'eve', forged))['code']).to.equal('token_invalid');
    expect((await attach(x, c, 'eve', await c.token('eve', 'phone', -10)))['code']).to.equal('token_expired');
    // Garbage: token_malformed (no app to name).
    const before = x.frames.length;
    x.send({ t: 'attach', token: 'not-a-token' });
    const bad = await x.waitFor((f) => x.frames.indexOf(f) >= before && f.t === 'error');
    expect(bad['code']).to.equal('token_malformed');
    // A detach or a frame for an app with no session here: app_not_attached.
    x.send({ t: 'send', app: c.id, to: 'x', id: 'm1', data: 1 });
    const na = await x.waitFor((f) => f.t === 'error' && f['code'] === 'app_not_attached' && f['id'] === 'm1');
    expect(na['app']).to.equal(c.id);
    // The limit (3 here): a third app fits, a fourth does not.
    const d = await stack.createApp();
    expect((await attach(x, c, 'eve'))['t']).to.equal('attached');
    expect((await attach(x, d, 'eve'))['code']).to.equal('too_many_apps');
    // A disabled app: its session detached (the edge knows), then app_disabled.
    x.send({ t: 'detach', app: c.id });
    await x.waitFor((f) => f.t === 'detached' && f['app'] === c.id);
    expect((await attach(x, d, 'eve'))['t']).to.equal('attached');
    await stack.http('PATCH', `/v1/admin/apps/${d.id}`, stack.adminKey, { disabled: true });
    await x.waitFor((f) => f.t === 'detached' && f['app'] === d.id && f['reason'] === 'app_disabled');
    expect((await attach(x, d, 'eve'))['code']).to.equal('app_disabled');
    await stack.http('PATCH', `/v1/admin/apps/${d.id}`, stack.adminKey, { disabled: false });
    // Frames that are not an attach or detach: bad_frame; an `app` that is not a string names no session.
    for (const [i, frame] of [
      { t: 'attach' },
      { t: 'attach', token: 5 },
      { t: 'detach' },
      { t: 'detach', app: 5 },
    ].entries()) {
      const at = x.frames.length;
      x.send(frame);
      const e = await x.waitFor((f) => x.frames.indexOf(f) >= at && f.t === 'error');
      expect(e['code'], `frame ${i}`).to.equal('bad_frame');
      // A refused attach names no token's app: it is not the first app's error either.
      if (frame.t === 'attach') expect(e, `frame ${i}`).to.not.have.property('app');
    }
    x.send({ t: 'send', app: 5, to: 'x', id: 'm2', data: 1 });
    const numeric = await x.waitFor((f) => f.t === 'error' && f['id'] === 'm2');
    expect(numeric['code']).to.equal('app_not_attached');
    expect(numeric).to.not.have.property('app');
    await x.ping();
    expect(x.closeCode).to.equal(undefined);
  });

  it('an attach whose app is deleted or disabled before its answer is answered by an error, never a bare detached', async function () {
    this.timeout(60_000);
    const x = await open(a, 'racer');
    for (let i = 0; i < 12; i++) {
      const op = i % 2 === 0 ? 'delete' : 'disable';
      // A new app: the edge has no `_all` channel for it yet, so its `attached` waits for one.
      const n = await stack.createApp();
      const token = await n.token('racer', 'phone');
      const change =
        op === 'delete'
          ? stack.http('DELETE', `/v1/admin/apps/${n.id}`, stack.adminKey)
          : stack.http('PATCH', `/v1/admin/apps/${n.id}`, stack.adminKey, { disabled: true });
      if (i % 4 > 1) await new Promise((r) => setTimeout(r, 2));
      x.send({ t: 'attach', token });
      await change;
      await new Promise((r) => setTimeout(r, 300));
      const about = x.frames.filter((f) => f['app'] === n.id);
      const first = about[0];
      expect(first?.t, `${op} ${i}: ${JSON.stringify(about)}`).to.be.oneOf(['attached', 'error']);
      if (first?.t === 'attached') {
        expect(about[1], `${op} ${i}`).to.deep.include({ t: 'detached', reason: 'app_disabled' });
      } else {
        expect(first?.['code'], `${op} ${i}`).to.equal(op === 'delete' ? 'app_not_found' : 'app_disabled');
      }
    }
    await x.ping();
    expect(x.closeCode).to.equal(undefined);
  });

  it('limits attaches per connection per second (rate_limited with retryAfter); the connection stays', async function () {
    const x = await open(a, 'rex');
    for (let i = 0; i < 25; i++) x.send({ t: 'attach', token: 'not-a-token' });
    const limited = await x.waitFor((f) => f.t === 'error' && f['code'] === 'rate_limited');
    expect(limited['retryAfter']).to.be.a('number').and.greaterThan(0);
    // Within the burst, each was checked (token_malformed); the rest were refused unread.
    await x.waitFor(() => x.frames.filter((f) => f.t === 'error').length === 25);
    const codes = x.frames.filter((f) => f.t === 'error').map((f) => f['code']);
    expect(codes.filter((c) => c === 'token_malformed').length).to.be.within(10, 12);
    await x.ping();
  });

  it('a kick of one app (center kick API) detaches its session while the others keep receiving', async function () {
    const x = await open(a, 'kim');
    await attach(x, b, 'kim');
    await attach(x, c, 'kim');
    await online(b, 'kim', 1);
    const r = await stack.http('POST', `/v1/apps/${encodeURIComponent(b.id)}/users/kim/kick`, b.apiKey, {
      reason: 'signed out',
    });
    expect(r.status).to.equal(202);
    const d = await x.waitFor((f) => f.t === 'detached' && f['app'] === b.id);
    expect(d).to.include({ reason: 'kicked', message: 'signed out' });
    await online(b, 'kim', 0);
    // b's pushes are stored, not delivered here; a and c keep receiving on the same socket.
    await b.pushOk('kim', 'after kick');
    const sa = await a.pushOk('kim', 'still a');
    const sc = await c.pushOk('kim', 'still c');
    await x.waitFor(msgOf(x, a, sa));
    await x.waitFor(msgOf(x, c, sc));
    expect(x.frames.some((f) => f.t === 'msg' && f['app'] === b.id)).to.equal(false);
    expect(x.closeCode).to.equal(undefined);
    // Attaching b again (a new token) delivers what was stored meanwhile.
    expect((await attach(x, b, 'kim'))['t']).to.equal('attached');
    const mb = await x.waitFor((f) => f.t === 'msg' && f['app'] === b.id);
    expect(mb['data']).to.equal('after kick');

    // A kick of the connection's first app detaches it too while others remain.
    await stack.http('POST', `/v1/apps/${encodeURIComponent(a.id)}/users/kim/kick`, a.apiKey, {});
    await x.waitFor((f) => f.t === 'detached' && f['app'] === a.id);
    const sc2 = await c.pushOk('kim', 'c after a left');
    await x.waitFor(msgOf(x, c, sc2));
    // Frames with no app no longer have a session to go to.
    x.send({ t: 'send', to: 'x', id: 'n1', data: 1 });
    expect((await x.waitFor((f) => f.t === 'error' && f['id'] === 'n1'))['code']).to.equal('app_not_attached');
  });

  it('devicePolicy single: a newer connection of the user replaces an attached session (detached, replaced) and the first app keeps receiving; a newer attach replaces an older connection', async function () {
    const s = await stack.createApp({ devicePolicy: 'single' });
    const x = await open(a, 'rey');
    expect((await attach(x, s, 'rey'))['t']).to.equal('attached');
    await online(s, 'rey', 1);
    // A newer connection of the same user of the single app (its own socket) takes over.
    const y = await open(s, 'rey');
    const d = await x.waitFor((f) => f.t === 'detached' && f['app'] === s.id);
    expect(d['reason']).to.equal('replaced');
    await online(s, 'rey', 1);
    const sa = await a.pushOk('rey', 'a stays');
    await x.waitFor(msgOf(x, a, sa));
    const ss = await s.pushOk('rey', 'to the newest');
    await y.waitFor((f) => f.t === 'msg' && f['seq'] === ss);
    expect(x.frames.some((f) => f.t === 'msg' && f['app'] === s.id)).to.equal(false);
    expect(x.closeCode).to.equal(undefined);
    // Attaching again is newer still: it replaces y, whose socket closes with 4006 (its only session).
    expect((await attach(x, s, 'rey'))['t']).to.equal('attached');
    expect(await y.waitClosed()).to.equal(4006);
    const s2 = await s.pushOk('rey', 'back on the shared connection');
    await x.waitFor(msgOf(x, s, s2));
  });

  it('disabling an app sends detached and the connection stays for the others; the last one left closes as before', async function () {
    const e = await stack.createApp();
    const x = await open(a, 'dan');
    await attach(x, e, 'dan');
    await online(e, 'dan', 1);
    await stack.http('PATCH', `/v1/admin/apps/${e.id}`, stack.adminKey, { disabled: true });
    const d = await x.waitFor((f) => f.t === 'detached' && f['app'] === e.id);
    expect(d['reason']).to.equal('app_disabled');
    const sa = await a.pushOk('dan', 'a stays');
    await x.waitFor(msgOf(x, a, sa));
    expect(x.closeCode).to.equal(undefined);
    await stack.http('PATCH', `/v1/admin/apps/${e.id}`, stack.adminKey, { disabled: false });

    // A client detach of every app but one, then of the last: the socket closes normally.
    const y = await open(a, 'dora');
    await attach(y, b, 'dora');
    y.send({ t: 'detach', app: a.id });
    await y.waitFor((f) => f.t === 'detached' && f['app'] === a.id && f['reason'] === 'client');
    y.send({ t: 'detach', app: b.id });
    expect(await y.waitClosed()).to.equal(1000);
  });

  it('topics: each session subscribes its own app, and fanned-out topic frames carry app', async function () {
    const x = await open(a, 'tom');
    const tokenB = await b.token('tom', 'phone', 3600, ['news']);
    x.send({ t: 'attach', token: tokenB });
    await x.waitFor((f) => f.t === 'attached' && f['app'] === b.id);
    x.send({ t: 'sub', app: b.id, topic: 'news' });
    const sub = await x.waitFor((f) => f.t === 'subscribed' && f['app'] === b.id);
    expect(sub['topic']).to.equal('news');
    const seq = await b.publishTopicOk('news', 'b news');
    const m = await x.waitFor((f) => f.t === 'msg' && f['topic'] === 'news' && f['seq'] === seq);
    expect(m['app']).to.equal(b.id);
    // _all of the first app, joined before the attach, now comes with app too.
    const r = await stack.http('POST', `/v1/apps/${encodeURIComponent(a.id)}/topics/_all/messages`, a.apiKey, {
      data: 'to all of a',
    });
    expect(r.status).to.equal(200);
    const all = await x.waitFor((f) => f.t === 'msg' && f['topic'] === '_all' && f['data'] === 'to all of a');
    expect(all['app']).to.equal(a.id);
  });

  it('across two edges and in races: one user of an attached app on two connections, a frame right behind its attach, unacked messages after a detach', async function () {
    const edge2 = await stack.startEdge({ PUSH_EDGE_MAX_APPS_PER_CONNECTION: '3' });
    const x = await open(a, 'ray');
    const y = await c.connect('ray-c', 'laptop', '', edge2);
    clients.push(y);
    // The attach and a send of the attached app in the same turn: the send finds its session.
    x.send({ t: 'attach', token: await b.token('ray', 'phone') });
    x.send({ t: 'rpc', app: b.id, id: 'r1', method: 'm' });
    const answer = await x.waitFor((f) => f['id'] === 'r1');
    expect(answer).to.include({ t: 'error', app: b.id, code: 'rpc_unavailable' });
    expect((await attach(y, b, 'ray'))['t']).to.equal('attached'); // the same user of b, on edge 2
    await online(b, 'ray', 2);

    // A push to b's user reaches both connections' b sessions; each acks its own.
    const s1 = await b.pushOk('ray', 'both');
    await x.waitFor(msgOf(x, b, s1));
    await y.waitFor(msgOf(y, b, s1));
    const s2 = await b.pushOk('ray', 'unacked then detached');
    await x.waitFor(msgOf(x, b, s2));
    await y.waitFor(msgOf(y, b, s2));
    x.send({ t: 'ack', app: b.id, seqs: [s1] });
    // y detaches b without acking: s2 stays stored (x has not acked it either).
    y.send({ t: 'detach', app: b.id });
    await y.waitFor((f) => f.t === 'detached' && f['app'] === b.id);
    expect((await attach(y, b, 'ray'))['t']).to.equal('attached');
    // Delivered again to the new session (it was never acked), and its ack removes it.
    await y.waitFor(
      (f) =>
        f.t === 'msg' &&
        f['app'] === b.id &&
        f['seq'] === s2 &&
        y.frames.indexOf(f) > y.frames.findIndex((g) => g.t === 'detached'),
    );
    y.send({ t: 'ack', app: b.id, seqs: [s2] });
    await b.waitPending('ray', 0);

    // A kick of b's user (one device) on every edge: both b sessions end; a and c stay.
    const k = await stack.http('POST', `/v1/apps/${encodeURIComponent(b.id)}/users/ray/kick`, b.apiKey, {
      device: 'phone',
    });
    expect(k.body).to.deep.equal({ sent: true, connections: 2 });
    await x.waitFor((f) => f.t === 'detached' && f['app'] === b.id && f['reason'] === 'kicked');
    await y.waitFor(
      (f) =>
        f.t === 'detached' &&
        f['app'] === b.id &&
        f['reason'] === 'kicked' &&
        y.frames.filter((g) => g.t === 'detached').length === 2,
    );
    const sa = await a.pushOk('ray', 'a on edge 1');
    const sc = await c.pushOk('ray-c', 'c on edge 2');
    await x.waitFor(msgOf(x, a, sa));
    await y.waitFor(msgOf(y, c, sc));
    expect([x.closeCode, y.closeCode]).to.deep.equal([undefined, undefined]);
  });

  it('counts traffic per app with the connection first app', async function () {
    const x = await open(a, 'tess');
    await attach(x, b, 'tess');
    const sb = await b.pushOk('tess', 'counted');
    await x.waitFor(msgOf(x, b, sb));
    x.send({ t: 'ack', app: b.id, seqs: [sb] });
    await b.waitPending('tess', 0);
    const text = await (await fetch(`http://127.0.0.1:${stack.edge.port}/metrics`)).text();
    const out = { app: b.id, first_app: a.id, direction: 'out' };
    expect(sampleSum(text, 'push_edge_traffic_frames_total', out)).to.be.at.least(2); // attached + msg
    expect(sampleSum(text, 'push_edge_traffic_bytes_total', out)).to.be.greaterThan(20);
    expect(
      sampleSum(text, 'push_edge_traffic_frames_total', { app: b.id, first_app: a.id, direction: 'in' }),
    ).to.be.at.least(1); // the ack
    expect(
      sampleSum(text, 'push_edge_traffic_bytes_total', { app: b.id, first_app: a.id, direction: 'in' }),
    ).to.be.greaterThan(10);
    expect(sampleSum(text, 'push_edge_traffic_frames_total', { app: a.id, first_app: a.id })).to.be.greaterThan(0);
  });
});
