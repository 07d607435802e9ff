import { Redis } from 'ioredis';
import { AppDirectory, RateLimiter, WebhookDirectory } from '@push/apps';
import type { Config } from '@push/config';
import {
  BindingsRepository,
  JobsRepository,
  WebhooksRepository,
  createDatabase,
  ensureDatabase,
  migrate,
  type Knex,
} from '@push/db';
import { closeApp, createRegistry, listen, loadUws, mountHealth, type Listening, type TemplatedApp } from '@push/http';
import { createLogger, type Logger } from '@push/logger';
import {
  EventPublisher,
  EVENTS_MAX_QUEUED,
  countedEventOutcomes,
  InboxStore,
  connectNats,
  natsReadiness,
  deleteDlqStream,
  provisionStreams,
  publishPresenceFrame,
  TopicStore,
  UndeliverableStore,
  type NatsConnection,
  type Subscription,
} from '@push/nats';
import { PresenceRegistry, emitSweptEvents, emitTopicsSweptEvents } from '@push/presence';
import { Subjects } from '@push/protocol';
import type { Registry } from 'prom-client';
import { TransientPush } from './transient-push.js';
import { createAppAdmin, type AppAdmin } from './app-admin.js';
import { ApiKeyVerifier } from './api-keys.js';
import { mountHttpApi } from './http-api.js';
import { mountConsole } from './console-static.js';
import { ConsoleService } from './console-service.js';
import { mountPusherHttp } from './pusher/pusher-http.js';
import { Kicker } from './kick.js';
import { BindingService } from './bindings.js';
import { BindingsMirror } from './bindings-mirror.js';
import { createCenterMetrics } from './metrics.js';
import { DatabaseWatch } from './database-watch.js';
import { JobRunner } from './job-runner.js';
import { JobService } from './job-service.js';
import { serveNatsApi } from './nats-api.js';
import { InFlight } from './in-flight.js';
import { WebhookAdmin } from './webhook-admin.js';
import { UndeliverableAdmin, deleteDeliveryCounts } from './undeliverable-admin.js';
import { PushService } from './push-service.js';
import { TopicPresenceService } from './topic-presence.js';
import { TopicService } from './topic-service.js';

/** A running center. */
export interface Center {
  start(): Promise<void>;
  /** Refuses new requests, finishes those in flight, closes connections. Idempotent. */
  stop(): Promise<void>;
  readonly port: number;
  readonly registry: Registry;
  /** App administration (also used by the CLI and tests). */
  readonly admin: AppAdmin;
}

/**
 * Builds the center: HTTP API and NATS request/reply for business servers, app administration.
 * On start it migrates Postgres, provisions the streams and syncs apps to the KV bucket, so
 * one started center makes a deployment usable; with Postgres down it starts anyway and does the
 * Postgres part when Postgres answers (DatabaseWatch).
 */
export function createCenter(config: Config, opts: { logger?: Logger } = {}): Center {
  const log = (
    opts.logger ?? createLogger({ level: config.log.level, pretty: config.log.pretty, name: 'center' })
  ).child({
    component: 'center',
  });
  const registry = createRegistry('center');
  const metrics = createCenterMetrics(registry);
  const subjects = new Subjects(config.prefix);
  let nc: NatsConnection | undefined;
  let store: InboxStore | undefined;
  let topicStore: TopicStore | undefined;
  let apps: AppDirectory | undefined;
  let webhookDirectory: WebhookDirectory | undefined;
  let db: Knex | undefined;
  let database: DatabaseWatch | undefined;
  let redis: Redis | undefined;
  let presence: PresenceRegistry | undefined;
  let mirror: BindingsMirror | undefined;
  let events: EventPublisher | undefined;
  let listening: Listening | undefined;
  let natsSubs: Subscription[] = [];
  let admin: AppAdmin | undefined;
  let runner: JobRunner | undefined;
  let stopping = false;
  let stopPromise: Promise<void> | undefined;
  const inFlight = new InFlight();
  let server: TemplatedApp | undefined;

  return {
    get port() {
      return listening?.port ?? 0;
    },
    registry,
    get admin(): AppAdmin {
      if (admin === undefined) throw new Error('center not started');
      return admin;
    },

    async start() {
      const uws = loadUws();
      const pool = createDatabase(config.databaseUrl, undefined, log);
      db = pool;
      metrics.databaseUp.set(1);
      const watch = new DatabaseWatch(pool, log, (up) => metrics.databaseUp.set(up ? 1 : 0));
      database = watch;
      const conn = await connectNats({ servers: config.natsUrl, auth: config.natsAuth, name: 'center', logger: log });
      nc = conn;
      await provisionStreams(conn, subjects, config.inbox);
      store = new InboxStore(nc, subjects, { timeoutMs: config.inbox.timeoutMs });
      apps = await AppDirectory.open(nc, subjects, log);
      webhookDirectory = await WebhookDirectory.open(nc, subjects, log, { replicas: config.inbox.replicas });
      const keys = new ApiKeyVerifier(apps);
      const webhooks = new WebhookAdmin(
        new WebhooksRepository(db),
        webhookDirectory,
        apps,
        keys,
        config.center.adminKey,
        conn,
        subjects,
      );
      const undeliverable = new UndeliverableAdmin(new UndeliverableStore(conn, subjects, config.inbox));
      admin = createAppAdmin(db, apps, conn, subjects, config.inbox, async (appId) => {
        // Webhooks (issue 10): the coordinators stop, the dead letters go.
        await webhooks.forgetApp(appId);
        await deleteDlqStream(conn, subjects, appId);
        // Never-ack counts (issue 17 part 3): the undeliverable stream goes with the app's streams.
        if (redis !== undefined) await deleteDeliveryCounts(redis, subjects, appId);
      });
      const appAdmin = admin;
      // Postgres down now: pushes and topics are served from the apps already in the KV bucket,
      // and this is done when it answers (docs/operations.md "Failures and recovery").
      await watch.start(async () => {
        await ensureDatabase(config.databaseUrl);
        const applied = await migrate(pool);
        if (applied.length > 0) log.info({ applied }, 'migrations applied');
        log.info({ apps: await appAdmin.syncAll() }, 'apps synced to KV');
        log.info({ webhooks: await webhooks.syncAll() }, 'webhook endpoints synced to KV');
      });
      redis = new Redis(config.redisUrl, { enableAutoPipelining: true, maxRetriesPerRequest: 2, lazyConnect: true });
      redis.on('error', (err) => log.warn({ err }, 'redis error'));
      await redis.connect();
      // The offline events of users whose last edge died are the sweeper's to emit.
      // A sweep of a dead edge emits two events per connection it held: queued, not dropped.
      const eventPublisher = new EventPublisher(conn, subjects, {
        maxQueued: EVENTS_MAX_QUEUED,
        onOutcome: countedEventOutcomes((outcome) => metrics.events.inc({ outcome }), log, 'push_center_events_total'),
      });
      events = eventPublisher;
      presence = new PresenceRegistry(redis, subjects, 'center', {
        leaseSeconds: config.presenceLeaseSeconds,
        onError: (err) => log.warn({ err }, 'presence sweep failed'),
        onSwept: (entries) => void emitSweptEvents(eventPublisher, entries),
        onTopicsSwept: (entries) =>
          void emitTopicsSweptEvents(
            eventPublisher,
            (appId, topic, frame, _conn, order) =>
              publishPresenceFrame(conn, subjects, appId, topic, frame, undefined, order),
            entries,
          ),
      });
      // Edges sweep each other; the center sweeps too, for when the last edge died.
      presence.startSweeping();
      const transientPush = new TransientPush(nc, subjects, presence, log.child({ component: 'transient' }));
      const push = new PushService(
        store,
        subjects,
        presence,
        new RateLimiter(),
        { maxBatch: config.center.maxBatch, maxTtlSeconds: config.inbox.maxAgeSeconds },
        metrics,
        transientPush,
        apps,
      );
      topicStore = new TopicStore(nc, subjects, { timeoutMs: config.inbox.timeoutMs });
      const topics = new TopicService(
        topicStore,
        subjects,
        new RateLimiter(),
        { maxBatch: config.center.maxBatch },
        metrics,
        apps,
      );
      const kicker = new Kicker(conn, subjects, presence, log);
      const bindingsRepo = new BindingsRepository(db);
      const bindings = new BindingService(bindingsRepo, redis, conn, subjects);
      // Redis restarted empty: the mirror is copied back from Postgres within a third of the lease.
      mirror = new BindingsMirror(bindingsRepo, redis, subjects, log.child({ component: 'bindings' }));
      mirror.start((config.presenceLeaseSeconds * 1000) / 3);
      const topicPresence = new TopicPresenceService(presence);
      const jobsRepo = new JobsRepository(db);
      const jobRunner = new JobRunner(
        {
          repo: jobsRepo,
          store,
          subjects,
          apps,
          metrics,
          log: log.child({ component: 'jobs' }),
          transient: transientPush,
        },
        { runners: config.jobs.runners, leaseSeconds: config.jobs.leaseSeconds },
      );
      runner = jobRunner;
      const jobs = new JobService(
        jobsRepo,
        { maxUsers: config.jobs.maxUsers, maxTtlSeconds: config.inbox.maxAgeSeconds },
        { queued: () => jobRunner.wake(), cancelled: (id) => jobRunner.cancelled(id) },
      );
      natsSubs = serveNatsApi(nc, subjects, {
        push,
        jobs,
        topics,
        topicPresence,
        kicker,
        bindings,
        keys,
        admin,
        webhooks,
        undeliverable,
        database: watch,
        adminKey: config.center.adminKey,
        metrics,
        log,
        inFlight,
      });
      await nc.flush(); // the API subscriptions are on the server before start() resolves
      const app = uws.App();
      server = app;
      mountHealth(app, registry, () => {
        if (stopping) return 'stopping';
        const natsReady = natsReadiness(nc);
        if (natsReady !== true) return natsReady;
        if (redis?.status !== 'ready') return `redis ${redis?.status ?? 'missing'}`;
        return true;
      });
      // The web console's files at /console/ (before the API's catch-all 404).
      mountConsole(app);
      // The Pusher HTTP door (docs/pusher.md): its own module, publishing through the same topics.
      mountPusherHttp(app, {
        apps,
        topics,
        presence,
        kicker,
        redis,
        subjects,
        database: watch,
        metrics,
        log,
        maxBodyBytes: config.center.maxBodyBytes,
        inFlight,
      });
      mountHttpApi(app, {
        push,
        jobs,
        topics,
        topicPresence,
        kicker,
        bindings,
        admin,
        webhooks,
        undeliverable,
        database: watch,
        metrics,
        log,
        maxBodyBytes: config.center.maxBodyBytes,
        adminKey: config.center.adminKey,
        corsOrigins: config.center.corsOrigins,
        console: new ConsoleService(conn, subjects, apps, webhookDirectory, redis, pool, topicStore),
        inFlight,
      });
      listening = await listen(app, config.center.host, config.center.port);
      log.info({ port: listening.port }, 'center listening');
      // Jobs left by a center that stopped or died are resumed from their checkpoints (once the
      // database is migrated, when Postgres was down at start).
      watch.whenReady(() => jobRunner.start());
    },

    stop() {
      stopPromise ??= (async () => {
        stopping = true;
        inFlight.stopping = true;
        listening?.close();
        for (const s of natsSubs) s.unsubscribe();
        // Requests already taken are answered before what they use closes; meanwhile keep-alive
        // connections are answered 503 shutting_down and closed. Then the idle ones close too,
        // so that none is cut under a request at the exit.
        if (!(await inFlight.idle(5000))) log.warn('API requests still in flight at the stop deadline');
        await inFlight.quiet(100, 1000);
        if (server !== undefined) closeApp(server);
        await database?.close();
        // Before the store closes: the jobs' last writes land and their progress is saved.
        await runner?.stop().catch((err: unknown) => log.warn({ err }, 'fan-out jobs not let go cleanly'));
        if (store !== undefined && !(await store.idle(5000))) {
          log.warn('store requests still in flight at the stop deadline');
        }
        if (topicStore !== undefined && !(await topicStore.idle(5000))) {
          log.warn('topic store requests still in flight at the stop deadline');
        }
        apps?.close();
        webhookDirectory?.close();
        store?.close();
        mirror?.stop();
        // Stop sweeping (and so emitting) before the events are flushed and NATS drains.
        await presence?.stop().catch((err: unknown) => log.warn({ err }, 'presence sweep not stopped cleanly'));
        if (events !== undefined && !(await events.idle(5000))) log.warn('events still in flight at the stop deadline');
        events?.close();
        topicStore?.close();
        if (nc !== undefined && !nc.isClosed()) {
          await nc.drain().catch((err: unknown) => log.warn({ err }, 'nats drain failed on stop'));
        }
        redis?.disconnect();
        await db?.destroy();
        log.info('center stopped');
      })();
      return stopPromise;
    },
  };
}
