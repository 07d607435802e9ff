import type { PresenceRegistry } from '@push/presence';
import { isPresenceTopic, type AppRecord } from '@push/protocol';

/** One subscribed connection of a presence topic, as the members list shows it. */
export interface TopicMemberView {
  user: string;
  device: string;
  conn: string;
  /** Epoch ms when the connection subscribed. */
  since: number;
}

/** What `GET /v1/apps/<app>/topics/<topic>[/presence]` and `push.api.topics.presence` answer. */
export interface TopicPresenceView {
  topic: string;
  /** Whether the topic matches the app's `presenceTopics` (members listed, join/leave announced). */
  presence: boolean;
  /** Subscribed connections, on every edge (`_all` is never counted). */
  connections: number;
  /** Distinct users among them. */
  users: number;
  /** Presence topics only, when asked: every subscribed connection on a live edge. */
  members?: TopicMemberView[];
}

/**
 * Occupancy and members of a topic, read from Redis where the edges record every topic
 * subscription (libs/presence). Counts are two O(1) reads; the members list (presence topics only)
 * reads the topic's whole hash, so it is for presence topics of a size a client would show.
 */
export class TopicPresenceService {
  constructor(private readonly presence: Pick<PresenceRegistry, 'topicOccupancy' | 'topicMembers'>) {}

  async get(app: AppRecord, topic: string, withMembers: boolean): Promise<TopicPresenceView> {
    const presence = isPresenceTopic(app.settings.presenceTopics, topic);
    const [occupancy, members] = await Promise.all([
      this.presence.topicOccupancy(app.id, topic),
      presence && withMembers ? this.presence.topicMembers(app.id, topic) : undefined,
    ]);
    const view: TopicPresenceView = { topic, presence, ...occupancy };
    if (members !== undefined) {
      view.members = members.map((m) => ({ user: m.user, device: m.device, conn: m.conn, since: m.since }));
    }
    return view;
  }
}
