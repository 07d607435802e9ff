import { expect } from 'chai';
import Echo from 'laravel-echo';
import { Stack, type TestApp } from '../helpers/stack.js';
import { PusherClients, connected, pusherServer, until, type PusherJs, type TestMember } from '../helpers/pusher.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Member = { id: string; info: unknown };

describe('Pusher door: Laravel Echo on pusher-js (issue 18)', function () {
  this.timeout(30_000);
  let stack: Stack;
  let app: TestApp;
  let clients: PusherClients;
  const echoes: Array<Echo<'pusher'>> = [];

  /** An Echo instance on a pusher-js client whose auth endpoint signs `member` for presence channels. */
  async function echo(member?: TestMember): Promise<Echo<'pusher'>> {
    const client: PusherJs = clients.connect(member !== undefined ? { member } : {});
    await connected(client);
    const e = new Echo({ broadcaster: 'pusher', key: app.id, client } as unknown as ConstructorParameters<
      typeof Echo<'pusher'>
    >[0]);
    echoes.push(e);
    return e;
  }

  before(async function () {
    stack = await Stack.start();
    app = await stack.createApp({ clientMessaging: true });
    clients = new PusherClients(stack, app);
  });
  afterEach(function () {
    for (const e of echoes.splice(0)) e.disconnect();
    clients.disconnectAll();
  });
  after(async function () {
    clients?.disconnectAll();
    await stack?.close();
  });

  it('channel().listen() gets a Laravel-named event the pusher SDK triggers (App\\Events namespace)', async function () {
    const e = await echo();
    const got: unknown[] = [];
    let ready = false;
    e.channel('orders')
      .subscribed(() => (ready = true))
      .listen('OrderShipped', (payload: unknown) => got.push(payload));
    await until(() => ready, 'the subscription');
    await pusherServer(stack, app).trigger('orders', 'App\\Events\\OrderShipped', { order: { id: 42 } });
    await until(() => got.length === 1, 'the event');
    expect(got).to.deep.equal([{ order: { id: 42 } }]);
  });

  it('private() authorizes and receives; whisper() reaches the other client, listenForWhisper() hears it', async function () {
    const a = await echo();
    const b = await echo();
    const gotA: unknown[] = [];
    const whispers: unknown[] = [];
    let readyA = false;
    let readyB = false;
    a.private('room-9')
      .subscribed(() => (readyA = true))
      .listen('.status', (p: unknown) => gotA.push(p));
    b.private('room-9')
      .subscribed(() => (readyB = true))
      .listenForWhisper('typing', (p: unknown) => whispers.push(p));
    await until(() => readyA && readyB, 'both private subscriptions');
    await pusherServer(stack, app).trigger('private-room-9', 'status', { open: true });
    await until(() => gotA.length === 1, 'the private event');
    expect(gotA).to.deep.equal([{ open: true }]);
    a.private('room-9').whisper('typing', { name: 'a' });
    await until(() => whispers.length === 1, 'the whisper');
    expect(whispers).to.deep.equal([{ name: 'a' }]);
  });

  it('join().here().joining().leaving() follow who is in a presence channel', async function () {
    const a = await echo({ user_id: '1', user_info: { name: 'Ann' } });
    let here: Member[] | undefined;
    const joining: Member[] = [];
    const leaving: Member[] = [];
    a.join('chat')
      .here((members: Member[]) => (here = members))
      .joining((m: Member) => joining.push(m))
      .leaving((m: Member) => leaving.push(m));
    await until(() => here !== undefined, 'here()');
    expect(here).to.deep.equal([{ name: 'Ann' }]);
    const b = await echo({ user_id: '2', user_info: { name: 'Bob' } });
    let hereB: Member[] | undefined;
    b.join('chat').here((members: Member[]) => (hereB = members));
    await until(() => hereB !== undefined, "bob's here()");
    expect(hereB).to.have.deep.members([{ name: 'Ann' }, { name: 'Bob' }]);
    await until(() => joining.length === 1, 'joining()');
    expect(joining).to.deep.equal([{ name: 'Bob' }]);
    b.leave('chat');
    await until(() => leaving.length === 1, 'leaving()');
    expect(leaving).to.deep.equal([{ name: 'Bob' }]);
    await sleep(100);
    expect(joining).to.have.length(1);
  });
});
