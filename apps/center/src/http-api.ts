import type { InFlight } from './in-flight.js';
import { CorsPolicy, HttpExchange, type HttpRequest, type HttpResponse, type TemplatedApp } from '@push/http';
import { PushError, decimal, idProblem, type AppRecord, type IdKind } from '@push/protocol';
import type { Logger } from 'pino';
import { checkAdminKey } from './admin-key.js';
import { adminView, type AppAdmin } from './app-admin.js';
import type { Kicker } from './kick.js';
import type { BindingService } from './bindings.js';
import type { JobService } from './job-service.js';
import { WebhookAdmin } from './webhook-admin.js';
import { readUndeliverableQuery, type UndeliverableAdmin } from './undeliverable-admin.js';
import type { CenterMetrics } from './metrics.js';
import type { DatabaseWatch } from './database-watch.js';
import { batchStoreError, type PushOutcome, type PushService } from './push-service.js';
import { topicNameError, type TopicOutcome, type TopicService } from './topic-service.js';
import type { TopicPresenceService } from './topic-presence.js';
import type { ConsoleService } from './console-service.js';

export interface HttpApiDeps {
  push: PushService;
  jobs: JobService;
  topics: TopicService;
  /** Topic occupancy and presence members (issue 9 item 6). */
  topicPresence: TopicPresenceService;
  kicker: Kicker;
  bindings: BindingService;
  admin: AppAdmin;
  webhooks: WebhookAdmin;
  /** Never-acked messages moved out of inboxes (issue 17 part 3). */
  undeliverable: UndeliverableAdmin;
  /** Turns a failure into its answer (`database_unavailable` when Postgres is down). */
  database: Pick<DatabaseWatch, 'answer'>;
  metrics: CenterMetrics;
  log: Logger;
  maxBodyBytes: number;
  adminKey: string | undefined;
  /** Browser origins answered with CORS headers (PUSH_CORS_ORIGINS). */
  corsOrigins: readonly string[];
  /** The web console's summary and reads (issue 19). */
  console: ConsoleService;
  /** Requests being answered; refuses new ones once the center stops. */
  inFlight: InFlight;
}

/** What a route answers: a status, a JSON body (none for 204) and extra headers. */
export interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

type Handler = (ex: HttpExchange, params: string[], body: Promise<unknown> | undefined) => Promise<Reply>;

/** One route of the API: the table below drives both the uWS routes and the 405/404 answers. */
interface Route {
  method: 'get' | 'post' | 'put' | 'patch' | 'del';
  /** uWS pattern; `:name` matches one non-empty path segment. */
  pattern: string;
  /** Metrics label. */
  op: string;
  /** Whether the request has a JSON body (`optional`: an empty body is none). */
  body: boolean | 'optional';
  handler: Handler;
}

/** A path parameter: percent-decoded; PushError `invalid_id` when it is not a valid id. */
function param(raw: string | undefined, kind: IdKind): string {
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

/** A job id from the path, percent-decoded; one that cannot be decoded names no job (`job_not_found`). */
function jobParam(raw: string | undefined): string {
  try {
    return decodeURIComponent(raw ?? '');
  } catch {
    throw new PushError('job_not_found');
  }
}

/** Whether a URL path matches a route pattern (segment by segment; `:x` is any non-empty segment). */
export function matchesPattern(pattern: string, path: string): boolean {
  const want = pattern.split('/');
  const got = path.split('/');
  return want.length === got.length && want.every((w, i) => (w.startsWith(':') ? got[i] !== '' : w === got[i]));
}

/** The HTTP answer to a push: 200 with the sequence(s); 503 with each result when some of a batch were not stored. */
function pushReply(outcome: PushOutcome): Reply {
  if (!outcome.batch) return { status: 200, body: outcome.answer };
  if (outcome.failed === 0) return { status: 200, body: { results: outcome.results } };
  // Some were not stored: 503 so a naive client retries the batch (idempotency ids make that safe).
  const e = batchStoreError(outcome);
  return { status: e.status, body: { error: e.toJSON(), results: outcome.results } };
}

/** `limit=<n>` from a query string (undefined when absent); PushError `bad_request` when not a positive integer. */
function limitParam(query: string): number | undefined {
  const raw = new URLSearchParams(query).get('limit');
  if (raw === null) return undefined;
  const n = decimal(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new PushError('bad_request', 'limit must be a positive integer');
  return n;
}

/** Routes of webhook endpoints and their dead letters (docs/api.md "Webhooks"). */
function webhookRoutes(webhooks: WebhookAdmin): Route[] {
  const base = '/v1/apps/:app/webhooks';
  const open = (ex: HttpExchange, rawApp: string | undefined): string =>
    webhooks.authorize(param(rawApp, 'app'), ex.header('authorization')).id;
  return [
    {
      method: 'post',
      pattern: base,
      op: 'webhooks.create',
      body: true,
      handler: async (ex, [rawApp], body) => {
        const app = open(ex, rawApp);
        return { status: 201, body: { webhook: await webhooks.create(app, await body) } };
      },
    },
    {
      method: 'get',
      pattern: base,
      op: 'webhooks.list',
      body: false,
      handler: async (ex, [rawApp]) => ({ status: 200, body: { webhooks: await webhooks.list(open(ex, rawApp)) } }),
    },
    {
      method: 'get',
      pattern: `${base}/:webhook`,
      op: 'webhooks.get',
      body: false,
      handler: async (ex, [rawApp, rawId]) => {
        const app = open(ex, rawApp);
        return { status: 200, body: { webhook: await webhooks.get(app, WebhookAdmin.id(rawId)) } };
      },
    },
    {
      method: 'patch',
      pattern: `${base}/:webhook`,
      op: 'webhooks.update',
      body: true,
      handler: async (ex, [rawApp, rawId], body) => {
        const app = open(ex, rawApp);
        return { status: 200, body: { webhook: await webhooks.update(app, WebhookAdmin.id(rawId), await body) } };
      },
    },
    {
      method: 'del',
      pattern: `${base}/:webhook`,
      op: 'webhooks.delete',
      body: false,
      handler: async (ex, [rawApp, rawId]) => {
        await webhooks.delete(open(ex, rawApp), WebhookAdmin.id(rawId));
        return { status: 204, body: null };
      },
    },
    {
      method: 'post',
      pattern: `${base}/:webhook/secret`,
      op: 'webhooks.rotate',
      body: false,
      handler: async (ex, [rawApp, rawId]) => {
        const app = open(ex, rawApp);
        return { status: 200, body: { webhook: await webhooks.rotateSecret(app, WebhookAdmin.id(rawId)) } };
      },
    },
    {
      method: 'get',
      pattern: `${base}/:webhook/dead-letters`,
      op: 'webhooks.dlq.list',
      body: false,
      handler: async (ex, [rawApp, rawId]) => {
        const app = open(ex, rawApp);
        const limit = limitParam(ex.query);
        return { status: 200, body: { deadLetters: await webhooks.deadLetters(app, WebhookAdmin.id(rawId), limit) } };
      },
    },
    {
      method: 'post',
      pattern: `${base}/:webhook/dead-letters/replay`,
      op: 'webhooks.dlq.replay',
      body: false,
      handler: async (ex, [rawApp, rawId]) => {
        const app = open(ex, rawApp);
        return { status: 200, body: { replayed: await webhooks.replay(app, WebhookAdmin.id(rawId)) } };
      },
    },
    {
      method: 'del',
      pattern: `${base}/:webhook/dead-letters`,
      op: 'webhooks.dlq.purge',
      body: false,
      handler: async (ex, [rawApp, rawId]) => {
        const app = open(ex, rawApp);
        return { status: 200, body: { purged: await webhooks.purge(app, WebhookAdmin.id(rawId)) } };
      },
    },
  ];
}

/**
 * Routes of an app's undeliverable messages (docs/api.md "Undeliverable messages"): the app's API
 * key or the admin key, as for webhooks; `?user=` narrows each to one user.
 */
function undeliverableRoutes(undeliverable: UndeliverableAdmin, webhooks: WebhookAdmin): Route[] {
  const base = '/v1/apps/:app/undeliverable';
  const open = (ex: HttpExchange, rawApp: string | undefined): string =>
    webhooks.authorize(param(rawApp, 'app'), ex.header('authorization')).id;
  const query = (ex: HttpExchange) => {
    const q = new URLSearchParams(ex.query);
    return readUndeliverableQuery({ user: q.get('user'), limit: q.get('limit'), after: q.get('after') }, 'text');
  };
  return [
    {
      method: 'get',
      pattern: base,
      op: 'undeliverable.list',
      body: false,
      handler: async (ex, [rawApp]) => {
        const app = open(ex, rawApp);
        return { status: 200, body: { undeliverable: await undeliverable.list(app, query(ex)) } };
      },
    },
    {
      method: 'post',
      pattern: `${base}/replay`,
      op: 'undeliverable.replay',
      body: false,
      handler: async (ex, [rawApp]) => {
        const app = open(ex, rawApp);
        return { status: 200, body: await undeliverable.replay(app, query(ex)) };
      },
    },
    {
      method: 'del',
      pattern: base,
      op: 'undeliverable.purge',
      body: false,
      handler: async (ex, [rawApp]) => {
        const app = open(ex, rawApp);
        return { status: 200, body: await undeliverable.purge(app, query(ex)) };
      },
    },
  ];
}

/** `seq` from a path: a positive integer, else PushError `bad_request`. */
function seqParam(raw: string | undefined): number {
  const n = decimal(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new PushError('bad_request', 'seq must be a positive integer');
  return n;
}

/**
 * Routes the web console reads beside the business API (docs/api.md "Console summary"): the
 * deployment's figures (admin key), one app's figures, a user's recent events and whether a
 * message is still in an inbox (the app's API key or the admin key; a disabled app is still
 * shown to the admin).
 */
function consoleRoutes(
  reads: ConsoleService,
  webhooks: WebhookAdmin,
  requireAdmin: (ex: HttpExchange) => void,
): Route[] {
  const open = (ex: HttpExchange, rawApp: string | undefined): AppRecord =>
    webhooks.authorize(param(rawApp, 'app'), ex.header('authorization'));
  return [
    {
      method: 'get',
      pattern: '/v1/admin/summary',
      op: 'console.summary',
      body: false,
      handler: async (ex) => {
        requireAdmin(ex);
        return { status: 200, body: await reads.all() };
      },
    },
    {
      method: 'get',
      pattern: '/v1/apps/:app/summary',
      op: 'console.appSummary',
      body: false,
      handler: async (ex, [rawApp]) => ({ status: 200, body: await reads.forApp(open(ex, rawApp)) }),
    },
    {
      method: 'get',
      pattern: '/v1/apps/:app/users/:user/events',
      op: 'console.userEvents',
      body: false,
      handler: async (ex, [rawApp, rawUser]) => {
        const app = open(ex, rawApp);
        const user = param(rawUser, 'user');
        const limit = Math.min(limitParam(ex.query) ?? 50, 200);
        return { status: 200, body: { user, events: await reads.userEvents(app, user, limit) } };
      },
    },
    {
      method: 'get',
      pattern: '/v1/apps/:app/topics/:topic/messages',
      op: 'console.topicTail',
      body: false,
      handler: async (ex, [rawApp, rawTopic]) => {
        const app = open(ex, rawApp);
        const topic = topicParam(rawTopic);
        const raw = new URLSearchParams(ex.query).get('after');
        const after = raw === null ? undefined : decimal(raw);
        if (after !== undefined && (!Number.isSafeInteger(after) || after < 0))
          throw new PushError('bad_request', 'after must be a sequence (an integer, 0 or more)');
        return { status: 200, body: await reads.topicTail(app, topic, after) };
      },
    },
    {
      method: 'get',
      pattern: '/v1/apps/:app/users/:user/inbox/:seq',
      op: 'console.inbox',
      body: false,
      handler: async (ex, [rawApp, rawUser, rawSeq]) => {
        const app = open(ex, rawApp);
        const user = param(rawUser, 'user');
        const seq = seqParam(rawSeq);
        return { status: 200, body: { user, seq, stored: await reads.inboxHolds(app, user, seq) } };
      },
    },
  ];
}

/** A topic path parameter: percent-decoded; PushError `invalid_topic` for a name a business may not use. */
function topicParam(raw: string | undefined): string {
  let value: string;
  try {
    value = decodeURIComponent(raw ?? '');
  } catch {
    throw new PushError('invalid_topic', 'topic is not valid percent-encoding');
  }
  const bad = topicNameError(value);
  if (bad !== undefined) throw bad;
  return value;
}

/** The HTTP answer to a topic publish: as for a push, with `topic` in each answer. */
export function topicReply(outcome: TopicOutcome): Reply {
  if (!outcome.batch) {
    return { status: 200, body: { topic: outcome.topic, seq: outcome.seq, duplicate: outcome.duplicate } };
  }
  if (outcome.failed === 0) return { status: 200, body: { results: outcome.results } };
  const e = batchStoreError(outcome);
  return { status: e.status, body: { error: e.toJSON(), results: outcome.results } };
}

/**
 * Mounts the HTTP API (docs/api.md): push and user status for business servers (API key), app
 * administration (admin key). Every answer is JSON; every error is `{ error: { code, message } }`.
 */
export function mountHttpApi(app: TemplatedApp, deps: HttpApiDeps): void {
  const { push, jobs, admin, metrics, log } = deps;

  const requireAdmin = (ex: HttpExchange): void => checkAdminKey(ex.header('authorization'), deps.adminKey);
  /**
   * The app a business route acts on: its API key opens it, and so does the admin key (the web
   * console acts for an operator); a disabled app is refused either way (`app_disabled`).
   */
  const open = (ex: HttpExchange, rawApp: string | undefined): AppRecord => {
    const record = deps.webhooks.authorize(param(rawApp, 'app'), ex.header('authorization'));
    if (record.disabled) throw new PushError('app_disabled');
    return record;
  };

  const routes: Route[] = [
    // --- business API ---------------------------------------------------------------------
    {
      method: 'post',
      pattern: '/v1/apps/:app/push',
      op: 'push',
      body: true,
      handler: async (ex, [rawApp], body) => {
        const record = open(ex, rawApp);
        return pushReply(await push.push(record, await body));
      },
    },
    // --- topics -----------------------------------------------------------------------------
    {
      method: 'post',
      pattern: '/v1/apps/:app/topics/:topic/messages',
      op: 'topics.publish',
      body: true,
      handler: async (ex, [rawApp, rawTopic], body) => {
        const record = open(ex, rawApp);
        return topicReply(await deps.topics.publish(record, await body, topicParam(rawTopic)));
      },
    },
    {
      method: 'post',
      pattern: '/v1/apps/:app/topics/messages',
      op: 'topics.publishBatch',
      body: true,
      handler: async (ex, [rawApp], body) => {
        const record = open(ex, rawApp);
        return topicReply(await deps.topics.publish(record, await body, undefined));
      },
    },
    // --- topic occupancy and presence (issue 9 item 6) ----------------------------------------
    {
      method: 'get',
      pattern: '/v1/apps/:app/topics/:topic',
      op: 'topics.get',
      body: false,
      handler: async (ex, [rawApp, rawTopic]) => {
        const record = open(ex, rawApp);
        return { status: 200, body: await deps.topicPresence.get(record, topicParam(rawTopic), false) };
      },
    },
    {
      method: 'get',
      pattern: '/v1/apps/:app/topics/:topic/presence',
      op: 'topics.presence',
      body: false,
      handler: async (ex, [rawApp, rawTopic]) => {
        const record = open(ex, rawApp);
        return { status: 200, body: await deps.topicPresence.get(record, topicParam(rawTopic), true) };
      },
    },
    {
      method: 'get',
      pattern: '/v1/apps/:app/users/:user',
      op: 'user',
      body: false,
      handler: async (ex, [rawApp, rawUser]) => {
        const record = open(ex, rawApp);
        const user = param(rawUser, 'user');
        return { status: 200, body: await push.user(record, user) };
      },
    },
    {
      method: 'post',
      pattern: '/v1/apps/:app/users/:user/kick',
      op: 'kick',
      body: 'optional',
      handler: async (ex, [rawApp, rawUser], body) => {
        const record = open(ex, rawApp);
        const user = param(rawUser, 'user');
        return { status: 202, body: await deps.kicker.kick(record, user, await body) };
      },
    },
    // --- topic bindings (docs/api.md#topic-bindings) -----------------------------------------
    {
      method: 'put',
      pattern: '/v1/apps/:app/users/:user/topics/:topic',
      op: 'topics.bind',
      body: false,
      handler: async (ex, [rawApp, rawUser, rawTopic]) => {
        const record = open(ex, rawApp);
        const user = param(rawUser, 'user');
        return { status: 200, body: await deps.bindings.bind(record, user, topicParam(rawTopic)) };
      },
    },
    {
      method: 'del',
      pattern: '/v1/apps/:app/users/:user/topics/:topic',
      op: 'topics.unbind',
      body: false,
      handler: async (ex, [rawApp, rawUser, rawTopic]) => {
        const record = open(ex, rawApp);
        const user = param(rawUser, 'user');
        return { status: 200, body: await deps.bindings.unbind(record, user, topicParam(rawTopic)) };
      },
    },
    {
      method: 'get',
      pattern: '/v1/apps/:app/users/:user/topics',
      op: 'topics.bindings',
      body: false,
      handler: async (ex, [rawApp, rawUser]) => {
        const record = open(ex, rawApp);
        const user = param(rawUser, 'user');
        return { status: 200, body: { topics: await deps.bindings.list(record, user) } };
      },
    },
    // --- fan-out jobs (docs/api.md#fan-out-jobs) ----------------------------------------------
    {
      method: 'post',
      pattern: '/v1/apps/:app/jobs',
      op: 'jobs.create',
      body: true,
      handler: async (ex, [rawApp], body) => {
        const record = open(ex, rawApp);
        return { status: 201, body: { job: await jobs.create(record, await body) } };
      },
    },
    {
      method: 'get',
      pattern: '/v1/apps/:app/jobs',
      op: 'jobs.list',
      body: false,
      handler: async (ex, [rawApp]) => {
        const record = open(ex, rawApp);
        return { status: 200, body: { jobs: await jobs.list(record) } };
      },
    },
    {
      method: 'get',
      pattern: '/v1/apps/:app/jobs/:job',
      op: 'jobs.get',
      body: false,
      handler: async (ex, [rawApp, rawJob]) => {
        const record = open(ex, rawApp);
        return { status: 200, body: { job: await jobs.get(record, jobParam(rawJob)) } };
      },
    },
    {
      method: 'post',
      pattern: '/v1/apps/:app/jobs/:job/users',
      op: 'jobs.users',
      body: true,
      handler: async (ex, [rawApp, rawJob], body) => {
        const record = open(ex, rawApp);
        return { status: 200, body: await jobs.addUsers(record, jobParam(rawJob), await body) };
      },
    },
    {
      method: 'post',
      pattern: '/v1/apps/:app/jobs/:job/start',
      op: 'jobs.start',
      body: false,
      handler: async (ex, [rawApp, rawJob]) => {
        const record = open(ex, rawApp);
        return { status: 200, body: { job: await jobs.start(record, jobParam(rawJob)) } };
      },
    },
    {
      method: 'post',
      pattern: '/v1/apps/:app/jobs/:job/cancel',
      op: 'jobs.cancel',
      body: false,
      handler: async (ex, [rawApp, rawJob]) => {
        const record = open(ex, rawApp);
        return { status: 200, body: { job: await jobs.cancel(record, jobParam(rawJob)) } };
      },
    },
    // --- admin API ------------------------------------------------------------------------
    {
      method: 'post',
      pattern: '/v1/admin/apps',
      op: 'admin.create',
      body: true,
      handler: async (ex, _p, body) => {
        requireAdmin(ex);
        const r = await admin.create(await body);
        return { status: 201, body: { app: adminView(r.app), apiKey: r.apiKey, apiKeyId: r.apiKeyId } };
      },
    },
    {
      method: 'get',
      pattern: '/v1/admin/apps',
      op: 'admin.list',
      body: false,
      handler: async (ex) => {
        requireAdmin(ex);
        return { status: 200, body: { apps: (await admin.list()).map(adminView) } };
      },
    },
    {
      method: 'get',
      pattern: '/v1/admin/apps/:app',
      op: 'admin.get',
      body: false,
      handler: async (ex, [rawApp]) => {
        requireAdmin(ex);
        return { status: 200, body: { app: adminView(await admin.get(param(rawApp, 'app'))) } };
      },
    },
    {
      method: 'patch',
      pattern: '/v1/admin/apps/:app',
      op: 'admin.update',
      body: true,
      handler: async (ex, [rawApp], body) => {
        requireAdmin(ex);
        const appId = param(rawApp, 'app');
        return { status: 200, body: { app: adminView(await admin.update(appId, await body)) } };
      },
    },
    {
      method: 'del',
      pattern: '/v1/admin/apps/:app',
      op: 'admin.delete',
      body: false,
      handler: async (ex, [rawApp]) => {
        requireAdmin(ex);
        await admin.delete(param(rawApp, 'app'));
        return { status: 204, body: null };
      },
    },
    {
      method: 'post',
      pattern: '/v1/admin/apps/:app/secrets',
      op: 'admin.rotate',
      body: false,
      handler: async (ex, [rawApp]) => {
        requireAdmin(ex);
        return { status: 200, body: { app: adminView(await admin.rotateSecret(param(rawApp, 'app'))) } };
      },
    },
    {
      method: 'post',
      pattern: '/v1/admin/apps/:app/keys',
      op: 'admin.addKey',
      body: false,
      handler: async (ex, [rawApp]) => {
        requireAdmin(ex);
        const r = await admin.addApiKey(param(rawApp, 'app'));
        return { status: 201, body: { apiKey: r.apiKey, apiKeyId: r.apiKeyId, app: adminView(r.app) } };
      },
    },
    {
      method: 'del',
      pattern: '/v1/admin/apps/:app/keys/:key',
      op: 'admin.revokeKey',
      body: false,
      handler: async (ex, [rawApp, rawKey]) => {
        requireAdmin(ex);
        await admin.revokeApiKey(param(rawApp, 'app'), param(rawKey, 'apiKey'));
        return { status: 204, body: null };
      },
    },
    // --- webhooks (issue 10): the app's API key or the admin key -------------------------
    ...webhookRoutes(deps.webhooks),
    // --- undeliverable messages (issue 17 part 3): the app's API key or the admin key -------
    ...undeliverableRoutes(deps.undeliverable, deps.webhooks),
    // --- web console (issue 19) ----------------------------------------------------------------
    ...consoleRoutes(deps.console, deps.webhooks, requireAdmin),
  ];

  const cors = new CorsPolicy(deps.corsOrigins);
  cors.mountPreflight(app, ['GET', 'POST', 'PUT', 'PATCH', 'DELETE']);

  for (const r of routes) {
    const params = r.pattern.split('/').filter((p) => p.startsWith(':')).length;
    app[r.method](r.pattern, (res: HttpResponse, req: HttpRequest) => {
      const ex = new HttpExchange(res, req, ['authorization'], cors);
      if (!deps.inFlight.admit(ex)) return;
      const ps: string[] = [];
      for (let i = 0; i < params; i++) ps.push(req.getParameter(i) ?? '');
      // uWS streams the body right away: start reading before any await.
      const body = r.body === false ? undefined : ex.readJson(deps.maxBodyBytes, { optional: r.body === 'optional' });
      // A body that failed to read is answered where the handler awaits it; when the handler
      // failed first (e.g. a bad API key), the body's own failure has nothing left to answer.
      body?.catch((err: unknown) => log.debug({ err, op: r.op }, 'request body not read'));
      r.handler(ex, ps, body).then(
        (reply) => {
          deps.inFlight.answered(ex);
          metrics.requests.inc({ op: r.op, transport: 'http', status: reply.status });
          if (reply.status === 204) ex.send(204, '');
          else ex.json(reply.status, reply.body, reply.headers);
        },
        (err: unknown) => {
          deps.inFlight.answered(ex);
          const e = deps.database.answer(err, r.op);
          metrics.requests.inc({ op: r.op, transport: 'http', status: e.status });
          metrics.errors.inc({ code: e.code });
          if (e.code === 'internal') log.error({ err, op: r.op }, 'request failed');
          const headers = e.retryAfter !== undefined ? { 'retry-after': String(e.retryAfter) } : undefined;
          ex.json(e.status, { error: e.toJSON() }, headers);
        },
      );
    });
  }

  // Anything else: 405 when some route has this path (with another method), else 404.
  app.any('/*', (res, req) => {
    const ex = new HttpExchange(res, req, [], cors);
    const known = routes.some((r) => matchesPattern(r.pattern, ex.url));
    ex.error(new PushError(known ? 'method_not_allowed' : 'not_found'));
  });
}
