import { hashApiKey, type AppDirectory } from '@push/apps';
import { PushError, type AppRecord } from '@push/protocol';

/**
 * Checks API keys against the apps directory (hashes only), answering in the order a caller can
 * act on: 401 (no key, unknown key), 404 (no such app), 403 (key of another app, app disabled).
 */
export class ApiKeyVerifier {
  private readonly apps: AppDirectory;
  private readonly owners = new Map<string, string>();

  constructor(apps: AppDirectory) {
    this.apps = apps;
    apps.onChange(() => this.owners.clear());
  }

  /** The app the key opens, or a PushError. `authorization` is the raw header value. */
  verify(appId: string, authorization: string): AppRecord {
    const key = authorization.startsWith('Bearer ') ? authorization.slice(7).trim() : '';
    if (key === '') throw new PushError('api_key_missing');
    const hash = hashApiKey(key);
    const app = this.apps.get(appId);
    if (app?.apiKeys.some((k) => k.hash === hash) === true) {
      if (app.disabled) throw new PushError('app_disabled');
      return app;
    }
    const owner = this.ownerOf(hash);
    if (owner === undefined) throw new PushError('api_key_invalid');
    if (app === undefined) throw new PushError('app_not_found');
    throw new PushError('wrong_app', 'the API key belongs to another app');
  }

  private ownerOf(hash: string): string | undefined {
    const cached = this.owners.get(hash);
    if (cached !== undefined) return cached;
    for (const id of this.allIds()) {
      const app = this.apps.get(id);
      if (app?.apiKeys.some((k) => k.hash === hash) === true) {
        this.owners.set(hash, id);
        return id;
      }
    }
    return undefined;
  }

  private allIds(): string[] {
    return this.apps.ids();
  }
}
