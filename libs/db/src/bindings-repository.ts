import type { Knex } from 'knex';

/** A row of `topic_bindings`. */
interface BindingRow {
  app_id: string;
  user_id: string;
  topic: string;
  created_at: Date;
}

/** One binding: a user of an app bound to a topic. */
export interface Binding {
  app: string;
  user: string;
  topic: string;
}

/** What a bind did: whether the binding is new, and the user's bindings after it. */
export interface BindResult {
  created: boolean;
  count: number;
}

/**
 * Topic bindings in Postgres (`topic_bindings`, one row per app, user and topic): the record
 * the Redis mirror the edges read is rebuilt from. Binds of one user are serialized by a
 * transaction-scoped advisory lock, so two concurrent binds cannot both pass the limit.
 */
export class BindingsRepository {
  constructor(private readonly db: Knex) {}

  /**
   * Adds a binding unless the user already has `max` (then `undefined`, nothing written);
   * binding a topic the user is bound to already is no change (`created: false`).
   */
  async add(app: string, user: string, topic: string, max: number): Promise<BindResult | undefined> {
    return this.db.transaction(async (trx) => {
      await trx.raw('SELECT pg_advisory_xact_lock(hashtext(?))', [`bind:${app}:${user}`]);
      const rows = await trx<BindingRow>('topic_bindings').where({ app_id: app, user_id: user }).select('topic');
      if (rows.some((r) => r.topic === topic)) return { created: false, count: rows.length };
      if (rows.length >= max) return undefined;
      await trx('topic_bindings').insert({ app_id: app, user_id: user, topic });
      return { created: true, count: rows.length + 1 };
    });
  }

  /** Removes a binding; false when there was none. */
  async remove(app: string, user: string, topic: string): Promise<boolean> {
    const n = await this.db('topic_bindings').where({ app_id: app, user_id: user, topic }).delete();
    return n > 0;
  }

  /**
   * Every binding of every app in (app, user, topic) order, `limit` at a time from after `after`
   * (keyset pagination on the primary key): what rebuilds the Redis mirror.
   */
  async page(after: Binding | undefined, limit: number): Promise<Binding[]> {
    const q = this.db<BindingRow>('topic_bindings')
      .select('app_id', 'user_id', 'topic')
      .orderBy(['app_id', 'user_id', 'topic'])
      .limit(limit);
    if (after !== undefined) q.whereRaw('(app_id, user_id, topic) > (?, ?, ?)', [after.app, after.user, after.topic]);
    const rows = await q;
    return rows.map((r) => ({ app: r.app_id, user: r.user_id, topic: r.topic }));
  }

  /** The user's bound topics, by name. */
  async list(app: string, user: string): Promise<string[]> {
    const rows = await this.db<BindingRow>('topic_bindings')
      .where({ app_id: app, user_id: user })
      .orderBy('topic')
      .select('topic');
    return rows.map((r) => r.topic);
  }
}
