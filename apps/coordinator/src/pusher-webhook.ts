import { pusherCredentials, pusherSign } from '@push/apps';
import type { AppRecord } from '@push/protocol';

/** One Pusher webhook event (https://pusher.com/docs/channels/server_api/webhooks/). */
interface PusherWebhookEvent {
  name: string;
  channel: string;
  user_id?: string;
  event?: string;
  data?: string;
  socket_id?: string;
}

/**
 * The Pusher webhook event an item of the events stream stands for, or undefined when Pusher has
 * no such webhook (every other type, and upstream items): `channel_occupied`,
 * `channel_vacated`, `presence_join` as `member_added`, `presence_leave` as `member_removed`,
 * `client_event`.
 */
export function pusherWebhookEvent(raw: string): PusherWebhookEvent | undefined {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(raw) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const channel = o['topic'];
  if (typeof channel !== 'string') return undefined;
  switch (o['type']) {
    case 'channel_occupied':
    case 'channel_vacated':
      return { name: o['type'], channel };
    case 'presence_join':
    case 'presence_leave':
      return {
        name: o['type'] === 'presence_join' ? 'member_added' : 'member_removed',
        channel,
        user_id: String(o['user']),
      };
    case 'client_event': {
      const data = o['data'];
      const ev: PusherWebhookEvent = {
        name: 'client_event',
        channel,
        event: String(o['event']),
        data: typeof data === 'string' ? data : JSON.stringify(data ?? null),
        socket_id: String(o['socket_id']),
      };
      if (typeof o['user_id'] === 'string') ev.user_id = o['user_id'];
      return ev;
    }
    default:
      return undefined;
  }
}

/**
 * A batch as a Pusher webhook: body `{"time_ms", "events": [...]}` signed the Pusher way
 * (`X-Pusher-Key`: the app's Pusher key; `X-Pusher-Signature`: hex HMAC-SHA256 of the body with
 * its newest Pusher secret), so the `pusher` SDKs' `webhook()` helper validates it. Undefined
 * when no item of the batch is a Pusher webhook event (nothing to send).
 */
export function pusherWebhook(
  app: AppRecord,
  items: ReadonlyArray<{ raw: string }>,
  nowMs: number,
): { body: string; headers: Record<string, string> } | undefined {
  const events = items.map((i) => pusherWebhookEvent(i.raw)).filter((e) => e !== undefined);
  if (events.length === 0) return undefined;
  const creds = pusherCredentials(app);
  const body = JSON.stringify({ time_ms: nowMs, events });
  return {
    body,
    headers: { 'x-pusher-key': creds.key, 'x-pusher-signature': pusherSign(creds.secrets[0] ?? '', body) },
  };
}
