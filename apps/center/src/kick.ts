import type { NatsConnection } from '@nats-io/nats-core';
import { readKick, type AppRecord, type Subjects } from '@push/protocol';

/**
 * Kick: closes a user's connections (or one device's) on every edge, with close code 4004.
 * A core NATS message on `push.ctl.<app>.<user>`, which every edge hears; no store involved,
 * so it reaches the connections open now (a kicked client must not reconnect with the same
 * token; the business stops issuing it new ones).
 */
export class Kicker {
  constructor(
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
  ) {}

  kick(app: AppRecord, user: string, body: unknown): { sent: true } {
    const command = readKick(body);
    this.nc.publish(this.subjects.control(app.id, user), JSON.stringify(command));
    return { sent: true };
  }
}
