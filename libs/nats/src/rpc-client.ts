import { NoRespondersError, RequestError, TimeoutError, type NatsConnection } from '@nats-io/nats-core';
import { ERRORS, PushError, isObject, type ErrorCode, type RpcRequest, type Subjects } from '@push/protocol';

/** Longest message of a business error passed on to the client, characters. */
const MAX_ERROR_MESSAGE = 500;

/** True when `err` (or its cause, as nats.js wraps request failures) is an instance of `type`. */
function is(err: unknown, type: abstract new (...args: never[]) => Error): boolean {
  return err instanceof type || (err instanceof Error && err.cause instanceof type);
}

/**
 * Client RPC over NATS (issue 10 contract): a request on the core subject `push.rpc.<app>`,
 * answered by whoever listens in the queue group (the coordinator's HTTP bridge or a business
 * service). Resolves with the reply's `data` as JSON text; rejects with PushError
 * `rpc_unavailable` (no responder), `rpc_timeout` (no answer within `timeoutMs`) or `rpc_failed`
 * (the responder answered `{"error":{...}}` or something unreadable; its message is kept, and its
 * code when it is one of ours); before sending, `invalid_data` (data nested too deeply to encode)
 * or `payload_too_large` (larger than the server's max_payload).
 */
export class RpcClient {
  constructor(
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
  ) {}

  async call(request: RpcRequest, timeoutMs: number): Promise<string> {
    let json: string;
    try {
      json = JSON.stringify(request);
    } catch (err) {
      // JSON.parse takes any depth but JSON.stringify recurses: deep nesting overflows the stack.
      throw new PushError('invalid_data', 'data is nested too deeply', { cause: err });
    }
    const max = this.nc.info?.max_payload ?? 0;
    if (max > 0 && Buffer.byteLength(json) > max) {
      throw new PushError('payload_too_large', `the rpc request is larger than the message bus takes (${max} bytes)`);
    }
    let reply;
    try {
      reply = await this.nc.request(this.subjects.rpc(request.app), json, { timeout: timeoutMs });
    } catch (err) {
      if (is(err, NoRespondersError) || (err instanceof RequestError && err.isNoResponders())) {
        throw new PushError('rpc_unavailable', undefined, { cause: err });
      }
      if (is(err, TimeoutError)) {
        throw new PushError('rpc_timeout', `no answer within ${timeoutMs} ms`, { cause: err });
      }
      throw new PushError('rpc_unavailable', 'the rpc could not be sent; retry', { cause: err });
    }
    let body: unknown;
    try {
      body = JSON.parse(new TextDecoder().decode(reply.data));
    } catch (err) {
      throw new PushError('rpc_failed', 'the rpc answer is not JSON', { cause: err });
    }
    if (!isObject(body)) throw new PushError('rpc_failed', 'the rpc answer is not a JSON object');
    const error = body['error'];
    if (error !== undefined && error !== null) {
      const e = isObject(error) ? error : {};
      const message = typeof e['message'] === 'string' ? e['message'].slice(0, MAX_ERROR_MESSAGE) : 'rpc failed';
      const code =
        typeof e['code'] === 'string' && Object.hasOwn(ERRORS, e['code']) ? (e['code'] as ErrorCode) : 'rpc_failed';
      throw new PushError(code, message);
    }
    return JSON.stringify(body['data'] ?? null);
  }
}
