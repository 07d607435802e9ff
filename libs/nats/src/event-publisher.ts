import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { headers, type Msg, type NatsConnection } from '@nats-io/nats-core';
import { backoffDelay, type EventInput, type EventType, type Subjects } from '@push/protocol';
import { readStored, readStoredBytes } from './inbox-store.js';
import { headerStatus, liveWire, type LiveReply, type LiveSubscriber } from './live-subscriber.js';
import { PipelineFullError, RequestPipeline } from './request-pipeline.js';

/**
 * Events a process queues for the store before it drops new ones (counted): every connect and
 * close of an edge emits two, and a presence sweep of a dead edge two per connection it held, so
 * a storm or a sweep of tens of thousands must queue, not drop (at about 300 bytes an event,
 * 200,000 waiting is 60 MB).
 */
export const EVENTS_MAX_QUEUED = 200_000;

/** How often, at most, failed or dropped events are logged (each is counted), ms. */
const EVENT_FAILED_LOG_MS = 5000;

/**
 * An `onOutcome` that counts every outcome (`count`, the process's `push_*_events_total`) and
 * logs failed or dropped events at most every few seconds with how many since the last line:
 * an event store outage must not flood the log.
 */
export function countedEventOutcomes(
  count: (outcome: EventOutcome) => void,
  log: Logger,
  metric: string,
): NonNullable<EventPublisherOptions['onOutcome']> {
  let lost = 0;
  let loggedAt = 0;
  return (type, outcome, err) => {
    count(outcome);
    if (outcome === 'stored') return;
    lost++;
    const now = Date.now();
    if (now - loggedAt < EVENT_FAILED_LOG_MS) return;
    log.warn({ err, type, outcome, lost }, `events not stored (counted in ${metric})`);
    lost = 0;
    loggedAt = now;
  };
}

/** How often `room()` looks at the queue again while it is over half full, ms. */
const ROOM_POLL_MS = 20;

/** What became of one emitted event (for the caller's metrics). */
export type EventOutcome = 'stored' | 'failed' | 'dropped';

export interface EventPublisherOptions {
  /** Publishes awaiting the store's ack at once. */
  maxInFlight?: number;
  /** Events waiting for a slot; past it new events are dropped (counted), never awaited. */
  maxQueued?: number;
  /** Deadline of one publish, ms (queued time included). */
  timeoutMs?: number;
  /** Publishes tried per event (a failed one is tried again after a jittered delay; the id dedupes). */
  attempts?: number;
  /**
   * Publish on this connection instead of `nc` (the edge's LiveSubscriber): an event is then a
   * few string writes instead of a nats.js publish with a headers object and three encoded
   * buffers, and its ack is read from the bytes. Same acks, retries and dedupe.
   */
  live?: LiveSubscriber;
  /** Called once per event with its fate (stored, failed after every attempt, dropped at the bound). */
  onOutcome?: (type: EventType, outcome: EventOutcome, err?: unknown) => void;
}

/**
 * Emits events into the app's `PUSH_EVENTS-<app>` stream (`push.evt.<app>.<type>`), as JSON with
 * `Nats-Msg-Id` = the event's `id`. Emission never blocks the caller: `emit` returns at once,
 * publishes are pipelined (many in flight on one reply subscription), the queue behind them is
 * bounded, and an event that cannot be stored is counted (`onOutcome`), never thrown. A failed
 * publish is tried again a few times with the same id, so a retry stored twice is stored once.
 *
 * Typed: `emit('topic_sub', { app, user, device, conn, edge, topic })` (see EventSchemas).
 */
export class EventPublisher {
  private readonly pipeline: Pick<RequestPipeline, 'idle' | 'close' | 'queued'>;
  /** The queue's bound, which also bounds the events waiting to be retried. */
  private readonly maxQueued: number;
  /** Publishes one event; resolves with the store's answer, which `check` reads (it throws for a refusal). */
  private readonly store: (subject: string, id: string, body: string) => Promise<unknown>;
  private readonly check: (reply: unknown) => void;
  /** Process-unique part of every event id (random), then a counter: unique without a syscall per event. */
  private readonly idPrefix = `evt_${randomBytes(9).toString('base64url')}`;
  private counter = 0;
  private readonly attempts: number;
  private retrying = 0;
  private closed = false;

  constructor(
    nc: NatsConnection,
    private readonly subjects: Subjects,
    private readonly opts: EventPublisherOptions = {},
  ) {
    // An event in flight when the connection is lost fails at once and is retried (the
    // Nats-Msg-Id dedupes it if the store had it), not after its deadline (RequestPipeline).
    const pipelineOpts = {
      timeoutMs: opts.timeoutMs ?? 5000,
      maxInFlight: opts.maxInFlight ?? 1024,
      maxQueued: opts.maxQueued ?? 10_000,
    };
    if (opts.live !== undefined) {
      const pipeline = new RequestPipeline(liveWire(opts.live), pipelineOpts);
      this.pipeline = pipeline;
      this.store = (subject, id, body) => pipeline.request(subject, body, `NATS/1.0\r\nNats-Msg-Id: ${id}\r\n\r\n`);
      this.check = (r) => readStoredBytes(headerStatus((r as LiveReply).headers), (r as LiveReply).payload);
    } else {
      const pipeline = new RequestPipeline(nc, pipelineOpts);
      this.pipeline = pipeline;
      this.store = (subject, id, body) => {
        const h = headers();
        h.set('Nats-Msg-Id', id);
        return pipeline.request(subject, body, h);
      };
      this.check = (r) => readStored(r as Msg); // throws for a refusal or no stream (503)
    }
    this.maxQueued = pipelineOpts.maxQueued;
    this.attempts = Math.max(1, opts.attempts ?? 3);
  }

  /** A fresh event id: `evt_` + 12 random base64url characters + `_` + a base-36 counter. */
  nextId(): string {
    return `${this.idPrefix}_${(this.counter++).toString(36)}`;
  }

  /** Emits one event; returns its id at once (the store acks later, see `onOutcome`). */
  emit<T extends EventType>(type: T, fields: EventInput<T>, time = Date.now()): string {
    const id = this.nextId();
    if (this.closed) {
      this.opts.onOutcome?.(type, 'dropped');
      return id;
    }
    // {id, type, time, ...fields} without building that object: the id and type need no escaping.
    const rest = JSON.stringify(fields);
    const body = `{"id":"${id}","type":"${type}","time":${JSON.stringify(time)}${rest.length > 2 ? `,${rest.slice(1)}` : '}'}`;
    this.publish(type, fields.app, id, body, 0);
    return id;
  }

  private publish(type: EventType, app: string, id: string, body: string, attempt: number): void {
    void this.store(this.subjects.event(app, type), id, body).then(
      (reply) => {
        try {
          this.check(reply);
        } catch (err) {
          this.failed(type, app, id, body, attempt, err);
          return;
        }
        this.opts.onOutcome?.(type, 'stored');
      },
      (err: unknown) => this.failed(type, app, id, body, attempt, err),
    );
  }

  private failed(type: EventType, app: string, id: string, body: string, attempt: number, err: unknown): void {
    // A full queue means the store is far behind: retrying would only add to it.
    if (err instanceof PipelineFullError || this.closed) {
      this.opts.onOutcome?.(type, 'dropped', err);
      return;
    }
    if (attempt + 1 >= this.attempts || this.retrying >= this.maxQueued) {
      this.opts.onOutcome?.(type, 'failed', err);
      return;
    }
    this.retrying++;
    setTimeout(
      () => {
        this.retrying--;
        this.publish(type, app, id, body, attempt + 1);
      },
      backoffDelay(attempt, { baseMs: 200, capMs: 2000 }),
    ).unref();
  }

  /**
   * Resolves once at most half the queue's bound waits (at once when so, or when closed): how an
   * emitter of very many events at once (the sweep of a dead edge) keeps them from being dropped.
   */
  async room(): Promise<void> {
    while (!this.closed && this.pipeline.queued > this.maxQueued / 2) {
      await new Promise((resolve) => setTimeout(resolve, ROOM_POLL_MS));
    }
  }

  /** Resolves true once no publish is in flight or queued, false after `timeoutMs` (shutdown). */
  idle(timeoutMs: number): Promise<boolean> {
    return this.pipeline.idle(timeoutMs);
  }

  /** Stops publishing (events emitted later are counted as dropped). Idempotent. */
  close(): void {
    this.closed = true;
    this.pipeline.close();
  }
}
