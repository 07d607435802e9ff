import { expect } from 'chai';
import WebSocket from 'ws';
import { pusherCredentials, pusherSign } from '@push/apps';
import { Stack, type TestApp } from '../helpers/stack.js';
import { pusherRequest, pusherServer, until } from '../helpers/pusher.js';
import { TestClient } from '../helpers/ws-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type PusherFrame = { event: string; channel?: string; data?: unknown };

/** A raw Pusher protocol socket: every frame it got, and how it closed. */
class RawPusher {
  readonly frames: PusherFrame[] = [];
  closed: { code: number; reason: string } | undefined;
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (d: Buffer) => this.frames.push(JSON.parse(d.toString('utf8')) as PusherFrame));
    ws.on('close', (code, reason) => (this.closed = { code, reason: reason.toString() }));
  }

  static open(url: string): RawPusher {
    return new RawPusher(new WebSocket(url));
  }

  async socketId(): Promise<string> {
    await until(() => this.frames.some((f) => f.event === 'pusher:connection_established'), 'connection_established');
    const f = this.frames.find((x) => x.event === 'pusher:connection_established');
    return (JSON.parse(f?.data as string) as { socket_id: string }).socket_id;
  }

  send(frame: PusherFrame & Record<string, unknown>): void {
    this.ws.send(JSON.stringify(frame));
  }

  async next(pred: (f: PusherFrame) => boolean, what: string): Promise<PusherFrame> {
    await until(() => this.frames.some(pred), what);
    return this.frames.find(pred) as PusherFrame;
  }

  /** The `data` of a frame, parsed when it is a JSON string (as Pusher sends it). */
  static data(f: PusherFrame): Record<string, unknown> {
    return (typeof f.data === 'string' ? JSON.parse(f.data) : f.data) as Record<string, unknown>;
  }
}

describe('Pusher door: bad input gets Pusher’s codes and stores nothing (issue 18)', function () {
  this.timeout(30_000);
  let stack: Stack;
  let app: TestApp;
  let quiet: TestApp;
  const sockets: RawPusher[] = [];
  const natives: TestClient[] = [];

  const open = (key: string, query = 'protocol=7&client=js&version=8.4.0'): RawPusher => {
    const s = RawPusher.open(`ws://127.0.0.1:${stack.edge.port}/app/${encodeURIComponent(key)}?${query}`);
    sockets.push(s);
    return s;
  };

  /** The topic's last sequence, as a native `sub` with `since: 0` answers it (0: nothing stored). */
  async function lastSeq(topic: string): Promise<number> {
    const c = await app.connectWithTopics('checker', ['*']);
    natives.push(c);
    c.send({ t: 'sub', topic, since: 0 });
    const f = await c.waitFor((x) => x.t === 'subscribed' && x['topic'] === topic);
    return f['seq'] as number;
  }

  before(async function () {
    stack = await Stack.start();
    app = await stack.createApp({ clientMessaging: true, sendRatePerConnection: 3 });
    quiet = await stack.createApp({});
  });
  afterEach(function () {
    for (const s of sockets.splice(0)) s.ws.terminate();
    for (const c of natives.splice(0)) c.terminate();
  });
  after(async function () {
    await stack?.close();
  });

  describe('HTTP', function () {
    it('a trigger signed with another secret: 401 signature_invalid, nothing stored', async function () {
      const server = pusherServer(stack, app, { secret: 'not-the-secret' });
      const err = await server.trigger('h-secret', 'e', 'x').then(
        () => undefined,
        (e: { status: number; body: string }) => e,
      );
      expect(err?.status).to.equal(401);
      expect((JSON.parse(err?.body ?? '{}') as { error: { code: string } }).error.code).to.equal('signature_invalid');
      expect(await lastSeq('h-secret')).to.equal(0);
    });

    it('an auth_timestamp older than 600 s: 401 timestamp_expired; 590 s is still fine', async function () {
      const body = { name: 'e', data: 'x', channels: ['h-time'] };
      const old = await pusherRequest(stack, app, 'POST', `/apps/${app.id}/events`, {
        body,
        timestamp: Math.floor(Date.now() / 1000) - 700,
      });
      expect(old.status).to.equal(401);
      expect(old.body.error?.code).to.equal('timestamp_expired');
      expect(await lastSeq('h-time')).to.equal(0);
      const ok = await pusherRequest(stack, app, 'POST', `/apps/${app.id}/events`, {
        body,
        timestamp: Math.floor(Date.now() / 1000) - 590,
      });
      expect(ok.status).to.equal(200);
      // Stored: a subscriber from the start gets it (live, when its edge already follows the
      // topic and has not heard of it yet: `subscribed.seq` is what the edge has seen).
      const c = await app.connectWithTopics('checker', ['*']);
      natives.push(c);
      c.send({ t: 'sub', topic: 'h-time', since: 0 });
      await c.waitFor((x) => x.t === 'msg' && x['topic'] === 'h-time');
    });

    it('a body other than the one signed (body_md5), a wrong auth_key, no signature: 401 signature_invalid', async function () {
      const path = `/apps/${app.id}/events`;
      const body = { name: 'e', data: 'x', channels: ['h-md5'] };
      const swapped = await pusherRequest(stack, app, 'POST', path, {
        body,
        sentBody: JSON.stringify({ ...body, data: 'changed' }),
      });
      expect([swapped.status, swapped.body.error?.code]).to.deep.equal([401, 'signature_invalid']);
      const key = await pusherRequest(stack, app, 'POST', path, { body, key: 'someone-else' });
      expect([key.status, key.body.error?.code]).to.deep.equal([401, 'signature_invalid']);
      const res = await fetch(`${stack.httpUrl}${path}`, { method: 'POST', body: JSON.stringify(body) });
      expect(res.status).to.equal(401);
      expect(await lastSeq('h-md5')).to.equal(0);
    });

    it('an unknown app id: 404 app_not_found', async function () {
      const r = await pusherRequest(stack, app, 'POST', `/apps/no-such-app/events`, {
        body: { name: 'e', data: 'x', channels: ['c'] },
      });
      expect([r.status, r.body.error?.code]).to.deep.equal([404, 'app_not_found']);
    });

    it('channel names past Pusher’s rules: 400 invalid_topic, and no channel of the request gets the event', async function () {
      for (const bad of ['x'.repeat(165), 'has space', 'star*', '_reserved', '']) {
        const r = await pusherRequest(stack, app, 'POST', `/apps/${app.id}/events`, {
          body: { name: 'e', data: 'x', channels: ['h-valid', bad] },
        });
        expect([r.status, r.body.error?.code], JSON.stringify(bad)).to.deep.equal([400, 'invalid_topic']);
      }
      const batch = await pusherRequest(stack, app, 'POST', `/apps/${app.id}/batch_events`, {
        body: {
          batch: [
            { channel: 'h-valid', name: 'e', data: 'x' },
            { channel: 'bad name', name: 'e', data: 'x' },
          ],
        },
      });
      expect([batch.status, batch.body.error?.code]).to.deep.equal([400, 'invalid_topic']);
      expect(await lastSeq('h-valid')).to.equal(0);
      const info = await pusherRequest(stack, app, 'GET', `/apps/${app.id}/channels/bad%20name`);
      expect([info.status, info.body.error?.code]).to.deep.equal([400, 'invalid_topic']);
    });

    it('malformed events: 400 bad_request (data not a string, no name, over 100 channels, over 10 in a batch, user_count of a public channel)', async function () {
      const events = `/apps/${app.id}/events`;
      const cases: Array<[string, 'GET' | 'POST', string, unknown, Record<string, string>?]> = [
        ['data not a string', 'POST', events, { name: 'e', data: { a: 1 }, channels: ['h-bad'] }],
        ['no name', 'POST', events, { data: 'x', channels: ['h-bad'] }],
        [
          '101 channels',
          'POST',
          events,
          { name: 'e', data: 'x', channels: Array.from({ length: 101 }, (_, i) => `c${i}`) },
        ],
        [
          'a socket_id that is not one',
          'POST',
          events,
          { name: 'e', data: 'x', channels: ['h-bad'], socket_id: 'abc' },
        ],
        [
          '11 in a batch',
          'POST',
          `/apps/${app.id}/batch_events`,
          { batch: Array.from({ length: 11 }, () => ({ channel: 'h-bad', name: 'e', data: 'x' })) },
        ],
        ['user_count of a public channel', 'GET', `/apps/${app.id}/channels/h-bad`, undefined, { info: 'user_count' }],
        [
          'a trigger asking user_count of a public channel',
          'POST',
          events,
          { name: 'e', data: 'x', channels: ['h-bad'], info: 'user_count' },
        ],
        ['users of a public channel', 'GET', `/apps/${app.id}/channels/h-bad/users`, undefined],
        ['an info attribute of neither kind', 'GET', `/apps/${app.id}/channels/h-bad`, undefined, { info: 'foo' }],
        ['an info attribute of neither kind, listed', 'GET', `/apps/${app.id}/channels`, undefined, { info: 'foo' }],
      ];
      for (const [what, method, path, body, params] of cases) {
        const r = await pusherRequest(stack, app, method, path, { body, ...(params ? { params } : {}) });
        expect([r.status, r.body.error?.code], what).to.deep.equal([400, 'bad_request']);
      }
      expect(await lastSeq('h-bad')).to.equal(0);
    });

    it('a topic presenceTopics makes a presence one is a presence channel for user_count and users alike', async function () {
      const rooms = await stack.createApp({ presenceTopics: ['room-*'] });
      const member = await rooms.connectWithTopics('rita', ['room-*']);
      natives.push(member);
      member.send({ t: 'sub', topic: 'room-1' });
      await member.waitFor((f) => f.t === 'subscribed');
      const count = await pusherRequest(stack, rooms, 'GET', `/apps/${rooms.id}/channels/room-1`, {
        params: { info: 'user_count' },
      });
      expect([count.status, count.body]).to.deep.equal([200, { occupied: true, user_count: 1 }]);
      const users = await pusherRequest(stack, rooms, 'GET', `/apps/${rooms.id}/channels/room-1/users`);
      expect([users.status, users.body]).to.deep.equal([200, { users: [{ id: 'rita' }] }]);
    });
  });

  describe('WebSocket', function () {
    it('an unknown app key: pusher:error 4001 and close 4001', async function () {
      const s = open('no-such-key');
      const f = await s.next((x) => x.event === 'pusher:error', 'pusher:error');
      expect((f.data as { code: number }).code).to.equal(4001);
      await until(() => s.closed !== undefined, 'the close');
      expect(s.closed?.code).to.equal(4001);
    });

    it('no protocol, a protocol that is not a number, an unsupported one: 4008, 4006, 4007', async function () {
      for (const [query, code] of [
        ['client=js', 4008],
        ['protocol=seven', 4006],
        ['protocol=3', 4007],
      ] as const) {
        const s = open(app.id, query);
        await until(() => s.closed !== undefined, `the close for ${query}`);
        expect(s.closed?.code, query).to.equal(code);
        expect(s.frames.map((f) => (f.data as { code: number }).code)).to.deep.equal([code]);
      }
    });

    it('a private channel with a wrong signature, a name past the rules, presence without user_id: subscription_error; the socket stays usable', async function () {
      const s = open(app.id);
      const socketId = await s.socketId();
      const key = pusherCredentials(app.record).key;
      s.send({ event: 'pusher:subscribe', data: { channel: 'private-x', auth: `${key}:${'0'.repeat(64)}` } });
      const bad = await s.next(
        (f) => f.event === 'pusher:subscription_error' && f.channel === 'private-x',
        'auth error',
      );
      expect(RawPusher.data(bad)).to.include({ type: 'AuthError', status: 401 });
      s.send({ event: 'pusher:subscribe', data: { channel: 'y'.repeat(165) } });
      const long = await s.next((f) => f.event === 'pusher:subscription_error' && f.channel !== 'private-x', 'name');
      expect(RawPusher.data(long)).to.include({ type: 'InvalidChannel', status: 400 });
      const channelData = JSON.stringify({ user_info: { name: 'no id' } });
      const secret = pusherCredentials(app.record).secrets[0] ?? '';
      const auth = `${key}:${pusherSign(secret, `${socketId}:presence-x:${channelData}`)}`;
      s.send({ event: 'pusher:subscribe', data: { channel: 'presence-x', auth, channel_data: channelData } });
      const noId = await s.next((f) => f.event === 'pusher:subscription_error' && f.channel === 'presence-x', 'data');
      expect(RawPusher.data(noId)).to.include({ type: 'InvalidChannelData', status: 400 });
      s.send({ event: 'pusher:subscribe', data: { channel: 'still-fine' } });
      await s.next((f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === 'still-fine', 'ok');
      s.send({ event: 'pusher:ping', data: {} });
      await s.next((f) => f.event === 'pusher:pong', 'pong');
      expect(s.closed).to.equal(undefined);
    });

    it('client events: refused on public channels, unsubscribed channels and apps without clientMessaging; 4301 past the rate', async function () {
      const s = open(app.id);
      const socketId = await s.socketId();
      const key = pusherCredentials(app.record).key;
      const secret = pusherCredentials(app.record).secrets[0] ?? '';
      s.send({ event: 'pusher:subscribe', data: { channel: 'ce-public' } });
      s.send({
        event: 'pusher:subscribe',
        data: { channel: 'private-ce', auth: `${key}:${pusherSign(secret, `${socketId}:private-ce`)}` },
      });
      await s.next((f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === 'private-ce', 'ok');
      const r = open(app.id);
      const rid = await r.socketId();
      r.send({
        event: 'pusher:subscribe',
        data: { channel: 'private-ce', auth: `${key}:${pusherSign(secret, `${rid}:private-ce`)}` },
      });
      await r.next((f) => f.event === 'pusher_internal:subscription_succeeded', 'the receiver subscribed');
      s.send({ event: 'client-x', channel: 'ce-public', data: {} });
      s.send({ event: 'client-x', channel: 'private-other', data: {} });
      await until(() => s.frames.filter((f) => f.event === 'pusher:error').length === 2, 'two errors');
      for (let i = 0; i < 6; i++) s.send({ event: 'client-burst', channel: 'private-ce', data: { i } });
      const refused = () =>
        s.frames.filter((f) => f.event === 'pusher:error' && (f.data as { code: number | null }).code === 4301);
      const delivered = () => r.frames.filter((f) => f.event === 'client-burst');
      await until(() => refused().length + delivered().length === 6, 'every burst event delivered or refused');
      // The app allows 3 per second (the bucket starts full): the rest of a quick burst is refused.
      expect(refused().length).to.be.within(2, 3);
      expect((refused()[0]?.data as { message: string }).message).to.match(/per second/);
      expect(delivered().map((f) => (f.data as { i: number }).i)).to.deep.equal(
        Array.from({ length: delivered().length }, (_, i) => i),
      );
      await sleep(100);
      expect(
        r.frames.filter((f) => f.event === 'client-x'),
        'refused events reach nobody',
      ).to.deep.equal([]);
      expect(await lastSeq('ce-public')).to.equal(0);

      const q = RawPusher.open(`ws://127.0.0.1:${stack.edge.port}/app/${quiet.id}?protocol=7`);
      sockets.push(q);
      const qid = await q.socketId();
      const qcreds = pusherCredentials(quiet.record);
      q.send({
        event: 'pusher:subscribe',
        data: {
          channel: 'private-q',
          auth: `${qcreds.key}:${pusherSign(qcreds.secrets[0] ?? '', `${qid}:private-q`)}`,
        },
      });
      await q.next((f) => f.event === 'pusher_internal:subscription_succeeded', 'ok');
      q.send({ event: 'client-x', channel: 'private-q', data: {} });
      const off = await q.next((f) => f.event === 'pusher:error', 'the refusal');
      expect((off.data as { message: string }).message).to.match(/clientMessaging/);
    });

    it("another user's #server-to-user- channel: AuthError 401; a signin with a bad signature: 4009 and the close", async function () {
      const s = open(app.id);
      const socketId = await s.socketId();
      s.send({ event: 'pusher:subscribe', data: { channel: '#server-to-user-uma' } });
      const refused = await s.next((f) => f.event === 'pusher:subscription_error', 'the refusal');
      expect(RawPusher.data(refused)).to.include({ type: 'AuthError', status: 401 });
      const key = pusherCredentials(app.record).key;
      const userData = JSON.stringify({ id: 'uma' });
      s.send({
        event: 'pusher:signin',
        data: { user_data: userData, auth: `${key}:${pusherSign('wrong', `${socketId}::user::${userData}`)}` },
      });
      await until(() => s.closed !== undefined, 'the close');
      expect(s.closed?.code).to.equal(4009);
      expect(s.frames.some((f) => f.event === 'pusher:signin_success')).to.equal(false);
    });

    it('past PUSH_EDGE_MAX_CONNECTIONS, both doors counted: a Pusher socket gets 4100, a native upgrade 503 edge_full', async function () {
      const edge = await stack.startEdge({ PUSH_EDGE_MAX_CONNECTIONS: '2' });
      const native = await app.connect('cap-a', 'default', '', edge);
      natives.push(native);
      const first = RawPusher.open(`ws://127.0.0.1:${edge.port}/app/${app.id}?protocol=7`);
      sockets.push(first);
      await first.socketId();
      const over = RawPusher.open(`ws://127.0.0.1:${edge.port}/app/${app.id}?protocol=7`);
      sockets.push(over);
      await until(() => over.closed !== undefined, 'the refusal');
      expect(over.closed?.code).to.equal(4100);
      expect(over.frames.map((f) => (f.data as { code: number }).code)).to.deep.equal([4100]);
      const refusal = await TestClient.refused(`ws://127.0.0.1:${edge.port}/ws`, await app.token('cap-b'));
      expect([refusal.status, refusal.body.error?.code]).to.deep.equal([503, 'edge_full']);
      expect(first.closed, 'the open Pusher socket stays').to.equal(undefined);
    });
  });
});
