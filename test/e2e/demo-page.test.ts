import { expect } from 'chai';
import { startDemoServer, type DemoServer } from '../../demo/server.js';

/** The demo page's server on its own (the page in a browser: sdk-browser.test.ts). */
describe('demo page server', function () {
  let demo: DemoServer;

  before(async () => {
    demo = await startDemoServer({
      app: 'demo',
      secret: { kid: 'k1', secret: 'not-used-here', createdAt: new Date().toISOString() },
      apiKey: 'not-used-here',
      centerUrl: 'http://127.0.0.1:9',
      dispatcherUrl: 'http://127.0.0.1:9',
      port: 0,
      feedIntervalMs: 0,
    });
  });
  after(async () => {
    await demo?.close();
  });

  it('has an icon: the one the page links, and /favicon.ico that browsers ask for anyway', async () => {
    const page = await (await fetch(demo.url)).text();
    const href = /<link rel="icon" href="([^"]+)"/.exec(page)?.[1];
    expect(href, 'the page links an icon').to.be.a('string');
    for (const p of [href ?? '', '/favicon.ico']) {
      const res = await fetch(new URL(p, demo.url));
      expect(res.status, p).to.equal(200);
      expect(res.headers.get('content-type'), p).to.equal('image/svg+xml');
      expect(await res.text(), p).to.match(/^<svg /);
    }
  });
});
