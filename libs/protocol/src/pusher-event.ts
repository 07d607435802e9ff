/**
 * How a Pusher event is a topic message (docs/pusher.md, "One topic, two doors").
 *
 * An event published through the Pusher door (HTTP `events`/`batch_events`, or a client event)
 * is stored in the topic named after the channel, its data the JSON object
 * `{"event": <name>, "data": <data>, "socket_id"?: <excluded socket>, "user_id"?: <sender>}`.
 * Native subscribers receive that object as the message's `data`. The Pusher door reads any
 * topic message back into a Pusher frame: an object with a string `event` (and any `data`) is
 * that event; any other message is the event `message` whose data is the message's JSON text (or
 * its base64, for bytes).
 */

/** The event name under which a native (non-Pusher-shaped) topic message reaches Pusher clients. */
export const PUSHER_NATIVE_EVENT = 'message';

/** A Pusher event as stored in a topic (the message's `data`). */
export interface StoredPusherEvent {
  event: string;
  data: unknown;
  /** A Pusher socket id the event is not sent to (the trigger's `socket_id`, a client event's sender). */
  socket_id?: string;
  /** Client events on presence channels: the sender's user id. */
  user_id?: string;
}

/** A topic message as the Pusher door sends it. */
export interface PusherFrame {
  /** The frame text for Pusher sockets. */
  frame: string;
  /** A socket id that must not get it. */
  exclude: string | undefined;
  event: string;
}

/** Builds the Pusher frame of one topic message (`channelJson`: the channel name as a JSON string). */
export function pusherFrameOf(channelJson: string, bytes: Uint8Array, binary: boolean): PusherFrame {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString(binary ? 'base64' : 'utf8');
  if (!binary && text.startsWith('{')) {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      v = undefined;
    }
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      if (typeof o['event'] === 'string') {
        const exclude = typeof o['socket_id'] === 'string' ? o['socket_id'] : undefined;
        const data = o['data'] === undefined ? '' : o['data'];
        const userId = typeof o['user_id'] === 'string' ? `,"user_id":${JSON.stringify(o['user_id'])}` : '';
        return {
          frame: `{"event":${JSON.stringify(o['event'])},"channel":${channelJson},"data":${JSON.stringify(data)}${userId}}`,
          exclude,
          event: o['event'],
        };
      }
    }
  }
  return {
    frame: `{"event":"${PUSHER_NATIVE_EVENT}","channel":${channelJson},"data":${JSON.stringify(text)}}`,
    exclude: undefined,
    event: PUSHER_NATIVE_EVENT,
  };
}
