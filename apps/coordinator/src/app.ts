import type { Config } from '@push/config';
import { HttpExchange, createRegistry, listen, loadUws, mountHealth, type Listening } from '@push/http';
import { createLogger, type Logger } from '@push/logger';
import { connectNats, natsReadiness, type NatsConnection } from '@push/nats';
import { PushError } from '@push/protocol';
import type { Registry } from 'prom-client';

/** A running coordinator. */
export interface Coordinator {
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly port: number;
  readonly registry: Registry;
}

/**
 * The coordinator: consumer of the upstream and event streams and runner of webhooks (DESIGN.md).
 * In this release it holds its NATS connection and serves health and metrics; client-to-client
 * messages are stored by the edge directly in the recipient's inbox (store-then-send), so none
 * pass through here. Upstream and webhooks arrive with the PUSH_UP and PUSH_EVENTS streams.
 */
export function createCoordinator(config: Config, opts: { logger?: Logger } = {}): Coordinator {
  const log = (
    opts.logger ?? createLogger({ level: config.log.level, pretty: config.log.pretty, name: 'coordinator' })
  ).child({
    component: 'coordinator',
  });
  const registry = createRegistry('coordinator');
  let nc: NatsConnection | undefined;
  let listening: Listening | undefined;
  let stopping = false;
  let stopPromise: Promise<void> | undefined;
  return {
    get port() {
      return listening?.port ?? 0;
    },
    registry,
    async start() {
      const uws = loadUws();
      nc = await connectNats({ servers: config.natsUrl, auth: config.natsAuth, name: 'coordinator', logger: log });
      const app = uws.App();
      mountHealth(app, registry, () => (stopping ? 'stopping' : natsReadiness(nc)));
      // Without a catch-all uWS closes the connection on an unknown path; answer like the other apps.
      app.any('/*', (res, req) => {
        new HttpExchange(res, req).error(new PushError('not_found'));
      });
      listening = await listen(app, config.coordinator.host, config.coordinator.port);
      log.info({ port: listening.port }, 'coordinator listening');
    },
    stop() {
      stopPromise ??= (async () => {
        stopping = true;
        listening?.close();
        if (nc !== undefined && !nc.isClosed())
          await nc.drain().catch((err: unknown) => log.warn({ err }, 'nats drain failed'));
      })();
      return stopPromise;
    },
  };
}
