import type { Logger } from '@push/logger';
import { readControl, type ControlCommand, type Subjects } from '@push/protocol';
import type { UserChannels } from './user-channels.js';

/**
 * Control messages on `push.ctl.<app>.<user>` (one wildcard subscription per edge; control is
 * rare): a kick closes the user's connections here, or only one device's; a topic bind or unbind
 * subscribes every connection of the user here to the topic, or makes it leave. The subject is read
 * with `Subjects.parseControl` and the payload with libs/protocol's `readControl` (the schema the
 * center writes it with). Unreadable messages are logged and ignored: control comes from the
 * center, so one is a bug or a foreign publisher, never a reason to drop other users.
 */
export class ControlHandler {
  /** The Pusher door: a kick also closes the Pusher sockets signed in as the user (set once both exist). */
  pusher: { kickUser(app: string, user: string): void } | undefined;

  constructor(
    private readonly subjects: Subjects,
    private readonly channels: Pick<UserChannels, 'receivers'>,
    private readonly log: Logger,
  ) {}

  /** Handles one control message (the live subscriber's callback). */
  onMessage(subject: string, payload: Buffer): void {
    const target = this.subjects.parseControl(subject);
    if (target === undefined) {
      this.log.warn({ subject }, 'control message on an unreadable subject ignored');
      return;
    }
    let command: ControlCommand;
    try {
      command = readControl(payload);
    } catch (err) {
      this.log.warn({ err, subject }, 'unreadable control message ignored');
      return;
    }
    if (command.op === 'kick' && command.device === undefined) this.pusher?.kickUser(target.app, target.user);
    for (const conn of this.channels.receivers(target.app, target.user)) {
      if (command.op === 'kick') {
        if (command.device === undefined || conn.device === command.device) conn.kick(command.reason);
      } else if (command.op === 'bind') conn.bindTopic(command.topic);
      else conn.unbindTopic(command.topic);
    }
  }
}
