import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import type { Logger } from 'pino';
import { MIN_NATS_SERVER_VERSION, NatsServerTooOldError, isServerVersionAtLeast } from './server-version.js';

export interface NatsConnectOptions {
  /** URLs, or one string of comma-separated URLs. */
  servers: string | string[];
  /** User and password, when the server requires them. */
  auth?: { user: string; pass: string } | undefined;
  /** Connection name shown by the server (monitoring, logs). */
  name: string;
  logger: Logger;
  /** Called after every reconnect, so callers can resync what core NATS may have dropped. */
  onReconnect?: () => void;
  /**
   * Oldest nats-server accepted (default MIN_NATS_SERVER_VERSION). Only for tools that measure
   * old servers on purpose (a benchmark's old-vs-new row); the apps always use the default.
   */
  minServerVersion?: string;
}

/** Connections currently between a disconnect and the reconnect that ends it. */
const disconnected = new WeakSet<NatsConnection>();

/**
 * Readiness of a connection made by `connectNats`: true when connected, otherwise why not
 * (for `/readyz`: while NATS is away, stores and reads fail, so the process is not ready).
 */
export function natsReadiness(nc: NatsConnection | undefined): true | string {
  if (nc === undefined) return 'nats not connected';
  if (nc.isClosed()) return 'nats closed';
  if (disconnected.has(nc)) return 'nats reconnecting';
  return true;
}

/** `127.0.0.1:4222` -> `nats://127.0.0.1:4222`: the form PUSH_NATS_URL takes, for messages. */
function withScheme(server: string): string {
  return server.includes('://') ? server : `nats://${server}`;
}

/**
 * Connects to NATS and keeps reconnecting forever: a push system outlives NATS restarts.
 * Logs every status change. Fails if the first connection cannot be made, and with
 * NatsServerTooOldError (after closing the connection, so no handle stays open) when the server
 * is older than `minServerVersion`: the store relies on 2.11 features, and finding out at start
 * beats failing on the first backlog read.
 */
export async function connectNats(opts: NatsConnectOptions): Promise<NatsConnection> {
  const servers =
    typeof opts.servers === 'string'
      ? opts.servers
          .split(',')
          .map((u) => u.trim())
          .filter((u) => u !== '')
      : opts.servers;
  const nc = await connect({
    servers,
    ...(opts.auth !== undefined ? { user: opts.auth.user, pass: opts.auth.pass } : {}),
    name: opts.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    reconnectJitter: 250,
    pingInterval: 10_000,
    waitOnFirstConnect: false,
  });
  const needed = opts.minServerVersion ?? MIN_NATS_SERVER_VERSION;
  const found = nc.info?.version;
  if (!isServerVersionAtLeast(found, needed)) {
    const server = withScheme(nc.getServer());
    await nc.close();
    throw new NatsServerTooOldError(found ?? 'unknown', needed, server);
  }
  const log = opts.logger;
  void (async () => {
    for await (const s of nc.status()) {
      switch (s.type) {
        case 'disconnect':
          disconnected.add(nc);
          log.warn({ server: s.server }, 'nats disconnected');
          break;
        case 'reconnect':
          disconnected.delete(nc);
          log.info({ server: s.server }, 'nats reconnected');
          // A restart can bring back an older server (a rollback, a mixed cluster): the process
          // keeps running, since refusing now would drop every connection, but says so loudly.
          if (!isServerVersionAtLeast(nc.info?.version, needed)) {
            log.error(
              { err: new NatsServerTooOldError(nc.info?.version ?? 'unknown', needed, withScheme(s.server)) },
              'nats reconnected to a server that is too old',
            );
          }
          opts.onReconnect?.();
          break;
        case 'error':
          log.error({ err: s.error }, 'nats error');
          break;
        default:
          break;
      }
    }
  })().catch((err: unknown) => log.error({ err }, 'nats status loop failed'));
  return nc;
}
