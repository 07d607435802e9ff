import { jetstreamManager, type StreamConfig } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import type { Subjects } from '@push/protocol';

export interface InboxStreamOptions {
  /** Most messages kept per user (JetStream `max_msgs_per_subject`); older ones are evicted. */
  maxPerUser: number;
  /** Most a message may live, seconds (stream `max_age`); bounds every app's TTL. */
  maxAgeSeconds: number;
  /** Window in which a repeated idempotency id is dropped, seconds. */
  duplicateWindowSeconds: number;
  /** Replicas (1 on a single node, 3 on a cluster). */
  replicas: number;
}

const NANOS = 1_000_000_000;

/** The inbox stream's configuration, as the contract in DESIGN.md describes it. */
export function inboxStreamConfig(
  subjects: Subjects,
  opts: InboxStreamOptions,
): Partial<StreamConfig> & { name: string } {
  return {
    name: subjects.inboxStream,
    subjects: [subjects.inboxRepublishSource],
    retention: 'limits',
    storage: 'file',
    discard: 'old',
    max_msgs_per_subject: opts.maxPerUser,
    max_age: opts.maxAgeSeconds * NANOS,
    duplicate_window: Math.min(opts.duplicateWindowSeconds, opts.maxAgeSeconds) * NANOS,
    num_replicas: opts.replicas,
    allow_direct: true,
    republish: { src: subjects.inboxRepublishSource, dest: subjects.inboxRepublishDest },
  };
}

/**
 * Creates the streams and KV buckets the system needs, or brings their mutable settings up to
 * date. Safe to run any number of times, from any process.
 */
export async function provisionStreams(
  nc: NatsConnection,
  subjects: Subjects,
  opts: InboxStreamOptions,
): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const config = inboxStreamConfig(subjects, opts);
  const existing = await jsm.streams.info(subjects.inboxStream).catch((err: unknown) => {
    if (err instanceof Error && /stream not found/i.test(err.message)) return undefined;
    throw err;
  });
  if (existing === undefined) {
    await jsm.streams.add(config);
  } else {
    await jsm.streams.update(subjects.inboxStream, { ...existing.config, ...config });
  }
  const kvm = new Kvm(nc);
  await kvm.create(subjects.appsBucket, { history: 1, replicas: opts.replicas });
}
