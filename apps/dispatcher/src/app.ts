import type { Config } from '@push/config';
import { CorsPolicy, HttpExchange, createRegistry, listen, loadUws, mountHealth, type Listening } from '@push/http';
import { createLogger, type Logger } from '@push/logger';
import { PushError, idProblem } from '@push/protocol';
import type { Registry } from 'prom-client';
import { rankEdges } from './rank-edges.js';

/** A running dispatcher. */
export interface Dispatcher {
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly port: number;
  readonly registry: Registry;
}

/**
 * The dispatcher tells a client which edges to connect to: `GET /v1/edges?app=A&user=U` answers
 * `{ edges: [url, ...] }`, ranked and sticky per user (rendezvous hashing over PUSH_DISPATCHER_EDGES).
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
        ex.json(200, { edges: rankEdges(config.dispatcher.edges, appId, user) });
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
