import { CloneType, Type, type Static, type TSchema } from '@sinclair/typebox';
import type { Annotations } from './validate.js';
import { PushError, type ErrorCode } from './errors.js';
import { MAX_CIDRS, cidrListProblem } from './cidr.js';
import { ID_LIMITS, type IdKind } from './ids.js';
import { DEVICE_POLICIES } from './app-settings.js';
import { AttachFrameSchema, AttachedFrameSchema, DetachFrameSchema, DetachedFrameSchema } from './session-frames.js';

/**
 * The wire contract: one JSON Schema (TypeBox) per shape that crosses a process boundary, with
 * the TypeScript types derived from them. docs/protocol.md and docs/api.md are the human view of
 * the same shapes; test/unit/docs-complete.test.ts fails when a kind, field or code is missing
 * there.
 *
 * Schemas say what JSON Schema can: types, ranges, lengths, patterns. What it cannot (an id's
 * length in UTF-8 bytes and its characters, "exactly one of data and b64", base64 whose length
 * leaves one character over) is refined by the reader that follows the check (`idProblem`,
 * `readPayload`). Annotations (`code`, `idKind`, `problem`, see validate.ts) choose the error
 * a failure answers. Objects allow unknown fields: clients and business servers written for a
 * later version keep working.
 */

/** An annotated copy of a schema (TypeBox keeps unknown options on the schema object). */
const note = <T extends TSchema>(schema: T, a: Annotations): T => CloneType(schema, a as Record<string, unknown>);

/** A string id of the given kind; the byte limit and characters are refined by `idProblem`. */
export const IdString = (kind: IdKind, code: ErrorCode = 'invalid_id') =>
  note(Type.String({ minLength: 1, maxLength: ID_LIMITS[kind] }), { code, idKind: kind });

/** Base64 in the standard or URL-safe alphabet (not mixed), optional padding. */
const B64 = note(Type.String({ pattern: '^(?:[A-Za-z0-9+/]*|[A-Za-z0-9_-]*)={0,2}$' }), {
  code: 'invalid_data',
  problem: 'b64 must be a base64 string',
});
/** Any JSON value: the message as given. */
const Data = note(Type.Unknown(), { code: 'invalid_data' });
/** `transient`: a boolean (true: never stored, sent only to connections online now). */
const Transient = note(Type.Boolean(), { problem: 'transient must be a boolean' });
/** Seconds, > 0 and finite (JSON's 1e999 parses as Infinity, which this refuses). */
const Ttl = note(Type.Number({ exclusiveMinimum: 0, maximum: Number.MAX_VALUE }), {
  code: 'invalid_ttl',
  problem: 'ttl must be a positive number of seconds',
});

// --- Client frames ----------------------------------------------------------------------------

/** Most sequences one ack frame may carry. */
export const MAX_ACKS_PER_FRAME = 1000;

/** Client -> edge: acknowledge delivered messages by sequence (removes them from the inbox). */
export const AckFrameSchema = Type.Object({
  t: Type.Literal('ack'),
  seqs: note(
    Type.Array(
      note(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }), {
        code: 'bad_frame',
        problem: 'ack.seqs must hold positive integers',
      }),
      { minItems: 1, maxItems: MAX_ACKS_PER_FRAME },
    ),
    { code: 'bad_frame', problem: `ack.seqs must be an array of 1 to ${MAX_ACKS_PER_FRAME} sequences` },
  ),
});
export type AckFrame = Static<typeof AckFrameSchema>;

/** Longest app-level ping interval anything may agree, seconds (apps' `pingMaxSeconds`, `PUSH_EDGE_PING_MAX`). */
export const MAX_PING_SECONDS = 900;

/** Client -> edge: app-level ping, answered by a `pong` (for browsers, which cannot see WS pings). */
export const PingFrameSchema = Type.Object({
  t: Type.Literal('ping'),
  /** Optional: the interval, seconds, the client proposes from now on; the `pong` says what was agreed. */
  ping: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PING_SECONDS })),
});
export type PingFrame = Static<typeof PingFrameSchema>;

/**
 * Client -> edge, as sent: data to another user of the same app. Answered by `sent` or `error`
 * (which carries `id`). Fields are read in this order; the first bad one answers.
 */
export const SendFrameWireSchema = Type.Object({
  t: Type.Literal('send'),
  to: IdString('user'),
  id: IdString('clientMessageId'),
  data: Type.Optional(Data),
  b64: Type.Optional(B64),
  ttl: Type.Optional(Ttl),
});
export type SendFrameWire = Static<typeof SendFrameWireSchema>;

/** Longest upstream kind, in characters (ASCII only). */
export const MAX_UP_KIND_LENGTH = 64;

/**
 * An upstream kind: a subject token the business filters on (`push.up.<app>.<kind>`), so only
 * the safe alphabet, never encoded.
 */
const UpKind = note(Type.String({ pattern: `^[A-Za-z0-9_-]{1,${MAX_UP_KIND_LENGTH}}$` }), {
  code: 'invalid_kind',
  problem: `kind must be 1 to ${MAX_UP_KIND_LENGTH} characters of A-Z a-z 0-9 _ -`,
});

/**
 * Client -> edge: data up to the business, stored in the app's upstream stream. Answered by
 * `upsent` once stored, or `error` with `id`. Fields are read in this order.
 */
export const UpFrameWireSchema = Type.Object({
  t: Type.Literal('up'),
  id: IdString('clientMessageId'),
  kind: Type.Optional(UpKind),
  data: Type.Optional(Data),
  b64: Type.Optional(B64),
});
export type UpFrameWire = Static<typeof UpFrameWireSchema>;

/**
 * Client -> edge: a request to the business (`method`, `data`), forwarded on `push.rpc.<app>`;
 * answered by an `rpc` frame with the same `id`, or `error` with `id`.
 */
export const RpcFrameWireSchema = Type.Object({
  t: Type.Literal('rpc'),
  id: IdString('clientMessageId'),
  method: IdString('rpcMethod'),
  data: Type.Optional(Data),
});
export type RpcFrameWire = Static<typeof RpcFrameWireSchema>;

/** A topic name in a frame or body: refused with `invalid_topic` (the reserved `_` names are refined by `topicProblem`). */
const TopicName = IdString('topic', 'invalid_topic');

/** Longest per-topic subscription token accepted, characters. */
export const MAX_TOPIC_TOKEN_LENGTH = 4096;

/**
 * Client -> edge: subscribe to a topic. Answered by `subscribed` (after the missed messages when
 * `since` is given) or an `error` carrying `topic`. `token` is a per-topic subscription token
 * for a topic the client token's patterns do not grant.
 */
export const SubFrameSchema = Type.Object({
  t: Type.Literal('sub'),
  topic: TopicName,
  since: Type.Optional(
    note(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }), {
      code: 'bad_frame',
      problem: 'sub.since must be a sequence (an integer >= 0)',
    }),
  ),
  token: Type.Optional(
    note(Type.String({ minLength: 1, maxLength: MAX_TOPIC_TOKEN_LENGTH }), {
      code: 'topic_token_invalid',
      problem: 'sub.token must be a topic token string',
    }),
  ),
});
export type SubFrame = Static<typeof SubFrameSchema>;

/** Client -> edge: leave a topic; answered by `unsubscribed` (also when it was not subscribed). */
export const UnsubFrameSchema = Type.Object({ t: Type.Literal('unsub'), topic: TopicName });
export type UnsubFrame = Static<typeof UnsubFrameSchema>;

/** Every client frame kind, by its `t`. */
export const ClientFrameSchemas = {
  ack: AckFrameSchema,
  ping: PingFrameSchema,
  send: SendFrameWireSchema,
  up: UpFrameWireSchema,
  rpc: RpcFrameWireSchema,
  sub: SubFrameSchema,
  unsub: UnsubFrameSchema,
  attach: AttachFrameSchema,
  detach: DetachFrameSchema,
} as const;
export type ClientFrameKind = keyof typeof ClientFrameSchemas;

// --- Server frames ----------------------------------------------------------------------------

/** Edge -> client: the first frame of every connection. */
export const HelloFrameSchema = Type.Object({
  t: Type.Literal('hello'),
  conn: Type.String(),
  app: Type.String(),
  user: Type.String(),
  device: Type.String(),
  ping: Type.Integer({ minimum: 1 }),
  window: Type.Integer({ minimum: 1 }),
  maxMessageBytes: Type.Integer({ minimum: 1 }),
});
export type HelloFrame = Static<typeof HelloFrameSchema>;

/**
 * Edge -> client: a stored message; exactly one of `data` and `b64`; `from` on client sends;
 * `topic` and `prev` on topic messages (which take no ack).
 */
export const MsgFrameSchema = Type.Object({
  t: Type.Literal('msg'),
  /** The app the frame is about, on a connection holding several apps' sessions (docs/protocol.md). */
  app: Type.Optional(Type.String()),
  /** Absent on a transient message (never stored: nothing to ack). */
  seq: Type.Optional(Type.Integer({ minimum: 1 })),
  /** True on a message the business pushed with `transient`: never stored, no `seq`, no ack. */
  transient: Type.Optional(Type.Literal(true)),
  ts: Type.Integer(),
  from: Type.Optional(Type.String()),
  topic: Type.Optional(Type.String()),
  /** The topic's previous sequence (0: none): a client whose last sequence differs missed messages. */
  prev: Type.Optional(Type.Integer({ minimum: 0 })),
  data: Type.Optional(Type.Unknown()),
  b64: Type.Optional(Type.String()),
});
export type MsgFrame = Static<typeof MsgFrameSchema>;

/** Edge -> client: answer to an app-level `ping`. */
export const PongFrameSchema = Type.Object({
  t: Type.Literal('pong'),
  /** The interval agreed, seconds, when the `ping` proposed one. */
  ping: Type.Optional(Type.Integer({ minimum: 1 })),
});
export type PongFrame = Static<typeof PongFrameSchema>;

/** Edge -> client: a `send` was stored. */
export const SentFrameSchema = Type.Object({
  t: Type.Literal('sent'),
  /** The app the frame is about, on a connection holding several apps' sessions (docs/protocol.md). */
  app: Type.Optional(Type.String()),
  id: Type.String(),
  seq: Type.Integer({ minimum: 1 }),
  dup: Type.Boolean(),
});
export type SentFrame = Static<typeof SentFrameSchema>;

/** Edge -> client: a frame was refused or failed. `id` answers a `send`; `seqs` comes with `ack_unknown`. */
export const ErrorFrameSchema = Type.Object({
  t: Type.Literal('error'),
  /** The app the frame is about, on a connection holding several apps' sessions (docs/protocol.md). */
  app: Type.Optional(Type.String()),
  code: Type.String(),
  message: Type.String(),
  id: Type.Optional(Type.String()),
  seqs: Type.Optional(Type.Array(Type.Integer({ minimum: 1 }))),
  /** With `rate_limited`: ms until another frame of the kind would be accepted. */
  retryAfter: Type.Optional(Type.Integer({ minimum: 0 })),
  /** Answers a `sub` or `unsub` of this topic. */
  topic: Type.Optional(Type.String()),
});
export type ErrorFrame = Static<typeof ErrorFrameSchema>;

/** Edge -> client: an `up` was stored (`dup`: a retry of one stored before; `seq` is its stream sequence). */
export const UpsentFrameSchema = Type.Object({
  t: Type.Literal('upsent'),
  /** The app the frame is about, on a connection holding several apps' sessions (docs/protocol.md). */
  app: Type.Optional(Type.String()),
  id: Type.String(),
  seq: Type.Integer({ minimum: 1 }),
  dup: Type.Boolean(),
});
export type UpsentFrame = Static<typeof UpsentFrameSchema>;

/** Edge -> client: the business's answer to an `rpc` (its `data`, any JSON value). */
export const RpcReplyFrameSchema = Type.Object({
  t: Type.Literal('rpc'),
  /** The app the frame is about, on a connection holding several apps' sessions (docs/protocol.md). */
  app: Type.Optional(Type.String()),
  id: Type.String(),
  data: Type.Unknown(),
});
export type RpcReplyFrame = Static<typeof RpcReplyFrameSchema>;

/** Edge -> client: a `sub` took effect; every message after `seq` arrives live. */
export const SubscribedFrameSchema = Type.Object({
  t: Type.Literal('subscribed'),
  /** The app the frame is about, on a connection holding several apps' sessions (docs/protocol.md). */
  app: Type.Optional(Type.String()),
  topic: Type.String(),
  /** The topic's last sequence when the live feed started (0: the topic has none). */
  seq: Type.Integer({ minimum: 0 }),
});
export type SubscribedFrame = Static<typeof SubscribedFrameSchema>;

/** Edge -> client: an `unsub` took effect; no more messages of the topic come. */
export const UnsubscribedFrameSchema = Type.Object({
  t: Type.Literal('unsubscribed'),
  app: Type.Optional(Type.String()),
  topic: Type.String(),
});
export type UnsubscribedFrame = Static<typeof UnsubscribedFrameSchema>;

/**
 * Edge -> client: messages of a topic are missing and no longer held (history did not reach
 * back to `since`, or a gap the edge could not fill); `first` is the first sequence still held
 * (what follows starts there or later).
 */
export const LostFrameSchema = Type.Object({
  t: Type.Literal('lost'),
  /** The app the frame is about, on a connection holding several apps' sessions (docs/protocol.md). */
  app: Type.Optional(Type.String()),
  topic: Type.String(),
  first: Type.Integer({ minimum: 0 }),
});
export type LostFrame = Static<typeof LostFrameSchema>;

/**
 * Edge -> client: on a presence topic (app setting `presenceTopics`) the user's first connection
 * subscribed (on any edge). `since`: when that subscription was made, epoch ms.
 */
export const JoinFrameSchema = Type.Object({
  t: Type.Literal('join'),
  /** The app the frame is about, on a connection holding several apps' sessions (docs/protocol.md). */
  app: Type.Optional(Type.String()),
  topic: Type.String(),
  user: Type.String(),
  device: Type.String(),
  since: Type.Integer({ minimum: 0 }),
});
export type JoinFrame = Static<typeof JoinFrameSchema>;

/**
 * Edge -> client: on a presence topic the user's last subscribed connection left (unsub, close,
 * or its edge died: then within the presence bound, docs/operations.md).
 */
export const LeaveFrameSchema = Type.Object({
  t: Type.Literal('leave'),
  app: Type.Optional(Type.String()),
  topic: Type.String(),
  user: Type.String(),
});
export type LeaveFrame = Static<typeof LeaveFrameSchema>;

/** Every server frame kind, by its `t`. */
export const ServerFrameSchemas = {
  hello: HelloFrameSchema,
  msg: MsgFrameSchema,
  pong: PongFrameSchema,
  sent: SentFrameSchema,
  error: ErrorFrameSchema,
  upsent: UpsentFrameSchema,
  rpc: RpcReplyFrameSchema,
  subscribed: SubscribedFrameSchema,
  unsubscribed: UnsubscribedFrameSchema,
  lost: LostFrameSchema,
  join: JoinFrameSchema,
  leave: LeaveFrameSchema,
  attached: AttachedFrameSchema,
  detached: DetachedFrameSchema,
} as const;
export type ServerFrame =
  | HelloFrame
  | MsgFrame
  | PongFrame
  | SentFrame
  | ErrorFrame
  | UpsentFrame
  | RpcReplyFrame
  | SubscribedFrame
  | UnsubscribedFrame
  | LostFrame;

// --- Center HTTP bodies -----------------------------------------------------------------------

/** One message of a push: `POST /v1/apps/<app>/push` body, or one item of `messages`. */
export const PushMessageSchema = Type.Object({
  user: IdString('user'),
  data: Type.Optional(Data),
  b64: Type.Optional(B64),
  ttl: Type.Optional(Ttl),
  id: Type.Optional(IdString('idempotencyId')),
  transient: Type.Optional(Transient),
});
export type PushMessage = Static<typeof PushMessageSchema>;

/**
 * A batch push. Its size limit, `PUSH_CENTER_MAX_BATCH`, is the deployment's and answers 413
 * `batch_too_large`, so the push service counts before this schema is checked.
 */
export const PushBatchSchema = Type.Object({
  messages: note(Type.Array(note(PushMessageSchema, { problem: 'a message must be a JSON object' }), { minItems: 1 }), {
    problem: 'messages must be a non-empty array',
  }),
});
export type PushBatch = Static<typeof PushBatchSchema>;

/**
 * One message's outcome in a batch answer: stored (`seq`, `duplicate`), sent live only
 * (`transient`, to `connections` by presence; null when presence was unreadable) or not (`error`).
 */
export const BatchItemResultSchema = Type.Union([
  Type.Object({ user: Type.String(), seq: Type.Integer({ minimum: 1 }), duplicate: Type.Boolean() }),
  Type.Object({
    user: Type.String(),
    transient: Type.Literal(true),
    connections: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]),
  }),
  Type.Object({ user: Type.String(), error: Type.Object({ code: Type.String(), message: Type.String() }) }),
]);
export type BatchItemResult = Static<typeof BatchItemResultSchema>;

/** `POST /v1/apps/<app>/topics/<topic>/messages` body: a push without `user`. */
export const TopicMessageSchema = Type.Object({
  data: Type.Optional(Data),
  b64: Type.Optional(B64),
  ttl: Type.Optional(Ttl),
  id: Type.Optional(IdString('idempotencyId')),
});
export type TopicMessage = Static<typeof TopicMessageSchema>;

/** One item of a batch topic publish: a topic message with its `topic`. */
export const TopicBatchItemSchema = Type.Object({
  topic: TopicName,
  data: Type.Optional(Data),
  b64: Type.Optional(B64),
  ttl: Type.Optional(Ttl),
  id: Type.Optional(IdString('idempotencyId')),
});
export type TopicBatchItem = Static<typeof TopicBatchItemSchema>;

/** `POST /v1/apps/<app>/topics/messages` body (its size limit is `PUSH_CENTER_MAX_BATCH`, as for pushes). */
export const TopicBatchSchema = Type.Object({
  messages: note(
    Type.Array(note(TopicBatchItemSchema, { problem: 'a message must be a JSON object' }), { minItems: 1 }),
    { problem: 'messages must be a non-empty array' },
  ),
});
export type TopicBatch = Static<typeof TopicBatchSchema>;

/** One topic message's outcome in a batch answer. */
export const TopicBatchItemResultSchema = Type.Union([
  Type.Object({ topic: Type.String(), seq: Type.Integer({ minimum: 1 }), duplicate: Type.Boolean() }),
  Type.Object({ topic: Type.String(), error: Type.Object({ code: Type.String(), message: Type.String() }) }),
]);
export type TopicBatchItemResult = Static<typeof TopicBatchItemResultSchema>;

/** Longest kick reason, in UTF-8 bytes (a WebSocket close reason holds at most 123). */
export const MAX_KICK_REASON_BYTES = 100;

/** `POST /v1/apps/<app>/users/<user>/kick` body (optional). `reason` is refined to bytes by `readKick`. */
export const KickBodySchema = Type.Object({
  device: Type.Optional(IdString('device')),
  reason: Type.Optional(
    note(Type.String({ maxLength: MAX_KICK_REASON_BYTES }), {
      problem: `reason must be a string of at most ${MAX_KICK_REASON_BYTES} bytes`,
    }),
  ),
});
export type KickBody = Static<typeof KickBodySchema>;

/**
 * Free text of `min` to `max` characters, counted as Unicode code points (an emoji is one, as a
 * reader counts it; `maxLength` alone counts UTF-16 units). `maxLength` stays as a cheap first
 * bound: no code point takes more than two units.
 */
const Text = (min: number, max: number) =>
  Type.RegExp(new RegExp(`^[\\s\\S]{${min},${max}}$`, 'u'), { maxLength: 2 * max });

/** An app's display name. */
const AppName = note(Text(1, 200), {
  problem: 'name must be a string of 1 to 200 characters',
});

/** An http(s) URL of at most 2000 characters (a webhook or RPC endpoint). */
const HttpUrl = note(Type.String({ minLength: 8, maxLength: 2000, pattern: '^https?://[^\\s]+$' }), {
  problem: 'url must be an http:// or https:// URL of at most 2000 characters',
});
/** An RPC URL, or '' for none. */
const HttpUrlOrEmpty = Type.Union([HttpUrl, Type.Literal('')], {
  problem: 'rpcUrl must be an http:// or https:// URL, or empty for none',
});

/** A list of CIDRs: strings here; each is parsed by `settingsProblem` (JSON Schema cannot say what an address is). */
const CidrList = (name: string) =>
  note(Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: MAX_CIDRS }), {
    code: 'invalid_cidr',
    problem: `${name} must be a list of at most ${MAX_CIDRS} CIDRs such as 10.0.0.0/8 or 2001:db8::/32`,
  });

/**
 * What the settings schema cannot check: each CIDR of `allowedCidrs` and `deniedCidrs` parses.
 * A PushError `invalid_cidr` naming the first bad entry, or undefined.
 */
export function settingsProblem(settings: { allowedCidrs?: string[]; deniedCidrs?: string[] } | undefined) {
  for (const name of ['allowedCidrs', 'deniedCidrs'] as const) {
    const why = cidrListProblem(`settings.${name}`, settings?.[name] ?? []);
    if (why !== undefined) return new PushError('invalid_cidr', why);
  }
  return undefined;
}

/** Limits app settings must stay within (from the deployment's inbox configuration). */
export interface SettingsLimits {
  maxTtlSeconds: number;
  maxPerUser: number;
}

/** Largest message an app may allow: NATS' default max payload less room for the envelope. */
export const MAX_MESSAGE_BYTES = 1_000_000;

/** Most messages a topic may keep (`topicHistory`). */
export const MAX_TOPIC_HISTORY = 100_000;
/** Highest `maxTopicsPerConnection` an app may set. */
export const MAX_TOPICS_PER_CONNECTION = 10_000;

/** Highest `maxDeliveries` an app may set. */
export const MAX_DELIVERIES = 1000;

/** Settings given to create or update an app: any subset, within the deployment's limits; no unknown keys. */
export const appSettingsPatchSchema = (limits: SettingsLimits) =>
  Type.Object(
    {
      defaultTtlSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: limits.maxTtlSeconds })),
      maxPendingPerUser: Type.Optional(Type.Integer({ minimum: 1, maximum: limits.maxPerUser })),
      maxMessageBytes: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_MESSAGE_BYTES })),
      clientMessaging: Type.Optional(Type.Boolean()),
      pushRateLimit: Type.Optional(Type.Integer({ minimum: 0 })),
      sendRatePerConnection: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
      sendRatePerUser: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
      fanoutRate: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
      allowedOrigins: Type.Optional(
        note(
          Type.Array(Type.String({ minLength: 1, maxLength: 256, pattern: '^[a-z][a-z0-9+.-]*://[^/\\s]+$' }), {
            maxItems: 100,
          }),
          { problem: 'allowedOrigins must list at most 100 origins such as https://example.com (no path)' },
        ),
      ),
      upstream: Type.Optional(Type.Boolean()),
      upRatePerConnection: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
      maxUpBytes: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_MESSAGE_BYTES })),
      upstreamRetentionSeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 365 * 24 * 3600 })),
      eventRetentionSeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 365 * 24 * 3600 })),
      deliveryEvents: Type.Optional(Type.Boolean()),
      rpcTimeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 60_000 })),
      rpcRatePerConnection: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
      // Webhooks and RPC (issue 10).
      webhookMaxAttempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
      webhookRetryBaseMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 3_600_000 })),
      webhookRetryMaxMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 24 * 3_600_000 })),
      webhookTimeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 300_000 })),
      webhookConcurrency: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
      rpcUrl: Type.Optional(HttpUrlOrEmpty),
      topicHistory: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_TOPIC_HISTORY })),
      topicHistorySeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: limits.maxTtlSeconds })),
      topicRateLimit: Type.Optional(Type.Integer({ minimum: 0 })),
      maxTopicsPerConnection: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_TOPICS_PER_CONNECTION })),
      // Presence on topics (issue 9 item 6).
      presenceTopics: Type.Optional(
        note(Type.Array(Type.String({ minLength: 1, maxLength: 256, pattern: '^[^\\s]+$' }), { maxItems: 100 }), {
          problem: 'presenceTopics must list at most 100 topic patterns such as room-* (no spaces)',
        }),
      ),
      // Access policy at the edge (issue 17 item 5); each entry is parsed by `settingsProblem`.
      allowedCidrs: Type.Optional(CidrList('allowedCidrs')),
      deniedCidrs: Type.Optional(CidrList('deniedCidrs')),
      // Never-ack loops (issue 17 part 3).
      maxDeliveries: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_DELIVERIES })),
      // One device at a time (issue 17 item 7).
      devicePolicy: Type.Optional(
        note(Type.Union(DEVICE_POLICIES.map((p) => Type.Literal(p))), {
          problem: `devicePolicy must be one of ${DEVICE_POLICIES.join(', ')}`,
        }),
      ),
      // Adaptive heartbeats (issue 17 item 2); pingMinSeconds <= pingMaxSeconds is checked on the merged settings.
      pingMinSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PING_SECONDS })),
      pingMaxSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PING_SECONDS })),
    },
    { additionalProperties: false },
  );

/** `POST /v1/admin/apps` body. */
export const appCreateSchema = (limits: SettingsLimits) =>
  Type.Object({
    id: Type.Optional(IdString('app')),
    name: Type.Optional(AppName),
    disabled: Type.Optional(note(Type.Boolean(), { problem: 'disabled must be a boolean' })),
    settings: Type.Optional(appSettingsPatchSchema(limits)),
  });
export type AppCreateBody = Static<ReturnType<typeof appCreateSchema>>;

/** `PATCH /v1/admin/apps/<app>` body. */
export const appUpdateSchema = (limits: SettingsLimits) =>
  Type.Object({
    name: Type.Optional(AppName),
    disabled: Type.Optional(note(Type.Boolean(), { problem: 'disabled must be a boolean' })),
    settings: Type.Optional(appSettingsPatchSchema(limits)),
  });
export type AppUpdateBody = Static<ReturnType<typeof appUpdateSchema>>;

// --- Fan-out jobs (POST /v1/apps/<app>/jobs, push.api.jobs.*) ---------------------------------

/**
 * Users of a job as given: any JSON values. Each is checked on its own by the job service: an
 * invalid id (or a repeat) is skipped and counted, not a reason to refuse the other 999,999.
 */
const JobUsers = note(Type.Array(Type.Unknown()), { problem: 'users must be an array of user ids' });

/**
 * `POST /v1/apps/<app>/jobs`: the message (as a push, without `user` and `id`) and the users, all
 * at once or, with `open: true`, in chunks added later (`POST .../jobs/<id>/users`, then
 * `POST .../jobs/<id>/start`). The most users a job may have, `PUSH_JOB_MAX_USERS`, is the
 * deployment's and answers 413 `job_too_large`.
 */
export const JobCreateSchema = Type.Object({
  data: Type.Optional(Data),
  b64: Type.Optional(B64),
  ttl: Type.Optional(Ttl),
  users: Type.Optional(JobUsers),
  open: Type.Optional(note(Type.Boolean(), { problem: 'open must be a boolean' })),
  transient: Type.Optional(Transient),
});
export type JobCreateBody = Static<typeof JobCreateSchema>;

/** `POST /v1/apps/<app>/jobs/<job>/users`: one more chunk of an open job's users. */
export const JobUsersSchema = Type.Object({ users: JobUsers });
export type JobUsersBody = Static<typeof JobUsersSchema>;

/** States of a fan-out job, in the order a job goes through them (`cancelled` from any before `completed`). */
export const JOB_STATES = ['open', 'queued', 'running', 'completed', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];

/** A fan-out job as the API answers it (`{ job }`, or `{ jobs: [...] }` for the list). */
export const JobViewSchema = Type.Object({
  id: Type.String(),
  app: Type.String(),
  state: Type.Union(JOB_STATES.map((s) => Type.Literal(s))),
  /** Users given, counting the skipped ones. */
  total: Type.Integer({ minimum: 0 }),
  /** Users whose inbox holds the message. */
  written: Type.Integer({ minimum: 0 }),
  /** Users not written because their id is invalid or repeats an earlier one of the job. */
  skipped: Type.Integer({ minimum: 0 }),
  /** Users whose inbox the store did not take the message for, after retries. */
  failed: Type.Integer({ minimum: 0 }),
  /** Users not handled yet: total - written - skipped - failed. */
  remaining: Type.Integer({ minimum: 0 }),
  /** Share handled, 0 to 1 (1 for a job of no users). */
  progress: Type.Number({ minimum: 0, maximum: 1 }),
  /** Seconds each copy may wait in its inbox, counted from when it is written. */
  ttl: Type.Number(),
  createdAt: Type.String(),
  startedAt: Type.Union([Type.String(), Type.Null()]),
  finishedAt: Type.Union([Type.String(), Type.Null()]),
  /** A transient job: sent live to the users' connections online at that moment, never stored. */
  transient: Type.Boolean(),
});
export type JobView = Static<typeof JobViewSchema>;

// --- NATS API bodies (push.api.<op>) ----------------------------------------------------------

/** Every request names its app. */
const AppField = { app: IdString('app') };

/** `push.api.push`: a push body (single or batch) plus `app`; checked further as the HTTP body is. */
export const NatsAppRequestSchema = Type.Object(AppField);
/** `push.api.user`: `{ app, user }`. */
export const NatsUserRequestSchema = Type.Object({ ...AppField, user: IdString('user') });
/** `push.api.kick`: `{ app, user, device?, reason? }`. */
export const NatsKickRequestSchema = Type.Object({ ...AppField, user: IdString('user') });
/** `push.api.topics.publish`: `{ app, topic, data|b64, ttl?, id? }` or `{ app, messages: [...] }`. */
export const NatsTopicPublishRequestSchema = Type.Object({ ...AppField, topic: Type.Optional(TopicName) });
/** `push.api.topics.bind`, `.unbind`: `{ app, user, topic }`; `.bindings`: `{ app, user }`. */
export const NatsBindRequestSchema = Type.Object({ ...AppField, user: IdString('user'), topic: TopicName });
/** `push.api.topics.presence`: `{ app, topic }`. */
export const NatsTopicPresenceRequestSchema = Type.Object({ ...AppField, topic: TopicName });
/** `push.api.apps.delete`: `{ app }` with the admin key. */
export const NatsAppDeleteRequestSchema = Type.Object(AppField);
/** `push.api.jobs.get`, `.start`, `.cancel` (and `.users` with `users`): `{ app, job }`. */
export const NatsJobRequestSchema = Type.Object({
  ...AppField,
  job: note(Type.String({ minLength: 1, maxLength: 64 }), { code: 'job_not_found', problem: 'job must be a job id' }),
});

// --- Control messages (push.ctl.<app>.<user>) -------------------------------------------------

/** A control message to one user's connections. */
export const KickCommandSchema = Type.Object({
  op: Type.Literal('kick'),
  /** Only this device's connections; all of the user's when absent. */
  device: Type.Optional(IdString('device')),
  /** Close reason the clients see (at most 100 bytes). */
  reason: Type.String({ maxLength: MAX_KICK_REASON_BYTES }),
});
export type KickCommand = Static<typeof KickCommandSchema>;

/**
 * A control message binding or unbinding a topic (docs/api.md, topic bindings): every
 * connection of the user subscribes to (`bind`) or leaves (`unbind`) the topic.
 */
export const BindCommandSchema = Type.Object({
  op: Type.Union([Type.Literal('bind'), Type.Literal('unbind')]),
  topic: TopicName,
});
export type BindCommand = Static<typeof BindCommandSchema>;

/** Any control message on `push.ctl.<app>.<user>`. */
export const ControlCommandSchema = Type.Union([KickCommandSchema, BindCommandSchema]);
export type ControlCommand = Static<typeof ControlCommandSchema>;

/**
 * An edge announcing a connection on `push.claim.<app>.<user>` (app setting `devicePolicy`): every
 * edge closes the user's connections ordered before it (by `at`, then `conn`), only those of
 * `device` when given (`single-per-device`). See apps/edge/src/device-policy.ts.
 */
export const DeviceClaimSchema = Type.Object({
  /** The connection's id (as in its `hello`): breaks ties of `at`. */
  conn: Type.String({ minLength: 1, maxLength: 256 }),
  /** The edge's stamp of the connection: epoch ms, raised past every stamp the edge has heard. */
  at: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
  /** Only this device's connections (`single-per-device`); all of the user's when absent. */
  device: Type.Optional(IdString('device')),
});
export type DeviceClaim = Static<typeof DeviceClaimSchema>;

// --- Upstream and events in their streams (push.up.*, push.evt.*; issue 10) -------------------

/**
 * A stored upstream message (`push.up.<app>.<kind>`, header `Nats-Msg-Id` = `id`). Exactly one
 * of `data` (the client's JSON) and `b64` (its bytes, base64).
 */
export const UpstreamRecordSchema = Type.Object({
  id: Type.String(),
  app: Type.String(),
  user: Type.String(),
  device: Type.String(),
  conn: Type.String(),
  kind: Type.String(),
  /** Epoch ms when the edge received it. */
  time: Type.Integer(),
  data: Type.Optional(Type.Unknown()),
  b64: Type.Optional(Type.String()),
});
export type UpstreamRecord = Static<typeof UpstreamRecordSchema>;

/** Fields of every event. */
const EventBase = {
  /** `evt_` + unique characters; also the `Nats-Msg-Id`. */
  id: Type.String(),
  /** Epoch ms when it happened (as seen by the process that emits it). */
  time: Type.Integer(),
  app: Type.String(),
};
const Conn = { user: Type.String(), device: Type.String(), conn: Type.String(), edge: Type.String() };

/** Every event type with its own fields (beside `id`, `type`, `time`, `app`). */
export const EventSchemas = {
  /** The user's first connection across all edges. */
  user_online: Type.Object({ ...EventBase, type: Type.Literal('user_online'), ...Conn }),
  /** The user's last connection is gone (closed, or its edge died: `reason` `edge_lost`). */
  user_offline: Type.Object({ ...EventBase, type: Type.Literal('user_offline'), ...Conn, reason: Type.String() }),
  conn_open: Type.Object({ ...EventBase, type: Type.Literal('conn_open'), ...Conn }),
  /** `code`: the WebSocket close code (0 when the edge died); `reason`: see docs/api.md. */
  conn_close: Type.Object({
    ...EventBase,
    type: Type.Literal('conn_close'),
    ...Conn,
    code: Type.Integer(),
    reason: Type.String(),
  }),
  kicked: Type.Object({ ...EventBase, type: Type.Literal('kicked'), ...Conn, reason: Type.String() }),
  /** Closed under the app's `devicePolicy` by a newer connection of the user (`by`: its conn id). */
  replaced: Type.Object({ ...EventBase, type: Type.Literal('replaced'), ...Conn, by: Type.String() }),
  delivered: Type.Object({ ...EventBase, type: Type.Literal('delivered'), ...Conn, seq: Type.Integer() }),
  acked: Type.Object({ ...EventBase, type: Type.Literal('acked'), ...Conn, seq: Type.Integer() }),
  /** A message past its TTL that the edge dropped instead of delivering. */
  expired: Type.Object({ ...EventBase, type: Type.Literal('expired'), user: Type.String(), seq: Type.Integer() }),
  /**
   * A message delivered `maxDeliveries` times without an ack left the user's inbox for the app's
   * undeliverable list (`seq`: its inbox sequence; `deliveries`: how many ended unacked).
   */
  undeliverable: Type.Object({
    ...EventBase,
    type: Type.Literal('undeliverable'),
    user: Type.String(),
    seq: Type.Integer(),
    deliveries: Type.Integer(),
  }),
  /** Messages removed by the per-user cap (not reported yet: see docs/api.md). */
  evicted: Type.Object({
    ...EventBase,
    type: Type.Literal('evicted'),
    user: Type.String(),
    seq: Type.Optional(Type.Integer()),
    count: Type.Optional(Type.Integer()),
  }),
  topic_sub: Type.Object({ ...EventBase, type: Type.Literal('topic_sub'), ...Conn, topic: Type.String() }),
  topic_unsub: Type.Object({ ...EventBase, type: Type.Literal('topic_unsub'), ...Conn, topic: Type.String() }),
  presence_join: Type.Object({ ...EventBase, type: Type.Literal('presence_join'), ...Conn, topic: Type.String() }),
  presence_leave: Type.Object({ ...EventBase, type: Type.Literal('presence_leave'), ...Conn, topic: Type.String() }),
  /** A topic's first subscription on any edge (either door): its connection count went from 0 to 1. */
  channel_occupied: Type.Object({ ...EventBase, type: Type.Literal('channel_occupied'), topic: Type.String() }),
  /** A topic's last subscription left (unsub or close; not reported for an edge that died). */
  channel_vacated: Type.Object({ ...EventBase, type: Type.Literal('channel_vacated'), topic: Type.String() }),
  /** A Pusher client event (`client-*`) a socket sent on a private or presence channel (docs/pusher.md). */
  client_event: Type.Object({
    ...EventBase,
    type: Type.Literal('client_event'),
    topic: Type.String(),
    event: Type.String(),
    data: Type.Unknown(),
    socket_id: Type.String(),
    user_id: Type.Optional(Type.String()),
  }),
} as const;
export type EventType = keyof typeof EventSchemas;
export const EVENT_TYPES = Object.keys(EventSchemas) as EventType[];
/** One stored event of the given type. */
export type PushEvent<T extends EventType = EventType> = Static<(typeof EventSchemas)[T]>;
/** What the emitter of an event of type T gives: everything but what the emitter adds (`id`, `time`, `type`). */
export type EventInput<T extends EventType> = Omit<PushEvent<T>, 'id' | 'time' | 'type'>;

// --- RPC on push.rpc.<app> (issue 10) -----------------------------------------------------------

/** The request the edge sends on `push.rpc.<app>` for a client `rpc`. */
export const RpcRequestSchema = Type.Object({
  id: Type.String(),
  app: Type.String(),
  user: Type.String(),
  device: Type.String(),
  conn: Type.String(),
  method: Type.String(),
  data: Type.Unknown(),
});
export type RpcRequest = Static<typeof RpcRequestSchema>;

/** The answer a responder sends: `data`, or `error` (its `message` reaches the client). */
export const RpcReplySchema = Type.Union([
  Type.Object({ data: Type.Unknown() }),
  Type.Object({ error: Type.Object({ code: Type.String(), message: Type.String() }) }),
]);
export type RpcReply = Static<typeof RpcReplySchema>;

// --- Webhooks (issue 10) ---------------------------------------------------------------------

/** Most event types or upstream kinds one endpoint names (each is one consumer filter subject). */
export const MAX_WEBHOOK_FILTERS = 32;

const EventTypeFilter = note(
  Type.Array(Type.Union([...EVENT_TYPES.map((t) => Type.Literal(t)), Type.Literal('*')]), {
    maxItems: MAX_WEBHOOK_FILTERS,
    uniqueItems: true,
  }),
  { problem: `events must be an array of distinct event types (${EVENT_TYPES.join(', ')}) or ["*"]` },
);
/**
 * Upstream kinds: the client's `kind` (so only what an `up` frame may carry: a kind no client
 * can send would never match), or `*` for every kind.
 */
const UpstreamKindFilter = note(
  Type.Array(Type.Union([Type.Literal('*'), Type.String({ pattern: UpKind.pattern })]), {
    maxItems: MAX_WEBHOOK_FILTERS,
    uniqueItems: true,
  }),
  {
    problem: `kinds must be an array of distinct upstream kinds (1 to ${MAX_UP_KIND_LENGTH} characters of A-Z a-z 0-9 _ -) or ["*"] (at most ${MAX_WEBHOOK_FILTERS})`,
  },
);

/** `POST /v1/apps/<app>/webhooks` body: at least one event type or upstream kind. */
export const WebhookCreateSchema = Type.Object({
  url: HttpUrl,
  events: Type.Optional(EventTypeFilter),
  kinds: Type.Optional(UpstreamKindFilter),
  disabled: Type.Optional(note(Type.Boolean(), { problem: 'disabled must be a boolean' })),
  description: Type.Optional(note(Text(0, 500), { problem: 'description must be a string of at most 500 characters' })),
  format: Type.Optional(
    note(Type.Union([Type.Literal('native'), Type.Literal('pusher')]), {
      problem: 'format must be "native" or "pusher"',
    }),
  ),
});
export type WebhookCreateBody = Static<typeof WebhookCreateSchema>;

/** `PATCH /v1/apps/<app>/webhooks/<id>` body: any of the create fields. */
export const WebhookUpdateSchema = Type.Partial(WebhookCreateSchema);
export type WebhookUpdateBody = Static<typeof WebhookUpdateSchema>;

/** A webhook endpoint's signing secret (Standard Webhooks: `whsec_` + base64 of 24 random bytes). */
export interface WebhookSecret {
  secret: string;
  createdAt: string;
}

/** How an endpoint's requests look: ours (Standard Webhooks) or Pusher's webhooks. */
export type WebhookFormat = 'native' | 'pusher';

/** A webhook endpoint as stored, mirrored to coordinators and shown to its app. */
export interface WebhookEndpoint {
  /** `wh_` + 12 base64url characters. */
  id: string;
  app: string;
  url: string;
  /** Event types delivered (`*` = all); empty = none. */
  events: string[];
  /** Upstream kinds delivered (`*` = all); empty = none. */
  kinds: string[];
  disabled: boolean;
  description: string;
  /** Newest first; the newest two sign every request (rotation without a gap). */
  secrets: WebhookSecret[];
  /** The body format: `native` (absent in endpoints written before it existed) or `pusher` (docs/pusher.md). */
  format?: WebhookFormat;
  createdAt: string;
  updatedAt: string;
  /** When it began to take events, if after its creation (a change gave it some after none). */
  eventsSince?: string;
  /** When it began to take upstream kinds, if after its creation. */
  kindsSince?: string;
}

/** Where a webhook item came from: the app's upstream or its events stream. */
export type WebhookSource = 'up' | 'events';

/**
 * A dead letter (stream `PUSH_DLQ-<app>`, subject `push.dlq.<app>.<endpoint>`): a batch that
 * ran out of retries, with the items as they were stored and why the last attempt failed.
 */
export interface DeadLetter {
  id: string;
  app: string;
  endpoint: string;
  source: WebhookSource;
  /** Epoch ms when it was dead-lettered. */
  time: number;
  attempts: number;
  /** HTTP status of the last attempt; null when it got none (timeout, refused connection). */
  lastStatus: number | null;
  lastError: string;
  items: unknown[];
}

/** Most dead letters one list answers. */
export const MAX_DEAD_LETTERS_LISTED = 1000;

/** NATS webhook requests name the app and, but for create and list, the endpoint. */
const WebhookIdString = note(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' }), {
  code: 'webhook_not_found',
  problem: 'webhook must be a webhook endpoint id (wh_...)',
});
export const NatsWebhookRequestSchema = Type.Object({ app: IdString('app'), webhook: WebhookIdString });
/** The id of a webhook endpoint in a path. */
export const WebhookIdSchema = WebhookIdString;
