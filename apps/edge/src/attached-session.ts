import { peekTokenApp, type ClientIdentity } from '@push/apps';
import { CLOSE, SessionFrames, taggedTopicKey, withApp } from '@push/protocol';
import type { ClientConnection, ClientSocket } from './client-connection.js';
import { ClientSession, EarlyFrames, type SessionFrame } from './client-session.js';
import { REPLACED_REASON } from './device-policy.js';
import type { RpcSlots } from './upstream-frames.js';

/**
 * Checks a client token as the upgrade does (the app exists and is enabled, allows the page's
 * origin and the client's address, the signature and expiry hold): the identity, or a PushError
 * with the refusal's code.
 */
export type ClientAuthenticator = (token: string, origin: string, ip: string) => ClientIdentity;

/** The app a token names, or undefined when it names none (the authenticator then answers why). */
export function tokenApp(token: string): string | undefined {
  try {
    return peekTokenApp(token);
  } catch {
    return undefined; // malformed: the authenticator throws token_malformed with its message
  }
}

/**
 * A session a connection attached after its first (`attach`): another app, or another user of
 * any app, proven by its own client token. It shares the connection's socket and id; every frame
 * it sends carries `app`, and its topic frames come through the topics' tagged pub/sub keys. It
 * ends on its own (`detached`), or with the socket.
 */
export class AttachedSession extends ClientSession {
  private readonly appJson: string;

  constructor(
    private readonly conn: ClientConnection,
    id: ClientIdentity,
  ) {
    super(conn.ctx, id.app, id.user, id.device, id.exp, id.topics);
    this.appJson = JSON.stringify(id.app);
    this.traffic = conn.ctx.metrics.traffic.cell(id.app, conn.app);
  }

  get id(): string {
    return this.conn.id;
  }

  get ws(): ClientSocket | undefined {
    return this.conn.ws;
  }

  rpcSlots(): RpcSlots {
    return this.conn.rpcSlots();
  }

  /** Greets with `attached` (the session's `hello`), then delivers as a first session does. */
  open(maxMessageBytes: number): void {
    this.start(
      SessionFrames.attached({
        app: this.app,
        conn: this.id,
        user: this.user,
        device: this.device,
        window: this.ctx.config.window,
        maxMessageBytes,
      }),
    );
  }

  send(text: string): number {
    return this.conn.write(withApp(this.appJson, text), this.traffic);
  }

  /** Frames about this session that came before its `attached` (it waits as a `hello` does). */
  private early: EarlyFrames<SessionFrame> | undefined;

  /** Handles a frame about this session; before its `attached`, after it, in order (as before a `hello`). */
  handleText(frame: SessionFrame, text: string): void {
    if (this.greeted) {
      this.handle(frame);
      return;
    }
    if (!(this.early ??= new EarlyFrames()).hold(frame, text)) {
      this.early = undefined;
      this.conn.end(1008, 'too many frames before attached', 'protocol');
    }
  }

  protected override onGreeted(): void {
    const early = this.early;
    this.early = undefined;
    for (const frame of early?.frames ?? []) {
      if (this.isClosed) return;
      this.handle(frame);
    }
  }

  topicKey(key: string): string {
    return taggedTopicKey(key);
  }

  /** A newer connection of this session's user took over (devicePolicy): `detached`, reason `replaced`. */
  replace(): void {
    this.conn.endSession(this, 'replaced', CLOSE.REPLACED, REPLACED_REASON, REPLACED_REASON);
  }

  /** A kick of this session's user (or device): the session ends (`detached`, reason `kicked`). */
  kick(reason: string): void {
    if (this.isClosed) return;
    this.ctx.metrics.kicked.inc();
    this.emit('kicked', { reason });
    this.conn.endSession(this, 'kicked', CLOSE.KICKED, reason, 'kicked');
  }
}
