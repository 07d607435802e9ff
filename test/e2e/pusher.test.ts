import { expect } from 'chai';
import WebSocket from 'ws';
import type { Channel, PresenceChannel } from 'pusher-js';
import { PushClient, type TopicMessage } from '@push/client';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { Stack, type TestApp } from '../helpers/stack.js';
import { PusherClients, connected, pusherServer, until, type PusherJs } from '../helpers/pusher.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Subscribes and waits for `pusher:subscription_succeeded` (rejects on `pusher:subscription_error`). */
function subscribe<T extends Channel = Channel>(client: PusherJs, name: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const ch = client.subscribe(name) as T;
    ch.bind('pusher:subscription_succeeded', () => resolve(ch));
    ch.bind('pusher:subscription_error', (e: unknown) => reject(new Error(`subscription_error ${JSON.stringify(e)}`)));
  });
}

/** Records every event of a channel. */
function record(ch: Channel): Array<{ event: string; data: unknown }> {
  const got: Array<{ event: string; data: unknown }> = [];
  ch.bind_global((event: string, data: unknown) => {
    if (!event.startsWith('pusher')) got.push({ event, data });
  });
  return got;
}

describe('Pusher door: pusher-js and the pusher server SDK (issue 18)', function () {
  this.timeout(30_000);
  let stack: Stack;
  let app: TestApp;
  let clients: PusherClients;

  before(async function () {
    stack = await Stack.start();
    app = await stack.createApp({ clientMessaging: true });
    clients = new PusherClients(stack, app);
  });
  afterEach(() => clients.disconnectAll());
  after(async function () {
    clients?.disconnectAll();
    await stack?.close();
  });

  it('public channel: a pusher SDK trigger reaches a pusher-js subscriber with its event name and data', async function () {
    const c = clients.connect();
    await connected(c);
    const ch = await subscribe(c, 'news');
    const got = record(ch);
    await pusherServer(stack, app).trigger('news', 'headline', { title: 'hello' });
    await until(() => got.length === 1, 'the event');
    expect(got).to.deep.equal([{ event: 'headline', data: { title: 'hello' } }]);
  });

  it('private channel: subscribes with a signature from the SDK; client events reach the others, not the sender', async function () {
    const a = clients.connect();
    const b = clients.connect();
    await Promise.all([connected(a), connected(b)]);
    const [cha, chb] = await Promise.all([subscribe(a, 'private-room'), subscribe(b, 'private-room')]);
    const gotA = record(cha);
    const gotB = record(chb);
    expect(cha.trigger('client-typing', { who: 'a' })).to.equal(true);
    await until(() => gotB.length === 1, 'the client event at b');
    expect(gotB).to.deep.equal([{ event: 'client-typing', data: { who: 'a' } }]);
    await sleep(200);
    expect(gotA, 'the sender does not get its own client event').to.deep.equal([]);
  });

  it('presence channel: members, member_added and member_removed with user_info', async function () {
    const a = clients.connect({ member: { user_id: 'alice', user_info: { name: 'Alice' } } });
    await connected(a);
    const cha = await subscribe<PresenceChannel>(a, 'presence-lobby');
    expect(cha.members.count).to.equal(1);
    expect(cha.members.me).to.deep.include({ id: 'alice', info: { name: 'Alice' } });
    const added: unknown[] = [];
    const removed: unknown[] = [];
    cha.bind('pusher:member_added', (m: unknown) => added.push(m));
    cha.bind('pusher:member_removed', (m: unknown) => removed.push(m));
    const b = clients.connect({ member: { user_id: 'bob', user_info: { name: 'Bob' } } });
    await connected(b);
    const chb = await subscribe<PresenceChannel>(b, 'presence-lobby');
    const seen: Record<string, unknown> = {};
    chb.members.each((m: { id: string; info: unknown }) => (seen[m.id] = m.info));
    expect(seen).to.deep.equal({ alice: { name: 'Alice' }, bob: { name: 'Bob' } });
    await until(() => added.length === 1, 'member_added at alice');
    expect(added).to.deep.equal([{ id: 'bob', info: { name: 'Bob' } }]);
    b.disconnect();
    await until(() => removed.length === 1, 'member_removed at alice');
    expect(removed).to.deep.equal([{ id: 'bob', info: { name: 'Bob' } }]);
  });

  it('a presence subscriber joining while members leave or join at that moment (two edges) ends with the true members, each added once', async function () {
    this.timeout(120_000);
    const other = stack.edges[1] ?? (await stack.startEdge());
    const edges = [stack.edge, other];
    const problems: string[] = [];
    for (let round = 0; round < 12; round++) {
      const leaving = round % 2 === 0;
      const name = `presence-race-${round}`;
      const ids = Array.from({ length: 5 }, (_, i) => `r${round}-m${i}`);
      const members = ids.map((id, i) => clients.connect({ member: { user_id: id }, edge: edges[i % 2] }));
      await Promise.all(members.map((m) => connected(m)));
      // Leaving: the members are there first and leave as the joiner subscribes; else they arrive then.
      if (leaving) await Promise.all(members.map((m) => subscribe(m, name)));
      const joiner = clients.connect({ member: { user_id: `r${round}-joiner` }, edge: edges[round % 2] });
      await connected(joiner);
      const ch = joiner.subscribe(name) as PresenceChannel;
      const listed = new Set<string>();
      const addedAgain: string[] = [];
      ch.bind('pusher:subscription_succeeded', () => ch.members.each((m: { id: string }) => listed.add(m.id)));
      ch.bind('pusher:member_added', (m: { id: string }) => {
        if (listed.has(m.id)) addedAgain.push(m.id);
      });
      await sleep(round % 4);
      for (const m of members) {
        if (leaving) m.unsubscribe(name);
        else m.subscribe(name);
      }
      await sleep(2500);
      const seen: string[] = [];
      ch.members.each((m: { id: string }) => seen.push(m.id));
      const truth = leaving ? [`r${round}-joiner`] : [...ids, `r${round}-joiner`];
      if (JSON.stringify(seen.sort()) !== JSON.stringify(truth.sort()))
        problems.push(`round ${round} (${leaving ? 'leaving' : 'joining'}): members ${seen.join(',')}`);
      if (addedAgain.length > 0) problems.push(`round ${round}: member_added for listed ${addedAgain.join(',')}`);
      clients.disconnectAll();
    }
    expect(problems).to.deep.equal([]);
  });

  it('a trigger to several channels, and triggerBatch, reach each channel; socket_id keeps one socket out', async function () {
    const a = clients.connect();
    const b = clients.connect();
    const [socketA] = await Promise.all([connected(a), connected(b)]);
    const [a1, b1, b2] = await Promise.all([subscribe(a, 'multi-1'), subscribe(b, 'multi-1'), subscribe(b, 'multi-2')]);
    const gotA1 = record(a1);
    const gotB1 = record(b1);
    const gotB2 = record(b2);
    const server = pusherServer(stack, app);
    const r = await server.trigger(['multi-1', 'multi-2'], 'tick', 'one', { socket_id: socketA });
    expect(r.status).to.equal(200);
    await server.triggerBatch([
      { channel: 'multi-1', name: 'tock', data: 'two' },
      { channel: 'multi-2', name: 'tock', data: { n: 3 } },
    ]);
    await until(() => gotB1.length === 2 && gotB2.length === 2 && gotA1.length === 1, 'every event');
    expect(gotB1).to.deep.equal([
      { event: 'tick', data: 'one' },
      { event: 'tock', data: 'two' },
    ]);
    expect(gotB2).to.deep.equal([
      { event: 'tick', data: 'one' },
      { event: 'tock', data: { n: 3 } },
    ]);
    expect(gotA1, 'the excluded socket got only the batch event').to.deep.equal([{ event: 'tock', data: 'two' }]);
  });

  it('channel info, the channels list and presence users answer through the pusher SDK', async function () {
    const a = clients.connect({ member: { user_id: 'ann' } });
    const b = clients.connect({ member: { user_id: 'ben' } });
    const c = clients.connect({ member: { user_id: 'ann' } });
    await Promise.all([connected(a), connected(b), connected(c)]);
    await Promise.all([subscribe(a, 'presence-info'), subscribe(b, 'presence-info'), subscribe(c, 'presence-info')]);
    await subscribe(a, 'info-public');
    const server = pusherServer(stack, app);
    const info = (await (
      await server.get({ path: '/channels/presence-info', params: { info: 'user_count,subscription_count' } })
    ).json()) as unknown;
    expect(info).to.deep.equal({ occupied: true, user_count: 2, subscription_count: 3 });
    const users = (await (await server.get({ path: '/channels/presence-info/users' })).json()) as {
      users: Array<{ id: string }>;
    };
    expect(users.users.map((u) => u.id).sort()).to.deep.equal(['ann', 'ben']);
    const list = (await (
      await server.get({ path: '/channels', params: { filter_by_prefix: 'presence-' } })
    ).json()) as {
      channels: Record<string, unknown>;
    };
    expect(list.channels).to.have.property('presence-info');
    expect(list.channels).to.not.have.property('info-public');
    const all = (await (await server.get({ path: '/channels' })).json()) as { channels: Record<string, unknown> };
    expect(Object.keys(all.channels)).to.include.members(['presence-info', 'info-public']);
    const empty = (await (await server.get({ path: '/channels/nobody-here' })).json()) as unknown;
    expect(empty).to.deep.equal({ occupied: false });
  });

  it('private-encrypted channels: the SDK encrypts, the door passes through, pusher-js decrypts', async function () {
    const masterKey = Buffer.alloc(32, 7).toString('base64');
    const server = pusherServer(stack, app, { encryptionMasterKeyBase64: masterKey });
    const c = clients.connect({ server });
    await connected(c);
    const ch = await subscribe(c, 'private-encrypted-vault');
    const got = record(ch);
    await server.trigger('private-encrypted-vault', 'secret', { pin: 1234 });
    await until(() => got.length === 1, 'the decrypted event');
    expect(got).to.deep.equal([{ event: 'secret', data: { pin: 1234 } }]);
  });

  it('a trigger with info answers the channel attributes after the event (subscription_count, user_count)', async function () {
    const a = clients.connect({ member: { user_id: 'ida' } });
    const b = clients.connect({ member: { user_id: 'ida' } });
    await Promise.all([connected(a), connected(b)]);
    await Promise.all([subscribe(a, 'presence-count'), subscribe(b, 'presence-count'), subscribe(a, 'count')]);
    const server = pusherServer(stack, app);
    const r = await server.trigger(['presence-count', 'count'], 'e', 'x', { info: 'subscription_count' });
    expect(await r.json()).to.deep.equal({
      channels: { 'presence-count': { subscription_count: 2 }, count: { subscription_count: 1 } },
    });
    const batch = await server.triggerBatch([
      { channel: 'presence-count', name: 'e', data: 'y', info: 'user_count,subscription_count' },
      { channel: 'count', name: 'e', data: 'z' },
    ]);
    expect(await batch.json()).to.deep.equal({ batch: [{ user_count: 1, subscription_count: 2 }, {}] });
  });

  it('cache channels: a new subscriber gets the last event from topic history, or pusher:cache_miss', async function () {
    const c = clients.connect();
    await connected(c);
    let missed = 0;
    const empty = c.subscribe('cache-empty');
    empty.bind('pusher:cache_miss', () => missed++);
    await until(() => missed === 1, 'pusher:cache_miss');
    const server = pusherServer(stack, app);
    await server.trigger('cache-scores', 'goal', { score: 1 });
    await server.trigger('cache-scores', 'goal', { score: 2 });
    // Recording from the subscribe on: the cached event follows subscription_succeeded at once.
    const got = record(c.subscribe('cache-scores'));
    await until(() => got.length === 1, 'the cached event');
    await sleep(200);
    expect(got, 'only the last one').to.deep.equal([{ event: 'goal', data: { score: 2 } }]);
    await server.trigger('cache-scores', 'goal', { score: 3 });
    await until(() => got.length === 2, 'the next event live');
    expect(got[1]).to.deep.equal({ event: 'goal', data: { score: 3 } });

    // A socket left out of the last event (socket_id) is not sent it as the cache: a miss.
    const left = clients.connect();
    await connected(left);
    await server.trigger('cache-others', 'goal', { score: 9 }, { socket_id: left.connection.socket_id });
    let leftMissed = 0;
    const leftGot = record(left.subscribe('cache-others'));
    left.channel('cache-others').bind('pusher:cache_miss', () => leftMissed++);
    await until(() => leftMissed === 1, 'pusher:cache_miss for the socket left out');
    expect(leftGot).to.deep.equal([]);
  });

  it('cross-door: our HTTP API reaches pusher-js; a pusher trigger reaches our SDK topic subscriber', async function () {
    const p = clients.connect();
    await connected(p);
    const ch = await subscribe(p, 'both');
    const got = record(ch);
    await app.publishTopicOk('both', { plain: true });
    await app.publishTopicOk('both', { event: 'named', data: { x: 1 } });
    await until(() => got.length === 2, 'both native publishes at pusher-js');
    expect(got).to.deep.equal([
      { event: 'message', data: { plain: true } },
      { event: 'named', data: { x: 1 } },
    ]);

    const native = new PushClient({
      WebSocket,
      edges: [stack.wsUrl()],
      token: () => app.token('nat', 'default', 3600, ['both']),
    });
    try {
      const sub = native.subscribe('both');
      const messages: TopicMessage[] = [];
      let subscribed = false;
      sub.on('message', (m) => messages.push(m));
      sub.on('subscribed', () => (subscribed = true));
      native.connect();
      await until(() => subscribed, 'the native subscription');
      await pusherServer(stack, app).trigger('both', 'from-pusher', { y: 2 });
      await until(() => messages.length === 1, 'the trigger at the native subscriber');
      expect(messages[0]?.data).to.deep.equal({ event: 'from-pusher', data: JSON.stringify({ y: 2 }) });
      expect(messages[0]?.seq).to.be.a('number');
    } finally {
      native.disconnect();
    }
  });

  it('pusher-js reconnects after the connection drops, resubscribes, and gets what is published next', async function () {
    const proxy = new TcpProxy('127.0.0.1', stack.edge.port);
    await proxy.start();
    try {
      const c = clients.connect({ extra: { wsPort: proxy.port } });
      const first = await connected(c);
      const ch = await subscribe(c, 'private-again');
      const got = record(ch);
      let resubscribed = 0;
      ch.bind('pusher:subscription_succeeded', () => resubscribed++);
      proxy.dropAll();
      await until(
        () => c.connection.state === 'connected' && c.connection.socket_id !== first,
        'a new connection',
        15_000,
      );
      await until(() => resubscribed === 1, 'the resubscription');
      await pusherServer(stack, app).trigger('private-again', 'after', 'back');
      await until(() => got.length === 1, 'the event after the reconnect');
      expect(got).to.deep.equal([{ event: 'after', data: 'back' }]);
    } finally {
      clients.disconnectAll();
      await proxy.stop();
    }
  });

  it('the admin API shows the Pusher credentials; after a secret rotation the old and the new Pusher secret both sign', async function () {
    type View = { app: { id: string; pusher: { appId: string; key: string; secrets: string[] } } };
    const before = await stack.http<View>('GET', `/v1/admin/apps/${app.id}`, stack.adminKey);
    const old = before.body.app.pusher;
    expect(old.appId).to.equal(app.id);
    expect(old.key).to.equal(app.id);
    expect(old.secrets).to.have.length(1);
    const rotated = await stack.http<View>('POST', `/v1/admin/apps/${app.id}/secrets`, stack.adminKey);
    expect(rotated.status).to.equal(200);
    const now = rotated.body.app.pusher;
    expect(now.secrets).to.have.length(2);
    expect(now.secrets[1]).to.equal(old.secrets[0]);
    const c = clients.connect();
    await connected(c);
    const ch = await subscribe(c, 'rotation');
    const got = record(ch);
    await pusherServer(stack, app, { secret: old.secrets[0] }).trigger('rotation', 'e', 'old secret');
    await pusherServer(stack, app, { secret: now.secrets[0] }).trigger('rotation', 'e', 'new secret');
    await until(() => got.length === 2, 'both events');
    expect(got.map((g) => g.data)).to.deep.equal(['old secret', 'new secret']);
  });

  it('user authentication: signin, sendToUser reaches the user, terminateUserConnections closes them on both doors', async function () {
    const server = pusherServer(stack, app);
    const c = clients.connect({
      extra: {
        userAuthentication: {
          endpoint: 'unused',
          transport: 'ajax',
          customHandler: (params, callback) =>
            callback(null, server.authenticateUser(params.socketId, { id: 'uma', name: 'Uma' })),
        },
      },
    });
    const errors: unknown[] = [];
    c.connection.bind('error', (e: unknown) => errors.push(e));
    const notices: unknown[] = [];
    c.user.bind('notice', (d: unknown) => notices.push(d));
    c.signin();
    await connected(c);
    await until(() => (c.user.user_data as { id?: string } | null)?.id === 'uma', 'the signin');
    // pusher-js subscribes to the user's channel after the signin; a trigger before that is not for it.
    await until(
      () =>
        (c.user as unknown as { serverToUserChannel?: { subscribed: boolean } }).serverToUserChannel?.subscribed ===
        true,
      'the #server-to-user- subscription',
    );
    await server.sendToUser('uma', 'notice', { n: 1 });
    await until(() => notices.length === 1, 'the event for the user');
    expect(notices).to.deep.equal([{ n: 1 }]);

    const other = clients.connect();
    await connected(other);

    const native = await app.connect('uma');
    const r = await server.terminateUserConnections('uma');
    expect(r.status).to.equal(200);
    await until(() => errors.length > 0 && native.closeCode !== undefined, 'both doors closed');
    expect(JSON.stringify(errors[0])).to.contain('4009');
    expect(native.closeCode).to.equal(4004);
    await until(() => c.connection.state !== 'connected', 'the pusher-js socket closed');
    expect(other.connection.state, 'other users stay').to.equal('connected');
  });
});
