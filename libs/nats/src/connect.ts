import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import type { Logger } from 'pino';

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

/**
 * Connects to NATS and keeps reconnecting forever: a push system outlives NATS restarts.
 * Logs every status change. Fails if the first connection cannot be made.
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
