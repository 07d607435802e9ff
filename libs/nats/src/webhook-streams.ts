import { jetstreamManager, type ConsumerConfig, type StreamConfig } from '@nats-io/jetstream';
import { headers, type NatsConnection } from '@nats-io/nats-core';
import { upsertStream } from './streams.js';
import {
  MAX_DEAD_LETTERS_LISTED,
  type DeadLetter,
  type Subjects,
  type WebhookEndpoint,
  type WebhookSource,
} from '@push/protocol';

const NANOS = 1_000_000_000;
const NANOS_PER_MS = 1_000_000;

function isNotFound(err: unknown): boolean {
  return err instanceof Error && /(stream|consumer|message) not found/i.test(err.message);
}

/**
 * The dead-letter stream of an app (`PUSH_DLQ-<app>`): limits retention, kept until replayed or
 * purged (no max age: an operator decides), file storage. Direct Get on, so the center lists dead
 * letters without a consumer.
 */
export function dlqStreamConfig(
  subjects: Subjects,
  app: string,
  opts: { replicas: number; duplicateWindowSeconds: number },
): Partial<StreamConfig> & { name: string } {
  return {
    name: subjects.dlqStream(app),
    subjects: subjects.dlqSubjectsOfApp(app),
    retention: 'limits',
    storage: 'file',
    discard: 'old',
    num_replicas: opts.replicas,
    duplicate_window: opts.duplicateWindowSeconds * NANOS,
    allow_direct: true,
  };
}

/** Creates the app's dead-letter stream when it does not exist. Idempotent. */
export async function ensureDlqStream(
  nc: NatsConnection,
  subjects: Subjects,
  app: string,
  opts: { replicas: number; duplicateWindowSeconds: number },
): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const config = dlqStreamConfig(subjects, app, opts);
  // Created once; its settings are not updated afterwards.
  await upsertStream(jsm, config, () => true);
}

/** The stream each webhook source reads. */
export function sourceStream(subjects: Subjects, app: string, source: WebhookSource | 'replay'): string {
  if (source === 'up') return subjects.upstreamStream(app);
  if (source === 'events') return subjects.eventsStream(app);
  return subjects.dlqStream(app);
}

/**
 * Name of an endpoint's durable consumer on one source's stream. One per endpoint and source,
 * shared by every coordinator (a pull consumer: they split the work).
 */
export const webhookConsumerName = (endpointId: string): string => `webhook_${endpointId}`;

/**
 * Filter subjects of an endpoint's consumer on a source (empty: it wants nothing from it).
 * `*` in the endpoint's list means every type/kind.
 */
export function webhookFilters(subjects: Subjects, ep: WebhookEndpoint, source: WebhookSource | 'replay'): string[] {
  if (source === 'replay') return [subjects.dlqReplay(ep.app, ep.id)];
  const wanted = source === 'up' ? ep.kinds : ep.events;
  if (wanted.includes('*')) return [source === 'up' ? subjects.upstreamOfApp(ep.app) : subjects.eventsOfApp(ep.app)];
  return wanted.map((w) => (source === 'up' ? subjects.upstream(ep.app, w) : subjects.event(ep.app, w)));
}

/** Where an endpoint's consumer on a source starts: when it began to take that source's items. */
export function webhookSince(ep: WebhookEndpoint, source: WebhookSource): string {
  return (source === 'up' ? ep.kindsSince : ep.eventsSince) ?? ep.createdAt;
}

/**
 * The durable consumer of an endpoint on a source: explicit acks (a message is acked only after
 * a 2xx), no server-side redelivery limit (the coordinator counts attempts and dead-letters),
 * messages stored since the endpoint was created (so the ones stored before the coordinator
 * heard of it are not lost), `ackWaitMs` before a silent (killed) coordinator's messages go to
 * another.
 */
export function webhookConsumerConfig(
  subjects: Subjects,
  ep: WebhookEndpoint,
  source: WebhookSource | 'replay',
  ackWaitMs: number,
): Partial<ConsumerConfig> & { durable_name: string } {
  return {
    durable_name: webhookConsumerName(ep.id),
    ack_policy: 'explicit',
    deliver_policy: source === 'replay' ? 'all' : 'by_start_time',
    ...(source === 'replay' ? {} : { opt_start_time: webhookSince(ep, source) }),
    filter_subjects: webhookFilters(subjects, ep, source),
    ack_wait: ackWaitMs * NANOS_PER_MS,
    max_deliver: -1,
    max_ack_pending: 10_000,
  };
}

/**
 * Deletes an endpoint's consumers on every source (the endpoint was deleted). A missing stream or
 * consumer is no error.
 */
export async function deleteWebhookConsumers(
  nc: NatsConnection,
  subjects: Subjects,
  ep: WebhookEndpoint,
): Promise<void> {
  const jsm = await jetstreamManager(nc);
  for (const source of ['up', 'events', 'replay'] as const) {
    await jsm.consumers
      .delete(sourceStream(subjects, ep.app, source), webhookConsumerName(ep.id))
      .catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
  }
}

/** A dead letter as listed: the stored record and its stream sequence. */
export interface ListedDeadLetter extends DeadLetter {
  seq: number;
}

/**
 * Dead letters of one endpoint, oldest first, at most `limit` (bounded by
 * MAX_DEAD_LETTERS_LISTED). Replays in progress are not listed. None when the stream is missing.
 */
export async function listDeadLetters(
  nc: NatsConnection,
  subjects: Subjects,
  app: string,
  endpoint: string,
  limit: number,
  /** The stream sequence to list from. */
  fromSeq = 1,
): Promise<ListedDeadLetter[]> {
  const jsm = await jetstreamManager(nc);
  const stream = subjects.dlqStream(app);
  const subject = subjects.dlq(app, endpoint);
  const out: ListedDeadLetter[] = [];
  // No stream yet: nothing was ever dead-lettered (Direct Get would answer "no responders").
  const exists = await jsm.streams.info(stream).then(
    () => true,
    (err: unknown) => {
      if (isNotFound(err)) return false;
      throw err;
    },
  );
  if (!exists) return out;
  let seq = fromSeq;
  const max = Math.min(limit, MAX_DEAD_LETTERS_LISTED);
  while (out.length < max) {
    const m = await jsm.direct.getMessage(stream, { next_by_subj: subject, seq });
    if (m === null) break;
    out.push({ ...m.json<DeadLetter>(), seq: m.seq });
    seq = m.seq + 1;
  }
  return out;
}

/**
 * Replays an endpoint's dead letters: each is copied to the endpoint's replay subject (where its
 * coordinator consumer delivers it again, and dead-letters it anew when it fails again) and then
 * deleted. The copy carries a Nats-Msg-Id made of the dead letter's sequence, so a replay repeated
 * after a failure half-way stores each copy once. Resolves with the number replayed.
 */
export async function replayDeadLetters(
  nc: NatsConnection,
  subjects: Subjects,
  app: string,
  endpoint: string,
): Promise<number> {
  const jsm = await jetstreamManager(nc);
  const stream = subjects.dlqStream(app);
  // Only the letters stored before the replay began: one that fails again while it runs is a
  // new dead letter, stored after, and waits for the next replay (else a replay of an endpoint
  // that still fails would go on replaying its own new letters).
  const upTo = await jsm.streams.info(stream).then(
    (info) => info.state.last_seq,
    (err: unknown) => {
      if (isNotFound(err)) return 0;
      throw err;
    },
  );
  let n = 0;
  let from = 1;
  for (;;) {
    const batch = (await listDeadLetters(nc, subjects, app, endpoint, MAX_DEAD_LETTERS_LISTED, from)).filter(
      (dl) => dl.seq <= upTo,
    );
    if (batch.length === 0) return n;
    for (const dl of batch) {
      const { seq, ...letter } = dl;
      from = seq + 1;
      const h = headers();
      h.set('Nats-Msg-Id', `replay.${seq}`);
      const ack = await nc.request(subjects.dlqReplay(app, endpoint), JSON.stringify(letter), {
        headers: h,
        timeout: 10_000,
      });
      const r = JSON.parse(new TextDecoder().decode(ack.data)) as { error?: { description?: string } };
      if (r.error !== undefined) throw new Error(`replaying dead letter ${seq}: ${r.error.description ?? 'refused'}`);
      // Counted by the replay that removed it: two replays at once each count their own.
      const removed = await jsm.streams.deleteMessage(stream, seq, false).then(
        () => true,
        (err: unknown) => {
          if (isNotFound(err) || /no message found/i.test(String(err))) return false;
          throw err;
        },
      );
      if (removed) n++;
    }
  }
}

/**
 * Deletes an endpoint's dead letters, and with `replays` the copies a replay queued and its
 * coordinator has not taken yet (the endpoint was deleted). Resolves with how many dead letters.
 */
export async function purgeDeadLetters(
  nc: NatsConnection,
  subjects: Subjects,
  app: string,
  endpoint: string,
  opts: { replays?: boolean } = {},
): Promise<number> {
  const jsm = await jetstreamManager(nc);
  try {
    const r = await jsm.streams.purge(subjects.dlqStream(app), { filter: subjects.dlq(app, endpoint) });
    if (opts.replays === true) {
      await jsm.streams.purge(subjects.dlqStream(app), { filter: subjects.dlqReplay(app, endpoint) });
    }
    return r.purged;
  } catch (err) {
    if (isNotFound(err)) return 0;
    throw err;
  }
}

/** Deletes an app's dead-letter stream (the app was deleted). Missing is no error. */
export async function deleteDlqStream(nc: NatsConnection, subjects: Subjects, app: string): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.delete(subjects.dlqStream(app)).catch((err: unknown) => {
    if (!isNotFound(err)) throw err;
  });
}
