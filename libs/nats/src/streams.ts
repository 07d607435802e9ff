import { jetstreamManager, type StreamConfig } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import type { Subjects } from '@push/protocol';

export interface InboxStreamOptions {
  /** Highest per-user cap any app may have (`max_msgs_per_subject` of its stream). */
  maxPerUser: number;
  /** Most a message may live, seconds (stream `max_age`); bounds every app's TTL. */
  maxAgeSeconds: number;
  /** Window in which a repeated idempotency id is dropped, seconds. */
  duplicateWindowSeconds: number;
  /** Replicas (1 on a single node, 3 on a cluster). */
  replicas: number;
}

/** What an app's inbox stream depends on. */
export interface InboxStreamApp {
  id: string;
  settings: { maxPendingPerUser: number };
}

const NANOS = 1_000_000_000;

/** The configuration of one app's inbox stream, as the contract in DESIGN.md describes it. */
export function inboxStreamConfig(
  subjects: Subjects,
  app: InboxStreamApp,
  opts: InboxStreamOptions,
): Partial<StreamConfig> & { name: string } {
  return {
    name: subjects.inboxStream(app.id),
    subjects: [subjects.inboxOfApp(app.id)],
    retention: 'limits',
    storage: 'file',
    discard: 'old',
    max_msgs_per_subject: Math.min(app.settings.maxPendingPerUser, opts.maxPerUser),
    max_age: opts.maxAgeSeconds * NANOS,
    duplicate_window: Math.min(opts.duplicateWindowSeconds, opts.maxAgeSeconds) * NANOS,
    num_replicas: opts.replicas,
    allow_direct: true,
    republish: { src: subjects.inboxOfApp(app.id), dest: subjects.inboxRepublishDest(app.id) },
  };
}

function isNotFound(err: unknown): boolean {
  return err instanceof Error && /stream not found/i.test(err.message);
}

/**
 * Creates an app's inbox stream, or brings its settings (per-user cap, max age, duplicate
 * window, replicas) up to date. Idempotent; the center calls it whenever it saves an app.
 */
export async function ensureInboxStream(
  nc: NatsConnection,
  subjects: Subjects,
  app: InboxStreamApp,
  opts: InboxStreamOptions,
): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const config = inboxStreamConfig(subjects, app, opts);
  const existing = await jsm.streams.info(config.name).catch((err: unknown) => {
    if (isNotFound(err)) return undefined;
    throw err;
  });
  if (existing === undefined) {
    await jsm.streams.add(config);
    return;
  }
  const c = existing.config;
  const same =
    c.max_msgs_per_subject === config.max_msgs_per_subject &&
    c.max_age === config.max_age &&
    c.duplicate_window === config.duplicate_window &&
    c.num_replicas === config.num_replicas;
  if (!same) await jsm.streams.update(config.name, { ...c, ...config });
}

/**
 * Deletes an app's streams (today its inbox stream) with every message they hold. Idempotent:
 * a stream that does not exist is no error.
 */
export async function deleteAppStreams(nc: NatsConnection, subjects: Subjects, appId: string): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.delete(subjects.inboxStream(appId)).catch((err: unknown) => {
    if (!isNotFound(err)) throw err;
  });
}

/**
 * Creates the KV bucket that mirrors apps to edges. Inbox streams are per app (see
 * `ensureInboxStream`). Safe to run any number of times, from any process.
 */
export async function provisionStreams(
  nc: NatsConnection,
  subjects: Subjects,
  opts: { replicas: number },
): Promise<void> {
  await retireLegacyInboxStream(nc, subjects);
  const kvm = new Kvm(nc);
  await kvm.create(subjects.appsBucket, { history: 1, replicas: opts.replicas });
}

/**
 * Before inboxes had one stream per app, one `<PREFIX>_INBOX` stream held every app's inboxes;
 * its subjects overlap the per-app streams'. An empty one is deleted; one still holding messages
 * stops the start with what to do, rather than losing them silently.
 */
async function retireLegacyInboxStream(nc: NatsConnection, subjects: Subjects): Promise<void> {
  const legacy = `${subjects.prefix.toUpperCase()}_INBOX`;
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(legacy).catch((err: unknown) => {
    if (isNotFound(err)) return undefined;
    throw err;
  });
  if (info === undefined) return;
  if (info.state.messages > 0) {
    throw new Error(
      `the legacy stream ${legacy} (one stream for every app) still holds ${info.state.messages} messages; ` +
        `deliver or drop them, then delete it (e.g. \`nats stream rm ${legacy}\`): inboxes now live in one stream per app`,
    );
  }
  await jsm.streams.delete(legacy);
}
