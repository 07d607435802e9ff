import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { NatsConnection, Subscription } from '@push/nats';
import type { EdgeStats, Subjects } from '@push/protocol';
import type { Logger } from 'pino';
import type { Counter } from 'prom-client';
import type { EdgeConnections } from './edge-connections.js';
import type { EdgeMetrics } from './metrics.js';

/** The value of a counter without labels. */
async function total(counter: Counter): Promise<number> {
  return (await counter.get()).values[0]?.value ?? 0;
}

/**
 * Answers the center's figures request (`Subjects.edgeStats`) with this edge's `EdgeStats`:
 * connections per app, delivery counters and the event-loop delay since the last answer. One
 * core subscription; the answer is computed when asked (a loop over the open connections, which
 * the console asks for every few seconds), never on the delivery path.
 */
export class EdgeStatsResponder {
  private readonly delay: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  private readonly startedAt = Date.now();
  private sub: Subscription | undefined;

  constructor(
    private readonly edgeId: string,
    private readonly connections: EdgeConnections,
    private readonly metrics: EdgeMetrics,
    private readonly log: Logger,
  ) {}

  /** Subscribes and starts measuring the event loop. */
  start(nc: NatsConnection, subjects: Subjects): void {
    this.delay.enable();
    this.sub = nc.subscribe(subjects.edgeStats, {
      callback: (err, msg) => {
        if (err !== null) {
          this.log.warn({ err }, 'edge stats subscription failed');
          return;
        }
        this.snapshot().then(
          (stats) => msg.respond(JSON.stringify(stats)),
          (e: unknown) => this.log.warn({ err: e }, 'edge stats not answered'),
        );
      },
    });
  }

  /** This edge's figures now; resets the event-loop histogram. */
  async snapshot(): Promise<EdgeStats> {
    const apps: Record<string, number> = {};
    for (const c of this.connections.sessions()) apps[c.app] = (apps[c.app] ?? 0) + 1;
    const m = this.metrics;
    const [users, messagesOut, messagesIn, acks, topicFramesOut, topicMessagesIn] = await Promise.all([
      m.users.get().then((g) => g.values[0]?.value ?? 0),
      total(m.messagesOut),
      total(m.messagesIn),
      total(m.acks),
      total(m.topicMessagesOut),
      total(m.topicMessagesIn),
    ]);
    // The histogram is in nanoseconds; NaN before any sample.
    const ms = (ns: number): number => (Number.isFinite(ns) ? Math.round(ns / 1e4) / 100 : 0);
    const eventLoopDelayMs = { mean: ms(this.delay.mean), p99: ms(this.delay.percentile(99)) };
    this.delay.reset();
    return {
      edge: this.edgeId,
      at: Date.now(),
      startedAt: this.startedAt,
      connections: this.connections.size,
      users,
      apps,
      messagesOut,
      messagesIn,
      acks,
      topicFramesOut,
      topicMessagesIn,
      eventLoopDelayMs,
    };
  }

  /** Unsubscribes and stops measuring. Idempotent. */
  stop(): void {
    this.sub?.unsubscribe();
    this.sub = undefined;
    this.delay.disable();
  }
}
