import { Kvm } from '@nats-io/kv';
import { AppDirectory, WebhookDirectory } from '@push/apps';
import type { Config } from '@push/config';
import { HttpExchange, createRegistry, listen, loadUws, mountHealth, type Listening } from '@push/http';
import { createLogger, type Logger } from '@push/logger';
import { connectNats, natsReadiness, type NatsConnection } from '@push/nats';
import { PushError, Subjects, type AppRecord, type WebhookEndpoint } from '@push/protocol';
import type { Registry } from 'prom-client';
import { EndpointWorker, type WorkerDeps } from './endpoint-worker.js';
import { Handbacks } from './handbacks.js';
import { createCoordinatorMetrics } from './metrics.js';
import { RpcForwarder } from './rpc-forwarder.js';

/** A running coordinator. */
export interface Coordinator {
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly port: number;
  readonly registry: Registry;
}

/**
 * The coordinator (DESIGN.md): delivers webhooks and forwards client RPCs to apps' HTTP
 * endpoints. It learns apps from the apps KV bucket and webhook endpoints from the webhooks KV
 * bucket (both written by the center after Postgres), so it needs no Postgres. Any number run
 * side by side: each endpoint's durable pull consumers are shared (the work splits, a killed
 * coordinator's unacked messages go to the others after the ack wait), and RPCs go to one member
 * of the queue group.
 */
export function createCoordinator(config: Config, opts: { logger?: Logger } = {}): Coordinator {
  const log = (
    opts.logger ?? createLogger({ level: config.log.level, pretty: config.log.pretty, name: 'coordinator' })
  ).child({
    component: 'coordinator',
  });
  const registry = createRegistry('coordinator');
  const metrics = createCoordinatorMetrics(registry);
  const subjects = new Subjects(config.prefix);
  let nc: NatsConnection | undefined;
  let apps: AppDirectory | undefined;
  let endpoints: WebhookDirectory | undefined;
  let rpc: RpcForwarder | undefined;
  const workers = new Map<string, EndpointWorker>();
  /**
   * Changes of one endpoint's worker run one after another, so its stop and start never
   * interleave; different endpoints change independently (stopping one waits for its POSTs in
   * flight, up to its timeout, and must not hold up another's start).
   */
  const changes = new Map<string, Promise<void>>();
  const settled = () => Promise.all([...changes.values()]);
  let listening: Listening | undefined;
  let stopping = false;
  let stopPromise: Promise<void> | undefined;

  /** Starts, replaces, updates or stops the worker of one endpoint to match what the directories say. */
  async function reconcile(deps: WorkerDeps, key: string, ep: WebhookEndpoint | undefined): Promise<void> {
    if (stopping) return;
    const app: AppRecord | undefined = ep === undefined ? undefined : apps?.get(ep.app);
    // Delivered only while both the endpoint and its app are enabled (and the app is known).
    const wanted = ep !== undefined && !ep.disabled && app !== undefined && !app.disabled ? { ep, app } : undefined;
    const current = workers.get(key);
    if (current !== undefined) {
      if (wanted !== undefined && EndpointWorker.shape(wanted.ep, wanted.app.settings) === current.builtWith) {
        current.update(wanted.ep);
        return;
      }
      workers.delete(key);
      await current.stop();
    }
    if (wanted === undefined) return;
    const w = new EndpointWorker(wanted.ep, wanted.app.settings, deps);
    workers.set(key, w);
    w.start();
    log.info({ endpoint: wanted.ep.id, app: wanted.ep.app }, 'webhook endpoint delivering');
  }

  return {
    get port() {
      return listening?.port ?? 0;
    },
    registry,
    async start() {
      const uws = loadUws();
      const conn = await connectNats({
        servers: config.natsUrl,
        auth: config.natsAuth,
        name: 'coordinator',
        logger: log,
      });
      nc = conn;
      // The center provisions the apps bucket; a coordinator started first makes it (idempotent).
      await new Kvm(conn).create(subjects.appsBucket, { history: 1, replicas: config.inbox.replicas });
      apps = await AppDirectory.open(conn, subjects, log);
      const directory = await WebhookDirectory.open(conn, subjects, log, { replicas: config.inbox.replicas });
      endpoints = directory;
      const deps: WorkerDeps = {
        nc: conn,
        subjects,
        apps,
        metrics,
        log,
        batch: config.coordinator.webhookBatch,
        dlq: { replicas: config.inbox.replicas, duplicateWindowSeconds: config.inbox.duplicateWindowSeconds },
        endpointExists: (app, id) => directory.exists(app, id),
        handbacks: await Handbacks.open(conn, subjects, config.inbox.replicas),
      };
      const queue = (key: string, ep: WebhookEndpoint | undefined) => {
        const next = (changes.get(key) ?? Promise.resolve())
          .then(() => reconcile(deps, key, ep))
          .catch((err: unknown) => log.error({ err, key }, 'webhook endpoint change failed'));
        changes.set(key, next);
        void next.then(() => {
          if (changes.get(key) === next) changes.delete(key);
        });
      };
      const dir = endpoints;
      dir.onChange(queue);
      // An app's change (disabled, timeout, concurrency) may change its endpoints' workers.
      apps.onChange((id) => {
        for (const [key, ep] of dir.all()) if (ep.app === id) queue(key, ep);
      });
      for (const [key, ep] of dir.all()) queue(key, ep);
      rpc = new RpcForwarder(conn, subjects, apps, metrics, log);
      rpc.start();
      await settled();
      await conn.flush();
      const app = uws.App();
      mountHealth(app, registry, () => (stopping ? 'stopping' : natsReadiness(nc)));
      // Without a catch-all uWS closes the connection on an unknown path; answer like the other apps.
      app.any('/*', (res, req) => {
        new HttpExchange(res, req).error(new PushError('not_found'));
      });
      listening = await listen(app, config.coordinator.host, config.coordinator.port);
      log.info({ port: listening.port, endpoints: workers.size }, 'coordinator listening');
    },
    stop() {
      stopPromise ??= (async () => {
        stopping = true;
        listening?.close();
        await rpc?.stop().catch((err: unknown) => log.warn({ err }, 'rpc forwarder stop failed'));
        await settled();
        await Promise.all(
          [...workers.values()].map((w) =>
            w.stop().catch((err: unknown) => log.warn({ err }, 'webhook worker stop failed')),
          ),
        );
        workers.clear();
        endpoints?.close();
        apps?.close();
        if (nc !== undefined && !nc.isClosed())
          await nc.drain().catch((err: unknown) => log.warn({ err }, 'nats drain failed'));
      })();
      return stopPromise;
    },
  };
}
