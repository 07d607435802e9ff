import type { AppDirectory } from '@push/apps';
import type { Config } from '@push/config';
import type { InboxStore } from '@push/nats';
import type { PresenceRegistry } from '@push/presence';
import type { Subjects } from '@push/protocol';
import type { Logger } from 'pino';
import type { AckBatcher } from './ack-batcher.js';
import type { EdgeMetrics } from './metrics.js';
import type { UserChannels } from './user-channels.js';

/** What every connection of one edge process shares (one object, referenced, not copied). */
export interface EdgeContext {
  edgeId: string;
  config: Config['edge'];
  subjects: Subjects;
  store: InboxStore;
  channels: UserChannels;
  apps: AppDirectory;
  presence: PresenceRegistry;
  metrics: EdgeMetrics;
  log: Logger;
  /** Turns acks into few store requests (one purge per user per turn), retried on failure. */
  acks: AckBatcher;
  /** Send no more live frames to a socket past this many buffered bytes; resume on drain. */
  highWaterBytes: number;
}
