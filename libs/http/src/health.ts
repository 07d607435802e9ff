import { Registry, collectDefaultMetrics } from 'prom-client';
import { PushError } from '@push/protocol';
import { HttpExchange } from './http-exchange.js';
import type { TemplatedApp } from './uws.js';

/** A metrics registry per app instance (tests run several in one process). */
export function createRegistry(component: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ component });
  collectDefaultMetrics({ register: registry });
  return registry;
}

/**
 * Mounts `/healthz` (the process runs), `/readyz` (its dependencies answer, per `ready()`) and
 * `/metrics` (Prometheus text) on a uWS app; POST, PUT, PATCH or DELETE on them answers 405
 * `method_not_allowed`.
 */
export function mountHealth(app: TemplatedApp, registry: Registry, ready: () => boolean | string): void {
  app.get('/healthz', (res) => {
    res.writeHeader('content-type', 'application/json').end('{"ok":true}');
  });
  app.get('/readyz', (res) => {
    const r = ready();
    const ok = r === true;
    res
      .writeStatus(ok ? '200 OK' : '503 Service Unavailable')
      .writeHeader('content-type', 'application/json')
      .end(JSON.stringify(ok ? { ready: true } : { ready: false, reason: r === false ? 'not ready' : r }));
  });
  app.get('/metrics', (res) => {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    registry
      .metrics()
      .then((text) => {
        if (aborted) return;
        res.cork(() => {
          res.writeHeader('content-type', registry.contentType).end(text);
        });
      })
      .catch(() => {
        if (aborted) return;
        res.cork(() => {
          res.writeStatus('500 Internal Server Error').end();
        });
      });
  });
  // Not `any`: an OPTIONS is left to the app's CORS preflight (`/*`), which answers every path.
  for (const path of ['/healthz', '/readyz', '/metrics'])
    for (const method of ['post', 'put', 'patch', 'del'] as const)
      app[method](path, (res, req) => new HttpExchange(res, req).error(new PushError('method_not_allowed')));
}
