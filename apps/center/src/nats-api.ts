import type { InFlight } from './in-flight.js';
import type { Msg, NatsConnection, Subscription } from '@nats-io/nats-core';
import {
  NatsAppDeleteRequestSchema,
  NatsBindRequestSchema,
  NatsAppRequestSchema,
  NatsJobRequestSchema,
  NatsKickRequestSchema,
  NatsTopicPresenceRequestSchema,
  NatsTopicPublishRequestSchema,
  NatsUserRequestSchema,
  PushError,
  compile,
  isObject,
  type ApiOperation,
  type Subjects,
} from '@push/protocol';
import type { Logger } from 'pino';
import { checkAdminKey } from './admin-key.js';
import type { AppAdmin } from './app-admin.js';
import type { ApiKeyVerifier } from './api-keys.js';
import type { JobService } from './job-service.js';
import type { Kicker } from './kick.js';
import type { BindingService } from './bindings.js';
import { WebhookAdmin } from './webhook-admin.js';
import { readUndeliverableQuery, type UndeliverableAdmin } from './undeliverable-admin.js';
import type { CenterMetrics } from './metrics.js';
import type { DatabaseWatch } from './database-watch.js';
import { batchStoreError, type PushService } from './push-service.js';
import { topicNameError, type TopicService } from './topic-service.js';
import type { TopicPresenceService } from './topic-presence.js';

const decoder = new TextDecoder();

const appRequest = compile(NatsAppRequestSchema);
const userRequest = compile(NatsUserRequestSchema);
const kickRequest = compile(NatsKickRequestSchema);
const deleteRequest = compile(NatsAppDeleteRequestSchema);
const jobRequest = compile(NatsJobRequestSchema);
const topicPublishRequest = compile(NatsTopicPublishRequestSchema);
const bindRequest = compile(NatsBindRequestSchema);
const topicPresenceRequest = compile(NatsTopicPresenceRequestSchema);

/** What one operation answers: the fields after `ok: true`, or a PushError with extra reply fields. */
type Work = (req: Record<string, unknown>, auth: string) => Promise<object>;

/** A failure whose reply carries more than the error (a partly stored batch carries its results). */
class ReplyError extends PushError {
  constructor(
    base: PushError,
    readonly extra: Record<string, unknown>,
  ) {
    super(base.code, base.message);
    this.name = 'PushError';
  }
}

/**
 * `push.api.webhooks.<op>`: the webhook routes of the HTTP API over NATS. The request is the
 * HTTP body plus `app` and (but for create and list) `webhook`; the app's API key or the admin
 * key in `Authorization`. `dlq.list` takes an optional `limit`.
 */
function webhookHandlers(
  webhooks: WebhookAdmin,
  handle: (op: ApiOperation, work: Work) => Subscription,
): Subscription[] {
  /** The app the request names and its key opens, the endpoint id when `withId`, and the body without them. */
  const read = (req: Record<string, unknown>, auth: string) => {
    const app = webhooks.authorize(appRequest.parse(req).app, auth).id;
    const { app: _app, webhook: rawId, ...body } = req;
    return { app, rawId, body };
  };
  const withId = (req: Record<string, unknown>, auth: string) => {
    const r = read(req, auth);
    return { ...r, id: WebhookAdmin.id(r.rawId) };
  };
  return [
    handle('webhooks.create', async (req, auth) => {
      const r = read(req, auth);
      return { webhook: await webhooks.create(r.app, r.body) };
    }),
    handle('webhooks.list', async (req, auth) => ({ webhooks: await webhooks.list(read(req, auth).app) })),
    handle('webhooks.get', async (req, auth) => {
      const r = withId(req, auth);
      return { webhook: await webhooks.get(r.app, r.id) };
    }),
    handle('webhooks.update', async (req, auth) => {
      const r = withId(req, auth);
      return { webhook: await webhooks.update(r.app, r.id, r.body) };
    }),
    handle('webhooks.delete', async (req, auth) => {
      const r = withId(req, auth);
      await webhooks.delete(r.app, r.id);
      return {};
    }),
    handle('webhooks.rotate', async (req, auth) => {
      const r = withId(req, auth);
      return { webhook: await webhooks.rotateSecret(r.app, r.id) };
    }),
    handle('webhooks.dlq.list', async (req, auth) => {
      const r = withId(req, auth);
      const limit = r.body['limit'];
      if (limit !== undefined && !(Number.isInteger(limit) && (limit as number) >= 1))
        throw new PushError('bad_request', 'limit must be a positive integer');
      return { deadLetters: await webhooks.deadLetters(r.app, r.id, limit as number | undefined) };
    }),
    handle('webhooks.dlq.replay', async (req, auth) => {
      const r = withId(req, auth);
      return { replayed: await webhooks.replay(r.app, r.id) };
    }),
    handle('webhooks.dlq.purge', async (req, auth) => {
      const r = withId(req, auth);
      return { purged: await webhooks.purge(r.app, r.id) };
    }),
  ];
}

/** Fields an `undeliverable.*` request may have. */
const UNDELIVERABLE_FIELDS = new Set(['app', 'user', 'limit', 'after']);

/**
 * `push.api.undeliverable.<op>`: the undeliverable routes over NATS. The request is
 * `{ app, user?, limit?, after? }` (limit and after for `list`); the app's API key or the admin key.
 */
function undeliverableHandlers(
  undeliverable: UndeliverableAdmin,
  webhooks: WebhookAdmin,
  handle: (op: ApiOperation, work: Work) => Subscription,
): Subscription[] {
  const read = (req: Record<string, unknown>, auth: string) => {
    const app = webhooks.authorize(appRequest.parse(req).app, auth).id;
    const unknown = Object.keys(req).find((k) => !UNDELIVERABLE_FIELDS.has(k));
    if (unknown !== undefined) throw new PushError('bad_request', `unknown field ${JSON.stringify(unknown)}`);
    return { app, q: readUndeliverableQuery(req, 'json') };
  };
  return [
    handle('undeliverable.list', async (req, auth) => {
      const r = read(req, auth);
      return { undeliverable: await undeliverable.list(r.app, r.q) };
    }),
    handle('undeliverable.replay', async (req, auth) => {
      const r = read(req, auth);
      return undeliverable.replay(r.app, r.q);
    }),
    handle('undeliverable.purge', async (req, auth) => {
      const r = read(req, auth);
      return undeliverable.purge(r.app, r.q);
    }),
  ];
}

/**
 * The center's operations over NATS request/reply, for business services inside the NATS
 * network: `push.api.push`, `push.api.user`, `push.api.kick`, `push.api.topics.*`, `push.api.jobs.*` (API key) and `push.api.apps.delete`
 * (admin key), answered by any center (queue group). The request is the HTTP body plus `app` (and
 * `user` where the HTTP path has it); the key goes in an `Authorization: Bearer <key>` header.
 * Replies are `{ ok: true, ... }` or `{ error: { code, message, status, retryAfter? } }` (docs/api.md).
 */
export function serveNatsApi(
  nc: NatsConnection,
  subjects: Subjects,
  deps: {
    push: PushService;
    jobs: JobService;
    topics: TopicService;
    topicPresence: TopicPresenceService;
    kicker: Kicker;
    bindings: BindingService;
    keys: ApiKeyVerifier;
    admin: AppAdmin;
    webhooks: WebhookAdmin;
    undeliverable: UndeliverableAdmin;
    /** Turns a failure into its answer (`database_unavailable` when Postgres is down). */
    database: Pick<DatabaseWatch, 'answer'>;
    adminKey: string | undefined;
    metrics: CenterMetrics;
    log: Logger;
    /** Requests being answered; refuses new ones once the center stops. */
    inFlight: InFlight;
  },
): Subscription[] {
  const handle = (op: ApiOperation, work: Work) =>
    nc.subscribe(subjects.api(op), {
      queue: subjects.apiQueue,
      callback: (err, msg) => {
        if (err !== null) {
          deps.log.warn({ err, op }, 'nats api subscription error');
          return;
        }
        void answer(msg, op, work);
      },
    });

  async function answer(msg: Msg, op: string, work: Work) {
    let reply: unknown;
    let status = 200;
    deps.inFlight.begin();
    try {
      // Taken before the unsubscribe of a stop: another center answers a retry.
      if (deps.inFlight.stopping) throw new PushError('shutting_down');
      let req: unknown;
      try {
        req = JSON.parse(decoder.decode(msg.data));
      } catch (cause) {
        throw new PushError('bad_json', undefined, { cause });
      }
      if (!isObject(req)) throw new PushError('bad_request', 'the request must be a JSON object');
      reply = { ok: true, ...(await work(req, msg.headers?.get('Authorization') ?? '')) };
    } catch (err) {
      const e = deps.database.answer(err, op);
      status = e.status;
      deps.metrics.errors.inc({ code: e.code });
      if (e.code === 'internal') deps.log.error({ err, op }, 'nats api request failed');
      const retryAfter = e.retryAfter !== undefined ? { retryAfter: e.retryAfter } : {};
      reply = {
        error: { ...e.toJSON(), status: e.status, ...retryAfter },
        ...(e instanceof ReplyError ? e.extra : {}),
      };
    }
    deps.inFlight.end();
    deps.metrics.requests.inc({ op, transport: 'nats', status });
    if (msg.reply !== undefined && msg.reply !== '') msg.respond(JSON.stringify(reply));
  }

  return [
    handle('push', async (req, auth) => {
      const app = deps.keys.verify(appRequest.parse(req).app, auth);
      const { app: _omit, ...body } = req;
      const outcome = await deps.push.push(app, body);
      if (!outcome.batch) return outcome.answer;
      if (outcome.failed === 0) return { results: outcome.results };
      throw new ReplyError(batchStoreError(outcome), { results: outcome.results });
    }),
    handle('topics.publish', async (req, auth) => {
      const r = topicPublishRequest.parse(req);
      const app = deps.keys.verify(r.app, auth);
      const { app: _app, topic: _topic, ...body } = req;
      const outcome = await deps.topics.publish(app, body, r.topic);
      if (!outcome.batch) return { topic: outcome.topic, seq: outcome.seq, duplicate: outcome.duplicate };
      if (outcome.failed === 0) return { results: outcome.results };
      throw new ReplyError(batchStoreError(outcome), { results: outcome.results });
    }),
    // --- topic bindings: `{ app, user, topic }` (`bindings`: `{ app, user }`) ---
    handle('topics.bind', async (req, auth) => {
      const r = bindRequest.parse(req);
      return deps.bindings.bind(deps.keys.verify(r.app, auth), r.user, r.topic);
    }),
    handle('topics.unbind', async (req, auth) => {
      const r = bindRequest.parse(req);
      return deps.bindings.unbind(deps.keys.verify(r.app, auth), r.user, r.topic);
    }),
    handle('topics.bindings', async (req, auth) => {
      const r = userRequest.parse(req);
      return { topics: await deps.bindings.list(deps.keys.verify(r.app, auth), r.user) };
    }),
    handle('topics.presence', async (req, auth) => {
      const r = topicPresenceRequest.parse(req);
      // As the HTTP route's path: reserved names (`_` but `_all`) answer invalid_topic.
      const bad = topicNameError(r.topic);
      if (bad !== undefined) throw bad;
      return deps.topicPresence.get(deps.keys.verify(r.app, auth), r.topic, true);
    }),
    handle('user', async (req, auth) => {
      const r = userRequest.parse(req);
      return deps.push.user(deps.keys.verify(r.app, auth), r.user);
    }),
    handle('kick', (req, auth) => {
      const r = kickRequest.parse(req);
      const app = deps.keys.verify(r.app, auth);
      const { app: _app, user: _user, ...body } = req;
      return Promise.resolve(deps.kicker.kick(app, r.user, body));
    }),
    // --- fan-out jobs: the HTTP bodies plus `app` (and `job`) ---
    handle('jobs.create', async (req, auth) => {
      const app = deps.keys.verify(appRequest.parse(req).app, auth);
      const { app: _app, ...body } = req;
      return { job: await deps.jobs.create(app, body) };
    }),
    handle('jobs.users', async (req, auth) => {
      const r = jobRequest.parse(req);
      const app = deps.keys.verify(r.app, auth);
      const { app: _app, job: _job, ...body } = req;
      return deps.jobs.addUsers(app, r.job, body);
    }),
    handle('jobs.start', async (req, auth) => {
      const r = jobRequest.parse(req);
      return { job: await deps.jobs.start(deps.keys.verify(r.app, auth), r.job) };
    }),
    handle('jobs.get', async (req, auth) => {
      const r = jobRequest.parse(req);
      return { job: await deps.jobs.get(deps.keys.verify(r.app, auth), r.job) };
    }),
    handle('jobs.list', async (req, auth) => {
      const app = deps.keys.verify(appRequest.parse(req).app, auth);
      return { jobs: await deps.jobs.list(app) };
    }),
    handle('jobs.cancel', async (req, auth) => {
      const r = jobRequest.parse(req);
      return { job: await deps.jobs.cancel(deps.keys.verify(r.app, auth), r.job) };
    }),
    handle('apps.delete', async (req, auth) => {
      const { app } = deleteRequest.parse(req); // a bad `app` answers invalid_id before the key is checked
      checkAdminKey(auth, deps.adminKey);
      await deps.admin.delete(app);
      return {};
    }),
    ...webhookHandlers(deps.webhooks, handle),
    ...undeliverableHandlers(deps.undeliverable, deps.webhooks, handle),
  ];
}
