import { headers, type NatsConnection } from '@nats-io/nats-core';
import { PushError, type MessagePayload, type Subjects, type UpstreamRecord } from '@push/protocol';
import { readStored, storeError, type PublishResult } from './inbox-store.js';
import { StoreRequester } from './store-requester.js';

/** Who sent an upstream message and what about (everything of the stored record but the payload). */
export type UpstreamOrigin = Omit<UpstreamRecord, 'data' | 'b64'>;

/**
 * Client upstream in the app's `PUSH_UP-<app>` stream (DESIGN.md): one pipelined JetStream
 * publish per `up` frame, resolved once the stream stored it, so the edge answers the client only
 * after the store acked. The record's `id` is its `Nats-Msg-Id`: a retry of the same frame within
 * the stream's duplicate window is stored once (`duplicate: true`, the first one's sequence).
 */
export class UpstreamStore {
  private readonly stores: StoreRequester;

  constructor(
    nc: NatsConnection,
    private readonly subjects: Subjects,
    opts: { timeoutMs?: number; maxInFlight?: number } = {},
  ) {
    this.stores = new StoreRequester(nc, opts);
  }

  /**
   * Stores one upstream message as JSON (`data` spliced as the client's JSON text, or `b64`).
   * Rejects with PushError `store_unavailable` (no stream, timeout, the server behind).
   */
  async publish(origin: UpstreamOrigin, payload: MessagePayload): Promise<PublishResult> {
    const head = JSON.stringify(origin);
    const body = payload.binary
      ? `,"b64":"${Buffer.from(payload.bytes).toString('base64')}"}`
      : `,"data":${Buffer.from(payload.bytes.buffer, payload.bytes.byteOffset, payload.bytes.byteLength).toString('utf8')}}`;
    const h = headers();
    h.set('Nats-Msg-Id', origin.id);
    try {
      const reply = await this.stores.request(
        this.subjects.upstream(origin.app, origin.kind),
        head.slice(0, -1) + body,
        h,
      );
      if (reply.headers?.code === 503) {
        throw new PushError('store_unavailable', "no stream answers for the app's upstream");
      }
      return readStored(reply);
    } catch (err) {
      throw storeError(err);
    }
  }

  /** Resolves true once nothing is in flight, false after `timeoutMs` (shutdown). */
  idle(timeoutMs: number): Promise<boolean> {
    return this.stores.idle(timeoutMs);
  }

  close(): void {
    this.stores.close();
  }
}
