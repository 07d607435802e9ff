import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** The coordinator's Prometheus metrics (docs/operations.md). Labels name the app and the endpoint. */
export function createCoordinatorMetrics(registry: Registry) {
  const r = [registry];
  return {
    deliveries: new Counter({
      name: 'push_webhook_deliveries_total',
      help: 'Webhook POSTs by outcome (ok: 2xx; failed: any other status, a timeout or a network error)',
      labelNames: ['app', 'endpoint', 'outcome'],
      registers: r,
    }),
    items: new Counter({
      name: 'push_webhook_items_total',
      help: 'Events and upstream messages delivered (acknowledged by a 2xx)',
      labelNames: ['app', 'endpoint', 'source'],
      registers: r,
    }),
    retries: new Counter({
      name: 'push_webhook_retries_total',
      help: 'Items handed back for a later retry after a failed POST',
      labelNames: ['app', 'endpoint'],
      registers: r,
    }),
    deadLetters: new Counter({
      name: 'push_webhook_dead_letters_total',
      help: 'Items moved to the dead-letter stream after the retry limit',
      labelNames: ['app', 'endpoint'],
      registers: r,
    }),
    pending: new Gauge({
      name: 'push_webhook_pending',
      help: 'Items stored but not yet acknowledged by the endpoint (consumer pending + ack pending), by source',
      labelNames: ['app', 'endpoint', 'source'],
      registers: r,
    }),
    lag: new Histogram({
      name: 'push_webhook_lag_seconds',
      help: 'Time from an item being stored (its `time`) to its 2xx',
      labelNames: ['app'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers: r,
    }),
    postSeconds: new Histogram({
      name: 'push_webhook_post_seconds',
      help: 'Duration of webhook POSTs',
      labelNames: ['app'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: r,
    }),
    rpc: new Counter({
      name: 'push_rpc_requests_total',
      help: 'RPC requests forwarded to the RPC endpoints of apps, by outcome (ok, failed, timeout, bad_request)',
      labelNames: ['app', 'outcome'],
      registers: r,
    }),
  };
}

export type CoordinatorMetrics = ReturnType<typeof createCoordinatorMetrics>;
