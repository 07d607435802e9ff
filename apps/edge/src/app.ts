import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { AppDirectory } from '@push/apps';
import type { Config } from '@push/config';
import { createLogger, type Logger } from '@push/logger';
import { createRegistry, listen, loadUws, mountHealth, type Listening } from '@push/http';
import {
  BacklogReader,
  EventPublisher,
  EVENTS_MAX_QUEUED,
  countedEventOutcomes,
  UndeliverableStore,
  InboxStore,
  LiveSubscriber,
  RpcClient,
  TopicStore,
  UpstreamStore,
  connectNats,
  natsReadiness,
  publishPresenceFrame,
  type NatsConnection,
} from '@push/nats';
import { PresenceRegistry, emitSweptEvents, emitTopicsSweptEvents, presenceClientName } from '@push/presence';
import { TopicPresence } from './topic-presence.js';
import { PushError, Subjects } from '@push/protocol';
import type { Registry } from 'prom-client';
import { AckBatcher } from './ack-batcher.js';
import { ControlHandler } from './control-handler.js';
import { DevicePolicy } from './device-policy.js';
import { BindingsReader } from './bindings.js';
import { DeliveryCounts } from './delivery-counts.js';
import { EdgeConnections } from './edge-connections.js';
import { removalFailureReporter, type EdgeContext } from './edge-context.js';
import { EdgePresence } from './edge-presence.js';
import { EdgeStatsResponder } from './edge-stats.js';
import { mountEdgeSocket } from './edge-upgrade.js';
import { IpPolicy } from './ip-policy.js';
import { mountPusherDoor, type PusherDoor } from './pusher/pusher-door.js';
import { connectionBudget, openFileLimit } from './fd-limit.js';
import { createEdgeMetrics, type EdgeMetrics } from './metrics.js';
import { SendLimits } from './send-limits.js';
import { TopicChannels } from './topic-channels.js';
import { UserChannels } from './user-channels.js';

/** A running edge process (one worker). */
export interface Edge {
  start(): Promise<void>;
  /** Refuses new connections, tells clients to reconnect elsewhere, drains. Idempotent. */
  stop(): Promise<void>;
  /** The port it listens on (after start). */
  readonly port: number;
  /** Open client connections. */
  readonly connectionCount: number;
  readonly registry: Registry;
  readonly edgeId: string;
  /** Whether this edge has heard of the app yet (apps reach edges through a KV watch, in ms). */
  knowsApp(id: string): boolean;
  /** Settles when the edge must stop: another process took its id over (EdgeIdTakenError). */
  readonly fatal: Promise<Error>;
}

function defaultEdgeId(): string {
  const host =
    os
      .hostname()
      .replace(/[^A-Za-z0-9_-]/g, '')
      .slice(0, 24) || 'edge';
  return `${host}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/** What `createEdge` holds before start: the parts that need no I/O. */
interface EdgeBase {
  config: Config;
  edgeId: string;
  log: Logger;
  registry: Registry;
  metrics: EdgeMetrics;
  subjects: Subjects;
  connections: EdgeConnections;
  maxConnections: number;
  /** False once stop() began. */
  accepting(): boolean;
  /** Settles `Edge.fatal`. */
  fail(err: Error): void;
}

/** Everything a started edge holds, built whole by `startEdge`. */
interface StartedEdge {
  nc: NatsConnection;
  live: LiveSubscriber;
  store: InboxStore;
  topicStore: TopicStore;
  acks: AckBatcher;
  apps: AppDirectory;
  redis: Redis;
  presence: PresenceRegistry;
  upstream: UpstreamStore;
  events: EventPublisher;
  stats: EdgeStatsResponder;
  /** The Pusher door's sockets (`/app/<key>`). */
  pusher: PusherDoor;
  listening: Listening;
  deliveryCounts: DeliveryCounts;
}

/**
 * Builds the edge's event publisher: outcomes counted by `push_edge_events_total{outcome}`,
 * failures and drops logged at most every few seconds (never slows delivery).
 */
function createEventPublisher(
  nc: NatsConnection,
  live: LiveSubscriber,
  subjects: Subjects,
  metrics: EdgeMetrics,
  log: Logger,
): EventPublisher {
  return new EventPublisher(nc, subjects, {
    // On the lean live connection: two events per connect and two per close were, through
    // nats.js, about a quarter of the edge's CPU in a connect storm.
    live,
    maxQueued: EVENTS_MAX_QUEUED,
    onOutcome: countedEventOutcomes((outcome) => metrics.events.inc({ outcome }), log, 'push_edge_events_total'),
  });
}

/**
 * Builds an edge: WebSocket gateway on uWebSockets.js that authenticates clients, delivers their
 * inbox (backlog then live), takes acks and client-to-client sends. See DESIGN.md.
 */
export function createEdge(config: Config, opts: { logger?: Logger } = {}): Edge {
  const edgeId = config.edge.id ?? defaultEdgeId();
  const log = (opts.logger ?? createLogger({ level: config.log.level, pretty: config.log.pretty, name: 'edge' })).child(
    {
      component: 'edge',
      edge: edgeId,
    },
  );
  const registry = createRegistry('edge');
  let stopping = false;
  let fail: (err: Error) => void = () => undefined;
  const fatal = new Promise<Error>((resolve) => {
    fail = resolve;
  });
  const base: EdgeBase = {
    config,
    edgeId,
    log,
    registry,
    metrics: createEdgeMetrics(registry),
    subjects: new Subjects(config.prefix),
    connections: new EdgeConnections(),
    maxConnections: connectionBudget(config.edge.maxConnections, openFileLimit()),
    accepting: () => !stopping,
    fail: (err) => fail(err),
  };
  let starting: Promise<StartedEdge> | undefined;
  let started: StartedEdge | undefined;
  let stopPromise: Promise<void> | undefined;

  return {
    get port() {
      return started?.listening.port ?? 0;
    },
    get connectionCount() {
      return base.connections.size;
    },
    registry,
    edgeId,
    fatal,
    knowsApp: (id) => started?.apps.get(id) !== undefined,

    async start() {
      if (starting !== undefined || stopping) throw new Error('an edge starts once, and not after stop()');
      starting = startEdge(base);
      started = await starting;
    },

    stop() {
      stopPromise ??= (async () => {
        stopping = true;
        // A start still under way finishes first (a failed one has closed what it opened).
        const parts = await starting?.catch((err: unknown) => {
          log.debug({ err }, 'edge start had failed; nothing left to stop');
          return undefined;
        });
        if (parts !== undefined) await stopEdge(base, parts);
        log.info('edge stopped');
      })();
      return stopPromise;
    },
  };
}

/**
 * Connects NATS (store and live), the apps directory and Redis, mounts the socket and health
 * routes and listens. On a failure, closes what it had opened and rejects.
 */
async function startEdge(base: EdgeBase): Promise<StartedEdge> {
  const { config, edgeId, log, registry, metrics, subjects, connections, maxConnections } = base;
  const edgeConfig = config.edge;
  const uws = loadUws();
  /** Closers of what is open so far, run in reverse when a later step fails. */
  const opened: Array<() => unknown> = [];
  /** Parts made later in the start that earlier parts' callbacks (NATS reconnects, app changes) reach. */
  const late: { topics?: TopicChannels; pusher?: PusherDoor; devicePolicy?: DevicePolicy } = {};
  try {
    const nc = await connectNats({
      servers: config.natsUrl,
      auth: config.natsAuth,
      name: `edge-${edgeId}`,
      logger: log,
      // Core NATS may have dropped live messages while disconnected: every connection rereads
      // the store from its cursor. Device claims sent meanwhile may be lost: announced again.
      onReconnect: () => {
        connections.resyncAll();
        late.devicePolicy?.reclaimAll();
      },
    });
    opened.push(() => nc.close());
    // Live subscriptions (one per connected user, one per topic with local subscribers) on their
    // own lean NATS connection, which also carries the events and the backlog reads and removals.
    const live = await LiveSubscriber.connect({
      servers: config.natsUrl,
      auth: config.natsAuth,
      name: `edge-${edgeId}-live`,
      logger: log,
      onReconnect: () => {
        connections.resyncAll();
        late.topics?.catchUpAll();
        // Device claims of other edges may have been missed meanwhile (docs/architecture.md).
        late.devicePolicy?.reclaimAll();
      },
    });
    opened.push(() => live.close());
    const store = new InboxStore(nc, subjects, { timeoutMs: config.inbox.timeoutMs, live });
    opened.push(() => store.close());
    const acks = new AckBatcher(store, metrics, { onFailure: removalFailureReporter(metrics, log) });
    const backlog = new BacklogReader(store, {
      onSweep: (readers) => {
        metrics.backlogSweeps.inc();
        metrics.backlogSweepReaders.inc(readers);
      },
      onProbe: (_readers, answered) => {
        metrics.backlogProbes.inc();
        metrics.backlogProbeSkips.inc(answered);
      },
    });
    opened.push(() => acks.close());
    const topicStore = new TopicStore(nc, subjects, { timeoutMs: config.inbox.timeoutMs });
    opened.push(() => topicStore.close());
    const channels = new UserChannels(live, subjects);
    const app = uws.App();
    const fanout = {
      publish: (key: string, frame: string) => app.publish(key, frame, false),
      subscribers: (key: string) => app.numSubscribers(key),
    };
    const topics = new TopicChannels(live, topicStore, subjects, fanout, metrics, log);
    late.topics = topics;
    let apps: AppDirectory;
    try {
      apps = await AppDirectory.open(nc, subjects, log);
    } catch (err) {
      throw new Error(`cannot open the apps bucket ${subjects.appsBucket}: provision first (center CLI: provision)`, {
        cause: err,
      });
    }
    opened.push(() => apps.close());
    apps.onChange((id, record) => {
      late.devicePolicy?.appChanged(id, record, connections);
      // Its acks held here must not reach a new app given its id (its stream numbers anew).
      if (record === undefined) acks.forget(id);
      if (record !== undefined && !record.disabled) return;
      connections.endApp(id);
      late.pusher?.endApp(id);
    });
    const redis = new Redis(config.redisUrl, {
      enableAutoPipelining: true,
      maxRetriesPerRequest: 2,
      lazyConnect: true,
      // Named, so a sweeper tells this edge stalled (connection open) from dead (PresenceRegistry.sweep).
      connectionName: presenceClientName(edgeId),
    });
    redis.on('error', (err) => log.warn({ err }, 'redis error'));
    opened.push(() => redis.disconnect());
    await redis.connect();
    const upstream = new UpstreamStore(nc, subjects, { timeoutMs: config.inbox.timeoutMs });
    opened.push(() => upstream.close());
    const events = createEventPublisher(nc, live, subjects, metrics, log);
    opened.push(() => events.close());
    // Never-ack guard (issue 17 part 3): counts in Redis, moves into the app's undeliverable list.
    const deliveryCounts = new DeliveryCounts({
      redis,
      subjects,
      apps,
      undeliverable: new UndeliverableStore(nc, subjects, config.inbox),
      events,
      metrics,
      log,
    });
    const announce = (appId: string, topic: string, frame: string, conn?: string, order?: number) =>
      publishPresenceFrame(nc, subjects, appId, topic, frame, conn, order);
    const presence = new PresenceRegistry(redis, subjects, edgeId, {
      leaseSeconds: config.presenceLeaseSeconds,
      // Another edge may have swept this edge's entries while its lease had lapsed.
      onLeaseLost: () => edgePresence.leaseLost(),
      onDataLost: () => edgePresence.dataLost(),
      onRenewed: () => edgePresence.renewed(),
      // A process started while this one was stalled took the id over and its sweep reported
      // this one's connections closed: stop, reporting nothing more (docs/operations.md).
      onTakenOver: (err) => {
        events.close();
        base.fail(err);
      },
      onError: (err) => {
        metrics.errors.inc({ code: 'presence' });
        log.warn({ err }, 'presence lease renewal or sweep failed');
      },
      onSwept: (entries) => void emitSweptEvents(events, entries),
      onTopicsSwept: (entries) => void emitTopicsSweptEvents(events, announce, entries),
    });
    // Every edge finds a loss of Redis data within a third of the lease and records its connections
    // again: two thirds later every live edge has.
    const edgePresence = new EdgePresence(
      presence,
      connections,
      (config.presenceLeaseSeconds * 2000) / 3,
      metrics,
      log,
    );
    await presence.start();
    opened.push(() => presence.stop());
    const ctx: EdgeContext = {
      edgeId,
      connIdPrefix: `${edgeId}-${Date.now().toString(36)}`,
      config: edgeConfig,
      subjects,
      store,
      backlog,
      channels,
      topicStore,
      topics,
      apps,
      presence,
      edgePresence,
      topicPresence: new TopicPresence(edgeId, presence, apps, announce, events, metrics, log),
      metrics,
      log,
      sendLimits: new SendLimits(),
      highWaterBytes: Math.floor(edgeConfig.maxBackpressureBytes / 2),
      acks,
      upstream,
      events,
      rpc: new RpcClient(nc, subjects),
      bindings: new BindingsReader(redis, subjects),
      ipPolicy: new IpPolicy(edgeConfig),
      deliveryCounts,
    };
    topics.joiners = ctx.topicPresence;
    // Control (kick, topic bind/unbind) for users connected here: one wildcard subscription; control is rare.
    const control = new ControlHandler(subjects, channels, log);
    live.subscribe(subjects.controlAll, (_h, payload, subject) => control.onMessage(subject, payload));
    // One device at a time (app setting devicePolicy): claims of new connections, one wildcard subscription.
    const devicePolicy = new DevicePolicy({
      subjects,
      apps,
      publish: (subject, payload) => nc.publish(subject, payload),
      metrics,
      log,
    });
    late.devicePolicy = devicePolicy;
    ctx.devicePolicy = devicePolicy;
    live.subscribe(subjects.claimAll, (_h, payload, subject) => devicePolicy.onClaim(subject, payload));
    // The center's console summary asks every edge for its figures (docs/api.md "Console summary").
    const stats = new EdgeStatsResponder(edgeId, connections, metrics, log);
    stats.start(nc, subjects);
    opened.push(() => stats.stop());
    mountEdgeSocket(app, {
      ctx,
      connections,
      maxConnections,
      otherConnections: () => late.pusher?.size ?? 0,
      accepting: () => base.accepting(),
      tokenMaxLifetimeSeconds: config.tokenMaxLifetimeSeconds,
    });
    // The Pusher door (docs/pusher.md): its own module, on the same topics.
    const pusher = mountPusherDoor(app, {
      ctx,
      redis,
      topics,
      fanout,
      nativeConnections: () => connections.size,
      maxConnections,
      accepting: () => base.accepting(),
    });
    late.pusher = pusher;
    control.pusher = pusher;
    mountHealth(app, registry, () => {
      if (!base.accepting()) return 'stopping';
      const natsReady = natsReadiness(nc);
      if (natsReady !== true) return natsReady;
      if (!live.isConnected) return 'nats reconnecting';
      if (redis.status !== 'ready') return `redis ${redis.status}`;
      return true;
    });
    app.any('/*', (res) => {
      res.writeStatus('404 Not Found').writeHeader('content-type', 'application/json');
      res.end(JSON.stringify({ error: new PushError('not_found').toJSON() }));
    });
    const listening = await listen(app, edgeConfig.host, edgeConfig.port, edgeConfig.listenSockets);
    connections.startTokenSweep();
    if (maxConnections < edgeConfig.maxConnections) {
      log.warn(
        { configured: edgeConfig.maxConnections, maxConnections, fdLimit: openFileLimit() },
        'PUSH_EDGE_MAX_CONNECTIONS lowered to fit the open-file limit (raise `ulimit -n` to hold more)',
      );
    }
    log.info({ port: listening.port, maxConnections }, 'edge listening');
    return {
      nc,
      live,
      store,
      topicStore,
      acks,
      apps,
      redis,
      presence,
      upstream,
      events,
      stats,
      pusher,
      listening,
      deliveryCounts,
    };
  } catch (err) {
    for (const close of opened.reverse()) {
      try {
        await close();
      } catch (closeErr) {
        log.warn({ err: closeErr }, 'closing after a failed start failed');
      }
    }
    throw err;
  }
}

/** How long a shutdown waits for clients to close, then for in-flight store requests, ms (each). */
const STOP_WAIT_MS = 2000;

/**
 * The shutdown order of STYLE.md: refuse new connections, tell clients to reconnect elsewhere,
 * let in-flight store requests finish (up to a deadline), then close NATS, presence and Redis.
 */
async function stopEdge(base: EdgeBase, parts: StartedEdge): Promise<void> {
  const { config, log, connections } = base;
  const { nc, live, store, topicStore, acks, apps, redis, presence, upstream, events, stats, pusher, listening } =
    parts;
  const { deliveryCounts } = parts;
  connections.stopTokenSweep();
  stats.stop();
  listening.close();
  connections.endAll(config.edge.drainMs);
  pusher.endAll();
  const [native, pusherClosed] = await Promise.all([
    connections.whenEmpty(STOP_WAIT_MS),
    pusher.whenEmpty(STOP_WAIT_MS),
  ]);
  if (!native || !pusherClosed) {
    log.warn({ open: connections.size, pusher: pusher.size }, 'connections still open at the stop deadline');
  }
  // Let the last acks, removals and sends reach the store, and the closes' unacked counts Redis.
  acks.flush();
  // The ack path sends its queued deletes as earlier ones are answered: wait for them all.
  await acks.idle(STOP_WAIT_MS);
  if (!(await deliveryCounts.idle(STOP_WAIT_MS)))
    log.warn('unacked delivery counts still in flight at the stop deadline');
  if (!(await store.idle(STOP_WAIT_MS))) log.warn('store requests still in flight at the stop deadline');
  if (acks.pending > 0) {
    log.warn({ acks: acks.pending }, 'acks not applied at the stop deadline: those messages will be delivered again');
  }
  if (!(await upstream.idle(STOP_WAIT_MS))) log.warn('upstream stores still in flight at the stop deadline');
  acks.close();
  apps.close();
  store.close();
  upstream.close();
  topicStore.close();
  await presence.stop().catch((err: unknown) => log.warn({ err }, 'presence lease not released'));
  // The close and offline events of the connections closed above (and of any the stop swept).
  if (!(await events.idle(STOP_WAIT_MS))) log.warn('events still in flight at the stop deadline');
  events.close();
  live.close(); // after the events: they are published on it
  if (!nc.isClosed()) await nc.drain().catch((err: unknown) => log.warn({ err }, 'nats drain failed'));
  redis.disconnect();
}
