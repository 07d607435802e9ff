import { Type, type Static } from '@sinclair/typebox';

/**
 * Several apps on one connection: the frames that attach and detach an app's session, and the
 * `app` field that names the session a frame is about once a connection holds more than one.
 * docs/protocol.md ("Several apps on one connection") is the human view.
 */

/** Longest client token an `attach` may carry, characters. */
export const MAX_ATTACH_TOKEN_LENGTH = 8192;

/**
 * Client -> edge: attach another app's session to this connection, proving it with that app's
 * own client token (any app of the deployment, any user). Answered by `attached`, or an `error`
 * with `app` (when the token names one) and the code.
 */
export const AttachFrameSchema = Type.Object({
  t: Type.Literal('attach'),
  token: Type.String({ minLength: 1, maxLength: MAX_ATTACH_TOKEN_LENGTH }),
});
export type AttachFrame = Static<typeof AttachFrameSchema>;

/** Client -> edge: end one app's session; answered by `detached` (reason `client`). */
export const DetachFrameSchema = Type.Object({
  t: Type.Literal('detach'),
  app: Type.String({ minLength: 1, maxLength: 256 }),
});
export type DetachFrame = Static<typeof DetachFrameSchema>;

/** Edge -> client: an `attach` took effect; the session's own `hello`. */
export const AttachedFrameSchema = Type.Object({
  t: Type.Literal('attached'),
  app: Type.String(),
  conn: Type.String(),
  user: Type.String(),
  device: Type.String(),
  window: Type.Integer({ minimum: 1 }),
  maxMessageBytes: Type.Integer({ minimum: 1 }),
});
export type AttachedFrame = Static<typeof AttachedFrameSchema>;

/**
 * Edge -> client: one app's session ended while the connection stays open for the others.
 * `reason`: `client` (a `detach`), `kicked`, `app_disabled`, `token_expired`.
 */
export const DetachedFrameSchema = Type.Object({
  t: Type.Literal('detached'),
  app: Type.String(),
  reason: Type.String(),
  /** The kick's reason, when `reason` is `kicked`. */
  message: Type.Optional(Type.String()),
});
export type DetachedFrame = Static<typeof DetachedFrameSchema>;

/** Why a session ended while its connection stays (the `reason` of `detached`). */
export type DetachReason = 'client' | 'kicked' | 'app_disabled' | 'token_expired' | 'replaced';

/**
 * The frame with `app` added as its first field: every server frame is a JSON object built as a
 * string, so the field is spliced in, never re-serialized.
 */
export function withApp(appJson: string, frame: string): string {
  return `{"app":${appJson},${frame.slice(1)}`;
}

/**
 * The uWS pub/sub key the sockets of multi-app connections join for a topic: its frames carry
 * `app` (published next to the plain key's, only while a socket holds it).
 */
export function taggedTopicKey(key: string): string {
  return `${key}#app`;
}

/** Builders of the session frames (their shapes are the schemas above). */
export const SessionFrames = {
  attached(fields: Omit<AttachedFrame, 't'>): string {
    return JSON.stringify({ t: 'attached', ...fields } satisfies AttachedFrame);
  },
  detached(app: string, reason: DetachReason, message?: string): string {
    return JSON.stringify({ t: 'detached', app, reason, message } satisfies DetachedFrame);
  },
};
