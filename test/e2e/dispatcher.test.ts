import { expect } from 'chai';
import { loadConfig } from '@push/config';
import { createDispatcher, rankEdges, type Dispatcher } from '@push/dispatcher';

describe('dispatcher', function () {
  const edges = ['ws://e1:8081/ws', 'ws://e2:8081/ws', 'ws://e3:8081/ws', 'ws://e4:8081/ws'];
  let d: Dispatcher;

  before(async function () {
    d = createDispatcher(
      loadConfig({
        PUSH_DISPATCHER_HOST: '127.0.0.1',
        PUSH_DISPATCHER_PORT: '0',
        PUSH_DISPATCHER_EDGES: edges.join(','),
        PUSH_LOG_LEVEL: 'silent',
      }),
    );
    await d.start();
  });
  after(async function () {
    await d?.stop();
  });

  const get = async (q: string) => {
    const r = await fetch(`http://127.0.0.1:${d.port}/v1/edges${q}`);
    return { status: r.status, body: (await r.json()) as { edges?: string[]; error?: { code: string } } };
  };

  it('answers every edge, ranked, the same order for the same user every time', async function () {
    const a = await get('?app=demo&user=alice');
    const b = await get('?app=demo&user=alice');
    expect(a.status).to.equal(200);
    expect([...(a.body.edges ?? [])].sort()).to.deep.equal([...edges].sort());
    expect(b.body.edges).to.deep.equal(a.body.edges);
  });

  it('spreads users over edges, and removing an edge moves only the users that were on it', function () {
    const users = Array.from({ length: 400 }, (_, i) => `u${i}`);
    const first = new Map(users.map((u) => [u, rankEdges(edges, 'demo', u)[0]]));
    const counts = new Map<string, number>();
    for (const e of first.values()) counts.set(e!, (counts.get(e!) ?? 0) + 1);
    expect(counts.size).to.equal(4);
    for (const c of counts.values()) expect(c).to.be.within(50, 150);
    const fewer = edges.filter((e) => e !== edges[1]);
    for (const u of users) {
      const now = rankEdges(fewer, 'demo', u)[0];
      if (first.get(u) !== edges[1]) expect(now, u).to.equal(first.get(u));
    }
  });

  it('refuses a missing or bad app or user with 400 invalid_id', async function () {
    for (const q of ['', '?app=demo', '?user=alice', `?app=${'x'.repeat(70)}&user=a`]) {
      const r = await get(q);
      expect(r.status, q).to.equal(400);
      expect(r.body.error?.code).to.equal('invalid_id');
    }
  });

  it('answers unknown paths with 404 not_found', async function () {
    const r = await fetch(`http://127.0.0.1:${d.port}/v1/nothing`);
    expect(r.status).to.equal(404);
    expect(((await r.json()) as { error: { code: string } }).error.code).to.equal('not_found');
  });

  it('serves health and readiness', async function () {
    expect((await fetch(`http://127.0.0.1:${d.port}/healthz`)).status).to.equal(200);
    expect((await fetch(`http://127.0.0.1:${d.port}/readyz`)).status).to.equal(200);
  });
});
