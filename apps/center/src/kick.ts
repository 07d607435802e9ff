import type { NatsConnection } from '@nats-io/nats-core';
import type { PresenceEntry, PresenceRegistry } from '@push/presence';
import { readKick, type AppRecord, type Subjects } from '@push/protocol';
import type { Logger } from 'pino';

/** What a kick answers: it was sent, and how many connections presence listed for it. */
export interface KickResult {
  sent: true;
  /**
   * The user's (or the device's) connections on live edges that presence listed when the kick
   * was sent: the ones it closes. A connection opened in the same instant may be closed
   * without being counted (its presence entry not written yet), or counted and missed.
   * Absent when presence (Redis) could not be read: the kick was sent all the same.
   */
  connections?: number;
}

/**
 * Kick: closes a user's connections (or one device's) on every edge, with close code 4004.
 * A core NATS message on `push.ctl.<app>.<user>`, which every edge hears; no store involved,
 * so it reaches the connections open now (a kicked client must not reconnect with the same
 * token; the business stops issuing it new ones). The count comes from presence rather than
 * from the edges' answers: edges hear control messages on the lean live connection, which
 * does not reply, and waiting for every edge would tie the answer to the slowest one.
 */
export class Kicker {
  constructor(
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
    private readonly presence: PresenceRegistry,
    private readonly log: Logger,
  ) {}

  async kick(app: AppRecord, user: string, body: unknown): Promise<KickResult> {
    const command = readKick(body);
    // Counted before the kick goes out: afterwards the edges start removing the entries.
    let entries: PresenceEntry[] | undefined;
    try {
      entries = await this.presence.lookup(app.id, user);
    } catch (err) {
      this.log.warn({ err, app: app.id }, 'kick: presence unreadable; sent without a count');
    }
    this.nc.publish(this.subjects.control(app.id, user), JSON.stringify(command));
    if (entries === undefined) return { sent: true };
    const connections = entries.filter((e) => command.device === undefined || e.device === command.device).length;
    return { sent: true, connections };
  }
}
