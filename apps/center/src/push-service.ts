import type { InboxStore } from '@push/nats';
import type { PresenceRegistry, PresenceEntry } from '@push/presence';
import {
  PushError,
  isObject,
  isPushError,
  readId,
  readPayload,
  readTtl,
  type AppRecord,
  type MessagePayload,
  type Subjects,
} from '@push/protocol';
import type { CenterMetrics } from './metrics.js';
import type { RateLimiter } from '@push/apps';

interface PushInput {
  user: string;
  payload: MessagePayload;
  ttlSeconds: number | undefined;
  id: string | undefined;
}

/** One stored message: its sequence is its delivery id on the wire. */
export interface PushResult {
  user: string;
  seq: number;
  duplicate: boolean;
}

/** What the push operation answers: a status and a JSON body. */
export interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** What a user's status query answers. */
export interface UserStatus {
  user: string;
  pending: number;
  online: boolean;
  connections: PresenceEntry[];
}

/**
 * The push operation, shared by the HTTP API and `push.api.push` over NATS: validates the whole
 * request first (nothing is stored when any message is bad), then stores every message through
 * the pipelined publisher and answers with the stored sequences.
 */
export class PushService {
  constructor(
    private readonly store: InboxStore,
    private readonly subjects: Subjects,
    private readonly presence: PresenceRegistry,
    private readonly limiter: RateLimiter,
    private readonly limits: { maxBatch: number; maxTtlSeconds: number },
    private readonly metrics: CenterMetrics,
  ) {}

  /** Parses `{ user, data|b64, ttl?, id? }` or `{ messages: [...] }`. */
  parse(body: unknown, app: AppRecord): { inputs: PushInput[]; batch: boolean } {
    if (!isObject(body)) throw new PushError('bad_request', 'the body must be a JSON object');
    const batch = body['messages'] !== undefined;
    const raw: unknown[] = batch ? (body['messages'] as unknown[]) : [body];
    if (batch) {
      if (!Array.isArray(raw) || raw.length === 0)
        throw new PushError('bad_request', 'messages must be a non-empty array');
      if (raw.length > this.limits.maxBatch) {
        throw new PushError('batch_too_large', `a batch holds at most ${this.limits.maxBatch} messages`);
      }
    }
    const inputs = raw.map((m, i) => {
      try {
        return this.parseOne(m, app);
      } catch (err) {
        if (batch && isPushError(err)) throw new PushError(err.code, `messages[${i}]: ${err.message}`);
        throw err;
      }
    });
    return { inputs, batch };
  }

  private parseOne(m: unknown, app: AppRecord): PushInput {
    if (!isObject(m)) throw new PushError('bad_request', 'a message must be a JSON object');
    const user = readId(m, 'user', 'user');
    const payload = readPayload(m);
    if (payload.bytes.length > app.settings.maxMessageBytes) {
      throw new PushError(
        'payload_too_large',
        `the message is ${payload.bytes.length} bytes; the app allows ${app.settings.maxMessageBytes}`,
      );
    }
    const ttlSeconds = readTtl(m);
    if (ttlSeconds !== undefined && ttlSeconds > this.limits.maxTtlSeconds) {
      throw new PushError('invalid_ttl', `ttl may be at most ${this.limits.maxTtlSeconds} seconds`);
    }
    const id = m['id'] === undefined ? undefined : readId(m, 'id', 'idempotencyId');
    return { user, payload, ttlSeconds, id };
  }

  /** Validates, rate-limits and stores; the reply carries the sequences. */
  async push(app: AppRecord, body: unknown): Promise<Reply> {
    const { inputs, batch } = this.parse(body, app);
    const wait = this.limiter.take(app.id, app.settings.pushRateLimit, inputs.length);
    if (wait > 0) throw Object.assign(new PushError('rate_limited'), { retryAfter: wait });
    const now = Date.now();
    const settled = await Promise.allSettled(
      inputs.map((m) =>
        this.store.publish(app.id, m.user, m.payload, {
          ttlMs: Math.round((m.ttlSeconds ?? app.settings.defaultTtlSeconds) * 1000),
          ...(m.id !== undefined ? { msgId: this.subjects.apiMessageId(app.id, m.user, m.id) } : {}),
          now,
        }),
      ),
    );
    const results = settled.map((s, i) => {
      if (s.status === 'fulfilled') {
        if (s.value.duplicate) this.metrics.duplicates.inc();
        else this.metrics.messages.inc();
        return { user: inputs[i]?.user ?? '', seq: s.value.seq, duplicate: s.value.duplicate };
      }
      const e = isPushError(s.reason) ? s.reason : new PushError('internal', undefined, { cause: s.reason });
      this.metrics.errors.inc({ code: e.code });
      return { user: inputs[i]?.user ?? '', error: e.toJSON() };
    });
    const failed = results.filter((r) => 'error' in r);
    if (!batch) {
      const r = results[0];
      if (r === undefined || 'error' in r) {
        throw settled[0]?.status === 'rejected' ? settled[0].reason : new PushError('internal');
      }
      return { status: 200, body: { seq: r.seq, duplicate: r.duplicate } };
    }
    if (failed.length > 0) {
      // Some were not stored: 503 so a naive client retries the batch (idempotency ids make that safe).
      const e = new PushError(
        'store_unavailable',
        `${failed.length} of ${results.length} messages were not stored; retry them`,
      );
      return { status: 503, body: { error: e.toJSON(), results } };
    }
    return { status: 200, body: { results } };
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
