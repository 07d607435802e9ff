import type { TemplatedApp } from './uws.js';

/** How long a browser may cache a preflight answer, seconds. */
const PREFLIGHT_MAX_AGE = 600;

/**
 * Which browser pages may call an HTTP API (CORS), from `PUSH_CORS_ORIGINS`: `*` lets any page
 * (the APIs take no cookies, every call carries its own key or asks for public data, so `*`
 * lends a page nothing it does not hold already); a list allows exactly those origins; empty
 * sends no CORS headers (browsers then block every cross-origin call).
 */
export class CorsPolicy {
  private readonly any: boolean;
  private readonly origins: ReadonlySet<string>;

  constructor(origins: readonly string[]) {
    this.any = origins.includes('*');
    this.origins = new Set(origins);
  }

  /** The CORS headers of an answer to a request with this Origin header (none when not allowed). */
  headers(origin: string): Record<string, string> {
    if (origin === '') return {};
    if (this.any) return { 'access-control-allow-origin': '*', 'access-control-expose-headers': 'retry-after' };
    if (!this.origins.has(origin)) return { vary: 'origin' };
    return {
      'access-control-allow-origin': origin,
      'access-control-expose-headers': 'retry-after',
      vary: 'origin',
    };
  }

  /**
   * Answers every preflight (`OPTIONS`) with 204: the allowed methods and headers when the
   * origin is allowed, no CORS headers otherwise (the browser then refuses the call itself).
   * Mount before the catch-all route.
   */
  mountPreflight(app: TemplatedApp, methods: readonly string[]): void {
    app.options('/*', (res, req) => {
      const origin = req.getHeader('origin');
      const headers = this.headers(origin);
      res.cork(() => {
        res.writeStatus('204 No Content');
        for (const [k, v] of Object.entries(headers)) res.writeHeader(k, v);
        if (headers['access-control-allow-origin'] !== undefined) {
          res.writeHeader('access-control-allow-methods', methods.join(', '));
          res.writeHeader('access-control-allow-headers', 'authorization, content-type');
          res.writeHeader('access-control-max-age', String(PREFLIGHT_MAX_AGE));
        }
        res.end();
      });
    });
  }
}
