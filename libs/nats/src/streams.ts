import { jetstreamManager, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { createInbox, headers, type Msg, type NatsConnection } from '@nats-io/nats-core';
import { decodeEnvelope, type Subjects } from '@push/protocol';

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

/**
 * Creates a stream from `config`, or updates it when `same` says the existing one differs in
 * what matters (merging `config` over its current settings). Resolves true when it was created.
 * The one create-or-update path of every stream the system makes.
 */
export async function upsertStream(
  jsm: JetStreamManager,
  config: Partial<StreamConfig> & { name: string },
  same: (existing: StreamConfig) => boolean,
): Promise<boolean> {
  const existing = await jsm.streams.info(config.name).catch((err: unknown) => {
    if (isNotFound(err)) return undefined;
    throw err;
  });
  if (existing === undefined) {
    await jsm.streams.add(config);
    return true;
  }
  if (!same(existing.config)) await jsm.streams.update(config.name, { ...existing.config, ...config });
  return false;
}

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
    // Per-message TTL (`Nats-TTL` on every publish): a message leaves the store when it
    // expires, so `pending` counts only deliverable messages (nats-server 2.11+).
    allow_msg_ttl: true,
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
  const created = await upsertStream(
    jsm,
    config,
    (c) =>
      c.max_msgs_per_subject === config.max_msgs_per_subject &&
      c.max_age === config.max_age &&
      c.duplicate_window === config.duplicate_window &&
      c.num_replicas === config.num_replicas &&
      c.allow_msg_ttl === true &&
      c.subjects.length === 1 &&
      c.subjects[0] === config.subjects?.[0] &&
      c.republish?.src === config.republish?.src &&
      c.republish?.dest === config.republish?.dest,
  );
  if (created) return;
  // A stream made before the split by kind holds messages on `push.inbox.<app>.<user>`. Asked
  // of the stored subjects rather than of the old config, so a migration cut short resumes.
  const legacy = await jsm.streams.info(config.name, { subjects_filter: subjects.legacyInboxOfApp(app.id) });
  if (Object.keys(legacy.state.subjects ?? {}).length > 0) {
    await migrateLegacyInbox(nc, subjects, app.id, config.name);
  }
}

/** Messages moved per batched read while migrating. */
const MIGRATE_BATCH = 256;

/**
 * Moves the messages of an inbox stream made before the split by kind (one subject per user,
 * `push.inbox.<app>.<user>`) to the current subjects (`.b` for the business's, `.c` for those
 * with a sender), with their remaining TTL, then purges the old subjects. The stored bytes are
 * kept as they are; the copies get new sequences (after any message stored meanwhile) and go
 * out live like new messages, so a client connected during the migration may see a message
 * twice (at-least-once). Already expired messages are dropped. Each copy carries a
 * `Nats-Msg-Id` made of the old sequence, so two centers migrating at once within the stream's
 * duplicate window store it once. Resolves with the number of messages moved.
 */
export async function migrateLegacyInbox(
  nc: NatsConnection,
  subjects: Subjects,
  appId: string,
  stream: string,
): Promise<number> {
  const filter = subjects.legacyInboxOfApp(appId);
  let from = 1;
  let moved = 0;
  let last = 0;
  for (;;) {
    const replies = await directBatch(nc, stream, { seq: from, next_by_subj: filter, batch: MIGRATE_BATCH });
    const now = Date.now();
    let more = false;
    for (const m of replies) {
      const code = m.headers?.code ?? 0;
      if (code === 204) more = Number(m.headers?.get('Nats-Num-Pending') ?? '0') > 0;
      if (code !== 0) break;
      const seq = Number(m.headers?.get('Nats-Sequence'));
      const subject = m.headers?.get('Nats-Subject') ?? '';
      last = Math.max(last, seq);
      from = seq + 1;
      const env = decodeEnvelope(m.data);
      if (env === undefined || env.meta.expires <= now || subject === '') continue;
      const h = headers();
      h.set('Nats-TTL', String(Math.max(1, Math.ceil((env.meta.expires - now) / 1000))));
      h.set('Nats-Msg-Id', `migrate.${seq}`);
      const ack = await nc.request(`${subject}.${env.meta.from === undefined ? 'b' : 'c'}`, m.data, {
        headers: h,
        timeout: 10_000,
      });
      const r = JSON.parse(new TextDecoder().decode(ack.data)) as { error?: { description?: string } };
      if (r.error !== undefined) throw new Error(`migrating ${subject}#${seq}: ${r.error.description ?? 'refused'}`);
      moved++;
    }
    if (!more) break;
  }
  if (last > 0) {
    const r = await nc.request(`$JS.API.STREAM.PURGE.${stream}`, JSON.stringify({ filter, seq: last + 1 }), {
      timeout: 10_000,
    });
    const p = JSON.parse(new TextDecoder().decode(r.data)) as { success?: boolean; error?: { description?: string } };
    if (p.success !== true)
      throw new Error(`purging the old inbox subjects of ${stream}: ${p.error?.description ?? ''}`);
  }
  return moved;
}

/** One batched Direct Get, every reply up to its closing status (used by the migration only). */
async function directBatch(nc: NatsConnection, stream: string, req: Record<string, unknown>): Promise<Msg[]> {
  const out: Msg[] = [];
  const sub = nc.subscribe(createInbox(), { timeout: 10_000 });
  nc.publish(`$JS.API.DIRECT.GET.${stream}`, JSON.stringify(req), { reply: sub.getSubject() });
  for await (const m of sub) {
    out.push(m);
    if ((m.headers?.code ?? 0) !== 0) break;
  }
  sub.unsubscribe();
  return out;
}

/** What an app's upstream and event streams depend on (defaults: 7 days each). */
export interface AppStreamsApp extends InboxStreamApp {
  settings: InboxStreamApp['settings'] &
    TopicStreamApp['settings'] & { upstreamRetentionSeconds?: number; eventRetentionSeconds?: number };
}

const WEEK_SECONDS = 7 * 24 * 3600;

/**
 * The configurations of an app's upstream (`PUSH_UP-<app>`) and event (`PUSH_EVENTS-<app>`)
 * streams, as the issue 10 contract fixes them: limits retention (several webhook endpoints and
 * business consumers read the same messages, each with its own durable consumer), a max age
 * from the app's settings, the inbox's duplicate window (the ids of `up` frames and events
 * dedupe retries) and replicas, file storage.
 */
export function upstreamAndEventStreamConfigs(
  subjects: Subjects,
  app: AppStreamsApp,
  opts: InboxStreamOptions,
): Array<Partial<StreamConfig> & { name: string }> {
  const one = (name: string, subject: string, maxAgeSeconds: number): Partial<StreamConfig> & { name: string } => ({
    name,
    subjects: [subject],
    retention: 'limits',
    storage: 'file',
    discard: 'old',
    max_age: maxAgeSeconds * NANOS,
    duplicate_window: Math.min(opts.duplicateWindowSeconds, maxAgeSeconds) * NANOS,
    num_replicas: opts.replicas,
  });
  return [
    one(
      subjects.upstreamStream(app.id),
      subjects.upstreamOfApp(app.id),
      app.settings.upstreamRetentionSeconds ?? WEEK_SECONDS,
    ),
    one(
      subjects.eventsStream(app.id),
      subjects.eventsOfApp(app.id),
      app.settings.eventRetentionSeconds ?? WEEK_SECONDS,
    ),
  ];
}

/**
 * Creates or updates every stream of an app: its inbox (see `ensureInboxStream`), its topic
 * stream (`ensureTopicStream`), its upstream and its event stream. Idempotent; the center calls it whenever it saves an app and at start.
 */
export async function ensureAppStreams(
  nc: NatsConnection,
  subjects: Subjects,
  app: AppStreamsApp,
  opts: InboxStreamOptions,
): Promise<void> {
  await ensureInboxStream(nc, subjects, app, opts);
  await ensureTopicStream(nc, subjects, app, opts);
  const jsm = await jetstreamManager(nc);
  for (const config of upstreamAndEventStreamConfigs(subjects, app, opts)) {
    await upsertStream(
      jsm,
      config,
      (c) =>
        c.max_age === config.max_age &&
        c.duplicate_window === config.duplicate_window &&
        c.num_replicas === config.num_replicas &&
        c.subjects.length === 1 &&
        c.subjects[0] === config.subjects?.[0],
    );
  }
}

/**
 * Deletes an app's streams (inbox, topics, upstream, events, undeliverable) with every message they hold. Idempotent:
 * a stream that does not exist is no error.
 */
export async function deleteAppStreams(nc: NatsConnection, subjects: Subjects, appId: string): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const names = [
    subjects.inboxStream(appId),
    subjects.topicStream(appId),
    subjects.upstreamStream(appId),
    subjects.eventsStream(appId),
    // Made by the first edge that moves a never-acked message (UndeliverableStore).
    subjects.undeliverableStream(appId),
  ];
  for (const name of names) {
    await jsm.streams.delete(name).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
  }
}

/** What an app's topic stream depends on. */
export interface TopicStreamApp {
  id: string;
  settings: { topicHistory: number; topicHistorySeconds: number };
}

/**
 * The configuration of one app's topic stream: `push.topic.<app>.*`, each topic keeping
 * `topicHistory` messages (at least 1: JetStream numbers a message by storing it, and the newest
 * tells a `sub` where live starts) for `topicHistorySeconds`, republished to
 * `push.live.t.<app>.<topic>` once stored. The republished copy carries `Nats-Sequence` and
 * `Nats-Last-Sequence` (the previous sequence of the same subject), which edges use to notice
 * a message they did not get.
 */
export function topicStreamConfig(
  subjects: Subjects,
  app: TopicStreamApp,
  opts: Pick<InboxStreamOptions, 'duplicateWindowSeconds' | 'replicas'>,
): Partial<StreamConfig> & { name: string } {
  const maxAge = app.settings.topicHistorySeconds;
  return {
    name: subjects.topicStream(app.id),
    subjects: [subjects.topicsOfApp(app.id)],
    retention: 'limits',
    storage: 'file',
    discard: 'old',
    max_msgs_per_subject: Math.max(1, app.settings.topicHistory),
    max_age: maxAge * NANOS,
    duplicate_window: Math.min(opts.duplicateWindowSeconds, maxAge) * NANOS,
    num_replicas: opts.replicas,
    allow_direct: true,
    allow_msg_ttl: true,
    republish: { src: subjects.topicsOfApp(app.id), dest: subjects.topicRepublishDest(app.id) },
  };
}

/**
 * Creates an app's topic stream, or brings its history settings up to date. Idempotent; the
 * center calls it with `ensureInboxStream` whenever it saves an app.
 */
export async function ensureTopicStream(
  nc: NatsConnection,
  subjects: Subjects,
  app: TopicStreamApp,
  opts: Pick<InboxStreamOptions, 'duplicateWindowSeconds' | 'replicas'>,
): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const config = topicStreamConfig(subjects, app, opts);
  await upsertStream(
    jsm,
    config,
    (c) =>
      c.max_msgs_per_subject === config.max_msgs_per_subject &&
      c.max_age === config.max_age &&
      c.duplicate_window === config.duplicate_window &&
      c.num_replicas === config.num_replicas &&
      c.republish?.dest === config.republish?.dest,
  );
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
