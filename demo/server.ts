/**
 * The demo's stand-in for a business server (`make dev` starts it; DEMO_PORT, 8084): serves the
 * demo page, its icon and the SDK bundle, signs client tokens for the page (`GET /token?user=alice`, as
 * a real backend would after its own login), and pushes a live feed item to the chat's users
 * every few seconds through the center's push API. The page itself talks to the dispatcher and
 * the edge directly, from this origin: it exercises CORS as any real page would.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { signClientToken } from '@push/apps';
import type { AppSecret } from '@push/protocol';

const here = dirname(fileURLToPath(import.meta.url));
/** Users the demo page shows side by side; the feed goes to them. */
export const DEMO_USERS = ['alice', 'bob'] as const;

export interface DemoOptions {
  app: string;
  /** The app's newest signing secret (the admin API's `secrets[0]`). */
  secret: AppSecret;
  /** The app's API key, for the feed's pushes. */
  apiKey: string;
  centerUrl: string;
  dispatcherUrl: string;
  host?: string;
  /** 0 for a free port. */
  port: number;
  /** Between two feed items, ms; 0 turns the feed off. */
  feedIntervalMs?: number;
  /** Lifetime of the tokens it signs, seconds (short in tests of the refresh). */
  tokenTtlSeconds?: number;
}

export interface DemoServer {
  readonly url: string;
  close(): Promise<void>;
}

/** Starts the demo server; resolves once it listens. */
export async function startDemoServer(opts: DemoOptions): Promise<DemoServer> {
  const page = readFileSync(join(here, 'index.html'), 'utf8');
  const favicon = readFileSync(join(here, 'favicon.svg'));
  const bundleDir = join(here, '..', 'libs', 'client', 'dist');
  const config = JSON.stringify({ app: opts.app, dispatcher: opts.dispatcherUrl, users: DEMO_USERS });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://demo');
    if (url.pathname === '/' || url.pathname === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(page.replace('/*DEMO_CONFIG*/ null', config));
    } else if (url.pathname === '/push-client.min.js' || url.pathname === '/push-client-apps.min.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store' });
      res.end(readFileSync(join(bundleDir, url.pathname.slice(1))));
    } else if (url.pathname === '/favicon.svg' || url.pathname === '/favicon.ico') {
      // The page links the SVG; browsers ask for /favicon.ico anyway, and take an SVG there too.
      res.writeHead(200, { 'content-type': 'image/svg+xml', 'cache-control': 'max-age=86400' }).end(favicon);
    } else if (url.pathname === '/token') {
      // A real backend signs for the user its own session names; the demo trusts the query.
      const user = url.searchParams.get('user') ?? '';
      if (!(DEMO_USERS as readonly string[]).includes(user)) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end('user must be alice or bob');
        return;
      }
      const token = await signClientToken(opts.secret, {
        app: opts.app,
        user,
        device: 'demo-page',
        ttlSeconds: opts.tokenTtlSeconds ?? 3600,
      });
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-store' }).end(token);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      console.error('[demo] request failed', err);
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;

  let n = 0;
  const feedEvery = opts.feedIntervalMs ?? 3000;
  const feed =
    feedEvery > 0
      ? setInterval(() => {
          n += 1;
          const data = { n, feed: `market tick #${n}`, price: Math.round(10000 + Math.random() * 500) / 100 };
          const body = JSON.stringify({ messages: DEMO_USERS.map((user) => ({ user, data, ttl: 60 })) });
          fetch(`${opts.centerUrl}/v1/apps/${encodeURIComponent(opts.app)}/push`, {
            method: 'POST',
            headers: { authorization: `Bearer ${opts.apiKey}`, 'content-type': 'application/json' },
            body,
          }).catch((err: unknown) => console.error('[demo] feed push failed', err));
        }, feedEvery)
      : undefined;

  return {
    url: `http://${opts.host ?? '127.0.0.1'}:${port}`,
    close() {
      clearInterval(feed);
      return new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
    },
  };
}

/**
 * `tsx demo/server.ts`: reads the demo app's secret (admin API, PUSH_ADMIN_KEY) and API key
 * (.data/demo.json, from the CLI's dev-setup), then serves until stopped.
 */
async function main(): Promise<void> {
  const env = process.env;
  const centerUrl = env['DEMO_CENTER_URL'] ?? 'http://127.0.0.1:8080';
  const creds = JSON.parse(readFileSync(env['DEMO_CREDENTIALS'] ?? '.data/demo.json', 'utf8')) as {
    app: string;
    apiKey: string;
  };
  const res = await fetch(`${centerUrl}/v1/admin/apps/${encodeURIComponent(creds.app)}`, {
    headers: { authorization: `Bearer ${env['PUSH_ADMIN_KEY'] ?? ''}` },
  });
  if (!res.ok) throw new Error(`cannot read app ${creds.app}: ${res.status} ${await res.text()}`);
  const { app } = (await res.json()) as { app: { secrets: AppSecret[] } };
  const secret = app.secrets[0];
  if (secret === undefined) throw new Error(`app ${creds.app} has no secret`);
  const demo = await startDemoServer({
    app: creds.app,
    secret,
    apiKey: creds.apiKey,
    centerUrl,
    dispatcherUrl: env['DEMO_DISPATCHER_URL'] ?? 'http://127.0.0.1:8082',
    port: Number(env['DEMO_PORT'] ?? 8084),
  });
  console.log(`demo page on ${demo.url}`);
  const stop = (): void => {
    demo.close().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error('[demo] close failed', err);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err: unknown) => {
    console.error('[demo]', err);
    process.exit(1);
  });
}
