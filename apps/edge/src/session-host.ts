import type { EventInput, EventType } from '@push/protocol';
import type { ClientSocket, ConnectionContext } from './client-connection.js';
import type { RpcSlots } from './upstream-frames.js';

/** Extra fields of an `error` frame: the id of the refused frame, the seqs or topic it was about. */
export interface ErrorExtra {
  id?: string;
  seqs?: number[];
  retryAfter?: number;
  topic?: string;
}

/**
 * What the per-session parts of a connection (InboxDelivery, TopicSubscriptions, UpstreamFrames)
 * use of the session they belong to: who it is (app, user, device), its socket, and how to
 * answer it. A ClientConnection fits: each part reads only this, so a reader can take one part at
 * a time, and a new frame kind touches one module.
 */
export interface SessionHost {
  readonly ctx: ConnectionContext;
  /** Connection id, unique across edges. */
  readonly id: string;
  readonly app: string;
  readonly user: string;
  readonly device: string;
  readonly ws: ClientSocket | undefined;
  /** Topic patterns the client token grants (its `topics` claim). */
  readonly topicGrants: readonly string[] | undefined;
  readonly isClosed: boolean;
  /** True once the session's greeting (`hello`, `attached`) was sent. */
  readonly greeted: boolean;
  /** The connection's `rpc` frames awaiting their answer (shared by all its sessions). */
  rpcSlots(): RpcSlots;
  /** Sends one frame (nothing once closed). */
  sendText(text: string): void;
  /** Sends one frame of the session on the socket; answers as uWS `send` does (1 sent, 0 buffered, 2 dropped). */
  send(text: string): number;
  /** The uWS pub/sub key the socket joins for a topic channel's key (its frames carry `app` on a multi-app connection). */
  topicKey(key: string): string;
  /** Answers with an `error` frame (a PushError's code, else `internal`). */
  sendError(err: unknown, extra?: ErrorExtra): void;
  /** Emits an event about this session (app, user, device, conn and edge filled in). */
  emit<T extends EventType>(type: T, fields: Omit<EventInput<T>, 'app' | 'user' | 'device' | 'conn' | 'edge'>): void;
}
