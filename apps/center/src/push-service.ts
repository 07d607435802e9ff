import type { InboxStore } from '@push/nats';
import type { PresenceRegistry, PresenceEntry } from '@push/presence';
import {
  PushError,
  PushMessageSchema,
  RateLimitedError,
  compile,
  isObject,
  isPushError,
  readPayload,
  type AppRecord,
  type BatchItemResult,
  type MessagePayload,
  type PushMessage,
  type Subjects,
} from '@push/protocol';
import { readBatch } from './batch-items.js';
import type { CenterMetrics } from './metrics.js';
import type { AppDirectory, RateLimiter } from '@push/apps';
import type { TransientPush } from './transient-push.js';

interface PushInput {
  user: string;
  payload: MessagePayload;
  ttlSeconds: number | undefined;
  id: string | undefined;
  transient: boolean;
}

/** What one message of a push did: stored (`seq`), or sent live only (`transient`, to `connections`). */
export type PushAnswer = { seq: number; duplicate: boolean } | { transient: true; connections: number | null };

/**
 * What a push did, for the HTTP and NATS adapters to answer (each chooses its own status):
 * one message's answer, or a batch with each message's result (`failed` of them not stored).
 */
export type PushOutcome =
  { batch: false; answer: PushAnswer } | { batch: true; results: BatchItemResult[]; failed: number };

/** Reads `transient` where the schema did not check it (a batch's own); PushError `bad_request` unless absent or boolean. */
function readTransient(value: unknown): boolean | undefined {
  if (value === undefined || typeof value === 'boolean') return value;
  throw new PushError('bad_request', 'transient must be a boolean');
}

/** The error a batch answers when `failed` of its messages were not stored (each result says which). */
export function batchStoreError(outcome: { results: unknown[]; failed: number }): PushError {
  return new PushError(
    'store_unavailable',
    `${outcome.failed} of ${outcome.results.length} messages were not stored; retry them`,
  );
}

/** What a user's status query answers. */
export interface UserStatus {
  user: string;
  pending: number;
  online: boolean;
  connections: PresenceEntry[];
}

const pushMessage = compile(PushMessageSchema);

/**
 * The push operation, shared by the HTTP API and `push.api.push` over NATS: validates the whole
 * request first (nothing is stored when any message is bad), then stores every message through
 * the pipelined publisher (or, for a transient one, publishes it live: TransientPush) and returns
 * what each did.
 */
export class PushService {
  constructor(
    private readonly store: InboxStore,
    private readonly subjects: Subjects,
    private readonly presence: PresenceRegistry,
    private readonly limiter: RateLimiter,
    private readonly limits: { maxBatch: number; maxTtlSeconds: number },
    private readonly metrics: CenterMetrics,
    private readonly transient: TransientPush,
    /** The apps' directory (`AppDirectory.holds`): a store held through its app's delete is dropped. */
    private readonly apps?: Pick<AppDirectory, 'holds'>,
  ) {}

  /**
   * Parses `{ user, data|b64, ttl?, id?, transient? }` or `{ messages: [...], transient? }`
   * (docs/api.md); a batch's `transient` is the default of its messages that do not say.
   */
  parse(body: unknown, app: AppRecord): { inputs: PushInput[]; batch: boolean } {
    if (!isObject(body)) throw new PushError('bad_request', 'the body must be a JSON object');
    if (body['messages'] === undefined) return { inputs: [this.toInput(pushMessage.parse(body), app)], batch: false };
    const transient = readTransient(body['transient']);
    const inputs = readBatch(body['messages'], this.limits.maxBatch, (m) =>
      this.toInput(pushMessage.parse(m), app, transient),
    );
    return { inputs, batch: true };
  }

  /** The app's limits on one schema-checked message. */
  private toInput(m: PushMessage, app: AppRecord, batchTransient?: boolean): PushInput {
    const transient = m.transient ?? batchTransient ?? false;
    if (transient && (m.ttl !== undefined || m.id !== undefined)) {
      throw new PushError(
        'transient_conflict',
        `a transient message is never stored: it takes no ${m.ttl !== undefined ? 'ttl' : 'id'}`,
      );
    }
    const payload = readPayload(m);
    if (payload.bytes.length > app.settings.maxMessageBytes) {
      throw new PushError(
        'payload_too_large',
        `the message is ${payload.bytes.length} bytes; the app allows ${app.settings.maxMessageBytes}`,
      );
    }
    if (m.ttl !== undefined && m.ttl > this.limits.maxTtlSeconds) {
      throw new PushError('invalid_ttl', `ttl may be at most ${this.limits.maxTtlSeconds} seconds`);
    }
    return { user: m.user, payload, ttlSeconds: m.ttl, id: m.id, transient };
  }

  /**
   * Validates, rate-limits and stores (or sends, when transient). Throws a PushError for a bad request, RateLimitedError
   * over the app's rate, and the store's error when a single message was not stored; a batch
   * reports each message's result instead.
   */
  async push(app: AppRecord, body: unknown): Promise<PushOutcome> {
    const { inputs, batch } = this.parse(body, app);
    const wait = this.limiter.take(app.id, app.settings.pushRateLimit, inputs.length);
    if (wait > 0) throw new RateLimitedError(wait);
    const now = Date.now();
    const live = this.apps?.holds(app.id); // one test for the request's messages
    const settled = await Promise.allSettled(inputs.map((m) => this.one(app, m, now, live)));
    if (!batch) {
      const r = settled[0];
      if (r === undefined) throw new PushError('internal', 'no result for the message');
      if (r.status === 'rejected') {
        const e = isPushError(r.reason) ? r.reason : new PushError('internal', undefined, { cause: r.reason });
        throw e;
      }
      return { batch: false, answer: r.value };
    }
    let failed = 0;
    const results = settled.map((s, i): BatchItemResult => {
      const user = inputs[i]?.user ?? '';
      if (s.status === 'fulfilled') return { user, ...s.value };
      failed++;
      const e = isPushError(s.reason) ? s.reason : new PushError('internal', undefined, { cause: s.reason });
      this.metrics.errors.inc({ code: e.code });
      return { user, error: e.toJSON() };
    });
    return { batch: true, results, failed };
  }

  /** Stores one message, or sends a transient one; counts it. */
  private async one(app: AppRecord, m: PushInput, now: number, live: (() => boolean) | undefined): Promise<PushAnswer> {
    if (m.transient) {
      const connections = await this.transient.send(app.id, m.user, m.payload, now);
      this.metrics.transientMessages.inc();
      return { transient: true, connections };
    }
    const r = await this.store.publish(app.id, m.user, m.payload, {
      ttlMs: Math.round((m.ttlSeconds ?? app.settings.defaultTtlSeconds) * 1000),
      ...(m.id !== undefined ? { msgId: this.subjects.apiMessageId(app.id, m.user, m.id) } : {}),
      now,
      live,
    });
    if (r.duplicate) this.metrics.duplicates.inc();
    else this.metrics.messages.inc();
    return { seq: r.seq, duplicate: r.duplicate };
  }

  /** Pending count and presence of one user. */
  async user(app: AppRecord, user: string): Promise<UserStatus> {
    const [pending, connections] = await Promise.all([
      this.store.pending(app.id, user),
      this.presence.lookup(app.id, user),
    ]);
    return { user, pending, online: connections.length > 0, connections };
  }
}
