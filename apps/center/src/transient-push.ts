import { publishTransient, type NatsConnection } from '@push/nats';
import type { PresenceRegistry } from '@push/presence';
import { PushError, type MessagePayload, type Subjects } from '@push/protocol';
import type { Logger } from 'pino';

/**
 * Transient pushes (docs/api.md#transient-pushes): a message published on the user's live
 * subject only, never stored, so it reaches the user's connections online at that moment and
 * nothing else. Shared by the push service (single and batch) and the fan-out job runner.
 */
export class TransientPush {
  /** Presence reads failing (Redis down): logged once, not per push. */
  private presenceFailing = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
    private readonly presence: Pick<PresenceRegistry, 'lookup'>,
    private readonly log: Pick<Logger, 'warn' | 'info'>,
  ) {}

  /**
   * Publishes to the user's connections wherever they are. Throws PushError
   * `store_unavailable` when the NATS connection is closed (nothing was sent).
   */
  publish(app: string, user: string, payload: MessagePayload, now: number): void {
    try {
      publishTransient(this.nc, this.subjects, app, user, payload, now);
    } catch (err) {
      throw new PushError('store_unavailable', 'NATS is not connected: the transient message was not sent', {
        cause: err,
      });
    }
  }

  /**
   * Publishes, then answers how many connections presence lists for the user: best effort (a
   * connection opening or closing at that moment may be counted and miss it, or the reverse).
   * Null when presence could not be read (Redis down): the message was sent all the same,
   * since delivery needs only NATS.
   */
  async send(app: string, user: string, payload: MessagePayload, now: number): Promise<number | null> {
    this.publish(app, user, payload, now);
    try {
      const connections = (await this.presence.lookup(app, user)).length;
      if (this.presenceFailing) this.log.info('presence read again: transient pushes count connections again');
      this.presenceFailing = false;
      return connections;
    } catch (err) {
      if (!this.presenceFailing)
        this.log.warn({ err }, 'presence unreadable: transient pushes answer connections null');
      this.presenceFailing = true;
      return null;
    }
  }
}
