import { createHash } from 'node:crypto';
import { decodeToken, encodeToken } from './ids.js';

/**
 * Names of every NATS subject, stream, KV bucket and Redis key the parts of the system meet
 * through. Built from a configurable prefix (default `push`) so that several deployments, or
 * several test suites, can share one NATS server and one Redis without seeing each other.
 *
 * All `app` and `user` arguments are raw ids; they are encoded here (see `encodeToken`).
 */
export class Subjects {
  readonly prefix: string;
  /** Name prefix of the per-app inbox streams: `<PREFIX>_INBOX-` (the prefix never holds `-`). */
  readonly inboxStreamPrefix: string;
  /** KV bucket mirroring app config for edges: `<prefix>_apps`. */
  readonly appsBucket: string;
  /** Name prefix of the per-app topic streams: `<PREFIX>_TOPICS-`. */
  readonly topicStreamPrefix: string;

  constructor(prefix = 'push') {
    if (!/^[a-z][a-z0-9_]{0,31}$/.test(prefix)) {
      throw new Error(`subject prefix must match [a-z][a-z0-9_]{0,31}, got ${JSON.stringify(prefix)}`);
    }
    this.prefix = prefix;
    this.inboxStreamPrefix = `${prefix.toUpperCase()}_INBOX-`;
    this.appsBucket = `${prefix}_apps`;
    this.topicStreamPrefix = `${prefix.toUpperCase()}_TOPICS-`;
  }

  /**
   * The stream holding one app's inboxes: `<PREFIX>_INBOX-<app>`. One stream per app, so that
   * the app's per-user cap is the stream's `max_msgs_per_subject`, enforced by JetStream as it
   * stores, and apps never share storage.
   */
  inboxStream(app: string): string {
    return this.inboxStreamPrefix + encodeToken(app);
  }

  /** `push.inbox.>`: every inbox subject of every app. */
  get inboxAll(): string {
    return `${this.prefix}.inbox.>`;
  }

  /**
   * `push.inbox.<app>.<user>.<kind>`: where a user's messages are stored, `b` for what the
   * business pushed and `c` for what other clients sent. Two subjects per user so that the
   * stream's `max_msgs_per_subject` caps each kind on its own: client messages can never evict
   * the business's (issue 7, defect 2).
   */
  inbox(app: string, user: string, kind: InboxKind): string {
    return `${this.prefix}.inbox.${encodeToken(app)}.${encodeToken(user)}.${kind}`;
  }

  /** `push.inbox.<app>.<user>.*`: both kinds of a user's messages (backlog reads, purges, pending). */
  inboxOfUser(app: string, user: string): string {
    return `${this.prefix}.inbox.${encodeToken(app)}.${encodeToken(user)}.*`;
  }

  /**
   * The user token of an inbox subject `push.inbox.<app>.<user>.<kind>` (still encoded: compare
   * it with `encodeToken(user)`), or '' for any other subject.
   */
  inboxUserToken(subject: string): string {
    const parts = subject.split('.');
    return parts.length === 5 && parts[0] === this.prefix && parts[1] === 'inbox' ? (parts[3] ?? '') : '';
  }

  /** `push.inbox.<app>.*.*`: the subjects of the app's inbox stream, and its RePublish source. */
  inboxOfApp(app: string): string {
    return `${this.prefix}.inbox.${encodeToken(app)}.*.*`;
  }

  /**
   * `push.inbox.<app>.*`: the one-subject-per-user layout before the split by kind. Only the
   * stream migration reads it (see `ensureInboxStream`).
   */
  legacyInboxOfApp(app: string): string {
    return `${this.prefix}.inbox.${encodeToken(app)}.*`;
  }

  /**
   * RePublish destination of the app's stream: `push.live.u.<app>.<user>` for both kinds of
   * `push.inbox.<app>.<user>.<kind>` (the kind is not needed live: the envelope carries `from`).
   */
  inboxRepublishDest(app: string): string {
    return `${this.prefix}.live.u.${encodeToken(app)}.{{wildcard(1)}}`;
  }

  /** `push.live.u.<app>.<user>`: live copies of stored inbox messages, for edges. */
  liveUser(app: string, user: string): string {
    return `${this.prefix}.live.u.${encodeToken(app)}.${encodeToken(user)}`;
  }

  /**
   * The stream holding one app's topics: `<PREFIX>_TOPICS-<app>`, beside its inbox stream. Its
   * `max_msgs_per_subject` is the app's `topicHistory`, its `max_age` the `topicHistorySeconds`.
   */
  topicStream(app: string): string {
    return this.topicStreamPrefix + encodeToken(app);
  }

  /** `push.topic.<app>.<topic>`: where a topic's messages are stored (and what trusted services publish to). */
  topic(app: string, topic: string): string {
    return `${this.prefix}.topic.${encodeToken(app)}.${encodeToken(topic)}`;
  }

  /** `push.topic.<app>.*`: the subjects of the app's topic stream, and its RePublish source. */
  topicsOfApp(app: string): string {
    return `${this.prefix}.topic.${encodeToken(app)}.*`;
  }

  /** RePublish destination of the app's topic stream: `push.live.t.<app>.<topic>`. */
  topicRepublishDest(app: string): string {
    return `${this.prefix}.live.t.${encodeToken(app)}.{{wildcard(1)}}`;
  }

  /**
   * `push.live.t.<app>.<topic>`: live copies of stored topic messages; an edge subscribes once per
   * topic with local subscribers. Also the key of the topic in the edge's uWebSockets.js pub/sub.
   */
  liveTopic(app: string, topic: string): string {
    return `${this.prefix}.live.t.${encodeToken(app)}.${encodeToken(topic)}`;
  }

  /** Nats-Msg-Id for an idempotent topic publish through the API. */
  topicMessageId(app: string, topic: string, id: string): string {
    return `topic.${encodeToken(app)}.${encodeToken(topic)}.${encodeToken(id)}`;
  }

  /** `push.ctl.>`: every control subject (what an edge subscribes to; control is rare). */
  get controlAll(): string {
    return `${this.prefix}.ctl.>`;
  }

  /**
   * `push.stats.edges`: the center asks every edge for its figures here (scatter-gather request,
   * core NATS, no queue group: every edge answers with an `EdgeStats`).
   */
  get edgeStats(): string {
    return `${this.prefix}.stats.edges`;
  }

  /** `push.ctl.<app>.<user>`: control (kick, logout) for one user's connections. */
  control(app: string, user: string): string {
    return `${this.prefix}.ctl.${encodeToken(app)}.${encodeToken(user)}`;
  }

  /**
   * Reads a control subject (`push.ctl.<app>.<user>`, as `control` builds it) back into its raw
   * app and user ids. Returns undefined for anything `control` cannot have produced: another
   * prefix or kind, a missing or extra token, or a token that is not the canonical encoding of an
   * id (so two subjects never name the same user, and no garbage becomes an id).
   */
  parseControl(subject: string): ControlSubject | undefined {
    return this.parseUserSubject(subject, 'ctl');
  }

  /** `push.claim.>`: every device claim (an edge subscribes once; see `claim`). */
  get claimAll(): string {
    return `${this.prefix}.claim.>`;
  }

  /**
   * `push.claim.<app>.<user>`: an edge announces a connection that opened under the app's
   * `devicePolicy` `single` or `single-per-device`; every edge closes the user's older ones
   * (apps/edge/src/device-policy.ts, docs/architecture.md "One device at a time").
   */
  claim(app: string, user: string): string {
    return `${this.prefix}.claim.${encodeToken(app)}.${encodeToken(user)}`;
  }

  /** Reads a claim subject back into its app and user, as `parseControl` does for control. */
  parseClaim(subject: string): ControlSubject | undefined {
    return this.parseUserSubject(subject, 'claim');
  }

  private parseUserSubject(subject: string, kind: string): ControlSubject | undefined {
    const tokens = subject.split('.');
    if (tokens.length !== 4 || tokens[0] !== this.prefix || tokens[1] !== kind) return undefined;
    const app = canonicalId(tokens[2] ?? '');
    const user = canonicalId(tokens[3] ?? '');
    if (app === undefined || user === undefined) return undefined;
    return { app, user };
  }

  // --- Upstream, events, rpc (issue 10; names shared with the coordinator) ------------------

  /** The stream of one app's client upstream: `<PREFIX>_UP-<app>`. */
  upstreamStream(app: string): string {
    return `${this.prefix.toUpperCase()}_UP-${encodeToken(app)}`;
  }

  /** `push.up.<app>.<kind>`: where a client's `up` frame is stored (kind validated by the caller). */
  upstream(app: string, kind: string): string {
    return `${this.prefix}.up.${encodeToken(app)}.${encodeToken(kind)}`;
  }

  /** `push.up.<app>.*`: every upstream kind of an app (its stream's subjects). */
  upstreamOfApp(app: string): string {
    return `${this.prefix}.up.${encodeToken(app)}.*`;
  }

  /** The stream of one app's events: `<PREFIX>_EVENTS-<app>`. */
  eventsStream(app: string): string {
    return `${this.prefix.toUpperCase()}_EVENTS-${encodeToken(app)}`;
  }

  /** `push.evt.<app>.<type>`: where an event of one type is stored. */
  event(app: string, type: string): string {
    return `${this.prefix}.evt.${encodeToken(app)}.${type}`;
  }

  /** `push.evt.<app>.*`: every event type of an app (its stream's subjects). */
  eventsOfApp(app: string): string {
    return `${this.prefix}.evt.${encodeToken(app)}.*`;
  }

  /** `push.rpc.<app>`: core subject a client `rpc` is requested on. */
  rpc(app: string): string {
    return `${this.prefix}.rpc.${encodeToken(app)}`;
  }

  /** Queue group the coordinators (and business services) answer `push.rpc.<app>` in. */
  get rpcQueue(): string {
    return `${this.prefix}-rpc`;
  }

  /**
   * Id of a stored upstream message, also its `Nats-Msg-Id`: `up_` + 24 base64url characters of
   * SHA-256(app, user, client id). The same frame id from the same user (a retry, from any of
   * the user's devices) gives the same id, so the stream's duplicate window stores it once;
   * hashed so that the id stays short whatever the ids' lengths.
   */
  upstreamMessageId(app: string, user: string, clientId: string): string {
    // JSON of the parts: no choice of ids makes two different senders hash the same text.
    const h = createHash('sha256')
      .update(JSON.stringify(['up', app, user, clientId]))
      .digest('base64url');
    return `up_${h.slice(0, 24)}`;
  }

  /**
   * Reads a presence key (as `presenceKey` builds it) back into its app and user; undefined for
   * anything else. The presence sweep uses it to name the users whose connections it removed.
   */
  parsePresenceKey(key: string): ControlSubject | undefined {
    const tokens = key.split(':');
    if (tokens.length !== 4 || tokens[0] !== this.prefix || tokens[1] !== 'presence') return undefined;
    const app = canonicalId(tokens[2] ?? '');
    const user = canonicalId(tokens[3] ?? '');
    if (app === undefined || user === undefined) return undefined;
    return { app, user };
  }

  /** `push.api.<op>`: the center's operations over NATS request/reply. */
  api(op: ApiOperation): string {
    return `${this.prefix}.api.${op}`;
  }

  /** Queue group the centers answer `push.api.*` in. */
  get apiQueue(): string {
    return `${this.prefix}-center`;
  }

  /**
   * KV key of an app in the apps bucket. KV keys allow `[-/=.\w]` but not `~`, so an id outside
   * the safe alphabet is written as `=` + base64url (`=` is never part of a safe id).
   */
  appKey(app: string): string {
    const token = encodeToken(app);
    return token.startsWith('~') ? `=${token.slice(1)}` : token;
  }

  /** Redis hash of one user's live connections: field = connection id, value = edge + device. */
  presenceKey(app: string, user: string): string {
    return `${this.prefix}:presence:${encodeToken(app)}:${encodeToken(user)}`;
  }

  /**
   * Redis set of the topics the business bound a user to (a mirror of Postgres `topic_bindings`,
   * written by the center after Postgres): what an edge reads when one of the user's connections opens.
   */
  bindingsKey(app: string, user: string): string {
    return `${this.prefix}:bind:${encodeToken(app)}:${encodeToken(user)}`;
  }

  /** Redis key of an edge's lease (a TTL it renews): presence of an edge without one is swept. */
  edgeAliveKey(edgeId: string): string {
    return `${this.prefix}:edge:${edgeId}`;
  }

  /**
   * Redis key a sweep leaves when it removed an edge's entries (TTL a day): an edge that finds its
   * lease lapsed records its connections again only when it is there (libs/presence).
   */
  edgeSweptKey(edgeId: string): string {
    return `${this.prefix}:edge-swept:${edgeId}`;
  }

  /**
   * Redis hash indexing one edge's presence entries (`<connection id>\n<presence key>` -> presence
   * key: the sessions of one connection, one per app, share its id), for its sweep. The sweep also
   * reads the older field, the connection id alone.
   */
  edgeConnectionsKey(edgeId: string): string {
    return `${this.prefix}:edge-conns:${edgeId}`;
  }

  /**
   * Redis hash of a topic's subscribed connections (every topic but `_all`): field = connection
   * id, value = `[edge, user, device, since, presence]` (libs/presence). Its length is the
   * topic's connection count.
   */
  topicConnsKey(app: string, topic: string): string {
    return `${this.prefix}:tconns:${encodeToken(app)}:${encodeToken(topic)}`;
  }

  /** Redis hash of a topic's subscribed users: field = user, value = their subscribed connections. */
  topicUsersKey(app: string, topic: string): string {
    return `${this.prefix}:tusers:${encodeToken(app)}:${encodeToken(topic)}`;
  }

  /**
   * Redis hash of the Pusher `user_info` of a presence channel's members (the Pusher door):
   * field = user, value = the JSON `user_info` given at their latest subscribe.
   */
  pusherMembersKey(app: string, topic: string): string {
    return `${this.prefix}:pinfo:${encodeToken(app)}:${encodeToken(topic)}`;
  }

  /** Pattern (Redis SCAN MATCH) of an app's topic connection hashes, for listing occupied topics. */
  topicConnsPattern(app: string): string {
    return `${this.prefix}:tconns:${encodeToken(app)}:*`;
  }

  /** Redis hash indexing one edge's topic memberships, for its sweep (libs/presence). */
  edgeTopicsKey(edgeId: string): string {
    return `${this.prefix}:edge-topics:${edgeId}`;
  }

  /**
   * Redis key naming the presence data now in Redis (a random value, no TTL): an edge that finds
   * it gone or changed knows Redis lost its data (restarted empty), not only its own lease.
   */
  get presenceEpochKey(): string {
    return `${this.prefix}:presence-epoch`;
  }

  /**
   * Redis key telling whether the bindings mirror is whole: `done` once a center copied every
   * Postgres binding into Redis, `rebuilding:<id>` (with a TTL) while one does; gone after Redis
   * lost its data, which makes a center rebuild the mirror.
   */
  get bindingsMirrorKey(): string {
    return `${this.prefix}:bind-mirror`;
  }

  /** Redis set of the edges that hold (or held) a lease: what the presence sweep checks. */
  get edgesKey(): string {
    return `${this.prefix}:edges`;
  }

  // --- Webhooks (issue 10) ---------------------------------------------------------------

  /** The stream of one app's webhook dead letters: `<PREFIX>_DLQ-<app>`. */
  dlqStream(app: string): string {
    return `${this.prefix.toUpperCase()}_DLQ-${encodeToken(app)}`;
  }

  /** `push.dlq.<app>.<endpoint>`: dead letters of one webhook endpoint. */
  dlq(app: string, endpoint: string): string {
    return `${this.prefix}.dlq.${encodeToken(app)}.${encodeToken(endpoint)}`;
  }

  /**
   * `push.dlq.<app>.<endpoint>.replay`: dead letters an operator asked to replay; the endpoint's
   * coordinator consumer delivers them again. Same stream as the dead letters.
   */
  dlqReplay(app: string, endpoint: string): string {
    return `${this.dlq(app, endpoint)}.replay`;
  }

  /** The subjects of an app's dead-letter stream: its dead letters and its replay queue. */
  dlqSubjectsOfApp(app: string): string[] {
    return [`${this.prefix}.dlq.${encodeToken(app)}.*`, `${this.prefix}.dlq.${encodeToken(app)}.*.replay`];
  }

  /** KV bucket mirroring webhook endpoints to coordinators: `<prefix>_webhooks`. */
  get webhooksBucket(): string {
    return `${this.prefix}_webhooks`;
  }

  /**
   * KV bucket of webhook items handed back unsent (apps/coordinator handbacks.ts):
   * `<prefix>_webhook_handbacks`.
   */
  get webhookHandbacksBucket(): string {
    return `${this.prefix}_webhook_handbacks`;
  }

  /** Its key for one stored item: `<endpoint key>.<source>.<stream sequence>`. */
  webhookHandbackKey(app: string, endpoint: string, source: string, seq: number): string {
    return `${this.webhookKey(app, endpoint)}.${source}.${seq}`;
  }

  /** KV key of a webhook endpoint: `<app key>.<endpoint id>` (endpoint ids are `wh_` + base64url). */
  webhookKey(app: string, endpoint: string): string {
    return `${this.appKey(app)}.${endpoint}`;
  }

  /** Nats-Msg-Id for an idempotent push through the API. */
  apiMessageId(app: string, user: string, id: string): string {
    return `api.${encodeToken(app)}.${encodeToken(user)}.${encodeToken(id)}`;
  }

  /**
   * Nats-Msg-Id of a fan-out job's copy for one user: a runner that resumes a job after a crash
   * rewrites the users after its last checkpoint with the same ids, and the stream stores each once.
   */
  jobMessageId(app: string, job: string, user: string): string {
    return `job.${encodeToken(app)}.${encodeToken(job)}.${encodeToken(user)}`;
  }

  // --- Undeliverable messages (issue 17 part 3) ----------------------------------------------

  /**
   * The stream of one app's undeliverable messages: `<PREFIX>_UNDELIV-<app>`. A message delivered
   * `maxDeliveries` times without an ack is moved here from the user's inbox (docs/api.md).
   */
  undeliverableStream(app: string): string {
    return `${this.prefix.toUpperCase()}_UNDELIV-${encodeToken(app)}`;
  }

  /** `push.undeliv.<app>.<user>`: one user's undeliverable messages. */
  undeliverable(app: string, user: string): string {
    return `${this.prefix}.undeliv.${encodeToken(app)}.${encodeToken(user)}`;
  }

  /** `push.undeliv.<app>.*`: every undeliverable message of an app (its stream's subjects). */
  undeliverableOfApp(app: string): string {
    return `${this.prefix}.undeliv.${encodeToken(app)}.*`;
  }

  /**
   * Redis hash counting, per inbox sequence, the deliveries of one user's messages that ended
   * without an ack (a connection closed with them in flight): the never-ack loop guard.
   */
  deliveryCountsKey(app: string, user: string): string {
    return `${this.prefix}:redeliv:${encodeToken(app)}:${encodeToken(user)}`;
  }

  /** Pattern (Redis SCAN MATCH) of an app's delivery count hashes, dropped with the app. */
  deliveryCountsPattern(app: string): string {
    return `${this.prefix}:redeliv:${encodeToken(app)}:*`;
  }

  /** Nats-Msg-Id for a client-to-client message (idempotent by the sender's id). */
  clientMessageId(app: string, fromUser: string, id: string): string {
    return `c2c.${encodeToken(app)}.${encodeToken(fromUser)}.${encodeToken(id)}`;
  }
}

/** The raw ids a control subject names (see `Subjects.parseControl`). */
export interface ControlSubject {
  app: string;
  user: string;
}

/** The id a subject token encodes, or undefined when the token is not `encodeToken`'s output for any id. */
function canonicalId(token: string): string | undefined {
  let id: string;
  try {
    id = decodeToken(token);
  } catch {
    // decodeToken throws only for "not a subject token"; the caller treats that as no id.
    return undefined;
  }
  return id !== '' && encodeToken(id) === token ? id : undefined;
}

/** Kind of an inbox message: `b` pushed by the business, `c` sent by another client. */
export type InboxKind = 'b' | 'c';

/** Operations the center serves over NATS request/reply on `push.api.<op>`. */
export type ApiOperation =
  | 'push'
  | 'user'
  | 'kick'
  | 'apps.delete'
  | 'topics.publish'
  // Topic bindings (issue 9 item 4).
  | 'topics.bind'
  | 'topics.unbind'
  | 'topics.bindings'
  | 'topics.presence'
  | JobApiOperation
  // Webhook endpoints and their dead letters (issue 10).
  | `webhooks.${WebhookApiOperation}`
  // Undeliverable messages (issue 17 part 3).
  | 'undeliverable.list'
  | 'undeliverable.replay'
  | 'undeliverable.purge';

/** The fan-out job operations on `push.api.jobs.<verb>` (docs/api.md, fan-out jobs). */
export type JobApiOperation = 'jobs.create' | 'jobs.users' | 'jobs.start' | 'jobs.get' | 'jobs.list' | 'jobs.cancel';

/** Webhook operations over NATS: `push.api.webhooks.<op>` (docs/api.md). */
export type WebhookApiOperation =
  'create' | 'list' | 'get' | 'update' | 'delete' | 'rotate' | 'dlq.list' | 'dlq.replay' | 'dlq.purge';
