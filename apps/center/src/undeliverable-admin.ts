import { MAX_UNDELIVERABLE_LISTED, type ListedUndeliverable, type UndeliverableStore } from '@push/nats';
import type { Redis } from 'ioredis';
import { PushError, decimal, idProblem, type Subjects } from '@push/protocol';

/** Which undeliverable messages a request is about: the whole app's, or one user's. */
export interface UndeliverableQuery {
  user?: string;
  /** List only: at most this many (1 .. MAX_UNDELIVERABLE_LISTED; more is taken as the most). */
  limit?: number;
  /** List only: from the list sequence after this one (paging). */
  after?: number;
}

/**
 * Reads a query from text (HTTP query parameters, CLI flags: numbers as decimal digits) or JSON
 * values (a NATS request: numbers as JSON numbers): `user` a valid user id (PushError
 * `invalid_id`), `limit` a positive integer and `after` an integer of 0 or more (PushError
 * `bad_request`). Absent or null fields are left out.
 */
export function readUndeliverableQuery(
  raw: { user?: unknown; limit?: unknown; after?: unknown },
  from: 'text' | 'json',
): UndeliverableQuery {
  const integer = (v: unknown): number => {
    if (from === 'json') return typeof v === 'number' ? v : Number.NaN;
    return typeof v === 'string' ? decimal(v) : Number.NaN;
  };
  const q: UndeliverableQuery = {};
  if (raw.user !== undefined && raw.user !== null) {
    const problem = idProblem('user', raw.user);
    if (problem !== undefined) throw new PushError('invalid_id', `user: ${problem}`);
    q.user = raw.user as string;
  }
  if (raw.limit !== undefined && raw.limit !== null) {
    const n = integer(raw.limit);
    if (!Number.isSafeInteger(n) || n < 1) throw new PushError('bad_request', 'limit must be a positive integer');
    q.limit = Math.min(n, MAX_UNDELIVERABLE_LISTED);
  }
  if (raw.after !== undefined && raw.after !== null) {
    const n = integer(raw.after);
    if (!Number.isSafeInteger(n) || n < 0) throw new PushError('bad_request', 'after must be an integer of 0 or more');
    q.after = n;
  }
  return q;
}

/**
 * An app's undeliverable messages (docs/api.md "Undeliverable messages"), for the HTTP and NATS
 * APIs and the CLI: list, replay into the users' inboxes, purge. The caller has checked that
 * the key opens the app.
 */
export class UndeliverableAdmin {
  constructor(private readonly store: Pick<UndeliverableStore, 'list' | 'replay' | 'purge'>) {}

  list(app: string, q: UndeliverableQuery): Promise<ListedUndeliverable[]> {
    return this.store.list(app, q);
  }

  replay(app: string, q: UndeliverableQuery): Promise<{ replayed: number; expired: number }> {
    return this.store.replay(app, q.user);
  }

  async purge(app: string, q: UndeliverableQuery): Promise<{ purged: number }> {
    return { purged: await this.store.purge(app, q.user) };
  }
}

/**
 * Deletes a deleted app's never-ack counts (`push:redeliv:<app>:*`): an app made again with the
 * same id starts its inbox sequences at 1, and old counts must not apply to its new messages.
 */
export async function deleteDeliveryCounts(redis: Pick<Redis, 'scan' | 'del'>, subjects: Subjects, app: string) {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', subjects.deliveryCountsPattern(app), 'COUNT', 1000);
    if (keys.length > 0) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
}
