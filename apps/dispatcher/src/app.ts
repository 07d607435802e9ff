import type { Config } from '@push/config';
import { CorsPolicy, HttpExchange, createRegistry, listen, loadUws, mountHealth, type Listening } from '@push/http';
import { createLogger, type Logger } from '@push/logger';
import { PushError, REGION_LABEL, idProblem } from '@push/protocol';
import type { Registry } from 'prom-client';
import { routeEdges, type RouteQuery } from './route-edges.js';

/** Most `exclude` values one request may give. */
const MAX_EXCLUDE = 100;

/**
 * `exclude` (repeated, or comma-separated) and `region` of a `/v1/edges` query; a PushError
 * `bad_request` for too many or too long values or a region that is no label.
 */
function routeQuery(raw: string): RouteQuery | PushError {
  const q = new URLSearchParams(raw);
  const exclude = q.getAll('exclude').flatMap((v) =>
    v
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
  );
  if (exclude.length > MAX_EXCLUDE || exclude.some((e) => e.length > 2048)) {
    return new PushError('bad_request', `exclude takes at most ${MAX_EXCLUDE} edge URLs of at most 2048 characters`);
  }
  const region = q.get('region') ?? '';
  if (region !== '' && !REGION_LABEL.test(region)) {
    return new PushError('bad_request', 'region must be a region label: 1 to 32 of a-z 0-9 -');
  }
  return { exclude, region };
}

/** A running dispatcher. */
export interface Dispatcher {
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly port: number;
  readonly registry: Registry;
}

/**
 * The dispatcher tells a client which edges to connect to: `GET /v1/edges?app=A&user=U` answers
 * `{ edges: [url, ...] }`, ranked and sticky per user (rendezvous hashing over PUSH_DISPATCHER_EDGES),
 * without the edges the client `exclude`s and by region (routeEdges).
 */
export function createDispatcher(config: Config, opts: { logger?: Logger } = {}): Dispatcher {
  const log = (
    opts.logger ?? createLogger({ level: config.log.level, pretty: config.log.pretty, name: 'dispatcher' })
  ).child({
    component: 'dispatcher',
  });
  const registry = createRegistry('dispatcher');
  let listening: Listening | undefined;
  let stopping = false;
  return {
    get port() {
      return listening?.port ?? 0;
    },
    registry,
    async start() {
      const uws = loadUws();
      const app = uws.App();
      mountHealth(app, registry, () =>
        stopping ? 'stopping' : config.dispatcher.edges.length > 0 ? true : 'no edges configured',
      );
      // Pages ask for their edges from their own origin: CORS (PUSH_DISPATCHER_CORS).
      const cors = new CorsPolicy(config.dispatcher.corsOrigins);
      cors.mountPreflight(app, ['GET']);
      app.get('/v1/edges', (res, req) => {
        const ex = new HttpExchange(res, req, [], cors);
        const appId = req.getQuery('app') ?? '';
        const user = req.getQuery('user') ?? '';
        const problem = idProblem('app', appId) ?? idProblem('user', user);
        if (problem !== undefined) {
          ex.error(new PushError('invalid_id', `give app and user query parameters: ${problem}`));
          return;
        }
        const route = routeQuery(req.getQuery() ?? '');
        if (route instanceof PushError) {
          ex.error(route);
          return;
        }
        const { edges, regions } = config.dispatcher;
        ex.json(200, { edges: routeEdges(edges, regions, appId, user, route) });
      });
      app.any('/*', (res, req) => {
        new HttpExchange(res, req, [], cors).error(new PushError('not_found'));
      });
      listening = await listen(app, config.dispatcher.host, config.dispatcher.port);
      log.info({ port: listening.port, edges: config.dispatcher.edges.length }, 'dispatcher listening');
    },
    async stop() {
      stopping = true;
      listening?.close();
      await Promise.resolve();
    },
  };
}
