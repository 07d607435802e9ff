import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import type { PresenceChannel } from 'pusher-js';
import { createCoordinator, type Coordinator } from '@push/coordinator';
import { createLogger } from '@push/logger';
import { EdgeProcess } from '../helpers/edge-process.js';
import { Stack, type TestApp } from '../helpers/stack.js';
import { PusherClients, connected, pusherServer, until, type PusherJs } from '../helpers/pusher.js';

/** One request a Pusher-format endpoint got: its headers and raw body. */
interface Hook {
  headers: Record<string, string>;
  rawBody: string;
}

/** A business's webhook endpoint: records every request, answers 200. */
async function receiver(): Promise<{ url: string; hooks: Hook[]; close: () => Promise<void> }> {
  const hooks: Hook[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
      hooks.push({ headers, rawBody: body });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/pusher-hooks`,
    hooks,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

function subscribe(client: PusherJs, name: string): Promise<PresenceChannel> {
  return new Promise((resolve, reject) => {
    const ch = client.subscribe(name) as PresenceChannel;
    ch.bind('pusher:subscription_succeeded', () => resolve(ch));
    ch.bind('pusher:subscription_error', (e: unknown) => reject(new Error(JSON.stringify(e))));
  });
}

/** Presence lease of this suite, seconds: a killed edge's subscriptions go within 4/3 of it. */
const LEASE = 3;

describe('Pusher door: Pusher-format webhooks, validated with the pusher SDK (issue 18)', function () {
  this.timeout(40_000);
  let stack: Stack;
  let app: TestApp;
  let clients: PusherClients;
  let coordinator: Coordinator;
  let hooks: Awaited<ReturnType<typeof receiver>>;
  const killable = new EdgeProcess();

  before(async function () {
    stack = await Stack.start({ PUSH_PRESENCE_LEASE: String(LEASE) });
    app = await stack.createApp({ clientMessaging: true });
    clients = new PusherClients(stack, app);
    const cfg = stack.config();
    coordinator = createCoordinator(cfg, { logger: createLogger({ level: cfg.log.level, name: 'coordinator' }) });
    await coordinator.start();
    hooks = await receiver();
  });
  after(async function () {
    clients?.disconnectAll();
    await killable.kill();
    await coordinator?.stop();
    await hooks?.close();
    await stack?.close();
  });

  it('channel_occupied, member_added, client_event, member_removed, channel_vacated arrive signed the Pusher way', async function () {
    const created = await stack.http<{ webhook: { format: string } }>(
      'POST',
      `/v1/apps/${app.id}/webhooks`,
      app.apiKey,
      {
        url: hooks.url,
        format: 'pusher',
        events: ['channel_occupied', 'channel_vacated', 'presence_join', 'presence_leave', 'client_event'],
      },
    );
    expect(created.status, JSON.stringify(created.body)).to.equal(201);
    expect(created.body.webhook.format).to.equal('pusher');

    const a = clients.connect({ member: { user_id: 'ann' } });
    await connected(a);
    await subscribe(a, 'presence-hooked');
    const b = clients.connect({ member: { user_id: 'bob' } });
    await connected(b);
    const chb = await subscribe(b, 'presence-hooked');
    chb.trigger('client-wave', { hi: 1 });
    await new Promise((r) => setTimeout(r, 300));
    b.disconnect();
    await new Promise((r) => setTimeout(r, 300));
    a.disconnect();

    const server = pusherServer(stack, app);
    type Ev = { name: string; channel: string; user_id?: string; event?: string; data?: string; socket_id?: string };
    const events = (): Ev[] =>
      hooks.hooks.flatMap((h) => {
        const wh = server.webhook({ headers: h.headers, rawBody: h.rawBody });
        expect(wh.isValid(), 'signed with the app key and secret').to.equal(true);
        return wh.getEvents();
      });
    await until(() => events().some((e) => e.name === 'channel_vacated'), 'channel_vacated', 20_000);
    const got = events().map((e) => [e.name, e.user_id ?? '', e.event ?? '', e.data ?? '']);
    expect(got).to.deep.equal([
      ['channel_occupied', '', '', ''],
      ['member_added', 'ann', '', ''],
      ['member_added', 'bob', '', ''],
      ['client_event', 'bob', 'client-wave', '{"hi":1}'],
      ['member_removed', 'bob', '', ''],
      ['member_removed', 'ann', '', ''],
      ['channel_vacated', '', '', ''],
    ]);
    expect(events().every((e) => e.channel === 'presence-hooked')).to.equal(true);
    expect(events().find((e) => e.name === 'client_event')?.socket_id).to.match(/^\d+\.\d+$/);

    // A body that is not the one signed, or another app's key, does not validate.
    const first = hooks.hooks[0] as Hook;
    expect(server.webhook({ headers: first.headers, rawBody: first.rawBody.replace('ann', 'eve') }).isValid()).to.equal(
      false,
    );
    const other = pusherServer(stack, app, { secret: 'someone-else' });
    expect(other.webhook({ headers: first.headers, rawBody: first.rawBody }).isValid()).to.equal(false);
  });

  it('an edge killed with the last subscriber: member_removed and channel_vacated from the presence sweep', async function () {
    const before = hooks.hooks.length;
    await killable.start({
      PUSH_PREFIX: stack.prefix,
      PUSH_NATS_URL: stack.config().natsUrl,
      PUSH_REDIS_URL: stack.config().redisUrl,
      PUSH_PRESENCE_LEASE: String(LEASE),
    });
    const doomed = clients.connect({ member: { user_id: 'zed' }, extra: { wsPort: killable.port } });
    await connected(doomed);
    await subscribe(doomed, 'presence-doomed');
    const server = pusherServer(stack, app);
    const events = () =>
      hooks.hooks
        .slice(before)
        .flatMap(
          (h) =>
            server.webhook({ headers: h.headers, rawBody: h.rawBody }).getEvents() as Array<{
              name: string;
              channel: string;
              user_id?: string;
            }>,
        )
        .filter((e) => e.channel === 'presence-doomed');
    await until(() => events().length === 2, 'occupied and member_added', 10_000);
    await killable.kill();
    doomed.disconnect(); // stop pusher-js retrying the dead edge
    await until(() => events().length === 4, 'the sweep', (LEASE * 4000) / 3 + 10_000);
    expect(events().map((e) => [e.name, e.user_id ?? ''])).to.deep.equal([
      ['channel_occupied', ''],
      ['member_added', 'zed'],
      ['member_removed', 'zed'],
      ['channel_vacated', ''],
    ]);
  });
});
