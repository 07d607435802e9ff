import { expect } from 'chai';
import WebSocket from 'ws';
import { PushClient, type FetchLike, type WebSocketConstructor } from '@push/client';
import { createDispatcher, routeEdges, type Dispatcher } from '@push/dispatcher';
import { freePort } from '../helpers/nats-server.js';
import { Stack, type TestApp } from '../helpers/stack.js';

/** Polls `check` until it holds, or fails with `what` after `timeoutMs`. */
async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('SDK route selection: unreachable edges reported to the dispatcher with exclude (issue 17 item 6)', function () {
  this.timeout(60_000);
  let stack: Stack;
  let app: TestApp;
  let dispatcher: Dispatcher | undefined;
  let client: PushClient | undefined;
  /** Edges on ports nothing listens on: one on the live edge's host, one on another loopback address. */
  let deadSameHost: string;
  let deadOtherHost: string;

  before(async function () {
    stack = await Stack.start();
    app = await stack.createApp();
    deadSameHost = `ws://127.0.0.1:${await freePort()}/ws`;
    deadOtherHost = `ws://127.0.0.2:${await freePort()}/ws`;
  });
  afterEach(async function () {
    client?.disconnect();
    await dispatcher?.stop();
  });
  after(async function () {
    await stack?.close();
  });

  /**
   * Starts a dispatcher over labelled edges and connects an SDK client for a user whose first
   * answer (nothing excluded) is `order`; returns the edges the client tried and the `exclude`s
   * of each ask.
   */
  async function run(edges: Record<string, string>, order: string[]) {
    const urls = Object.keys(edges);
    dispatcher = createDispatcher(
      stack.config({
        PUSH_DISPATCHER_HOST: '127.0.0.1',
        PUSH_DISPATCHER_PORT: '0',
        PUSH_DISPATCHER_EDGES: urls.map((u) => `${edges[u]}=${u}`).join(','),
      }),
    );
    await dispatcher.start();
    let user = '';
    for (let i = 0; user === ''; i++) {
      const answer = routeEdges(urls, edges, app.id, `r${i}`, { exclude: [], region: '' });
      if (JSON.stringify(answer) === JSON.stringify(order)) user = `r${i}`;
    }
    const tried: string[] = [];
    const asks: string[][] = [];
    const WS = function (url: string) {
      const u = new URL(url);
      tried.push(`${u.protocol}//${u.host}${u.pathname}`);
      return new WebSocket(url);
    } as unknown as WebSocketConstructor;
    const recordingFetch: FetchLike = (url) => {
      asks.push(new URL(url).searchParams.getAll('exclude'));
      return fetch(url);
    };
    client = new PushClient({
      dispatcher: `http://127.0.0.1:${dispatcher.port}`,
      token: () => app.token(user),
      WebSocket: WS,
      fetch: recordingFetch,
      backoff: { baseMs: 20, capMs: 50 },
    });
    const received: unknown[] = [];
    client.on('message', (m) => received.push(m.data));
    client.connect();
    await until('connected', () => client?.state === 'connected');
    await app.pushOk(user, 'routed');
    await until('the message', () => received.length === 1);
    return { tried, asks };
  }

  it('after an unreachable edge, asks again with exclude and gets the same host on another port before the rest of the old list', async function () {
    const live = stack.wsUrl();
    const { tried, asks } = await run({ [deadSameHost]: 'eu', [deadOtherHost]: 'eu', [live]: 'eu' }, [
      deadSameHost,
      deadOtherHost,
      live,
    ]);
    // Without exclude the client would have tried deadOtherHost next (its old list's order).
    expect(tried).to.deep.equal([deadSameHost, live]);
    expect(asks).to.deep.equal([[], [deadSameHost]]);
  });

  it('when every edge of its region is unreachable, gets another region', async function () {
    const live = stack.wsUrl();
    const deadToo = `ws://127.0.0.2:${await freePort()}/ws`;
    const { tried, asks } = await run({ [deadOtherHost]: 'eu', [deadToo]: 'eu', [live]: 'us' }, [
      deadOtherHost,
      deadToo,
      live,
    ]);
    expect(tried).to.deep.equal([deadOtherHost, deadToo, live]);
    expect(asks).to.deep.equal([[], [deadOtherHost], [deadOtherHost, deadToo]]);
  });
});
