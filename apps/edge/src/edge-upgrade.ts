import { peekTokenApp, verifyClientToken, type ClientIdentity } from '@push/apps';
import { statusLine, toPushError, type HttpResponse, type TemplatedApp } from '@push/http';
import { PushError } from '@push/protocol';
import { ClientConnection, type SocketData } from './client-connection.js';
import type { EdgeConnections } from './edge-connections.js';
import type { EdgeContext } from './edge-context.js';

export interface EdgeSocketOptions {
  ctx: EdgeContext;
  connections: EdgeConnections;
  /** Upgrades past this many open connections are refused with `edge_full`. */
  maxConnections: number;
  /** False once the edge is stopping: upgrades are refused with `shutting_down`. */
  accepting: () => boolean;
  /** Tokens whose `exp` lies further ahead than this many seconds are refused (`token_exp_too_far`). */
  tokenMaxLifetimeSeconds: number;
}

/** Records a connection in presence; a failed write is counted and logged, never fatal. */
export function recordPresence(ctx: EdgeContext, conn: ClientConnection): void {
  ctx.presence.connected(conn.app, conn.user, conn.id, conn.device).catch((err: unknown) => {
    ctx.metrics.errors.inc({ code: 'presence' });
    ctx.log.warn({ err }, 'presence write failed');
  });
}

/**
 * Mounts `/ws`: the upgrade (token in `?token=` or `Authorization: Bearer`, checked against the
 * app's secrets or keys before the socket exists, refused with a JSON error and a status
 * otherwise) and the socket's events, handed to its ClientConnection. Presence is written on
 * open and removed on close; a failed presence write is counted and logged, never fatal.
 */
export function mountEdgeSocket(app: TemplatedApp, opts: EdgeSocketOptions): void {
  const { ctx, connections, maxConnections } = opts;
  const { metrics, log, presence } = ctx;
  const edgeConfig = ctx.config;
  let counter = 0;

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
    const record = ctx.apps.get(appId);
    if (record === undefined) throw new PushError('app_not_found');
    if (record.disabled) throw new PushError('app_disabled');
    return verifyClientToken(token, record, Date.now() / 1000, opts.tokenMaxLifetimeSeconds);
  }

  function clampPing(raw: string): number {
    const p = edgeConfig.ping;
    const n = Number(raw);
    if (raw === '' || !Number.isFinite(n)) return p.defaultSeconds;
    return Math.min(p.maxSeconds, Math.max(p.minSeconds, Math.round(n)));
  }

  app.ws<SocketData>('/ws', {
    compression: 0,
    maxPayloadLength: edgeConfig.maxFrameBytes,
    idleTimeout: edgeConfig.idleTimeoutSeconds,
    maxBackpressure: edgeConfig.maxBackpressureBytes,
    // A frame uWS drops past `maxBackpressure` closes the socket. The inbox path never sends that
    // far (it stalls at half of it and reloads from the store); topic frames are fanned out by uWS
    // to every subscriber, and one dropped for a slow socket would be a silent gap: closed, the
    // client reconnects and resumes each topic with `since` (docs/protocol.md, Topics).
    closeOnBackpressureLimit: 1,
    sendPingsAutomatically: true,
    upgrade: (res, req, context) => {
      const key = req.getHeader('sec-websocket-key');
      const protocol = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      const auth = req.getHeader('authorization');
      const token = req.getQuery('token') || (auth.startsWith('Bearer ') ? auth.slice(7).trim() : '');
      const appParam = req.getQuery('app') ?? '';
      const ping = clampPing(req.getQuery('ping') ?? '');
      if (!opts.accepting()) {
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
      const conn = new ClientConnection(ctx, ++counter, id.app, id.user, id.device, id.exp, id.topics);
      // Upgraded here, inside the handler uWS already corks; see verifyClientToken for why
      // there is no await between the request and the upgrade.
      res.upgrade<SocketData>({ conn, ping }, key, protocol, extensions, context);
    },
    open: (ws) => {
      const { conn, ping } = ws.getUserData();
      connections.add(conn);
      metrics.connections.set(connections.size);
      const record = ctx.apps.get(conn.app);
      conn.open(ws, ping, record?.settings.maxMessageBytes ?? 0);
      metrics.users.set(ctx.channels.size);
      recordPresence(ctx, conn);
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
      metrics.users.set(ctx.channels.size);
      presence.disconnected(conn.app, conn.user, conn.id).catch((err: unknown) => {
        metrics.errors.inc({ code: 'presence' });
        log.warn({ err }, 'presence delete failed');
      });
    },
  });
}
