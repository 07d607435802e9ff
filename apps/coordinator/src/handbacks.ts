import { Kvm, type KV } from '@nats-io/kv';
import type { JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@push/nats';
import type { Subjects } from '@push/protocol';

/** How long a count is kept: an item retried for longer counts its earlier handbacks as attempts. */
const KEEP_MS = 7 * 24 * 3600 * 1000;
/** Counts written at once when a worker hands many back. */
const CHUNK = 256;

/** Which item of which endpoint: the endpoint, the source it reads, the stream sequence. */
export interface HandbackItem {
  app: string;
  endpoint: string;
  source: string;
}

/**
 * Deliveries of webhook items handed back unsent: a worker stopped holding them (the endpoint
 * was disabled or changed, the coordinator stopped) or their app was not known yet. JetStream
 * counts every delivery, sent or not; an item's attempts (`webhookMaxAttempts`) are its
 * deliveries less these, so a stop never spends its retries. Shared by every coordinator (a
 * handed-back item may go to another), one key per item, read only when the deliveries reach the
 * limit. A coordinator killed while holding items cannot write: each such item counts one attempt.
 */
export class Handbacks {
  private constructor(
    private readonly kv: KV,
    private readonly subjects: Subjects,
  ) {}

  static async open(nc: NatsConnection, subjects: Subjects, replicas: number): Promise<Handbacks> {
    const kv = await new Kvm(nc).create(subjects.webhookHandbacksBucket, { history: 1, replicas, ttl: KEEP_MS });
    return new Handbacks(kv, subjects);
  }

  private key(at: HandbackItem, seq: number): string {
    return this.subjects.webhookHandbackKey(at.app, at.endpoint, at.source, seq);
  }

  /** How many times the item at `seq` was handed back unsent. */
  async count(at: HandbackItem, seq: number): Promise<number> {
    const e = await this.kv.get(this.key(at, seq));
    if (e === null || e.operation !== 'PUT') return 0;
    const n = Number(e.string());
    return Number.isSafeInteger(n) && n > 0 ? n : 0;
  }

  /**
   * Counts one more handback of each message (before it is nak'ed: the next holder reads it).
   * One holder at a time has a message, so the read and the write of its count do not race.
   */
  async record(at: HandbackItem, msgs: readonly JsMsg[]): Promise<void> {
    for (let i = 0; i < msgs.length; i += CHUNK) {
      await Promise.all(
        msgs.slice(i, i + CHUNK).map(async (m) => {
          const seq = m.info.streamSequence;
          await this.kv.put(this.key(at, seq), String((await this.count(at, seq)) + 1));
        }),
      );
    }
  }
}
