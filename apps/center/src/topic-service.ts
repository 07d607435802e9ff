import type { AppDirectory, RateLimiter } from '@push/apps';
import type { TopicStore } from '@push/nats';
import {
  PushError,
  RateLimitedError,
  TopicBatchItemSchema,
  TopicMessageSchema,
  compile,
  isObject,
  isPushError,
  readPayload,
  topicProblem,
  type AppRecord,
  type MessagePayload,
  type Subjects,
  type TopicBatchItemResult,
} from '@push/protocol';
import { readBatch } from './batch-items.js';
import type { CenterMetrics } from './metrics.js';

interface TopicInput {
  topic: string;
  payload: MessagePayload;
  ttlSeconds: number | undefined;
  id: string | undefined;
}

/** What a topic publish did: one stored message, or a batch with each message's result. */
export type TopicOutcome =
  | { batch: false; topic: string; seq: number; duplicate: boolean }
  | { batch: true; results: TopicBatchItemResult[]; failed: number };

const topicMessage = compile(TopicMessageSchema);
const topicBatchItem = compile(TopicBatchItemSchema);

/** PushError `invalid_topic` for a name a business may not publish to, or undefined. */
export function topicNameError(topic: unknown): PushError | undefined {
  const why = topicProblem(topic);
  return why === undefined ? undefined : new PushError('invalid_topic', why);
}

/**
 * PushError `transient_conflict` for a topic message that asks to be transient: topic messages
 * are stored as history (resume, `prev` gap checks), so one that skipped the store would break
 * both; the field is refused rather than ignored, which would store it silently.
 */
function refuseTransient(body: Record<string, unknown>): void {
  if (body['transient'] !== undefined && body['transient'] !== false) {
    throw new PushError(
      'transient_conflict',
      'topics take no transient messages: a topic message is stored as history',
    );
  }
}

/**
 * Topic publishing, shared by the HTTP API and `push.api.topics.publish` over NATS: validates
 * the whole request first (nothing is stored when any message is bad), rate-limits by the app's
 * `topicRateLimit` (broadcasts to `_all` included), then stores every message in the app's topic
 * stream, whose RePublish takes it to the edges.
 */
export class TopicService {
  constructor(
    private readonly store: TopicStore,
    private readonly subjects: Subjects,
    private readonly limiter: RateLimiter,
    private readonly limits: { maxBatch: number },
    private readonly metrics: CenterMetrics,
    /** As PushService's: a publish held through its app's delete is dropped. */
    private readonly apps?: Pick<AppDirectory, 'holds'>,
  ) {}

  /** Parses one message for `topic` (from the path) or `{ messages: [{ topic, ... }] }` (topic undefined). */
  parse(body: unknown, app: AppRecord, topic: string | undefined): TopicInput[] {
    if (!isObject(body)) throw new PushError('bad_request', 'the body must be a JSON object');
    refuseTransient(body);
    if (topic !== undefined) {
      const bad = topicNameError(topic);
      if (bad !== undefined) throw bad;
      return [this.toInput(topic, topicMessage.parse(body), app)];
    }
    return readBatch(body['messages'], this.limits.maxBatch, (raw) => {
      refuseTransient(raw);
      const m = topicBatchItem.parse(raw);
      const bad = topicNameError(m.topic);
      if (bad !== undefined) throw bad;
      return this.toInput(m.topic, m, app);
    });
  }

  private toInput(topic: string, m: { data?: unknown; b64?: string; ttl?: number; id?: string }, app: AppRecord) {
    const payload = readPayload(m);
    if (payload.bytes.length > app.settings.maxMessageBytes) {
      throw new PushError(
        'payload_too_large',
        `the message is ${payload.bytes.length} bytes; the app allows ${app.settings.maxMessageBytes}`,
      );
    }
    if (m.ttl !== undefined && m.ttl > app.settings.topicHistorySeconds) {
      throw new PushError(
        'invalid_ttl',
        `ttl may be at most the app's topicHistorySeconds (${app.settings.topicHistorySeconds})`,
      );
    }
    return { topic, payload, ttlSeconds: m.ttl, id: m.id };
  }

  /**
   * Validates, rate-limits and stores. `topic` set: one message (from the path); undefined: a
   * batch body. Throws PushError for a bad request, RateLimitedError past `topicRateLimit`, the
   * store's error for a single message; a batch reports each message's result.
   */
  async publish(app: AppRecord, body: unknown, topic: string | undefined): Promise<TopicOutcome> {
    const inputs = this.parse(body, app, topic);
    const wait = this.limiter.take(app.id, app.settings.topicRateLimit, inputs.length);
    if (wait > 0) throw new RateLimitedError(wait, `the app's topicRateLimit is ${app.settings.topicRateLimit}/s`);
    const now = Date.now();
    const live = this.apps?.holds(app.id);
    const settled = await Promise.allSettled(
      inputs.map((m) =>
        this.store.publish(app.id, m.topic, m.payload, {
          ttlMs: Math.round((m.ttlSeconds ?? app.settings.topicHistorySeconds) * 1000),
          explicitTtl: m.ttlSeconds !== undefined,
          ...(m.id !== undefined ? { msgId: this.subjects.topicMessageId(app.id, m.topic, m.id) } : {}),
          now,
          live,
        }),
      ),
    );
    if (topic !== undefined) {
      const r = settled[0];
      if (r === undefined) throw new PushError('internal', 'no result for the message');
      if (r.status === 'rejected') {
        throw isPushError(r.reason) ? r.reason : new PushError('internal', undefined, { cause: r.reason });
      }
      if (!r.value.duplicate) this.metrics.topicMessages.inc();
      else this.metrics.duplicates.inc();
      return { batch: false, topic, seq: r.value.seq, duplicate: r.value.duplicate };
    }
    let failed = 0;
    const results = settled.map((s, i): TopicBatchItemResult => {
      const t = inputs[i]?.topic ?? '';
      if (s.status === 'fulfilled') {
        if (!s.value.duplicate) this.metrics.topicMessages.inc();
        else this.metrics.duplicates.inc();
        return { topic: t, seq: s.value.seq, duplicate: s.value.duplicate };
      }
      failed++;
      const e = isPushError(s.reason) ? s.reason : new PushError('internal', undefined, { cause: s.reason });
      this.metrics.errors.inc({ code: e.code });
      return { topic: t, error: e.toJSON() };
    });
    return { batch: true, results, failed };
  }
}
