import { expect } from 'chai';
import { loadConfig } from '@push/config';
import { createDispatcher, rankEdges, routeEdges, type Dispatcher } from '@push/dispatcher';

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

describe('dispatcher: exclude and regions (issue 17 item 6)', function () {
  // Two regions; eu has two hosts, one of them with a second port (443 for networks that block 8081).
  const eu = ['ws://eu1:8081/ws', 'ws://eu1:443/ws', 'ws://eu2:8081/ws'];
  const us = ['ws://us1:8081/ws', 'ws://us2:8081/ws'];
  const all = [...eu, ...us];
  const regions: Record<string, string> = Object.fromEntries([
    ...eu.map((e) => [e, 'eu'] as const),
    ...us.map((e) => [e, 'us'] as const),
  ]);
  let d: Dispatcher;

  before(async function () {
    d = createDispatcher(
      loadConfig({
        PUSH_DISPATCHER_HOST: '127.0.0.1',
        PUSH_DISPATCHER_PORT: '0',
        PUSH_DISPATCHER_EDGES: all.map((e) => `${regions[e]}=${e}`).join(','),
        PUSH_LOG_LEVEL: 'silent',
      }),
    );
    await d.start();
  });
  after(async function () {
    await d?.stop();
  });

  const edgesFor = async (user: string, extra = '') => {
    const r = await fetch(`http://127.0.0.1:${d.port}/v1/edges?app=demo&user=${user}${extra}`);
    const body = (await r.json()) as { edges?: string[]; error?: { code: string } };
    return { status: r.status, edges: body.edges ?? [], code: body.error?.code };
  };
  const ex = (...urls: string[]) => urls.map((u) => `&exclude=${encodeURIComponent(u)}`).join('');
  /** A user whose best-ranked edge is `edge`. */
  const userOn = (edge: string) => {
    for (let i = 0; ; i++) if (rankEdges(all, 'demo', `r${i}`)[0] === edge) return `r${i}`;
  };

  it("groups a user's edges by the region of their best edge, then the other region", async function () {
    for (const first of [eu[0]!, us[1]!]) {
      const { edges } = await edgesFor(userOn(first));
      expect(edges[0]).to.equal(first);
      const own = regions[first];
      const cut = edges.findIndex((e) => regions[e] !== own);
      expect(
        edges.slice(cut).every((e) => regions[e] !== own),
        JSON.stringify(edges),
      ).to.equal(true);
      expect([...edges].sort()).to.deep.equal([...all].sort());
    }
  });

  it('leaves out excluded edges and answers the same host on another port first', async function () {
    const user = userOn(eu[0]!);
    const { edges } = await edgesFor(user, ex(eu[0]!));
    expect(edges).to.not.include(eu[0]);
    expect(edges[0]).to.equal(eu[1]); // eu1:443
    expect(edges[1]).to.equal(eu[2]); // the rest of eu
    expect(edges.slice(2).sort()).to.deep.equal([...us].sort());
  });

  it('answers another region once every edge of the region is excluded (repeated or comma-separated)', async function () {
    const user = userOn(eu[2]!);
    const repeated = await edgesFor(user, ex(...eu));
    const commas = await edgesFor(user, `&exclude=${encodeURIComponent(eu.join(','))}`);
    expect([...repeated.edges].sort()).to.deep.equal([...us].sort());
    expect(commas.edges).to.deep.equal(repeated.edges);
    // Sticky: the order among what is left is the user's rendezvous order.
    expect(repeated.edges).to.deep.equal(rankEdges(all, 'demo', user).filter((e) => us.includes(e)));
  });

  it('prefers the region the client asks for', async function () {
    const user = userOn(eu[0]!);
    const { edges } = await edgesFor(user, '&region=us');
    expect(edges.slice(0, 2).sort()).to.deep.equal([...us].sort());
  });

  it('answers the whole list when everything is excluded, and ignores unknown excludes', async function () {
    const user = userOn(us[0]!);
    expect((await edgesFor(user, ex(...all))).edges).to.deep.equal(rankEdges(all, 'demo', user));
    const plain = await edgesFor(user);
    expect(plain.edges).to.deep.equal(routeEdges(all, regions, 'demo', user, { exclude: [], region: '' }));
    expect((await edgesFor(user, ex('ws://elsewhere:1/ws'))).edges).to.deep.equal(plain.edges);
  });

  it('refuses a bad region or too many excludes with 400 bad_request', async function () {
    expect(await edgesFor('a', '&region=EU!')).to.include({ status: 400, code: 'bad_request' });
    const many = Array.from({ length: 101 }, (_, i) => `ws://x${i}/ws`);
    expect(await edgesFor('a', ex(...many))).to.include({ status: 400, code: 'bad_request' });
  });
});
