import type { AppDirectory } from '@push/apps';
import type { EventPublisher } from '@push/nats';
import type { PresenceRegistry } from '@push/presence';
import { ServerFrames, isPresenceTopic } from '@push/protocol';
import type { Logger } from 'pino';
import type { EdgeMetrics } from './metrics.js';

/** The connection a topic subscription belongs to (a ClientConnection fits). */
export interface TopicSubscriber {
  readonly id: string;
  readonly app: string;
  readonly user: string;
  readonly device: string;
  /** Its socket: uWS `publish` from a socket reaches every subscriber of the key but that socket. */
  readonly ws: { publish(key: string, frame: string): boolean } | undefined;
}

/**
 * Publishes a `join`/`leave` frame on the topic's live subject (libs/nats publishPresenceFrame);
 * `conn` names the connection a `join` announces.
 */
export type PresenceAnnouncer = (app: string, topic: string, frame: string, conn?: string, order?: number) => void;

/** How long an announced `join` waits for its echo from NATS before its joiner is forgotten, ms. */
const JOIN_ECHO_MS = 30_000;

/**
 * Topic occupancy and presence on the edge: records every topic subscription of a connection in
 * Redis (libs/presence: counts for any topic, members for presence topics), emits `topic_sub` /
 * `topic_unsub`, and when a user's first connection subscribes to a presence topic (app setting
 * `presenceTopics`) or their last one leaves, announces `join`/`leave` on the topic's live
 * subject (every edge with subscribers fans it out once) and emits `presence_join` /
 * `presence_leave`. Redis decides first and last atomically, so two edges never both announce.
 * A failed Redis write is counted and logged, never fatal to the subscription.
 */
export class TopicPresence {
  /**
   * The connections of this edge whose `join` was announced and has not come back from NATS
   * yet, by connection and topic: the echo reaches every subscriber but them (a subscriber does
   * not get the `join` of its own first connection).
   */
  private readonly joining = new Map<string, TopicSubscriber>();

  constructor(
    private readonly edgeId: string,
    private readonly presence: Pick<PresenceRegistry, 'topicJoined' | 'topicLeft'>,
    private readonly apps: Pick<AppDirectory, 'get'>,
    private readonly announce: PresenceAnnouncer,
    private readonly events: Pick<EventPublisher, 'emit'>,
    private readonly metrics: EdgeMetrics,
    private readonly log: Pick<Logger, 'warn'>,
  ) {}

  /** Whether the app lists the topic in `presenceTopics`, or it is a Pusher `presence-` channel. */
  isPresenceTopic(app: string, topic: string): boolean {
    return isPresenceTopic(this.apps.get(app)?.settings.presenceTopics, topic);
  }

  /**
   * A connection subscribed to a topic (`_all` never comes here). `again`: recording it anew after
   * the edge's presence lease lapsed (`lease`: a sweep may have reported its `topic_unsub`, the
   * topic's `channel_vacated` and the user's `leave`: each is undone, `topic_sub`,
   * `channel_occupied` and `join`, when the record finds it gone), or after Redis lost its data
   * (`data`: nobody reported anything, so nothing is reported again).
   */
  joined(c: TopicSubscriber, topic: string, again?: 'lease' | 'data'): void {
    const about = { app: c.app, user: c.user, device: c.device, conn: c.id, edge: this.edgeId };
    if (again === undefined) this.events.emit('topic_sub', { ...about, topic });
    const presence = this.isPresenceTopic(c.app, topic);
    const since = Date.now();
    this.presence.topicJoined({ app: c.app, topic, user: c.user, conn: c.id, device: c.device, since, presence }).then(
      ({ added, first, occupied, order }) => {
        if (again === 'data') return;
        if (again === 'lease' && added) this.events.emit('topic_sub', { ...about, topic });
        if (occupied) this.events.emit('channel_occupied', { app: c.app, topic });
        if (!first || !presence) return;
        const key = joinKey(c.id, c.app, topic);
        this.joining.set(key, c);
        setTimeout(() => {
          if (this.joining.get(key) === c) this.joining.delete(key);
        }, JOIN_ECHO_MS).unref();
        this.announce(c.app, topic, ServerFrames.join(topic, c.user, c.device, since), c.id, order);
        this.events.emit('presence_join', { ...about, topic });
      },
      (err: unknown) => this.failed(err),
    );
  }

  /** A connection's subscription to a topic ended (unsub, unbind, close, or a failed subscribe). */
  left(c: TopicSubscriber, topic: string): void {
    const about = { app: c.app, user: c.user, device: c.device, conn: c.id, edge: this.edgeId };
    this.events.emit('topic_unsub', { ...about, topic });
    this.presence.topicLeft(c.app, topic, c.user, c.id).then(
      ({ last, vacated, order }) => {
        if (last && this.isPresenceTopic(c.app, topic)) {
          this.announce(c.app, topic, ServerFrames.leave(topic, c.user), undefined, order);
          this.events.emit('presence_leave', { ...about, topic });
        }
        // After the member's leave, as Pusher orders its webhooks.
        if (vacated) this.events.emit('channel_vacated', { app: c.app, topic });
      },
      (err: unknown) => this.failed(err),
    );
  }

  /**
   * The connection of this edge whose `join` on the topic came back from NATS (`conn` from the
   * announcement), once; undefined when it is another edge's.
   */
  takeJoiner(conn: string, app: string, topic: string): TopicSubscriber | undefined {
    const key = joinKey(conn, app, topic);
    const c = this.joining.get(key);
    if (c !== undefined) this.joining.delete(key);
    return c;
  }

  private failed(err: unknown): void {
    this.metrics.errors.inc({ code: 'presence' });
    this.log.warn({ err }, 'topic presence write failed');
  }
}

/** Key of an announced `join` (ids and topics hold no newline). */
function joinKey(conn: string, app: string, topic: string): string {
  return `${conn}\n${app}\n${topic}`;
}
