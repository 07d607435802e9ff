import { Counter, Gauge, type Registry } from 'prom-client';

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
    transientMessages: new Counter({
      name: 'push_center_transient_messages_total',
      help: 'Transient messages sent live to the connections online, never stored: pushes, batch items and fan-out job copies',
      registers: r,
    }),
    requests: new Counter({
      name: 'push_center_requests_total',
      help: 'API requests by operation, transport and status',
      labelNames: ['op', 'transport', 'status'],
      registers: r,
    }),
    events: new Counter({
      name: 'push_center_events_total',
      help: 'Events the center emitted (offline events of users whose edge died, found by its presence sweep), by outcome',
      labelNames: ['outcome'],
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
    databaseUp: new Gauge({
      name: 'push_center_database_up',
      help: 'Whether Postgres answered this center the last time it was tried (0 during an outage)',
      registers: r,
    }),
    // --- fan-out jobs ---
    jobsRunning: new Gauge({
      name: 'push_center_jobs_running',
      help: 'Fan-out jobs this center runs now',
      registers: r,
    }),
    jobsClaimed: new Counter({
      name: 'push_center_jobs_claimed_total',
      help: 'Fan-out jobs this center took up: resumed = 1 when another center (or an earlier run) had started it',
      labelNames: ['resumed'],
      registers: r,
    }),
    jobWrites: new Counter({
      name: 'push_center_job_writes_total',
      help: "Fan-out job copies stored in users' inboxes",
      registers: r,
    }),
    jobRewrites: new Counter({
      name: 'push_center_job_rewrites_total',
      help: 'Fan-out job copies written again after a resume and dropped by the store as repeats',
      registers: r,
    }),
    jobWriteFailures: new Counter({
      name: 'push_center_job_write_failures_total',
      help: 'Fan-out job copies the store did not take after every retry (counted as failed)',
      registers: r,
    }),
    jobWriteRetries: new Counter({
      name: 'push_center_job_write_retries_total',
      help: 'Fan-out job writes tried again after a store failure',
      registers: r,
    }),
  };
}

export type CenterMetrics = ReturnType<typeof createCenterMetrics>;
