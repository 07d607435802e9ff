import { timingSafeEqual } from 'node:crypto';
import { HttpExchange, toPushError, type HttpRequest, type HttpResponse, type TemplatedApp } from '@push/http';
import { PushError, idProblem } from '@push/protocol';
import type { Logger } from 'pino';
import { adminView, type AppAdmin } from './app-admin.js';
import type { ApiKeyVerifier } from './api-keys.js';
import type { Kicker } from './kick.js';
import type { CenterMetrics } from './metrics.js';
import type { PushService, Reply } from './push-service.js';

export interface HttpApiDeps {
  push: PushService;
  kicker: Kicker;
  admin: AppAdmin;
  keys: ApiKeyVerifier;
  metrics: CenterMetrics;
  log: Logger;
  maxBodyBytes: number;
  adminKey: string | undefined;
}

type Handler = (ex: HttpExchange, params: string[], body: Promise<unknown> | undefined) => Promise<Reply>;

/** A path parameter: percent-decoded; PushError `invalid_id` when it is not a valid id. */
function param(raw: string | undefined, kind: 'app' | 'user' | 'clientMessageId'): string {
  let value: string;
  try {
    value = decodeURIComponent(raw ?? '');
  } catch {
    throw new PushError('invalid_id', 'path parameter is not valid percent-encoding');
  }
  const problem = idProblem(kind, value);
  if (problem !== undefined) throw new PushError('invalid_id', problem);
  return value;
}

/**
 * Mounts the HTTP API (docs/api.md): push and user status for business servers (API key), app
 * administration (admin key). Every answer is JSON; every error is `{ error: { code, message } }`.
 */
export function mountHttpApi(app: TemplatedApp, deps: HttpApiDeps): void {
  const { push, admin, keys, metrics, log } = deps;

  const route = (
    method: 'get' | 'post' | 'patch' | 'del',
    pattern: string,
    op: string,
    params: number,
    withBody: boolean | 'optional',
    handler: Handler,
  ): void => {
    app[method](pattern, (res: HttpResponse, req: HttpRequest) => {
      const ex = new HttpExchange(res, req, ['authorization']);
      const ps: string[] = [];
      for (let i = 0; i < params; i++) ps.push(req.getParameter(i) ?? '');
      // uWS streams the body right away: start reading before any await.
      const body =
        withBody === false ? undefined : ex.readJson(deps.maxBodyBytes, { optional: withBody === 'optional' });
      body?.catch(() => undefined); // handled where awaited
      handler(ex, ps, body).then(
        (reply) => {
          metrics.requests.inc({ op, transport: 'http', status: reply.status });
          if (reply.status === 204) ex.send(204, '');
          else ex.json(reply.status, reply.body, reply.headers);
        },
        (err: unknown) => {
          const e = toPushError(err);
          metrics.requests.inc({ op, transport: 'http', status: e.status });
          metrics.errors.inc({ code: e.code });
          if (e.code === 'internal') log.error({ err, op }, 'request failed');
          const retryAfter = (err as { retryAfter?: number }).retryAfter;
          ex.json(
            e.status,
            { error: e.toJSON() },
            retryAfter !== undefined ? { 'retry-after': String(retryAfter) } : undefined,
          );
        },
      );
    });
  };

  const requireAdmin = (ex: HttpExchange): void => {
    const auth = ex.header('authorization');
    const given = Buffer.from(auth.startsWith('Bearer ') ? auth.slice(7).trim() : '');
    const expected = Buffer.from(deps.adminKey ?? '');
    if (deps.adminKey === undefined)
      throw new PushError('admin_key_invalid', 'the admin API is off: set PUSH_ADMIN_KEY');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new PushError('admin_key_invalid');
  };

  // --- business API -----------------------------------------------------------------------
  route('post', '/v1/apps/:app/push', 'push', 1, true, async (ex, [rawApp], body) => {
    const appId = param(rawApp, 'app');
    const record = keys.verify(appId, ex.header('authorization'));
    return push.push(record, await body);
  });
  route('get', '/v1/apps/:app/users/:user', 'user', 2, false, async (ex, [rawApp, rawUser]) => {
    const appId = param(rawApp, 'app');
    const user = param(rawUser, 'user');
    const record = keys.verify(appId, ex.header('authorization'));
    return { status: 200, body: await push.user(record, user) };
  });

  route('post', '/v1/apps/:app/users/:user/kick', 'kick', 2, 'optional', async (ex, [rawApp, rawUser], body) => {
    const appId = param(rawApp, 'app');
    const user = param(rawUser, 'user');
    const record = keys.verify(appId, ex.header('authorization'));
    return { status: 202, body: await deps.kicker.kick(record, user, await body) };
  });

  // --- admin API --------------------------------------------------------------------------
  route('post', '/v1/admin/apps', 'admin.create', 0, true, async (ex, _p, body) => {
    requireAdmin(ex);
    const r = await admin.create(await body);
    return { status: 201, body: { app: adminView(r.app), apiKey: r.apiKey, apiKeyId: r.apiKeyId } };
  });
  route('get', '/v1/admin/apps', 'admin.list', 0, false, async (ex) => {
    requireAdmin(ex);
    return { status: 200, body: { apps: (await admin.list()).map(adminView) } };
  });
  route('get', '/v1/admin/apps/:app', 'admin.get', 1, false, async (ex, [rawApp]) => {
    requireAdmin(ex);
    return { status: 200, body: { app: adminView(await admin.get(param(rawApp, 'app'))) } };
  });
  route('patch', '/v1/admin/apps/:app', 'admin.update', 1, true, async (ex, [rawApp], body) => {
    requireAdmin(ex);
    const appId = param(rawApp, 'app');
    return { status: 200, body: { app: adminView(await admin.update(appId, await body)) } };
  });
  route('post', '/v1/admin/apps/:app/secrets', 'admin.rotate', 1, false, async (ex, [rawApp]) => {
    requireAdmin(ex);
    return { status: 200, body: { app: adminView(await admin.rotateSecret(param(rawApp, 'app'))) } };
  });
  route('post', '/v1/admin/apps/:app/keys', 'admin.addKey', 1, false, async (ex, [rawApp]) => {
    requireAdmin(ex);
    const r = await admin.addApiKey(param(rawApp, 'app'));
    return { status: 201, body: { apiKey: r.apiKey, apiKeyId: r.apiKeyId, app: adminView(r.app) } };
  });
  route('del', '/v1/admin/apps/:app/keys/:key', 'admin.revokeKey', 2, false, async (ex, [rawApp, rawKey]) => {
    requireAdmin(ex);
    await admin.revokeApiKey(param(rawApp, 'app'), param(rawKey, 'clientMessageId'));
    return { status: 204, body: null };
  });

  app.any('/*', (res, req) => {
    const ex = new HttpExchange(res, req);
    const known =
      /^\/v1\/(apps\/[^/]+\/(push|users\/[^/]+(\/kick)?)|admin\/apps(\/[^/]+(\/secrets|\/keys(\/[^/]+)?)?)?)$/.test(
        ex.url,
      );
    ex.error(new PushError(known ? 'method_not_allowed' : 'not_found'));
  });
}
