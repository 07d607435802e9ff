import type { AppDirectory } from '@push/apps';
import type { Config } from '@push/config';
import type { BacklogReader, EventPublisher, InboxStore, RpcClient, TopicStore, UpstreamStore } from '@push/nats';
import type { PresenceRegistry } from '@push/presence';
import type { Subjects } from '@push/protocol';
import type { Logger } from 'pino';
import type { AckBatcher } from './ack-batcher.js';
import type { BindingsReader } from './bindings.js';
import type { DeliveryCounts } from './delivery-counts.js';
import type { DevicePolicy } from './device-policy.js';
import type { EdgePresence } from './edge-presence.js';
import type { IpPolicy } from './ip-policy.js';
import type { EdgeMetrics } from './metrics.js';
import type { SendLimits } from './send-limits.js';
import type { TopicChannels } from './topic-channels.js';
import type { TopicPresence } from './topic-presence.js';
import type { UserChannels } from './user-channels.js';

/** What every connection of one edge process shares (one object, referenced, not copied). */
export interface EdgeContext {
  edgeId: string;
  /**
   * Connection ids are `<connIdPrefix>-<counter>`: the edge id and this process's start time
   * (ms, base 36), so an edge restarted under a fixed id never reuses its predecessor's ids.
   */
  connIdPrefix: string;
  config: Config['edge'];
  subjects: Subjects;
  store: InboxStore;
  /** Reads backlogs: per user, or in one shared pass when many connections wait (BacklogReader). */
  backlog: BacklogReader;
  channels: UserChannels;
  /** Topic history (resume reads). */
  topicStore: TopicStore;
  /** One NATS subscription per topic with local subscribers; fan-out through uWS pub/sub. */
  topics: TopicChannels;
  apps: AppDirectory;
  presence: PresenceRegistry;
  /** This edge's connections in presence, and their online/offline events. */
  edgePresence: EdgePresence;
  /** Topic subscriptions in Redis (occupancy, presence topics) and their events. */
  topicPresence: TopicPresence;
  metrics: EdgeMetrics;
  log: Logger;
  /** Rate limits of client sends (per user across this edge's connections). */
  sendLimits: SendLimits;
  /** Removes acked messages from the store (one delete each, once per turn), retried on failure. */
  acks: AckBatcher;
  /** Send no more live frames to a socket past this many buffered bytes; resume on drain. */
  highWaterBytes: number;
  /** Client `up` frames into the app's upstream stream. */
  upstream: UpstreamStore;
  /** Events into the app's event stream; never blocks (see EventPublisher). */
  events: EventPublisher;
  /** Client `rpc` frames as NATS requests on `push.rpc.<app>`. */
  rpc: RpcClient;
  /** Topic bindings of a user (Redis mirror), read when a connection opens. */
  bindings: BindingsReader;
  /** Client addresses, app CIDRs and per-IP limits, for both doors' upgrades. */
  ipPolicy: IpPolicy;
  /** Counts deliveries that ended without an ack; moves never-acked messages out (issue 17 part 3). */
  deliveryCounts: DeliveryCounts;
  /** The app setting `devicePolicy` (set once its claim subscription is made). */
  devicePolicy?: DevicePolicy;
}

/** How often, at most, failed removals are logged (each is counted), ms. */
const REMOVE_FAILED_LOG_MS = 5000;

/**
 * The ack batcher's `onFailure`: counts every store request that failed to remove acked messages
 * (they are retried) and logs at most every few seconds with the number since the last line, so
 * a store outage under a flood of acks gives a few log lines, not one per ack.
 */
export function removalFailureReporter(metrics: EdgeMetrics, log: Logger): (err: unknown) => void {
  let failures = 0;
  let loggedAt = 0;
  return (err) => {
    metrics.removeFailed.inc();
    failures++;
    const now = Date.now();
    if (now - loggedAt < REMOVE_FAILED_LOG_MS) return;
    log.warn({ err, failed: failures }, 'acked messages not removed from the store yet (retrying)');
    failures = 0;
    loggedAt = now;
  };
}
