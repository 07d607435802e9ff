import { decodeJws, peekTokenApp, verifyClientToken, type ClientIdentity } from '@push/apps';
import {
  statusLine,
  toPushError,
  type HttpRequest,
  type HttpResponse,
  type TemplatedApp,
  type us_socket_context_t,
} from '@push/http';
import { CLOSE, DEFAULT_APP_SETTINGS, PushError, REFUSAL_AS_CLOSE, refusalCloseCode } from '@push/protocol';
import { ClientConnection, type PingAgreement, type SocketData } from './client-connection.js';
import type { EdgeConnections } from './edge-connections.js';
import type { EdgeContext } from './edge-context.js';
import { ipv4Peer } from './ip-policy.js';
import { HeartbeatWheel, agreePing } from './heartbeat.js';

export interface EdgeSocketOptions {
  ctx: EdgeContext;
  connections: EdgeConnections;
  /** Upgrades past this many open connections are refused with `edge_full`. */
  maxConnections: number;
  /** Open connections of the edge's other door (Pusher): they count toward `maxConnections` too. */
  otherConnections?: () => number;
  /** False once the edge is stopping: upgrades are refused with `shutting_down`. */
  accepting: () => boolean;
  /** Tokens whose `exp` lies further ahead than this many seconds are refused (`token_exp_too_far`). */
  tokenMaxLifetimeSeconds: number;
}

/**
 * A socket accepted only to be closed at once with a refusal close code (`refusal=close`): it
 * has no ClientConnection and never counts as a connection.
 */
interface RefusedSocket {
  conn?: undefined;
  refused: { code: number; reason: string };
}
/**
 * An accepted socket: its connection only. The client's address (counted per IP until it closes),
 * the agreed ping interval and the heartbeat entry are the connection's fields.
 */
type UpgradeData = SocketData | RefusedSocket;

/**
 * uWS's own idle timeout on `/ws`: its most (960 s), a backstop only. The silence bound that
 * follows each connection's agreed interval is the HeartbeatWheel's (docs/architecture.md,
 * "Heartbeats"): a uWS behavior has one `idleTimeout` for all its sockets.
 */
const WS_IDLE_BACKSTOP_SECONDS = 960;

/**
 * The socket limits both doors (`/ws` and the Pusher door's `/app/:key`) share. A frame uWS drops
 * past `maxBackpressure` closes the socket. The inbox path never sends that far (it stalls at
 * half of it and reloads from the store); topic frames are fanned out by uWS to every subscriber,
 * and one dropped for a slow socket would be a silent gap: closed, the client reconnects and
 * resumes each topic with `since` (docs/protocol.md, Topics).
 */
export function socketLimits(edgeConfig: EdgeContext['config']) {
  return {
    compression: 0,
    maxPayloadLength: edgeConfig.maxFrameBytes,
    idleTimeout: edgeConfig.idleTimeoutSeconds,
    maxBackpressure: edgeConfig.maxBackpressureBytes,
    closeOnBackpressureLimit: 1,
    sendPingsAutomatically: true,
  } as const;
}

/**
 * Whether a browser page from `origin` may connect to an app: any page when the app's
 * `allowedOrigins` is empty; else an exact match of the Origin header (`https://host[:port]`).
 * Clients that send no Origin (servers, the CLI, mobile apps) are not pages and always may.
 */
export function originAllowed(allowed: readonly string[], origin: string): boolean {
  return origin === '' || allowed.length === 0 || allowed.includes(origin);
}

/**
 * The client's address of an upgrade (both doors): the peer, or what a trusted proxy forwarded
 * (IpPolicy.clientIp). Read before the upgrade; uWS's request is gone after the handler returns.
 */
export function upgradeIp(ctx: EdgeContext, res: HttpResponse, req: HttpRequest): string {
  const peer = ipv4Peer(new Uint8Array(res.getRemoteAddress())) ?? Buffer.from(res.getRemoteAddressAsText()).toString();
  return ctx.ipPolicy.clientIp(peer, req.getHeader('x-forwarded-for'));
}

/**
 * The `reason` of a `conn_close` event: the edge's own cause when it closed the socket, else
 * from the close code (`client` for a normal close by the client, `lost` for a connection that
 * dropped without a close frame, `frame_too_large`, `protocol` otherwise).
 */
export function closeReasonOf(code: number, edgeReason: string | undefined): string {
  if (edgeReason !== undefined) return edgeReason;
  if (code === 1000 || code === 1001 || code === 1005) return 'client';
  if (code === 1006) return 'lost';
  if (code === CLOSE.FRAME_TOO_LARGE) return 'frame_too_large';
  return 'protocol';
}

/**
 * Mounts `/ws`: the upgrade (token in `?token=` or `Authorization: Bearer`, checked against the
 * app's secrets or keys before the socket exists, refused with a JSON error and a status
 * otherwise) and the socket's events, handed to its ClientConnection. Presence is written on
 * open and removed on close (EdgePresence: a failed write is counted, logged and retried, never fatal).
 */
export function mountEdgeSocket(app: TemplatedApp, opts: EdgeSocketOptions): void {
  const { ctx, connections, maxConnections } = opts;
  const { metrics, log } = ctx;
  const edgeConfig = ctx.config;
  let counter = 0;

  /** How the client asked to hear of a refusal (copied from the request before any refusal). */
  interface Asked {
    asClose: boolean;
    key: string;
    protocol: string;
    extensions: string;
    context: us_socket_context_t;
  }

  /**
   * Refuses an upgrade: an HTTP status and a JSON body, or (`refusal=close`) an accepted socket
   * closed at once with `4000 + status` and the error code as the reason, which a browser can read.
   */
  function refuse(res: HttpResponse, asked: Asked, err: unknown, retryAfter?: number): void {
    const e = toPushError(err);
    metrics.upgradesRefused.inc({ code: e.code });
    if (asked.asClose) {
      res.upgrade<UpgradeData>(
        { refused: { code: refusalCloseCode(e.status), reason: e.code } },
        asked.key,
        asked.protocol,
        asked.extensions,
        asked.context,
      );
      return;
    }
    res.cork(() => {
      res.writeStatus(statusLine(e.status)).writeHeader('content-type', 'application/json');
      if (retryAfter !== undefined) res.writeHeader('retry-after', String(retryAfter));
      res.end(JSON.stringify({ error: e.toJSON() }), true);
    });
  }

  function authenticate(token: string, appParam: string, origin: string, ip: string): ClientIdentity {
    if (token === '') throw new PushError('token_missing');
    const decoded = decodeJws(token); // once: read for its app, then verified
    const appId = peekTokenApp(decoded);
    if (appParam !== '' && appParam !== appId) throw new PushError('wrong_app', 'the token is for another app');
    const record = ctx.apps.get(appId);
    if (record === undefined) throw new PushError('app_not_found');
    if (record.disabled) throw new PushError('app_disabled');
    if (!originAllowed(record.settings.allowedOrigins, origin)) {
      throw new PushError('origin_not_allowed', `pages from ${origin.slice(0, 200)} may not connect to this app`);
    }
    const ipRefusal = ctx.ipPolicy.appRefusal(record.settings, ip);
    if (ipRefusal !== undefined) throw ipRefusal;
    return verifyClientToken(decoded, record, Date.now() / 1000, opts.tokenMaxLifetimeSeconds);
  }

  const heartbeats = new HeartbeatWheel<ClientConnection>(edgeConfig.ping.maxSeconds, {
    ping: (conn) => conn.ws?.ping(),
    drop: (conn) => {
      metrics.heartbeatDrops.inc();
      conn.closeReason ??= 'silent';
      conn.ws?.close();
    },
  });
  /** One for every connection (`conn.heartbeat`), not a closure each. */
  const pingAgreement: PingAgreement = {
    propose: (conn, seconds) => {
      const agreed = agreePing(seconds, edgeConfig.ping, ctx.apps.get(conn.app)?.settings ?? DEFAULT_APP_SETTINGS);
      if (conn.beat !== undefined) heartbeats.change(conn.beat, agreed);
      return agreed;
    },
  };
  /** Checks an `attach`'s token as an upgrade's (one function shared by every connection). */
  const attachAuth = (token: string, origin: string, ip: string): ClientIdentity => authenticate(token, '', origin, ip);

  app.ws<UpgradeData>('/ws', {
    ...socketLimits(edgeConfig),
    idleTimeout: WS_IDLE_BACKSTOP_SECONDS,
    upgrade: (res, req, context) => {
      const key = req.getHeader('sec-websocket-key');
      const protocol = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      const auth = req.getHeader('authorization');
      const token = req.getQuery('token') || (auth.startsWith('Bearer ') ? auth.slice(7).trim() : '');
      const appParam = req.getQuery('app') ?? '';
      const askedPing = req.getQuery('ping') ?? '';
      const origin = req.getHeader('origin');
      const asked: Asked = {
        asClose: req.getQuery('refusal') === REFUSAL_AS_CLOSE,
        key,
        protocol,
        extensions,
        context,
      };
      if (!opts.accepting()) {
        refuse(res, asked, new PushError('shutting_down'), edgeConfig.retryAfterSeconds);
        return;
      }
      if (connections.size + (opts.otherConnections?.() ?? 0) >= maxConnections) {
        refuse(res, asked, new PushError('edge_full'), edgeConfig.retryAfterSeconds);
        return;
      }
      const ip = upgradeIp(ctx, res, req);
      const limited = ctx.ipPolicy.admit(ip);
      if (limited !== undefined) {
        refuse(res, asked, limited, edgeConfig.retryAfterSeconds);
        return;
      }
      let id: ClientIdentity;
      try {
        id = authenticate(token, appParam, origin, ip);
      } catch (err) {
        const e = toPushError(err);
        if (e.code === 'internal') log.error({ err }, 'upgrade failed');
        else log.debug({ code: e.code }, 'upgrade refused');
        refuse(res, asked, e);
        return;
      }
      const conn = new ClientConnection(ctx, ++counter, id.app, id.user, id.device, id.exp, id.topics);
      const settings = ctx.apps.get(id.app)?.settings ?? DEFAULT_APP_SETTINGS;
      // Number('') and Number(' ') are 0, not "not a number": blank counts as not asked.
      conn.pingSeconds = agreePing(askedPing.trim() === '' ? undefined : Number(askedPing), edgeConfig.ping, settings);
      // uWS hands every header as a new string: the usual empty one is kept as the shared ''.
      conn.origin = origin === '' ? '' : origin;
      conn.ip = ip;
      conn.authenticate = attachAuth;
      conn.heartbeat = pingAgreement;
      // Upgraded here, inside the handler uWS already corks; see verifyClientToken for why
      // there is no await between the request and the upgrade.
      res.upgrade<UpgradeData>({ conn }, key, protocol, extensions, context);
    },
    open: (ws) => {
      const data = ws.getUserData();
      if (data.conn === undefined) {
        ws.end(data.refused.code, data.refused.reason);
        return;
      }
      const { conn } = data;
      ctx.ipPolicy.opened(conn.ip);
      conn.beat = heartbeats.add(conn, conn.pingSeconds);
      connections.add(conn);
      metrics.connections.set(connections.size);
      const record = ctx.apps.get(conn.app);
      // Its `conn_open`, presence and devicePolicy come with its `hello` (ClientSession.start).
      conn.open(ws, record?.settings.maxMessageBytes ?? 0);
      metrics.users.set(ctx.channels.size);
    },
    message: (ws, message, isBinary) => {
      const { conn } = ws.getUserData();
      if (conn === undefined) return; // a refusal being closed
      if (conn.beat !== undefined) conn.beat.heard = heartbeats.now;
      if (isBinary) {
        conn.rejectFrame(new PushError('bad_frame', 'binary frames are not accepted; send JSON text'));
        return;
      }
      conn.onFrame(Buffer.from(message).toString('utf8'));
    },
    pong: (ws) => {
      const beat = ws.getUserData().conn?.beat;
      if (beat !== undefined) beat.heard = heartbeats.now;
    },
    drain: (ws) => {
      ws.getUserData().conn?.drained();
    },
    close: (ws, code) => {
      const { conn } = ws.getUserData();
      if (conn === undefined) return; // a refusal: never counted, never in presence
      ctx.ipPolicy.closed(conn.ip);
      if (conn.beat !== undefined) heartbeats.remove(conn.beat);
      log.debug({ conn: conn.id, user: conn.user, code }, 'connection closed');
      const ended = conn.closed();
      connections.delete(conn);
      metrics.connections.set(connections.size);
      metrics.users.set(ctx.channels.size);
      const reason = closeReasonOf(code, conn.closeReason);
      // Each session still open (the first app's, unless it ended before, and those attached).
      for (const s of ended) s.ended(code, reason);
    },
  });
}
