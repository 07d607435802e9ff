import { randomInt } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { TemplatedApp } from '@push/http';
import type { EdgeContext } from '../edge-context.js';
import { originAllowed, socketLimits, upgradeIp } from '../edge-upgrade.js';
import type { TopicChannels, TopicFanout } from '../topic-channels.js';
import { PUSHER_CODE, PUSHER_PROTOCOL_MAX, PUSHER_PROTOCOL_MIN } from './pusher-codes.js';
import { PusherConnection } from './pusher-connection.js';
import { PusherFanout } from './pusher-fanout.js';
import { PusherMembers } from './pusher-members.js';

/** What uWS keeps per Pusher socket: its connection, or the refusal to send before closing. */
type PusherSocketData =
  { conn: PusherConnection; ip: string; refused?: undefined } | { conn?: undefined; refused: Refusal };

interface Refusal {
  code: number;
  message: string;
}

export interface PusherDoorOptions {
  ctx: EdgeContext;
  redis: Redis;
  topics: TopicChannels;
  fanout: TopicFanout;
  /** Open connections of the native door (`/ws`): both count toward `maxConnections`. */
  nativeConnections: () => number;
  maxConnections: number;
  /** False once the edge is stopping. */
  accepting: () => boolean;
}

/** The Pusher door of one edge: its sockets, for shutdown and app changes. */
export interface PusherDoor {
  readonly size: number;
  /** Closes every Pusher socket with 4200 (reconnect at once, to another edge). */
  endAll(): void;
  /** Closes the sockets of a disabled or deleted app with 4003. */
  endApp(app: string): void;
  /** Resolves true once no Pusher socket is open, false after `timeoutMs`. */
  whenEmpty(timeoutMs: number): Promise<boolean>;
  /**
   * A kick of a user (the native kick API, or Pusher's terminate_connections): closes the sockets
   * signed in as that user with 4009.
   */
  kickUser(app: string, user: string): void;
}

/**
 * Mounts the Pusher Channels door at `/app/<key>` (docs/pusher.md): protocol 7, the key is the
 * app id. Every upgrade is accepted, so that a refusal reaches the client as Pusher's
 * `pusher:error` and close code (4001 unknown app, 4003 disabled, 4006-4008 protocol, 4009
 * origin, 4100 edge full, 4200 shutting down), which pusher-js acts on. Installs the Pusher
 * fan-out on the edge's topic channels.
 */
export function mountPusherDoor(app: TemplatedApp, opts: PusherDoorOptions): PusherDoor {
  const { ctx } = opts;
  const edgeConfig = ctx.config;
  const sockets = new Map<string, PusherConnection>();
  const members = new PusherMembers(opts.redis, ctx.subjects, ctx.presence);
  const memberFrames = new PusherFanout(opts.fanout, sockets, members, ctx.log);
  opts.topics.observer = memberFrames;
  /** This edge's number in socket ids (`<edge>.<counter>`): random, so edges differ. */
  const edgeNumber = randomInt(1, 2 ** 31);
  let counter = 0;
  let emptyWaiters: Array<() => void> = [];
  const activityTimeout = Math.max(10, Math.floor(edgeConfig.idleTimeoutSeconds / 2));
  /** Signed-in sockets by app and user. */
  const users = new Map<string, Set<PusherConnection>>();
  const userKey = (app: string, user: string): string => `${app}\n${user}`;
  const door = {
    ctx,
    members,
    memberFrames,
    activityTimeout,
    signedIn: (conn: PusherConnection) => {
      if (conn.user === undefined) return;
      const key = userKey(conn.app, conn.user);
      let set = users.get(key);
      if (set === undefined) users.set(key, (set = new Set()));
      set.add(conn);
    },
  };

  function refusalOf(key: string, protocol: string, origin: string, ip: string): Refusal | undefined {
    if (!opts.accepting()) return { code: PUSHER_CODE.RECONNECT, message: 'the server is shutting down; reconnect' };
    if (sockets.size + opts.nativeConnections() >= opts.maxConnections) {
      return { code: PUSHER_CODE.OVER_CAPACITY, message: 'this server is over capacity; retry later' };
    }
    // Per-IP limits of the edge: Pusher's "over capacity" (reconnect with backoff), the native code in the message.
    const limited = ctx.ipPolicy.admit(ip);
    if (limited !== undefined)
      return { code: PUSHER_CODE.OVER_CAPACITY, message: `${limited.code}: ${limited.message}` };
    if (protocol === '') return { code: PUSHER_CODE.NO_PROTOCOL, message: 'no protocol version supplied' };
    const version = Number(protocol);
    if (!/^\d+$/.test(protocol)) return { code: PUSHER_CODE.BAD_PROTOCOL, message: 'invalid version string format' };
    if (version < PUSHER_PROTOCOL_MIN || version > PUSHER_PROTOCOL_MAX) {
      return { code: PUSHER_CODE.UNSUPPORTED_PROTOCOL, message: `unsupported protocol version ${version}` };
    }
    const record = ctx.apps.get(key);
    if (record === undefined)
      return { code: PUSHER_CODE.APP_NOT_FOUND, message: `app key ${key.slice(0, 64)} does not exist` };
    if (record.disabled) return { code: PUSHER_CODE.APP_DISABLED, message: 'the app is disabled' };
    if (!originAllowed(record.settings.allowedOrigins, origin)) {
      return { code: PUSHER_CODE.UNAUTHORIZED, message: `pages from ${origin.slice(0, 200)} may not connect` };
    }
    const denied = ctx.ipPolicy.appRefusal(record.settings, ip);
    if (denied !== undefined) return { code: PUSHER_CODE.UNAUTHORIZED, message: `${denied.code}: ${denied.message}` };
    return undefined;
  }

  app.ws<PusherSocketData>('/app/:key', {
    // As on `/ws`: a socket too slow for its fan-out is closed rather than silently skipped.
    ...socketLimits(edgeConfig),
    upgrade: (res, req, context) => {
      let key: string;
      try {
        key = decodeURIComponent(req.getParameter(0) ?? '');
      } catch {
        key = '';
      }
      const ip = upgradeIp(ctx, res, req);
      const refused = refusalOf(key, req.getQuery('protocol') ?? '', req.getHeader('origin'), ip);
      let data: PusherSocketData;
      if (refused !== undefined) {
        ctx.metrics.upgradesRefused.inc({ code: `pusher_${refused.code}` });
        data = { refused };
      } else {
        const n = ++counter;
        data = { conn: new PusherConnection(door, `${edgeNumber}.${n}`, `${ctx.connIdPrefix}-p${n}`, key), ip };
      }
      res.upgrade<PusherSocketData>(
        data,
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },
    open: (ws) => {
      const data = ws.getUserData();
      if (data.conn === undefined) {
        ws.cork(() => {
          ws.send(
            JSON.stringify({ event: 'pusher:error', data: { code: data.refused.code, message: data.refused.message } }),
          );
        });
        ws.end(data.refused.code, data.refused.message);
        return;
      }
      sockets.set(data.conn.socketId, data.conn);
      ctx.ipPolicy.opened(data.ip);
      data.conn.open(ws);
    },
    message: (ws, message, isBinary) => {
      const { conn } = ws.getUserData();
      if (conn === undefined || isBinary) return;
      conn.onFrame(Buffer.from(message).toString('utf8'));
    },
    close: (ws) => {
      const data = ws.getUserData();
      const { conn } = data;
      if (conn === undefined) return;
      ctx.ipPolicy.closed(data.ip);
      conn.onClose();
      sockets.delete(conn.socketId);
      if (conn.user !== undefined) {
        const key = userKey(conn.app, conn.user);
        const set = users.get(key);
        set?.delete(conn);
        if (set?.size === 0) users.delete(key);
      }
      if (sockets.size === 0) for (const w of emptyWaiters.splice(0)) w();
    },
  });

  return {
    get size() {
      return sockets.size;
    },
    endAll() {
      for (const c of sockets.values()) c.end(PUSHER_CODE.RECONNECT, 'the server is shutting down; reconnect');
    },
    kickUser(appId, user) {
      for (const c of users.get(userKey(appId, user)) ?? []) {
        c.end(PUSHER_CODE.UNAUTHORIZED, "the app terminated this user's connections");
      }
    },
    endApp(appId) {
      for (const c of sockets.values()) if (c.app === appId) c.end(PUSHER_CODE.APP_DISABLED, 'the app is disabled');
    },
    whenEmpty(timeoutMs) {
      if (sockets.size === 0) return Promise.resolve(true);
      return new Promise((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          resolve(true);
        };
        const timer = setTimeout(() => {
          emptyWaiters = emptyWaiters.filter((w) => w !== done);
          resolve(false);
        }, timeoutMs);
        emptyWaiters.push(done);
      });
    },
  };
}
