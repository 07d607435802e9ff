import { createHash } from 'node:crypto';
import type { Msg, NatsConnection, Subscription } from '@nats-io/nats-core';
import { signWebhook, type AppDirectory } from '@push/apps';
import { RpcRequestSchema, compile, isObject, type AppRecord, type Subjects } from '@push/protocol';
import type { Logger } from 'pino';
import { HttpPoster, PostError } from './http-poster.js';
import type { CoordinatorMetrics } from './metrics.js';

const rpcRequest = compile(RpcRequestSchema);
const decoder = new TextDecoder();

/** Most RPC POSTs in flight per app (its own pool: one app's slow RPC endpoint holds only its own sockets). */
const RPC_SOCKETS_PER_APP = 64;
/** How much sooner than the edge's wait the coordinator gives up, so its `rpc_timeout` answer arrives first, ms. */
const TIMEOUT_MARGIN_MS = 100;

/**
 * The key of an app's RPC signatures: the app's client-token secret (base64url of 32 random
 * bytes), as a Standard Webhooks `whsec_` secret so a business verifies with any Standard
 * Webhooks library (docs/api.md "RPC").
 */
export function rpcSigningSecret(appSecret: string): string {
  return `whsec_${Buffer.from(appSecret, 'base64url').toString('base64')}`;
}

/**
 * Forwards client RPCs (`push.rpc.<app>`) to each app's `rpcUrl`. It subscribes, in the queue
 * group every RPC responder shares, only the subjects of apps that have an RPC URL: for an app
 * without one the coordinator stays out of the group, so a business service subscribed to the
 * subject gets every request, and with no service at all the edge gets "no responders" and
 * answers `rpc_unavailable` at once instead of after a timeout.
 *
 * The POST body is the request as the edge sent it; the business answers 2xx with
 * `{"data": ...}` or `{"error": {"code", "message"}}` (the NATS reply shapes, passed through),
 * anything else is `rpc_failed`, no answer within `rpcTimeoutMs` less a margin `rpc_timeout`.
 */
export class RpcForwarder {
  private readonly subs = new Map<string, { sub: Subscription; poster: HttpPoster }>();
  private unwatch: (() => void) | undefined;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
    private readonly apps: AppDirectory,
    private readonly metrics: CoordinatorMetrics,
    private readonly log: Logger,
  ) {}

  start(): void {
    for (const id of this.apps.ids()) this.sync(id, this.apps.get(id));
    this.unwatch = this.apps.onChange((id, app) => this.sync(id, app));
  }

  /** Subscribes or unsubscribes an app's RPC subject after a change of the app. */
  private sync(id: string, app: AppRecord | undefined): void {
    const wanted = app !== undefined && !app.disabled && app.settings.rpcUrl !== '';
    const current = this.subs.get(id);
    if (wanted && current === undefined) {
      const poster = new HttpPoster(RPC_SOCKETS_PER_APP);
      const sub = this.nc.subscribe(this.subjects.rpc(id), {
        queue: this.subjects.rpcQueue,
        callback: (err, msg) => {
          if (err !== null) {
            this.log.warn({ err, app: id }, 'rpc subscription error');
            return;
          }
          const p = this.forward(id, msg, poster).finally(() => this.inFlight.delete(p));
          this.inFlight.add(p);
        },
      });
      this.subs.set(id, { sub, poster });
    } else if (!wanted && current !== undefined) {
      current.sub.unsubscribe();
      current.poster.close();
      this.subs.delete(id);
    }
  }

  private async forward(appId: string, msg: Msg, poster: HttpPoster): Promise<void> {
    const reply = (body: unknown, outcome: string) => {
      this.metrics.rpc.inc({ app: appId, outcome });
      if (msg.reply !== undefined && msg.reply !== '') msg.respond(JSON.stringify(body));
    };
    const app = this.apps.get(appId);
    if (app === undefined || app.settings.rpcUrl === '') {
      reply({ error: { code: 'rpc_unavailable', message: 'the app has no RPC endpoint' } }, 'failed');
      return;
    }
    const raw = decoder.decode(msg.data);
    let req: unknown;
    try {
      req = JSON.parse(raw);
    } catch {
      reply({ error: { code: 'bad_request', message: 'the RPC request is not JSON' } }, 'bad_request');
      return;
    }
    const problem = rpcRequest.problem(req);
    if (problem !== undefined) {
      reply({ error: { code: 'bad_request', message: problem.message } }, 'bad_request');
      return;
    }
    const r = req as { id: string; conn: string };
    const id = `rpc_${createHash('sha256').update(`${r.conn}\n${r.id}`).digest('base64url').slice(0, 32)}`;
    const headers = signWebhook(
      app.secrets.slice(0, 2).map((s) => rpcSigningSecret(s.secret)),
      id,
      Date.now() / 1000,
      raw,
    );
    const timeoutMs = Math.max(50, app.settings.rpcTimeoutMs - TIMEOUT_MARGIN_MS);
    try {
      const res = await poster.post(app.settings.rpcUrl, raw, { ...headers }, timeoutMs, true);
      if (res.status < 200 || res.status > 299) {
        reply({ error: { code: 'rpc_failed', message: `the RPC endpoint answered HTTP ${res.status}` } }, 'failed');
        return;
      }
      let answer: unknown;
      try {
        answer = JSON.parse((res.body ?? Buffer.alloc(0)).toString('utf8'));
      } catch {
        reply({ error: { code: 'rpc_failed', message: 'the RPC endpoint answered with no JSON' } }, 'failed');
        return;
      }
      // As a business service answering over NATS would (RpcClient): an object, `error` null or absent for success.
      if (!isObject(answer)) {
        reply(
          { error: { code: 'rpc_failed', message: 'the RPC endpoint answered JSON that is not an object' } },
          'failed',
        );
        return;
      }
      const error = answer['error'];
      if (error !== undefined && error !== null) {
        const e = isObject(error) ? error : {};
        const code = typeof e['code'] === 'string' ? e['code'] : 'rpc_failed';
        const message = typeof e['message'] === 'string' ? e['message'] : 'the RPC failed';
        reply({ error: { code, message } }, 'failed');
        return;
      }
      reply({ data: answer['data'] ?? null }, 'ok');
    } catch (err) {
      if (err instanceof PostError && err.timedOut) {
        reply(
          { error: { code: 'rpc_timeout', message: `the RPC endpoint did not answer within ${timeoutMs} ms` } },
          'timeout',
        );
        return;
      }
      this.log.warn({ err, app: appId }, 'rpc POST failed');
      reply({ error: { code: 'rpc_failed', message: 'the RPC endpoint could not be reached' } }, 'failed');
    }
  }

  /** Unsubscribes every app and waits for the requests in flight (each bounded by its timeout). */
  async stop(): Promise<void> {
    this.unwatch?.();
    for (const { sub } of this.subs.values()) sub.unsubscribe();
    await Promise.allSettled([...this.inFlight]);
    for (const { poster } of this.subs.values()) poster.close();
    this.subs.clear();
  }
}
