import { expect } from 'chai';
import type { Edge } from '@push/edge';
import { Stack, type TestApp } from '../helpers/stack.js';
import type { TcpProxy } from '../helpers/tcp-proxy.js';
import type { TestClient } from '../helpers/ws-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * An app deleted and created again with its id while an edge's NATS traffic is held up
 * (docs/api.md, Delete: "an app created with it starts empty"): the new app's stream numbers
 * from 1 again, and its record is the only one the edge's watch may see.
 */
describe('an app deleted and created again while an edge is cut off from NATS', function () {
  this.timeout(60_000);
  let stack: Stack;
  let proxied: Edge;
  let proxy: TcpProxy;
  const clients: TestClient[] = [];

  before(async function () {
    stack = await Stack.start({ PUSH_STORE_TIMEOUT_MS: '3000' });
    ({ edge: proxied, proxy } = await stack.startEdgeBehindProxy());
  });
  after(async function () {
    for (const c of clients) c.terminate();
    await stack?.close();
    await proxy?.stop();
  });

  /** An app with five messages for `user`, delivered (not acked yet) to a client on the proxied edge. */
  async function delivered(id: string, user: string): Promise<{ c: TestClient; seqs: number[] }> {
    const old = await stack.createApp({ maxDeliveries: 0 }, id);
    for (let i = 0; i < 5; i++) await old.pushOk(user, { old: i });
    const c = await old.connect(user, 'd', '', proxied);
    clients.push(c);
    return { c, seqs: (await c.waitForMessages(5)).map((m) => m.seq) };
  }

  async function recreate(id: string, user: string): Promise<{ neu: TestApp; seqs: number[] }> {
    const del = await stack.http('DELETE', `/v1/admin/apps/${id}`, stack.adminKey);
    expect(del.status).to.equal(204);
    const neu = await stack.createApp({ maxDeliveries: 0 }, id);
    const seqs: number[] = [];
    for (let i = 0; i < 5; i++) seqs.push(await neu.pushOk(user, { neu: i }));
    return { neu, seqs };
  }

  it("acks the edge held through the delete never remove the new app's messages of the same numbers", async function () {
    const id = `held-${stack.prefix}`;
    const { c, seqs } = await delivered(id, 'ak');
    proxy.blackhole = true; // the acks' deletes go nowhere, and are retried
    c.ack(seqs);
    await sleep(200);
    const { neu, seqs: again } = await recreate(id, 'ak');
    expect(again, 'the new stream numbers from 1 again').to.deep.equal(seqs);
    proxy.blackhole = false;
    await sleep(6000); // the retries' backoff (up to 5 s) and more
    expect((await neu.user('ak')).body['pending']).to.equal(5);
  });

  it("a connection of the deleted app is closed (4003) when the edge's watch sees only the new record, and gets none of its messages", async function () {
    const id = `down-${stack.prefix}`;
    const { c } = await delivered(id, 'dk');
    proxy.setDown(true); // the edge misses the delete: its watch sees the new record only
    await sleep(200);
    const { neu } = await recreate(id, 'dk');
    proxy.setDown(false);
    expect(await c.waitClosed(15_000)).to.equal(4003);
    await neu.pushOk('dk', { neu: 'after' });
    expect(c.messages.filter((m) => (m.data as { neu?: unknown }).neu !== undefined)).to.deep.equal([]);
  });
});
