import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { generateApiKey, generateSecret, hashApiKey, type AppDirectory } from '@push/apps';
import type { AppsRepository } from '@push/db';
import { DEFAULT_APP_SETTINGS, PushError, idProblem, isObject, type AppRecord, type AppSettings } from '@push/protocol';

/** Limits app settings must stay within (from the deployment's inbox configuration). */
export interface SettingsLimits {
  maxTtlSeconds: number;
  maxPerUser: number;
}

/** Largest message an app may allow: NATS' default max payload less room for the envelope. */
export const MAX_MESSAGE_BYTES = 1_000_000;

function settingsSchema(limits: SettingsLimits) {
  return z
    .object({
      defaultTtlSeconds: z.number().int().min(1).max(limits.maxTtlSeconds),
      maxPendingPerUser: z.number().int().min(1).max(limits.maxPerUser),
      maxMessageBytes: z.number().int().min(1).max(MAX_MESSAGE_BYTES),
      clientMessaging: z.boolean(),
      pushRateLimit: z.number().int().min(0),
      sendRatePerConnection: z.number().int().min(0).max(1_000_000),
      sendRatePerUser: z.number().int().min(0).max(1_000_000),
    })
    .strict()
    .partial();
}

/** An app as the admin API shows it: secrets included, API keys by id only. */
export function adminView(app: AppRecord): Omit<AppRecord, 'apiKeys'> & { apiKeys: Array<{ id: string }> } {
  return { ...app, apiKeys: app.apiKeys.map((k) => ({ id: k.id })) };
}

/**
 * Creating and changing apps: Postgres first (the source of truth), then the apps KV bucket so
 * every edge and center hears the change.
 */
export class AppAdmin {
  constructor(
    private readonly repo: AppsRepository,
    private readonly directory: AppDirectory,
    private readonly limits: SettingsLimits,
    /** Creates or updates the app's inbox stream (its per-user cap) before edges hear of it. */
    private readonly ensureStream: (app: AppRecord) => Promise<void>,
  ) {}

  /** Makes a saved app live: its stream first, then the KV bucket every edge and center watches. */
  private async publish(record: AppRecord): Promise<void> {
    await this.ensureStream(record);
    await this.directory.put(record);
  }

  private parseSettings(value: unknown, base: AppSettings): AppSettings {
    if (value === undefined) return base;
    const r = settingsSchema(this.limits).safeParse(value);
    if (!r.success) {
      throw new PushError(
        'bad_request',
        `settings: ${r.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ')}`,
      );
    }
    const patch = Object.fromEntries(Object.entries(r.data).filter(([, v]) => v !== undefined)) as Partial<AppSettings>;
    return { ...base, ...patch };
  }

  private defaults(): AppSettings {
    return {
      ...DEFAULT_APP_SETTINGS,
      defaultTtlSeconds: Math.min(DEFAULT_APP_SETTINGS.defaultTtlSeconds, this.limits.maxTtlSeconds),
      maxPendingPerUser: Math.min(DEFAULT_APP_SETTINGS.maxPendingPerUser, this.limits.maxPerUser),
    };
  }

  /** Creates an app; the answer holds its API key, shown only this once. */
  async create(body: unknown): Promise<{ app: AppRecord; apiKey: string; apiKeyId: string }> {
    if (!isObject(body)) throw new PushError('bad_request', 'the body must be a JSON object');
    const id = body['id'] === undefined ? `app_${randomBytes(6).toString('hex')}` : body['id'];
    const problem = idProblem('app', id);
    if (problem !== undefined) throw new PushError('invalid_id', `id: ${problem}`);
    const name = body['name'] ?? id;
    if (typeof name !== 'string' || name.length === 0 || name.length > 200) {
      throw new PushError('bad_request', 'name must be a string of 1 to 200 characters');
    }
    const settings = this.parseSettings(body['settings'], this.defaults());
    const apiKey = generateApiKey();
    const { record, apiKeyId } = await this.repo.create({
      id: id as string,
      name,
      settings,
      secret: generateSecret(),
      apiKeyHash: hashApiKey(apiKey),
    });
    await this.publish(record);
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
    const current = await this.get(id);
    const patch: { name?: string; settings?: AppSettings; disabled?: boolean } = {};
    if (body['name'] !== undefined) {
      if (typeof body['name'] !== 'string' || body['name'].length === 0 || body['name'].length > 200) {
        throw new PushError('bad_request', 'name must be a string of 1 to 200 characters');
      }
      patch.name = body['name'];
    }
    if (body['disabled'] !== undefined) {
      if (typeof body['disabled'] !== 'boolean') throw new PushError('bad_request', 'disabled must be a boolean');
      patch.disabled = body['disabled'];
    }
    if (body['settings'] !== undefined) patch.settings = this.parseSettings(body['settings'], current.settings);
    const record = await this.repo.update(id, patch);
    await this.publish(record);
    return record;
  }

  /** Adds a new signing secret; the previous one stays valid until the next rotation. */
  async rotateSecret(id: string): Promise<AppRecord> {
    const record = await this.repo.rotateSecret(id, generateSecret());
    await this.publish(record);
    return record;
  }

  async addApiKey(id: string): Promise<{ app: AppRecord; apiKey: string; apiKeyId: string }> {
    const apiKey = generateApiKey();
    const { record, apiKeyId } = await this.repo.addApiKey(id, hashApiKey(apiKey));
    await this.publish(record);
    return { app: record, apiKey, apiKeyId };
  }

  async revokeApiKey(id: string, keyId: string): Promise<AppRecord> {
    const record = await this.repo.revokeApiKey(id, keyId);
    await this.publish(record);
    return record;
  }

  /**
   * Writes every app from Postgres to its stream and the KV bucket (at start: repairs a lost or
   * new bucket, creates missing streams, applies changed deployment limits).
   */
  async syncAll(): Promise<number> {
    const all = await this.repo.list();
    for (const r of all) {
      await this.ensureStream(r);
      const seen = this.directory.get(r.id);
      if (JSON.stringify(seen) !== JSON.stringify(r)) await this.directory.put(r);
    }
    return all.length;
  }
}
