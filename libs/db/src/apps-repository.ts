import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { DEFAULT_APP_SETTINGS, PushError, type AppRecord, type AppSecret, type AppSettings } from '@push/protocol';

/** Valid secrets at once: the newest signs, the one before still verifies (rotation). */
const SECRETS_KEPT = 2;

interface AppRow {
  id: string;
  name: string;
  disabled: boolean;
  settings: AppSettings;
  created_at: Date;
  updated_at: Date;
}

const newId = (prefix: string): string => `${prefix}_${randomBytes(9).toString('base64url')}`;

/** Apps, secrets and API keys in Postgres. Returns AppRecords as edges and centers see them. */
export class AppsRepository {
  private readonly db: Knex;

  constructor(db: Knex) {
    this.db = db;
  }

  /** Creates an app with one secret and one API key (whose hash is stored). */
  async create(input: {
    id: string;
    name: string;
    settings: AppSettings;
    secret: string;
    apiKeyHash: string;
    disabled?: boolean;
  }): Promise<{
    record: AppRecord;
    apiKeyId: string;
  }> {
    const apiKeyId = newId('key');
    try {
      await this.db.transaction(async (trx) => {
        await trx('apps').insert({
          id: input.id,
          name: input.name,
          settings: JSON.stringify(input.settings),
          disabled: input.disabled ?? false,
        });
        await trx('app_secrets').insert({ kid: newId('kid'), app_id: input.id, secret: input.secret });
        await trx('api_keys').insert({ id: apiKeyId, app_id: input.id, hash: input.apiKeyHash });
      });
    } catch (err) {
      if ((err as { code?: string }).code === '23505') throw new PushError('app_exists', undefined, { cause: err });
      throw err;
    }
    return { record: await this.mustGet(input.id), apiKeyId };
  }

  /** The app's record, or undefined. */
  async get(id: string): Promise<AppRecord | undefined> {
    const row = await this.db<AppRow>('apps').where({ id }).first();
    if (row === undefined) return undefined;
    return this.toRecord(row);
  }

  /** Every app's record (for syncing the apps KV bucket). */
  async list(): Promise<AppRecord[]> {
    const rows = await this.db<AppRow>('apps').orderBy('id');
    return Promise.all(rows.map((r) => this.toRecord(r)));
  }

  /** Changes name, settings or disabled; PushError `app_not_found`. */
  async update(id: string, patch: { name?: string; settings?: AppSettings; disabled?: boolean }): Promise<AppRecord> {
    const changes: Record<string, unknown> = { updated_at: this.db.fn.now() };
    if (patch.name !== undefined) changes['name'] = patch.name;
    if (patch.settings !== undefined) changes['settings'] = JSON.stringify(patch.settings);
    if (patch.disabled !== undefined) changes['disabled'] = patch.disabled;
    const n = await this.db('apps').where({ id }).update(changes);
    if (n === 0) throw new PushError('app_not_found');
    return this.mustGet(id);
  }

  /** Runs `fn` with a repository on one transaction (committed when it resolves). */
  transaction<T>(fn: (repo: AppsRepository) => Promise<T>): Promise<T> {
    return this.db.transaction((trx) => fn(new AppsRepository(trx)));
  }

  /**
   * Runs `fn` in one transaction holding the app's row (`SELECT ... FOR NO KEY UPDATE`), with a
   * repository on that transaction and the app's record as it is now. The changes of one app and
   * its delete, from any center or the CLI, run one at a time: each sees what the one before
   * wrote, and what each publishes after its write (streams, the apps KV bucket) goes out in the
   * same order. Rows that reference the app (webhooks, jobs) may still be written meanwhile.
   * PushError `app_not_found` when there is no such app (also once a delete it waited for is done).
   */
  async locked<T>(id: string, fn: (repo: AppsRepository, current: AppRecord) => Promise<T>): Promise<T> {
    return this.db.transaction(async (trx) => {
      const row = await trx<AppRow>('apps').where({ id }).forNoKeyUpdate().first();
      if (row === undefined) throw new PushError('app_not_found');
      const repo = new AppsRepository(trx);
      return fn(repo, await repo.toRecord(row));
    });
  }

  /** Adds a new signing secret; only the newest two stay valid. */
  async rotateSecret(id: string, secret: string): Promise<AppRecord> {
    await this.mustGet(id);
    await this.db.transaction(async (trx) => {
      await trx('app_secrets').insert({ kid: newId('kid'), app_id: id, secret });
      const keep = await trx('app_secrets')
        .where({ app_id: id })
        .orderBy([
          { column: 'created_at', order: 'desc' },
          { column: 'kid', order: 'desc' },
        ])
        .limit(SECRETS_KEPT)
        .pluck('kid');
      await trx('app_secrets').where({ app_id: id }).whereNotIn('kid', keep).delete();
      await trx('apps').where({ id }).update({ updated_at: trx.fn.now() });
    });
    return this.mustGet(id);
  }

  /** Adds an API key (by hash); returns its id. */
  async addApiKey(id: string, hash: string): Promise<{ record: AppRecord; apiKeyId: string }> {
    await this.mustGet(id);
    const apiKeyId = newId('key');
    await this.db('api_keys').insert({ id: apiKeyId, app_id: id, hash });
    await this.db('apps').where({ id }).update({ updated_at: this.db.fn.now() });
    return { record: await this.mustGet(id), apiKeyId };
  }

  /**
   * Revokes an API key; PushError `app_not_found` when the app does not exist,
   * `api_key_not_found` when the app has no such key (or it is already revoked).
   */
  async revokeApiKey(id: string, keyId: string): Promise<AppRecord> {
    await this.mustGet(id);
    const n = await this.db('api_keys')
      .where({ id: keyId, app_id: id })
      .whereNull('revoked_at')
      .update({ revoked_at: this.db.fn.now() });
    if (n === 0) throw new PushError('api_key_not_found');
    await this.db('apps').where({ id }).update({ updated_at: this.db.fn.now() });
    return this.mustGet(id);
  }

  /** Deletes an app with its secrets and API keys (ON DELETE CASCADE); false when there was none. */
  async delete(id: string): Promise<boolean> {
    const n = await this.db('apps').where({ id }).delete();
    return n > 0;
  }

  private async mustGet(id: string): Promise<AppRecord> {
    const r = await this.get(id);
    if (r === undefined) throw new PushError('app_not_found');
    return r;
  }

  private async toRecord(row: AppRow): Promise<AppRecord> {
    const [secrets, keys] = await Promise.all([
      this.db('app_secrets')
        .where({ app_id: row.id })
        .orderBy([
          { column: 'created_at', order: 'desc' },
          { column: 'kid', order: 'desc' },
        ])
        .limit(SECRETS_KEPT)
        .select<Array<{ kid: string; secret: string; created_at: Date }>>('kid', 'secret', 'created_at'),
      this.db('api_keys')
        .where({ app_id: row.id })
        .whereNull('revoked_at')
        .orderBy('created_at')
        .select<Array<{ id: string; hash: string }>>('id', 'hash'),
    ]);
    return {
      id: row.id,
      name: row.name,
      disabled: row.disabled,
      // Apps saved before a setting existed get its default.
      settings: { ...DEFAULT_APP_SETTINGS, ...row.settings },
      secrets: secrets.map((s): AppSecret => ({ kid: s.kid, secret: s.secret, createdAt: s.created_at.toISOString() })),
      apiKeys: keys.map((k) => ({ id: k.id, hash: k.hash })),
      createdAt: row.created_at.toISOString(),
      updatedAt: row.updated_at.toISOString(),
    };
  }
}
