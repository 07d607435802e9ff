import { timingSafeEqual } from 'node:crypto';
import { generateWebhookSecret, type AppDirectory, type WebhookDirectory } from '@push/apps';
import type { WebhooksRepository } from '@push/db';
import {
  deleteWebhookConsumers,
  listDeadLetters,
  purgeDeadLetters,
  replayDeadLetters,
  type ListedDeadLetter,
  type NatsConnection,
} from '@push/nats';
import {
  MAX_DEAD_LETTERS_LISTED,
  PushError,
  WebhookCreateSchema,
  WebhookIdSchema,
  WebhookUpdateSchema,
  compile,
  isObject,
  type AppRecord,
  type Subjects,
  type WebhookEndpoint,
} from '@push/protocol';
import type { ApiKeyVerifier } from './api-keys.js';

const createBody = compile(WebhookCreateSchema);
const updateBody = compile(WebhookUpdateSchema);
const webhookId = compile(WebhookIdSchema);

/** Whether `authorization` carries the admin key (constant time; false when the admin API is off). */
function isAdminKey(authorization: string, adminKey: string | undefined): boolean {
  if (adminKey === undefined) return false;
  const given = Buffer.from(authorization.startsWith('Bearer ') ? authorization.slice(7).trim() : '');
  const expected = Buffer.from(adminKey);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * Webhook endpoints and their dead letters, for the HTTP and NATS APIs. Postgres is the source
 * of truth; every change is then written to the webhooks KV bucket, which coordinators watch to
 * start, change or stop an endpoint's delivery. Either the app's API key (the business manages
 * its own endpoints) or the admin key (an operator) opens an app's endpoints.
 */
export class WebhookAdmin {
  constructor(
    private readonly repo: WebhooksRepository,
    private readonly directory: WebhookDirectory,
    private readonly apps: AppDirectory,
    private readonly keys: ApiKeyVerifier,
    private readonly adminKey: string | undefined,
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
  ) {}

  /**
   * The app `authorization` opens: the admin key opens any existing app (even a disabled one),
   * an API key its own app (ApiKeyVerifier's errors otherwise).
   */
  authorize(appId: string, authorization: string): AppRecord {
    if (isAdminKey(authorization, this.adminKey)) {
      const app = this.apps.get(appId);
      if (app === undefined) throw new PushError('app_not_found');
      return app;
    }
    return this.keys.verify(appId, authorization);
  }

  /** Checks an endpoint id from a path or request (an unknown shape is simply not found). */
  static id(raw: unknown): string {
    return webhookId.parse(raw);
  }

  /** Registers an endpoint; its secret is in the answer (and in every later read). */
  async create(app: string, body: unknown): Promise<WebhookEndpoint> {
    if (!isObject(body)) throw new PushError('bad_request', 'the body must be a JSON object');
    const b = createBody.parse(body);
    const events = b.events ?? [];
    const kinds = b.kinds ?? [];
    if (events.length === 0 && kinds.length === 0)
      throw new PushError('bad_request', 'give events or kinds (or both): an endpoint that wants nothing gets nothing');
    const ep = await this.repo.create(
      app,
      {
        url: b.url,
        events,
        kinds,
        disabled: b.disabled ?? false,
        description: b.description ?? '',
        format: b.format ?? 'native',
      },
      generateWebhookSecret(),
    );
    await this.directory.put(ep);
    return ep;
  }

  list(app: string): Promise<WebhookEndpoint[]> {
    return this.repo.list(app);
  }

  get(app: string, id: string): Promise<WebhookEndpoint> {
    return this.repo.get(app, id);
  }

  /** Changes URL, filters, description or disabled; the coordinators follow within a KV round trip. */
  async update(app: string, id: string, body: unknown): Promise<WebhookEndpoint> {
    if (!isObject(body)) throw new PushError('bad_request', 'the body must be a JSON object');
    const b = updateBody.parse(body);
    // Holding the row: a change never writes the bucket over a later one, nor after a delete.
    return this.repo.locked(app, id, async (repo, current) => {
      if ((b.events ?? current.events).length === 0 && (b.kinds ?? current.kinds).length === 0)
        throw new PushError('bad_request', 'an endpoint must keep some events or kinds');
      const patch: Parameters<WebhooksRepository['update']>[2] = {};
      if (b.url !== undefined) patch.url = b.url;
      if (b.events !== undefined) patch.events = b.events;
      if (b.kinds !== undefined) patch.kinds = b.kinds;
      if (b.disabled !== undefined) patch.disabled = b.disabled;
      if (b.description !== undefined) patch.description = b.description;
      if (b.format !== undefined) patch.format = b.format;
      const ep = await repo.update(app, id, patch);
      await this.directory.put(ep);
      return ep;
    });
  }

  /** Adds a new signing secret; requests are signed with it and the previous one until the next rotation. */
  async rotateSecret(app: string, id: string): Promise<WebhookEndpoint> {
    return this.repo.locked(app, id, async (repo) => {
      const ep = await repo.rotateSecret(app, id, generateWebhookSecret());
      await this.directory.put(ep);
      return ep;
    });
  }

  /**
   * Deletes an endpoint: the KV entry first (coordinators stop delivering), then its consumers,
   * its dead letters, and its row. PushError `webhook_not_found`.
   */
  async delete(app: string, id: string): Promise<void> {
    await this.repo.locked(app, id, async (repo, ep) => {
      await this.directory.delete(app, id);
      await deleteWebhookConsumers(this.nc, this.subjects, ep);
      await purgeDeadLetters(this.nc, this.subjects, app, id, { replays: true });
      await repo.delete(app, id);
    });
  }

  /** The endpoint's dead letters, oldest first (at most `limit`, default and most MAX_DEAD_LETTERS_LISTED). */
  async deadLetters(app: string, id: string, limit = MAX_DEAD_LETTERS_LISTED): Promise<ListedDeadLetter[]> {
    await this.repo.get(app, id);
    return listDeadLetters(this.nc, this.subjects, app, id, limit);
  }

  /** Sends the endpoint's dead letters back to delivery; resolves with how many. */
  async replay(app: string, id: string): Promise<number> {
    await this.repo.get(app, id);
    return replayDeadLetters(this.nc, this.subjects, app, id);
  }

  /** Drops the endpoint's dead letters; resolves with how many. */
  async purge(app: string, id: string): Promise<number> {
    await this.repo.get(app, id);
    return purgeDeadLetters(this.nc, this.subjects, app, id);
  }

  /**
   * Forgets a deleted app's endpoints in the KV bucket (its rows went with the app's, ON DELETE
   * CASCADE), so coordinators stop their delivery.
   */
  async forgetApp(app: string): Promise<void> {
    for (const ep of this.directory.all().values()) {
      if (ep.app === app) await this.directory.delete(ep.app, ep.id);
    }
  }

  /**
   * Writes every endpoint from Postgres to the KV bucket and removes the entries Postgres no
   * longer has (at start: repairs a lost or new bucket, or a delete cut short).
   */
  async syncAll(): Promise<number> {
    const all = await this.repo.listAll();
    const seen = this.directory.all();
    const keep = new Set<string>();
    for (const ep of all) {
      const key = this.subjects.webhookKey(ep.app, ep.id);
      keep.add(key);
      if (JSON.stringify(seen.get(key)) !== JSON.stringify(ep)) await this.directory.put(ep);
    }
    for (const [key, ep] of seen) if (!keep.has(key)) await this.directory.delete(ep.app, ep.id);
    return all.length;
  }
}
