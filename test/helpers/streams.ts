import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@push/nats';
import type { Subjects } from '@push/protocol';

/** One stored message of a stream, as a business consumer would see it. */
export interface StoredRecord {
  subject: string;
  seq: number;
  /** Its `Nats-Msg-Id` header. */
  msgId: string | undefined;
  body: Record<string, unknown>;
}

/** Every message a stream holds now, in order (Direct Get per sequence: for small test streams). */
export async function readStream(nc: NatsConnection, stream: string): Promise<StoredRecord[]> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(stream);
  const out: StoredRecord[] = [];
  if (info.state.messages === 0) return out;
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
    if (m === null) continue;
    out.push({
      subject: m.subject,
      seq: m.seq,
      msgId: m.header.get('Nats-Msg-Id') || undefined,
      body: m.json<Record<string, unknown>>(),
    });
  }
  return out;
}

/**
 * Polls a stream until `done` holds for what it stores (then returns it), or fails after
 * `timeoutMs` with what it held.
 */
export async function waitStream(
  nc: NatsConnection,
  stream: string,
  done: (records: StoredRecord[]) => boolean,
  timeoutMs = 5000,
): Promise<StoredRecord[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const records = await readStream(nc, stream);
    if (done(records)) return records;
    if (Date.now() > deadline) {
      throw new Error(
        `stream ${stream} never matched; holds ${JSON.stringify(records.map((r) => r.body)).slice(0, 1500)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Business messages stored per user of an app, read from its inbox stream (user -> count). */
export async function inboxCounts(nc: NatsConnection, subjects: Subjects, app: string): Promise<Map<string, number>> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(subjects.inboxStream(app), { subjects_filter: subjects.inboxOfApp(app) });
  const out = new Map<string, number>();
  for (const [subject, n] of Object.entries(info.state.subjects ?? {})) {
    const [user, kind] = subject.split('.').slice(-2);
    if (kind === 'b') out.set(user as string, n);
  }
  return out;
}
