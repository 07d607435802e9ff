import { expect } from 'chai';
import { EdgeRoutes, UNREACHABLE_FOR_MS, currentNetwork } from '../../libs/client/src/edge-routes.js';

/** A dispatcher that answers `lists` in turn and records the URLs asked (and their excludes). */
function dispatcher(lists: string[][]) {
  const asked: string[][] = [];
  let n = 0;
  const fetch = (url: string) => {
    asked.push(new URL(url).searchParams.getAll('exclude'));
    const edges = lists[Math.min(n++, lists.length - 1)] ?? [];
    return Promise.resolve({ ok: true, status: 200, json: () => Promise.resolve({ edges }) });
  };
  return { asked, fetch };
}

describe('EdgeRoutes: which edge the SDK tries, per network (issue 17 item 6)', function () {
  it('asks again with exclude= after an unreachable edge, and tries what the dispatcher answers', async function () {
    const d = dispatcher([
      ['ws://a:8081/ws', 'ws://b:8081/ws', 'ws://c:8081/ws'],
      ['ws://a:443/ws', 'ws://c:8081/ws'],
    ]);
    const r = new EdgeRoutes({ dispatcher: 'http://d', fetch: d.fetch });
    expect(await r.pick('app', 'u')).to.equal('ws://a:8081/ws');
    r.failed('ws://a:8081/ws', true);
    expect(await r.pick('app', 'u')).to.equal('ws://a:443/ws');
    expect(d.asked).to.deep.equal([[], ['ws://a:8081/ws']]);
    // Sticky: the working edge is kept, no more asks.
    r.connected('ws://a:443/ws');
    expect(await r.pick('app', 'u')).to.equal('ws://a:443/ws');
    expect(d.asked).to.have.length(2);
  });

  it('moves on after a refusal without reporting the edge; asks again only when the list is used up', async function () {
    const d = dispatcher([['ws://a/ws', 'ws://b/ws']]);
    const r = new EdgeRoutes({ dispatcher: 'http://d', fetch: d.fetch });
    expect(await r.pick('app', 'u')).to.equal('ws://a/ws');
    r.failed('ws://a/ws', false); // 4503 edge_full
    expect(await r.pick('app', 'u')).to.equal('ws://b/ws');
    r.failed('ws://b/ws', false);
    expect(await r.pick('app', 'u')).to.equal('ws://a/ws');
    expect(d.asked).to.deep.equal([[], []]);
  });

  it('keeps one list per network: back on Wi-Fi, the Wi-Fi edge that worked comes first', async function () {
    let network = 'wifi';
    const d = dispatcher([['ws://a/ws', 'ws://b/ws'], ['ws://b/ws'], ['ws://a/ws', 'ws://b/ws']]);
    const r = new EdgeRoutes({ dispatcher: 'http://d', fetch: d.fetch, network: () => network });
    expect(await r.pick('app', 'u')).to.equal('ws://a/ws');
    r.failed('ws://a/ws', true); // this Wi-Fi blocks a
    expect(await r.pick('app', 'u')).to.equal('ws://b/ws');
    r.connected('ws://b/ws');
    network = 'cellular';
    expect(await r.pick('app', 'u')).to.equal('ws://a/ws'); // its own list, nothing excluded
    expect(d.asked.at(-1)).to.deep.equal([]);
    network = 'wifi';
    expect(await r.pick('app', 'u')).to.equal('ws://b/ws');
    expect(d.asked).to.have.length(3);
  });

  it('starts afresh when the dispatcher answers only excluded edges, and forgets old failures', async function () {
    const d = dispatcher([['ws://a/ws'], ['ws://a/ws'], ['ws://a/ws']]);
    const r = new EdgeRoutes({ dispatcher: 'http://d', fetch: d.fetch });
    await r.pick('app', 'u', 0);
    r.failed('ws://a/ws', true, 0);
    expect(await r.pick('app', 'u', 1)).to.equal('ws://a/ws');
    expect(d.asked[1]).to.deep.equal(['ws://a/ws']);
    r.failed('ws://a/ws', true, 2);
    // Reported again, but only until it is old.
    await r.pick('app', 'u', 2 + UNREACHABLE_FOR_MS);
    expect(d.asked[2]).to.deep.equal([]);
  });

  it('uses the rest of its list when the dispatcher cannot be asked after an unreachable edge', async function () {
    let up = true;
    const d = dispatcher([['ws://a/ws', 'ws://b/ws']]);
    const fetch = (url: string) => (up ? d.fetch(url) : Promise.reject(new Error('offline')));
    const r = new EdgeRoutes({ dispatcher: 'http://d', fetch });
    await r.pick('app', 'u');
    up = false;
    r.failed('ws://a/ws', true);
    expect(await r.pick('app', 'u')).to.equal('ws://b/ws');
    r.failed('ws://b/ws', true);
    let caught: unknown;
    await r.pick('app', 'u').catch((err: unknown) => (caught = err));
    expect((caught as { code?: string }).code).to.equal('dispatcher');
  });

  it('asks for the region given, along with the excludes', async function () {
    const urls: string[] = [];
    const d = dispatcher([['ws://a/ws', 'ws://b/ws']]);
    const fetch = (url: string) => {
      urls.push(url);
      return d.fetch(url);
    };
    const r = new EdgeRoutes({ dispatcher: 'http://d/', fetch, region: 'eu' });
    await r.pick('my app', 'u/1');
    r.failed('ws://a/ws', true);
    await r.pick('my app', 'u/1');
    expect(urls).to.deep.equal([
      'http://d/v1/edges?app=my%20app&user=u%2F1&region=eu',
      'http://d/v1/edges?app=my%20app&user=u%2F1&region=eu&exclude=ws%3A%2F%2Fa%2Fws',
    ]);
  });

  it('with edges given, never asks anyone', async function () {
    const r = new EdgeRoutes({ edges: ['ws://x/ws', 'ws://y/ws'] });
    expect(await r.pick('app', 'u')).to.equal('ws://x/ws');
    r.failed('ws://x/ws', true);
    expect(await r.pick('app', 'u')).to.equal('ws://y/ws');
  });

  it('reads the network from navigator.connection.type where the platform gives it, else one network', function () {
    const g = globalThis as { navigator?: unknown };
    const saved = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
    try {
      Object.defineProperty(globalThis, 'navigator', {
        value: { connection: { type: 'cellular' } },
        configurable: true,
      });
      expect(currentNetwork()).to.equal('cellular');
      Object.defineProperty(globalThis, 'navigator', { value: {}, configurable: true });
      expect(currentNetwork()).to.equal('default');
    } finally {
      if (saved !== undefined) Object.defineProperty(globalThis, 'navigator', saved);
      else delete g.navigator;
    }
  });
});
