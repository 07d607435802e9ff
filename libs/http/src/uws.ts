import { createRequire } from 'node:module';
import type * as UwsTypes from 'uWebSockets.js';

export type {
  HttpRequest,
  HttpResponse,
  TemplatedApp,
  WebSocket,
  us_listen_socket,
  us_socket_context_t,
} from 'uWebSockets.js';
export type Uws = typeof UwsTypes;

let cached: Uws | undefined;

/**
 * Loads uWebSockets.js and checks that its native binary is the one that loaded. The package
 * silently falls back to a pure-JS implementation (many times slower, different limits) when
 * the binary does not fit this Node build; a push edge must never run on that, so this throws.
 */
export function loadUws(): Uws {
  if (cached !== undefined) return cached;
  const env = process.env['UWS_USE_FALLBACK'];
  if (env !== undefined && env !== '' && env !== '0' && env.toLowerCase() !== 'false') {
    throw new Error('UWS_USE_FALLBACK is set: refusing the slow pure-JS uWebSockets.js fallback; unset it');
  }
  const require = createRequire(import.meta.url);
  const uws = require('uWebSockets.js') as Uws;
  const native =
    typeof uws.us_socket_local_port === 'function' &&
    Function.prototype.toString.call(uws.App).includes('[native code]');
  if (!native) {
    throw new Error(
      `uWebSockets.js native binary did not load for ${process.platform}-${process.arch} ` +
        `(Node ABI ${process.versions.modules}); it fell back to the slow JS implementation. ` +
        'Use Node 16, 18 or 20 on linux/darwin x64/arm64, and reinstall dependencies.',
    );
  }
  cached = uws;
  return uws;
}

/**
 * Closes every socket of an app: its listen sockets and every connection, idle keep-alive ones
 * included (`App.close()`, which uWS 20.30's binary has and its typings lack).
 */
export function closeApp(app: UwsTypes.TemplatedApp): void {
  (app as UwsTypes.TemplatedApp & { close(): void }).close();
}
