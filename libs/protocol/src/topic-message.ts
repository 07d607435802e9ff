import { encodeEnvelope } from './envelope.js';
import { PushError } from './errors.js';
import { readPayload } from './frames.js';

/** What a trusted service publishes straight to `<prefix>.topic.<app>.<topic>` on NATS. */
export interface EncodedTopicMessage {
  /** The stored bytes: the envelope line, then the payload. */
  payload: Buffer;
  /** NATS headers to set: `Nats-TTL` when a ttl was given, `Nats-Msg-Id` when an id was. */
  headers: Record<string, string>;
}

/**
 * Encodes a topic message the way the center stores it, for a trusted service inside the NATS
 * network that publishes to the topic subject itself (docs/api.md, "Publishing on NATS"):
 * exactly one of `data` (any JSON value) or `b64` (base64 bytes); `ttlSeconds` (a positive
 * number, at most the app's `topicHistorySeconds`, which the stream enforces anyway) sets the
 * `Nats-TTL` header; `id` becomes `Nats-Msg-Id` (deduplicated within the stream's window).
 * Throws PushError `invalid_data` or `invalid_ttl`. Publish with a request (a JetStream publish)
 * to learn the sequence, as the center does.
 */
export function encodeTopicMessage(
  message: { data?: unknown; b64?: string },
  opts: { ttlSeconds?: number; id?: string; now?: number; historySeconds?: number } = {},
): EncodedTopicMessage {
  const payload = readPayload(message);
  const now = opts.now ?? Date.now();
  const headers: Record<string, string> = {};
  let lifeSeconds = opts.historySeconds ?? 365 * 24 * 3600;
  if (opts.ttlSeconds !== undefined) {
    if (!(opts.ttlSeconds > 0) || !Number.isFinite(opts.ttlSeconds)) {
      throw new PushError('invalid_ttl');
    }
    lifeSeconds = Math.min(lifeSeconds, opts.ttlSeconds);
    headers['Nats-TTL'] = String(Math.max(1, Math.ceil(opts.ttlSeconds)));
  }
  if (opts.id !== undefined) headers['Nats-Msg-Id'] = opts.id;
  return {
    payload: encodeEnvelope(
      { ts: now, expires: now + Math.round(lifeSeconds * 1000), binary: payload.binary, from: undefined },
      payload.bytes,
    ),
    headers,
  };
}
