import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import type { Subjects, WebhookEndpoint } from '@push/protocol';
import { sourceStream, webhookConsumerName } from './webhook-streams.js';

/**
 * Read-only figures for the web console (the center's summary API): what the streams and the
 * webhook consumers hold now. Each is one or a few JetStream API requests; none creates state.
 */

function isNotFound(err: unknown): boolean {
  return err instanceof Error && /(stream|consumer|message) not found/i.test(err.message);
}

/** A stream's message count now and its last sequence (a counter of everything ever stored). */
export interface StreamFigures {
  messages: number;
  lastSeq: number;
}

/** A JetStream manager for reads (no account check: the apps checked JetStream when they connected). */
function manager(nc: NatsConnection): Promise<JetStreamManager> {
  return jetstreamManager(nc, { checkAPI: false });
}

/** Counts of one stream; zeros when it does not exist. */
async function streamFigures(jsm: JetStreamManager, stream: string): Promise<StreamFigures> {
  try {
    const info = await jsm.streams.info(stream);
    return { messages: info.state.messages, lastSeq: info.state.last_seq };
  } catch (err) {
    if (isNotFound(err)) return { messages: 0, lastSeq: 0 };
    throw err;
  }
}

/** An app's inbox stream (`pending` now, `stored` ever) and topic stream (`stored` ever) figures. */
export async function appStreamFigures(
  nc: NatsConnection,
  subjects: Subjects,
  app: string,
): Promise<{ inbox: StreamFigures; topics: StreamFigures }> {
  const jsm = await manager(nc);
  const [inbox, topics] = await Promise.all([
    streamFigures(jsm, subjects.inboxStream(app)),
    streamFigures(jsm, subjects.topicStream(app)),
  ]);
  return { inbox, topics };
}

/** What one webhook endpoint has waiting: events not yet delivered (pending + in flight) and dead letters. */
export interface WebhookBacklog {
  waiting: number;
  deadLetters: number;
}

/** An endpoint's waiting events (over its consumers on every source) and its dead-letter count. */
export async function webhookBacklog(
  nc: NatsConnection,
  subjects: Subjects,
  ep: Pick<WebhookEndpoint, 'app' | 'id'>,
): Promise<WebhookBacklog> {
  const jsm = await manager(nc);
  let waiting = 0;
  for (const source of ['up', 'events', 'replay'] as const) {
    try {
      const c = await jsm.consumers.info(sourceStream(subjects, ep.app, source), webhookConsumerName(ep.id));
      waiting += c.num_pending + c.num_ack_pending;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
  let deadLetters = 0;
  const subject = subjects.dlq(ep.app, ep.id);
  try {
    const info = await jsm.streams.info(subjects.dlqStream(ep.app), { subjects_filter: subject });
    deadLetters = info.state.subjects?.[subject] ?? 0;
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  return { waiting, deadLetters };
}

/**
 * Whether the message `seq` of the app's inbox stream is still stored for `user` (not acked, not
 * expired, not evicted by the per-user cap): the console's "acked" check after a test push.
 */
export async function inboxHolds(
  nc: NatsConnection,
  subjects: Subjects,
  app: string,
  user: string,
  seq: number,
): Promise<boolean> {
  const jsm = await manager(nc);
  try {
    const m = await jsm.direct.getMessage(subjects.inboxStream(app), { seq });
    if (m === null) return false;
    return m.subject === subjects.inbox(app, user, 'b') || m.subject === subjects.inbox(app, user, 'c');
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

/**
 * The last `scan` events of an app's event stream (newest first), read with a short-lived ordered
 * consumer (the event stream has no Direct Get). Meant for an operator looking at one user, not for
 * a hot path: each call reads up to `scan` messages.
 */
export async function recentEvents(
  nc: NatsConnection,
  subjects: Subjects,
  app: string,
  scan: number,
): Promise<Array<Record<string, unknown>>> {
  const jsm = await manager(nc);
  const stream = subjects.eventsStream(app);
  const figures = await streamFigures(jsm, stream);
  if (figures.messages === 0) return [];
  const js = jsm.jetstream();
  const consumer = await js.consumers.get(stream, { opt_start_seq: Math.max(1, figures.lastSeq - scan + 1) });
  const out: Array<Record<string, unknown>> = [];
  try {
    const batch = await consumer.fetch({ max_messages: scan, expires: 1000 });
    for await (const m of batch) {
      try {
        out.push(m.json<Record<string, unknown>>());
      } catch {
        // Not JSON: not an event this system wrote; skipped, like an unknown type.
        continue;
      }
      if (m.seq >= figures.lastSeq || m.info.pending === 0) break;
    }
  } finally {
    await consumer.delete().catch(() => false);
  }
  return out.reverse();
}
