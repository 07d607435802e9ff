import { randomBytes } from 'node:crypto';
import {
  generateApiKey,
  generateSecret,
  hashApiKey,
  pusherCredentials,
  type AppDirectory,
  type PusherCredentials,
} from '@push/apps';
import type { Config } from '@push/config';
import { AppsRepository, type Knex } from '@push/db';
import { deleteAppStreams, ensureAppStreams, type NatsConnection } from '@push/nats';
import {
  DEFAULT_APP_SETTINGS,
  PushError,
  appCreateSchema,
  appUpdateSchema,
  compile,
  isObject,
  settingsProblem,
  type AppRecord,
  type AppSettings,
  type SettingsLimits,
  type Subjects,
  type Validator,
} from '@push/protocol';

export { MAX_MESSAGE_BYTES, type SettingsLimits } from '@push/protocol';

/** An app as the admin API shows it: secrets included, API keys by id only. */
export function adminView(
  app: AppRecord,
): Omit<AppRecord, 'apiKeys'> & { apiKeys: Array<{ id: string }>; pusher: PusherCredentials } {
  // `pusher`: the app's Pusher app id, key and secrets, derived from its secrets (docs/pusher.md).
  return { ...app, apiKeys: app.apiKeys.map((k) => ({ id: k.id })), pusher: pusherCredentials(app) };
}

/**
 * The AppAdmin that both the center's admin routes and the CLI use, so the two cannot drift:
 * apps in Postgres (`db`) and the apps bucket (`apps`), each app's inbox stream made, resized and
 * deleted on `nc` under the deployment's inbox settings, which also bound every app's TTL and
 * per-user cap.
 */
export function createAppAdmin(
  db: Knex,
  apps: AppDirectory,
  nc: NatsConnection,
  subjects: Subjects,
  inbox: Config['inbox'],
  /** More to remove when an app is deleted, after its streams (e.g. its webhooks). */
  alsoRemove?: (appId: string) => Promise<void>,
): AppAdmin {
  return new AppAdmin(
    new AppsRepository(db),
    apps,
    { maxTtlSeconds: inbox.maxAgeSeconds, maxPerUser: inbox.maxPerUser },
    {
      ensure: (record) => ensureAppStreams(nc, subjects, record, inbox),
      remove: async (appId) => {
        await deleteAppStreams(nc, subjects, appId);
        await alsoRemove?.(appId);
      },
    },
  );
}

/** Throws what the settings schema cannot catch (a CIDR that does not parse): `invalid_cidr`. */
function checkSettings(settings: Partial<AppSettings> | undefined): void {
  const problem = settingsProblem(settings);
  if (problem !== undefined) throw problem;
}

/**
 * Creating and changing apps: Postgres first (the source of truth), then the apps KV bucket so
 * every edge and center hears the change.
 */
export class AppAdmin {
  private readonly createBody: Validator<ReturnType<typeof appCreateSchema>>;
  private readonly updateBody: Validator<ReturnType<typeof appUpdateSchema>>;

  constructor(
    private readonly repo: AppsRepository,
    private readonly directory: AppDirectory,
    private readonly limits: SettingsLimits,
    private readonly streams: {
      /** Creates or updates the app's inbox stream (its per-user cap) before edges hear of it. */
      ensure(app: AppRecord): Promise<void>;
      /** Deletes the app's streams and their messages; nothing when they do not exist. */
      remove(appId: string): Promise<void>;
    },
  ) {
    this.createBody = compile(appCreateSchema(limits));
    this.updateBody = compile(appUpdateSchema(limits));
  }

  /** Makes a saved app live: its stream first, then the KV bucket every edge and center watches. */
  private async publish(record: AppRecord): Promise<void> {
    await this.streams.ensure(record);
    await this.directory.put(record);
  }

  /** Settings the body gives (already schema-checked), over `base`. */
  private mergeSettings(patch: Partial<AppSettings> | undefined, base: AppSettings): AppSettings {
    if (patch === undefined) return base;
    const given = Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) as Partial<AppSettings>;
    const merged = { ...base, ...given };
    // Checked on the result: a patch of one bound must fit the other one already set.
    if (merged.pingMinSeconds > merged.pingMaxSeconds) {
      throw new PushError(
        'bad_request',
        `pingMinSeconds (${merged.pingMinSeconds}) must not exceed pingMaxSeconds (${merged.pingMaxSeconds})`,
      );
    }
    return merged;
  }

  private defaults(): AppSettings {
    return {
      ...DEFAULT_APP_SETTINGS,
      defaultTtlSeconds: Math.min(DEFAULT_APP_SETTINGS.defaultTtlSeconds, this.limits.maxTtlSeconds),
      maxPendingPerUser: Math.min(DEFAULT_APP_SETTINGS.maxPendingPerUser, this.limits.maxPerUser),
      topicHistorySeconds: Math.min(DEFAULT_APP_SETTINGS.topicHistorySeconds, this.limits.maxTtlSeconds),
    };
  }

  /** Creates an app; the answer holds its API key, shown only this once. */
  async create(body: unknown): Promise<{ app: AppRecord; apiKey: string; apiKeyId: string }> {
    if (!isObject(body)) throw new PushError('bad_request', 'the body must be a JSON object');
    const given = this.createBody.parse(body);
    checkSettings(given.settings);
    const id = given.id ?? `app_${randomBytes(6).toString('hex')}`;
    const settings = this.mergeSettings(given.settings, this.defaults());
    const apiKey = generateApiKey();
    // Published before the row is committed: a delete of the id meanwhile finds no app (404)
    // rather than deleting it before this publish could bring it back.
    const { record, apiKeyId } = await this.repo.transaction(async (repo) => {
      const made = await repo.create({
        id,
        name: given.name ?? id,
        settings,
        secret: generateSecret(),
        apiKeyHash: hashApiKey(apiKey),
        disabled: given.disabled ?? false,
      });
      await this.publish(made.record);
      return made;
    });
    return { app: record, apiKey, apiKeyId };
  }

  async get(id: string): Promise<AppRecord> {
    const r = await this.repo.get(id);
    if (r === undefined) throw new PushError('app_not_found');
    return r;
  }

  list(): Promise<AppRecord[]> {
    return this.repo.list();
  }

  /** Changes name, settings (merged) or disabled. */
  async update(id: string, body: unknown): Promise<AppRecord> {
    if (!isObject(body)) throw new PushError('bad_request', 'the body must be a JSON object');
    const given = this.updateBody.parse(body);
    checkSettings(given.settings);
    return this.change(id, (repo, current) => {
      const patch: { name?: string; settings?: AppSettings; disabled?: boolean } = {};
      if (given.name !== undefined) patch.name = given.name;
      if (given.disabled !== undefined) patch.disabled = given.disabled;
      if (given.settings !== undefined) patch.settings = this.mergeSettings(given.settings, current.settings);
      return repo.update(id, patch);
    });
  }

  /**
   * One change of an existing app, made and published while its row is held (`locked`): changes
   * racing each other (or a delete) on any center apply one after the other, each merged into
   * what the one before wrote, and the KV bucket gets them in that order, so a change never
   * brings back an app deleted meanwhile (it answers `app_not_found` instead).
   */
  private change(
    id: string,
    write: (repo: AppsRepository, current: AppRecord) => Promise<AppRecord>,
  ): Promise<AppRecord> {
    return this.repo.locked(id, async (repo, current) => {
      const record = await write(repo, current);
      await this.publish(record);
      return record;
    });
  }

  /**
   * Deletes an app: its KV entry first (edges close its connections with 4003, centers stop
   * taking its pushes), then its streams with every stored message, then its Postgres rows
   * (secrets and API keys go with it), all while its row is held (no change of it runs
   * meanwhile). Postgres goes last so that a delete that fails half-way can be repeated: the
   * parts already gone are no error. PushError `app_not_found` when there is no such app (also
   * on a second delete).
   */
  async delete(id: string): Promise<void> {
    await this.repo.locked(id, async (repo) => {
      await this.directory.delete(id);
      await this.streams.remove(id);
      await repo.delete(id);
    });
  }

  /** Adds a new signing secret; the previous one stays valid until the next rotation. */
  async rotateSecret(id: string): Promise<AppRecord> {
    const secret = generateSecret();
    return this.change(id, (repo) => repo.rotateSecret(id, secret));
  }

  async addApiKey(id: string): Promise<{ app: AppRecord; apiKey: string; apiKeyId: string }> {
    const apiKey = generateApiKey();
    let apiKeyId = '';
    const record = await this.change(id, async (repo) => {
      const added = await repo.addApiKey(id, hashApiKey(apiKey));
      apiKeyId = added.apiKeyId;
      return added.record;
    });
    return { app: record, apiKey, apiKeyId };
  }

  revokeApiKey(id: string, keyId: string): Promise<AppRecord> {
    return this.change(id, (repo) => repo.revokeApiKey(id, keyId));
  }

  /**
   * Writes every app from Postgres to its stream and the KV bucket (at start: repairs a lost or
   * new bucket, creates missing streams, applies changed deployment limits), each while its row
   * is held (an app deleted meanwhile is not written back). Answers how many it wrote.
   */
  async syncAll(): Promise<number> {
    const all = await this.repo.list();
    let n = 0;
    for (const r of all) {
      const synced = await this.repo
        .locked(r.id, async (_repo, current) => {
          await this.streams.ensure(current);
          const seen = this.directory.get(current.id);
          if (JSON.stringify(seen) !== JSON.stringify(current)) await this.directory.put(current);
          return true;
        })
        .catch((err: unknown) => {
          if (err instanceof PushError && err.code === 'app_not_found') return false; // deleted meanwhile
          throw err;
        });
      if (synced) n++;
    }
    return n;
  }
}
