import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { PushError, type WebhookEndpoint, type WebhookFormat, type WebhookSecret } from '@push/protocol';

/** Valid secrets at once: the newest two sign every request, so a rotation has no gap. */
const SECRETS_KEPT = 2;

interface WebhookRow {
  id: string;
  app_id: string;
  url: string;
  events: string[];
  kinds: string[];
  disabled: boolean;
  description: string;
  secrets: WebhookSecret[];
  format: WebhookFormat;
  created_at: Date;
  updated_at: Date;
  events_since: Date | null;
  kinds_since: Date | null;
}

/** What may change on an endpoint. */
export interface WebhookPatch {
  url?: string;
  events?: string[];
  kinds?: string[];
  disabled?: boolean;
  description?: string;
  format?: WebhookFormat;
}

const toEndpoint = (r: WebhookRow): WebhookEndpoint => ({
  id: r.id,
  app: r.app_id,
  url: r.url,
  events: r.events,
  kinds: r.kinds,
  disabled: r.disabled,
  description: r.description,
  secrets: r.secrets,
  format: r.format,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
  ...(r.events_since !== null ? { eventsSince: r.events_since.toISOString() } : {}),
  ...(r.kinds_since !== null ? { kindsSince: r.kinds_since.toISOString() } : {}),
});

/**
 * Column `since` of a list changed to `given`: now when the list was empty and takes some now
 * (the source's consumer starts there), as it was otherwise.
 */
function sinceOf(db: Knex, list: 'events' | 'kinds', given: string[]): Knex.Raw {
  return db.raw(`CASE WHEN jsonb_array_length(??) = 0 AND ? > 0 THEN now() ELSE ?? END`, [
    list,
    given.length,
    `${list}_since`,
  ]);
}

/** Webhook endpoints in Postgres (table `webhook_endpoints`), per app. */
export class WebhooksRepository {
  constructor(private readonly db: Knex) {}

  /** Creates an endpoint with its first secret. */
  async create(app: string, input: Required<WebhookPatch>, secret: string): Promise<WebhookEndpoint> {
    const id = `wh_${randomBytes(9).toString('base64url')}`;
    const secrets: WebhookSecret[] = [{ secret, createdAt: new Date().toISOString() }];
    const [row] = await this.db<WebhookRow>('webhook_endpoints')
      .insert({
        id,
        app_id: app,
        url: input.url,
        events: JSON.stringify(input.events) as unknown as string[],
        kinds: JSON.stringify(input.kinds) as unknown as string[],
        disabled: input.disabled,
        description: input.description,
        format: input.format,
        secrets: JSON.stringify(secrets) as unknown as WebhookSecret[],
      })
      .returning('*');
    if (row === undefined) throw new Error('insert returned no row');
    return toEndpoint(row);
  }

  /** The app's endpoints, oldest first. */
  async list(app: string): Promise<WebhookEndpoint[]> {
    const rows = await this.db<WebhookRow>('webhook_endpoints').where({ app_id: app }).orderBy('created_at');
    return rows.map(toEndpoint);
  }

  /** Every endpoint of every app (to sync the webhooks KV bucket). */
  async listAll(): Promise<WebhookEndpoint[]> {
    const rows = await this.db<WebhookRow>('webhook_endpoints').orderBy(['app_id', 'created_at']);
    return rows.map(toEndpoint);
  }

  /** One endpoint; PushError `webhook_not_found` when the app has none with this id. */
  async get(app: string, id: string): Promise<WebhookEndpoint> {
    const row = await this.db<WebhookRow>('webhook_endpoints').where({ id, app_id: app }).first();
    if (row === undefined) throw new PushError('webhook_not_found');
    return toEndpoint(row);
  }

  /**
   * Runs `fn` in one transaction holding the endpoint's row (`SELECT ... FOR NO KEY UPDATE`), with
   * a repository on that transaction and the endpoint as it is now: the changes of one endpoint and
   * its delete, from any center or the CLI, run one at a time, and what each writes to the
   * webhooks KV bucket after its write goes out in the same order. PushError `webhook_not_found`
   * when there is none (also once a delete it waited for is done).
   */
  async locked<T>(
    app: string,
    id: string,
    fn: (repo: WebhooksRepository, current: WebhookEndpoint) => Promise<T>,
  ): Promise<T> {
    return this.db.transaction(async (trx) => {
      const row = await trx<WebhookRow>('webhook_endpoints').where({ id, app_id: app }).forNoKeyUpdate().first();
      if (row === undefined) throw new PushError('webhook_not_found');
      return fn(new WebhooksRepository(trx), toEndpoint(row));
    });
  }

  /** Changes an endpoint; PushError `webhook_not_found`. */
  async update(app: string, id: string, patch: WebhookPatch): Promise<WebhookEndpoint> {
    const changes: Record<string, unknown> = { updated_at: this.db.fn.now() };
    if (patch.url !== undefined) changes['url'] = patch.url;
    if (patch.events !== undefined) {
      changes['events'] = JSON.stringify(patch.events);
      changes['events_since'] = sinceOf(this.db, 'events', patch.events);
    }
    if (patch.kinds !== undefined) {
      changes['kinds'] = JSON.stringify(patch.kinds);
      changes['kinds_since'] = sinceOf(this.db, 'kinds', patch.kinds);
    }
    if (patch.disabled !== undefined) changes['disabled'] = patch.disabled;
    if (patch.description !== undefined) changes['description'] = patch.description;
    if (patch.format !== undefined) changes['format'] = patch.format;
    const n = await this.db('webhook_endpoints').where({ id, app_id: app }).update(changes);
    if (n === 0) throw new PushError('webhook_not_found');
    return this.get(app, id);
  }

  /** Adds a new secret (newest first); only the newest two are kept. */
  async rotateSecret(app: string, id: string, secret: string): Promise<WebhookEndpoint> {
    return this.db.transaction(async (trx) => {
      const row = await trx<WebhookRow>('webhook_endpoints').where({ id, app_id: app }).forUpdate().first();
      if (row === undefined) throw new PushError('webhook_not_found');
      const secrets = [{ secret, createdAt: new Date().toISOString() }, ...row.secrets].slice(0, SECRETS_KEPT);
      const [updated] = await trx<WebhookRow>('webhook_endpoints')
        .where({ id, app_id: app })
        .update({
          secrets: JSON.stringify(secrets) as unknown as WebhookSecret[],
          updated_at: trx.fn.now() as unknown as Date,
        })
        .returning('*');
      if (updated === undefined) throw new PushError('webhook_not_found');
      return toEndpoint(updated);
    });
  }

  /** Deletes an endpoint; PushError `webhook_not_found`. */
  async delete(app: string, id: string): Promise<void> {
    const n = await this.db('webhook_endpoints').where({ id, app_id: app }).delete();
    if (n === 0) throw new PushError('webhook_not_found');
  }
}
