import { encodeToken } from './ids.js';

/**
 * Names of every NATS subject, stream, KV bucket and Redis key the parts of the system meet
 * through. Built from a configurable prefix (default `push`) so that several deployments, or
 * several test suites, can share one NATS server and one Redis without seeing each other.
 *
 * All `app` and `user` arguments are raw ids; they are encoded here (see `encodeToken`).
 */
export class Subjects {
  readonly prefix: string;
  /** Stream holding every user's inbox: `<PREFIX>_INBOX`. */
  readonly inboxStream: string;
  /** KV bucket mirroring app config for edges: `<prefix>_apps`. */
  readonly appsBucket: string;

  constructor(prefix = 'push') {
    if (!/^[a-z][a-z0-9_]{0,31}$/.test(prefix)) {
      throw new Error(`subject prefix must match [a-z][a-z0-9_]{0,31}, got ${JSON.stringify(prefix)}`);
    }
    this.prefix = prefix;
    this.inboxStream = `${prefix.toUpperCase()}_INBOX`;
    this.appsBucket = `${prefix}_apps`;
  }

  /** `push.inbox.>`: every inbox subject, the subjects of the inbox stream. */
  get inboxAll(): string {
    return `${this.prefix}.inbox.>`;
  }

  /** `push.inbox.<app>.<user>`: where a user's messages are stored. */
  inbox(app: string, user: string): string {
    return `${this.prefix}.inbox.${encodeToken(app)}.${encodeToken(user)}`;
  }

  /** RePublish source pattern for the inbox stream. */
  get inboxRepublishSource(): string {
    return `${this.prefix}.inbox.*.*`;
  }

  /** RePublish destination: `push.live.u.<app>.<user>` mirrors `push.inbox.<app>.<user>`. */
  get inboxRepublishDest(): string {
    return `${this.prefix}.live.u.{{wildcard(1)}}.{{wildcard(2)}}`;
  }

  /** `push.live.u.<app>.<user>`: live copies of stored inbox messages, for edges. */
  liveUser(app: string, user: string): string {
    return `${this.prefix}.live.u.${encodeToken(app)}.${encodeToken(user)}`;
  }

  /** `push.ctl.<app>.<user>`: control (kick, logout) for one user's connections. */
  control(app: string, user: string): string {
    return `${this.prefix}.ctl.${encodeToken(app)}.${encodeToken(user)}`;
  }

  /** `push.api.<op>`: the center's operations over NATS request/reply. */
  api(op: ApiOperation): string {
    return `${this.prefix}.api.${op}`;
  }

  /** Queue group the centers answer `push.api.*` in. */
  get apiQueue(): string {
    return `${this.prefix}-center`;
  }

  /** KV key of an app in the apps bucket. */
  appKey(app: string): string {
    return encodeToken(app);
  }

  /** Redis hash of one user's live connections: field = connection id, value = edge + device. */
  presenceKey(app: string, user: string): string {
    return `${this.prefix}:presence:${encodeToken(app)}:${encodeToken(user)}`;
  }

  /** Redis key an edge refreshes while it lives, so presence of a dead edge can be ignored. */
  edgeAliveKey(edgeId: string): string {
    return `${this.prefix}:edge:${edgeId}`;
  }

  /** Nats-Msg-Id for an idempotent push through the API. */
  apiMessageId(app: string, user: string, id: string): string {
    return `api.${encodeToken(app)}.${encodeToken(user)}.${encodeToken(id)}`;
  }

  /** Nats-Msg-Id for a client-to-client message (idempotent by the sender's id). */
  clientMessageId(app: string, fromUser: string, id: string): string {
    return `c2c.${encodeToken(app)}.${encodeToken(fromUser)}.${encodeToken(id)}`;
  }
}

/** Operations the center serves over NATS request/reply on `push.api.<op>`. */
export type ApiOperation = 'push' | 'user';
