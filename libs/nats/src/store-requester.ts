import { randomBytes } from 'node:crypto';
import type { Msg, MsgHdrs, NatsConnection } from '@nats-io/nats-core';
import { backoffDelay, type BackoffPolicy } from '@push/protocol';
import { IdleWaiters, RequestLostError, RequestPipeline, RequestTimeoutError } from './request-pipeline.js';

/**
 * Delay between attempts of a store request that failed for a leader change: short first (an
 * election in a healthy cluster takes a second or two), never more than a second, so that a
 * request goes through soon after the new leader answers.
 */
const STORE_RETRY: BackoffPolicy = { minMs: 50, baseMs: 100, capMs: 1000 };

/**
 * JetStream API errors that say the stream is between leaders, not that it refused the message:
 * `JSClusterNotAvailErr` (10008, "JetStream system temporarily unavailable") and
 * `JSClusterNotLeaderErr` (10009, "JetStream cluster can not handle request").
 */
/** Time an attempt needs at least (a round trip to the store), ms. */
const LAST_ATTEMPT_MS = 50;

const LEADER_CHANGE_ERRORS = new Set([10008, 10009]);

const ERROR_KEY = Buffer.from('"error"');

/**
 * True for a reply that says the store did not take the message for now (so sending it again
 * cannot store it twice): "no responders" (status 503: no server holds the stream's leader at
 * this instant, as while a cluster elects one) or an API error of a leader change.
 */
export function isLeaderChangeReply(reply: Msg): boolean {
  if (reply.headers?.code === 503) return true;
  const data = reply.data;
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.length > 1024 || !buf.includes(ERROR_KEY)) return false;
  try {
    const r = JSON.parse(buf.toString('utf8')) as { error?: { err_code?: number } };
    return LEADER_CHANGE_ERRORS.has(r.error?.err_code ?? 0);
  } catch {
    return false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/**
 * Store requests (JetStream publishes) that hold through an election: a request that failed for
 * a leader change or "no responders" is sent again, after the project's backoff, until its
 * deadline (`timeoutMs` from the call, the `PUSH_STORE_TIMEOUT_MS` callers document). The answer
 * a caller sees is a refusal only when the deadline passed.
 *
 * A request that got no answer may have been stored (the reply was lost with a killed node), so
 * every request carries a `Nats-Msg-Id` (the caller's, or one made by `storeMessageId()`) and is
 * sent again with the same headers: the stream dedupes it, a retry never stores twice. Attempts
 * last a third of the deadline (at least a second), so that a request lost with a node has time
 * to be resent.
 */
/**
 * Deadline of a read (a backlog, a topic's history, a stream's info), ms, at most: a read that
 * fails is tried again by its caller, so it is not held through an election as a store is.
 */
export const READ_TIMEOUT_MS = 5000;

/** The read deadline for a store deadline of `timeoutMs` (the lower of the two). */
export function readTimeoutMs(timeoutMs: number | undefined): number {
  return Math.min(timeoutMs ?? READ_TIMEOUT_MS, READ_TIMEOUT_MS);
}

let generated = 0;
const GENERATED_PREFIX = `gen.${randomBytes(9).toString('base64url')}.`;

/**
 * A `Nats-Msg-Id` for a store the caller gave no id to: unique to this process (a random prefix
 * and a counter), and unlike every id made from a caller's (`api.`, `job.`, `c2c.`, topic and
 * upstream ids), so it never dedupes against one.
 */
export function storeMessageId(): string {
  return GENERATED_PREFIX + String(++generated);
}

export class StoreRequester {
  /** Reads (STREAM.INFO): one attempt each, with the read deadline. */
  private readonly info: RequestPipeline;
  private readonly attempts: RequestPipeline;
  private readonly timeoutMs: number;
  /** `request()` calls not settled yet, waiting between attempts included. */
  private active = 0;
  private readonly idleWaiters = new IdleWaiters();

  constructor(nc: NatsConnection, opts: { timeoutMs?: number; maxInFlight?: number } = {}) {
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.info = new RequestPipeline(nc, { ...opts, timeoutMs: readTimeoutMs(this.timeoutMs) });
    // An attempt sent on a connection that is lost is sent again once it is back, not after its
    // deadline (the Nats-Msg-Id dedupes it if the store had it).
    this.attempts = new RequestPipeline(nc, {
      ...opts,
      timeoutMs: Math.min(this.timeoutMs, Math.max(1000, Math.round(this.timeoutMs / 3))),
    });
  }

  /** One request, not retried, with the read deadline (a read such as STREAM.INFO). */
  single(subject: string, payload: Uint8Array | string): Promise<Msg> {
    return this.info.request(subject, payload);
  }

  /**
   * Sends a store request and resolves with its answer: the store's ack or refusal, or, once the
   * deadline passed, the last leader-change answer. Rejects as RequestPipeline does (timeout,
   * full queue, closed). `headers` must hold a `Nats-Msg-Id`. `live`, when given, is asked
   * before each attempt goes out: false ends the request with RequestAbandonedError (the app
   * the store was for was deleted: a write held through its delete must not land in a stream
   * made since under the same name).
   */
  async request(subject: string, payload: Uint8Array | string, headers: MsgHdrs, live?: () => boolean): Promise<Msg> {
    this.active++;
    try {
      return await this.retry(subject, payload, headers, live);
    } finally {
      if (--this.active === 0) this.idleWaiters.wake();
    }
  }

  private async retry(
    subject: string,
    payload: Uint8Array | string,
    headers: MsgHdrs,
    live: (() => boolean) | undefined,
  ): Promise<Msg> {
    const deadline = Date.now() + this.timeoutMs;
    for (let attempt = 0; ; attempt++) {
      let reply: Msg | undefined;
      let failure: unknown;
      try {
        reply = await this.attempt(subject, payload, headers, deadline, attempt, live);
        if (!isLeaderChangeReply(reply)) return reply;
      } catch (err) {
        if (!(err instanceof RequestTimeoutError || err instanceof RequestLostError)) throw err;
        failure = err;
      }
      // The last attempt goes out just before the deadline, so a refusal comes only then.
      const left = deadline - Date.now() - LAST_ATTEMPT_MS;
      if (left <= 0) {
        if (reply !== undefined) return reply;
        throw failure;
      }
      await sleep(Math.min(left, backoffDelay(attempt, STORE_RETRY)));
    }
  }

  /**
   * One attempt. The first has its pipeline's own deadline; a later one is cut at the request's
   * deadline (its pipeline entry then expires on its own, and a late answer is dropped).
   */
  private attempt(
    subject: string,
    payload: Uint8Array | string,
    headers: MsgHdrs | undefined,
    deadline: number,
    attempt: number,
    live: (() => boolean) | undefined,
  ): Promise<Msg> {
    const sent = this.attempts.request(subject, payload, headers, live);
    if (attempt === 0) return sent;
    return new Promise<Msg>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new RequestTimeoutError(subject, this.timeoutMs)),
        Math.max(0, deadline - Date.now()),
      );
      sent.then(
        (msg) => {
          clearTimeout(timer);
          resolve(msg);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }

  /**
   * Resolves true once no request is in flight or waiting to be sent again, false after
   * `timeoutMs` (shutdown: a request held through an election still reaches the store).
   */
  async idle(timeoutMs: number): Promise<boolean> {
    if (this.active > 0 && !(await this.idleWaiters.wait(timeoutMs))) return false;
    const all = await Promise.all([this.info.idle(timeoutMs), this.attempts.idle(timeoutMs)]);
    return all.every(Boolean);
  }

  close(): void {
    this.info.close();
    this.attempts.close();
  }
}
