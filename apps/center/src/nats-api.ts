import type { Msg, NatsConnection, Subscription } from '@nats-io/nats-core';
import { toPushError } from '@push/http';
import { PushError, isObject, readId, type ApiOperation, type Subjects } from '@push/protocol';
import type { Logger } from 'pino';
import type { ApiKeyVerifier } from './api-keys.js';
import type { Kicker } from './kick.js';
import type { CenterMetrics } from './metrics.js';
import type { PushService } from './push-service.js';

const decoder = new TextDecoder();

/**
 * The center's operations over NATS request/reply, for business services inside the NATS
 * network: `push.api.push` and `push.api.user`, answered by any center (queue group). The request
 * is the HTTP body plus `app` (and `user` for the status query); the API key goes in an
 * `Authorization: Bearer <key>` header. Replies are `{ ok: true, ... }` or `{ error: { code,
 * message, status } }`.
 */
export function serveNatsApi(
  nc: NatsConnection,
  subjects: Subjects,
  deps: { push: PushService; kicker: Kicker; keys: ApiKeyVerifier; metrics: CenterMetrics; log: Logger },
): Subscription[] {
  const handle = (op: ApiOperation, work: (req: Record<string, unknown>, auth: string) => Promise<unknown>) =>
    nc.subscribe(subjects.api(op), {
      queue: subjects.apiQueue,
      callback: (err, msg) => {
        if (err !== null) return;
        void answer(msg, op, work);
      },
    });

  async function answer(msg: Msg, op: string, work: (req: Record<string, unknown>, auth: string) => Promise<unknown>) {
    let reply: unknown;
    let status = 200;
    try {
      let req: unknown;
      try {
        req = JSON.parse(decoder.decode(msg.data));
      } catch (cause) {
        throw new PushError('bad_json', undefined, { cause });
      }
      if (!isObject(req)) throw new PushError('bad_request', 'the request must be a JSON object');
      const result = await work(req, msg.headers?.get('Authorization') ?? '');
      reply = { ok: true, ...(result as object) };
    } catch (err) {
      const e = toPushError(err);
      status = e.status;
      deps.metrics.errors.inc({ code: e.code });
      if (e.code === 'internal') deps.log.error({ err, op }, 'nats api request failed');
      // A partly stored batch keeps its per-message results; a rate limit says when to retry.
      const { results, retryAfter } = err as { results?: unknown; retryAfter?: unknown };
      reply = {
        error: { ...e.toJSON(), status: e.status, ...(typeof retryAfter === 'number' ? { retryAfter } : {}) },
        ...(results !== undefined ? { results } : {}),
      };
    }
    deps.metrics.requests.inc({ op, transport: 'nats', status });
    if (msg.reply !== undefined && msg.reply !== '') msg.respond(JSON.stringify(reply));
  }

  return [
    handle('push', async (req, auth) => {
      const app = deps.keys.verify(readId(req, 'app', 'app'), auth);
      const { app: _omit, ...body } = req;
      const r = await deps.push.push(app, body);
      if (r.status !== 200) {
        const b = r.body as { error: { code: 'store_unavailable'; message: string }; results: unknown };
        return Promise.reject(Object.assign(new PushError(b.error.code, b.error.message), { results: b.results }));
      }
      return r.body;
    }),
    handle('user', async (req, auth) => {
      const app = deps.keys.verify(readId(req, 'app', 'app'), auth);
      return deps.push.user(app, readId(req, 'user', 'user'));
    }),
    handle('kick', (req, auth) => {
      const app = deps.keys.verify(readId(req, 'app', 'app'), auth);
      const { app: _app, user: _user, ...body } = req;
      return Promise.resolve(deps.kicker.kick(app, readId(req, 'user', 'user'), body));
    }),
  ];
}
