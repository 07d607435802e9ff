import { expect } from 'chai';
import type PusherJs from 'pusher-js';
import type { Channel, PresenceChannel } from 'pusher-js';
import { Stack, type TestApp } from '../helpers/stack.js';
import { PusherClients, connected, pusherServer, until } from '../helpers/pusher.js';

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
});
