import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { AppDirectory, peekTokenApp, verifyClientToken, type ClientIdentity } from '@push/apps';
import type { Config } from '@push/config';
import { createLogger, type Logger } from '@push/logger';
import {
  createRegistry,
  listen,
  loadUws,
  mountHealth,
  statusLine,
  toPushError,
  type HttpResponse,
  type Listening,
  type TemplatedApp,
} from '@push/http';
import { InboxStore, LiveSubscriber, connectNats, natsReadiness, type NatsConnection } from '@push/nats';
import { PresenceRegistry } from '@push/presence';
import { CLOSE, PushError, Subjects, decodeToken } from '@push/protocol';
import type { Registry } from 'prom-client';
import { ClientConnection, type SocketData } from './client-connection.js';
import type { EdgeContext } from './edge-context.js';
import { AckBatcher } from './ack-batcher.js';
import { connectionBudget, openFileLimit } from './fd-limit.js';
import { createEdgeMetrics } from './metrics.js';
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
}

const TOKEN_SWEEP_MS = 5_000;

function defaultEdgeId(): string {
  const host =
    os
      .hostname()
      .replace(/[^A-Za-z0-9_-]/g, '')
      .slice(0, 24) || 'edge';
  return `${host}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/**
 * Builds an edge: WebSocket gateway on uWebSockets.js that authenticates clients, delivers their
 * inbox (backlog then live), takes acks and client-to-client sends. See DESIGN.md.
 */
export function createEdge(config: Config, opts: { logger?: Logger } = {}): Edge {
  const edgeConfig = config.edge;
  const edgeId = edgeConfig.id ?? defaultEdgeId();
  const log = (opts.logger ?? createLogger({ level: config.log.level, pretty: config.log.pretty, name: 'edge' })).child(
    {
      component: 'edge',
      edge: edgeId,
    },
  );
  const registry = createRegistry('edge');
  const metrics = createEdgeMetrics(registry);
  const subjects = new Subjects(config.prefix);
  const connections = new Set<ClientConnection>();
  const maxConnections = connectionBudget(edgeConfig.maxConnections, openFileLimit());

  let nc: NatsConnection | undefined;
  let live: LiveSubscriber | undefined;
  let store: InboxStore | undefined;
  let apps: AppDirectory | undefined;
  let redis: Redis | undefined;
  let presence: PresenceRegistry | undefined;
  let listening: Listening | undefined;
  let sweeper: NodeJS.Timeout | undefined;
  let ctx: EdgeContext | undefined;
  let acks: AckBatcher | undefined;
  let removeFailures = 0;
  let removeFailuresLogged = 0;
  let counter = 0;
  let stopping = false;
  let stopPromise: Promise<void> | undefined;

  function refuse(res: HttpResponse, err: unknown, retryAfter?: number): void {
    const e = toPushError(err);
    metrics.upgradesRefused.inc({ code: e.code });
    res.cork(() => {
      res.writeStatus(statusLine(e.status)).writeHeader('content-type', 'application/json');
      if (retryAfter !== undefined) res.writeHeader('retry-after', String(retryAfter));
      res.end(JSON.stringify({ error: e.toJSON() }), true);
    });
  }

  function authenticate(token: string, appParam: string): ClientIdentity {
    if (token === '') throw new PushError('token_missing');
    const appId = peekTokenApp(token);
    if (appParam !== '' && appParam !== appId) throw new PushError('wrong_app', 'the token is for another app');
    const app = apps?.get(appId);
    if (app === undefined) throw new PushError('app_not_found');
    if (app.disabled) throw new PushError('app_disabled');
    return verifyClientToken(token, app);
  }

  function clampPing(raw: string): number {
    const p = edgeConfig.ping;
    const n = Number(raw);
    if (raw === '' || !Number.isFinite(n)) return p.defaultSeconds;
    return Math.min(p.maxSeconds, Math.max(p.minSeconds, Math.round(n)));
  }

  function mountWebSocket(app: TemplatedApp): void {
    app.ws<SocketData>('/ws', {
      compression: 0,
      maxPayloadLength: edgeConfig.maxFrameBytes,
      idleTimeout: edgeConfig.idleTimeoutSeconds,
      maxBackpressure: edgeConfig.maxBackpressureBytes,
      closeOnBackpressureLimit: 0,
      sendPingsAutomatically: true,
      upgrade: (res, req, context) => {
        const key = req.getHeader('sec-websocket-key');
        const protocol = req.getHeader('sec-websocket-protocol');
        const extensions = req.getHeader('sec-websocket-extensions');
        const auth = req.getHeader('authorization');
        const token = req.getQuery('token') || (auth.startsWith('Bearer ') ? auth.slice(7).trim() : '');
        const appParam = req.getQuery('app') ?? '';
        const ping = clampPing(req.getQuery('ping') ?? '');
        if (stopping || ctx === undefined) {
          refuse(res, new PushError('shutting_down'), edgeConfig.retryAfterSeconds);
          return;
        }
        if (connections.size >= maxConnections) {
          refuse(res, new PushError('edge_full'), edgeConfig.retryAfterSeconds);
          return;
        }
        let id: ClientIdentity;
        try {
          id = authenticate(token, appParam);
        } catch (err) {
          const e = toPushError(err);
          if (e.code === 'internal') log.error({ err }, 'upgrade failed');
          else log.debug({ code: e.code }, 'upgrade refused');
          refuse(res, e);
          return;
        }
        const conn = new ClientConnection(ctx, ++counter, id.app, id.user, id.device, id.exp);
        // Upgraded here, inside the handler uWS already corks; see verifyClientToken for why
        // there is no await between the request and the upgrade.
        res.upgrade<SocketData>({ conn, ping }, key, protocol, extensions, context);
      },
      open: (ws) => {
        const { conn, ping } = ws.getUserData();
        connections.add(conn);
        metrics.connections.set(connections.size);
        const app = apps?.get(conn.app);
        conn.open(ws, ping, app?.settings.maxMessageBytes ?? 0);
        metrics.users.set(ctx?.channels.size ?? 0);
        presence?.connected(conn.app, conn.user, conn.id, conn.device).catch((err: unknown) => {
          metrics.errors.inc({ code: 'presence' });
          log.warn({ err }, 'presence write failed');
        });
      },
      message: (ws, message, isBinary) => {
        const { conn } = ws.getUserData();
        if (isBinary) {
          conn.rejectFrame(new PushError('bad_frame', 'binary frames are not accepted; send JSON text'));
          return;
        }
        conn.onFrame(Buffer.from(message).toString('utf8'));
      },
      drain: (ws) => {
        ws.getUserData().conn.drained();
      },
      close: (ws, code) => {
        const { conn } = ws.getUserData();
        log.debug({ conn: conn.id, user: conn.user, code }, 'connection closed');
        conn.closed();
        connections.delete(conn);
        metrics.connections.set(connections.size);
        metrics.users.set(ctx?.channels.size ?? 0);
        presence?.disconnected(conn.app, conn.user, conn.id).catch((err: unknown) => {
          metrics.errors.inc({ code: 'presence' });
          log.warn({ err }, 'presence delete failed');
        });
      },
    });
  }

  /** A control message on `push.ctl.<app>.<user>`: kick the user's (or one device's) connections here. */
  function onControl(subject: string, payload: Buffer): void {
    const tokens = subject.split('.');
    let app: string;
    let user: string;
    let command: { op?: unknown; device?: unknown; reason?: unknown };
    try {
      app = decodeToken(tokens[2] ?? '');
      user = decodeToken(tokens[3] ?? '');
      command = JSON.parse(payload.toString('utf8')) as typeof command;
    } catch (err) {
      log.warn({ err, subject }, 'unreadable control message ignored');
      return;
    }
    if (command.op !== 'kick' || ctx === undefined) return;
    const reason = typeof command.reason === 'string' ? command.reason : 'kicked';
    for (const conn of ctx.channels.receivers(app, user)) {
      if (command.device === undefined || conn.device === command.device) conn.kick(reason);
    }
  }

  function sweepTokens(): void {
    const now = Date.now() / 1000;
    for (const conn of connections) if (conn.exp <= now) conn.end(CLOSE.TOKEN_EXPIRED, 'token expired');
  }

  const edge: Edge = {
    get port() {
      return listening?.port ?? 0;
    },
    get connectionCount() {
      return connections.size;
    },
    registry,
    edgeId,
    knowsApp: (id) => apps?.get(id) !== undefined,

    async start() {
      const uws = loadUws();
      nc = await connectNats({
        servers: config.natsUrl,
        auth: config.natsAuth,
        name: `edge-${edgeId}`,
        logger: log,
        // Core NATS may have dropped live messages while disconnected: every connection rereads
        // the store from its cursor.
        onReconnect: () => {
          for (const c of connections) c.resync();
        },
      });
      store = new InboxStore(nc, subjects, { timeoutMs: config.inbox.timeoutMs });
      // Live subscriptions (one per connected user) on their own lean NATS connection.
      live = await LiveSubscriber.connect({
        servers: config.natsUrl,
        auth: config.natsAuth,
        name: `edge-${edgeId}-live`,
        logger: log,
        onReconnect: () => {
          for (const c of connections) c.resync();
        },
      });
      // Control (kick) for users connected here: one wildcard subscription; control is rare.
      live.subscribe(subjects.controlAll, (_h, payload, subject) => onControl(subject, payload));
      try {
        apps = await AppDirectory.open(nc, subjects, log);
      } catch (err) {
        throw new Error(`cannot open the apps bucket ${subjects.appsBucket}: provision first (center CLI: provision)`, {
          cause: err,
        });
      }
      apps.onChange((id, record) => {
        if (record !== undefined && !record.disabled) return;
        for (const c of connections) if (c.app === id) c.end(CLOSE.APP_GONE, 'app disabled');
      });
      redis = new Redis(config.redisUrl, { enableAutoPipelining: true, maxRetriesPerRequest: 2, lazyConnect: true });
      redis.on('error', (err) => log.warn({ err }, 'redis error'));
      await redis.connect();
      presence = new PresenceRegistry(redis, subjects, edgeId);
      await presence.start();
      acks = new AckBatcher(store, metrics, {
        onFailure: (err) => {
          metrics.removeFailed.inc();
          removeFailures++;
          const now = Date.now();
          if (now - removeFailuresLogged < 5000) return;
          log.warn({ err, failed: removeFailures }, 'acked messages not removed from the store yet (retrying)');
          removeFailures = 0;
          removeFailuresLogged = now;
        },
      });
      ctx = {
        edgeId,
        config: edgeConfig,
        subjects,
        store,
        channels: new UserChannels(live, subjects),
        apps,
        presence,
        metrics,
        log,
        highWaterBytes: Math.floor(edgeConfig.maxBackpressureBytes / 2),
        acks,
      };
      const app = uws.App();
      mountWebSocket(app);
      mountHealth(app, registry, () => {
        if (stopping) return 'stopping';
        const natsReady = natsReadiness(nc);
        if (natsReady !== true) return natsReady;
        if (live?.isConnected !== true) return 'nats reconnecting';
        if (redis?.status !== 'ready') return `redis ${redis?.status ?? 'missing'}`;
        return true;
      });
      app.any('/*', (res) => {
        res.writeStatus('404 Not Found').writeHeader('content-type', 'application/json');
        res.end(JSON.stringify({ error: new PushError('not_found').toJSON() }));
      });
      listening = await listen(app, edgeConfig.host, edgeConfig.port);
      sweeper = setInterval(sweepTokens, TOKEN_SWEEP_MS);
      sweeper.unref();
      if (maxConnections < edgeConfig.maxConnections) {
        log.warn(
          { configured: edgeConfig.maxConnections, maxConnections, fdLimit: openFileLimit() },
          'PUSH_EDGE_MAX_CONNECTIONS lowered to fit the open-file limit (raise `ulimit -n` to hold more)',
        );
      }
      log.info({ port: listening.port, maxConnections }, 'edge listening');
    },

    stop() {
      stopPromise ??= (async () => {
        stopping = true;
        if (sweeper !== undefined) clearInterval(sweeper);
        listening?.close();
        // Tell every client to reconnect (elsewhere) after a jittered delay, so a restart does
        // not bring every client back in the same instant.
        for (const c of connections) {
          const delay = Math.floor(Math.random() * Math.max(1, edgeConfig.drainMs));
          c.end(CLOSE.SHUTDOWN, `reconnect:${delay}`);
        }
        const deadline = Date.now() + 2000;
        while (connections.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        // Let in-flight removals and sends reach the store.
        acks?.flush();
        const pipeDeadline = Date.now() + 2000;
        while (((store?.busy ?? 0) > 0 || (acks?.pending ?? 0) > 0) && Date.now() < pipeDeadline) {
          await new Promise((r) => setTimeout(r, 10));
        }
        acks?.close();
        apps?.close();
        store?.close();
        live?.close();
        await presence?.stop().catch(() => undefined);
        if (nc !== undefined && !nc.isClosed()) await nc.drain().catch(() => undefined);
        redis?.disconnect();
        log.info('edge stopped');
      })();
      return stopPromise;
    },
  };
  return edge;
}
