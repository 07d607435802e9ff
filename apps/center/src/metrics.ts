import { Counter, type Registry } from 'prom-client';

/** The center's Prometheus metrics. */
export function createCenterMetrics(registry: Registry) {
  const r = [registry];
  return {
    messages: new Counter({ name: 'push_center_messages_total', help: 'Messages stored in inboxes', registers: r }),
    duplicates: new Counter({
      name: 'push_center_duplicates_total',
      help: 'Pushes dropped as repeats of an idempotency id',
      registers: r,
    }),
    requests: new Counter({
      name: 'push_center_requests_total',
      help: 'API requests by operation, transport and status',
      labelNames: ['op', 'transport', 'status'],
      registers: r,
    }),
    topicMessages: new Counter({
      name: 'push_center_topic_messages_total',
      help: 'Messages stored in topics (_all included) through the API',
      registers: r,
    }),
    errors: new Counter({
      name: 'push_center_errors_total',
      help: 'Errors by code',
      labelNames: ['code'],
      registers: r,
    }),
  };
}

export type CenterMetrics = ReturnType<typeof createCenterMetrics>;
