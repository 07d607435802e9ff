import { existsSync, readFileSync } from 'node:fs';
import { STATUS_CODES } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { HttpResponse, TemplatedApp } from '@push/http';
import { PushError } from '@push/protocol';

/** Where `make build` (apps/center/console/bundle.mjs) leaves the console: dist/console beside this file's build. */
export const CONSOLE_DIR = fileURLToPath(new URL('./console/', import.meta.url));

/** The files of the console and their types; nothing else under /console/ is served. */
const FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'console.js': 'text/javascript; charset=utf-8',
  'console.css': 'text/css; charset=utf-8',
};

/**
 * Same origin as the API and nothing else: no inline script, no framing, no referrer (the admin
 * key never travels in a URL, but the page's own URL holds app and user ids).
 */
const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy':
    "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

interface Asset {
  type: string;
  body: Buffer;
  gzipped: Buffer;
}

/** Reads the built console files once; an empty map when the console was not built. */
function loadAssets(dir: string): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  for (const [name, type] of Object.entries(FILES)) {
    const file = path.join(dir, name);
    if (!existsSync(file)) return new Map();
    const body = readFileSync(file);
    assets.set(name, { type, body, gzipped: gzipSync(body, { level: 9 }) });
  }
  return assets;
}

function send(res: HttpResponse, status: string, headers: Record<string, string>, body: Buffer | string): void {
  res.cork(() => {
    res.writeStatus(status);
    for (const [k, v] of Object.entries({ ...SECURITY_HEADERS, ...headers })) res.writeHeader(k, v);
    res.end(body);
  });
}

function sendError(res: HttpResponse, e: PushError): void {
  const status = `${e.status} ${STATUS_CODES[e.status] ?? ''}`.trim();
  send(res, status, { 'content-type': 'application/json' }, JSON.stringify({ error: e.toJSON() }));
}

/**
 * Serves the web console (issue 19) at `/console/` on the center's own origin, so it calls the
 * API without CORS. The files are read once at start, gzipped when the browser takes it. When
 * the console was not built, `/console/` answers 503 `console_not_built`.
 */
export function mountConsole(app: TemplatedApp, dir = CONSOLE_DIR): void {
  const assets = loadAssets(dir);
  const serve = (res: HttpResponse, name: string, acceptEncoding: string): void => {
    if (assets.size === 0) return sendError(res, new PushError('console_not_built'));
    const asset = assets.get(name);
    if (asset === undefined) return sendError(res, new PushError('not_found'));
    const gzip = /\bgzip\b/.test(acceptEncoding);
    send(
      res,
      '200 OK',
      { 'content-type': asset.type, ...(gzip ? { 'content-encoding': 'gzip' } : {}), vary: 'accept-encoding' },
      gzip ? asset.gzipped : asset.body,
    );
  };
  app.get('/console', (res) => send(res, '301 Moved Permanently', { location: '/console/' }, ''));
  app.get('/console/', (res, req) => serve(res, 'index.html', req.getHeader('accept-encoding')));
  app.get('/console/:file', (res, req) => serve(res, req.getParameter(0) ?? '', req.getHeader('accept-encoding')));
}
