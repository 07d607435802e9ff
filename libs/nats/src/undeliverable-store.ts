import { jetstreamManager, type StreamConfig } from '@nats-io/jetstream';
import { headers, type Msg, type NatsConnection } from '@nats-io/nats-core';
import { PushError, decodeEnvelope, decodeToken, type InboxKind, type Subjects } from '@push/protocol';
import { deletedNothing, parseJson, storeError } from './inbox-store.js';
import { upsertStream } from './streams.js';

const NANOS = 1_000_000_000;
/** Headers an undeliverable message carries beside the stored envelope. */
const INBOX_SEQ = 'Push-Inbox-Seq';
const DELIVERIES = 'Push-Deliveries';
const MOVED_AT = 'Push-Moved-At';
/** Deadline of one request of a move, list, replay or purge, ms. */
const REQUEST_TIMEOUT_MS = 10_000;

/** Most undeliverable messages one list answers (and the default). */
export const MAX_UNDELIVERABLE_LISTED = 1000;

/** What the undeliverable stream depends on (the deployment's inbox settings). */
export interface UndeliverableStreamOptions {
  replicas: number;
  duplicateWindowSeconds: number;
  /** Most a message may live (`PUSH_INBOX_MAX_AGE`): how long the list keeps one. */
  maxAgeSeconds: number;
}

/** One undeliverable message as listed (docs/api.md "Undeliverable messages"). */
export interface ListedUndeliverable {
  /** Sequence in the app's undeliverable stream (what `replay` and `purge` go through). */
  seq: number;
  user: string;
  /** Its sequence in the user's inbox when it was moved. */
  inboxSeq: number;
  /** Deliveries that ended without an ack when it was moved. */
  deliveries: number;
  /** Epoch ms when it was moved. */
  movedAt: number;
  /** Epoch ms when the message was first accepted, and when it expires. */
  ts: number;
  expires: number;
  /** Sending user, for client-to-client messages. */
  from?: string;
  data?: unknown;
  b64?: string;
}

/** How a move ended: stored in the list and removed from the inbox, or already gone from the inbox. */
export type MoveOutcome = 'moved' | 'gone';

function isNotFound(err: unknown): boolean {
  return err instanceof Error && /stream not found/i.test(err.message);
}

/**
 * The undeliverable stream of an app (`<PREFIX>_UNDELIV-<app>`, subjects
 * `<prefix>.undeliv.<app>.<user>`): limits retention, file storage, kept for the inbox's max age
 * (no message outlives its TTL anyway; the list is for seeing and replaying), Direct Get on.
 */
export function undeliverableStreamConfig(
  subjects: Subjects,
  app: string,
  opts: UndeliverableStreamOptions,
): Partial<StreamConfig> & { name: string } {
  return {
    name: subjects.undeliverableStream(app),
    subjects: [subjects.undeliverableOfApp(app)],
    retention: 'limits',
    storage: 'file',
    discard: 'old',
    max_age: opts.maxAgeSeconds * NANOS,
    duplicate_window: Math.min(opts.duplicateWindowSeconds, opts.maxAgeSeconds) * NANOS,
    num_replicas: opts.replicas,
    allow_direct: true,
  };
}

/**
 * Messages taken out of users' inboxes after `maxDeliveries` deliveries without an ack: the edge
 * moves them (`move`), the center lists, replays and purges them. A move stores the copy first
 * and removes the inbox message after, so a crash between the two leaves the message in both
 * places (delivered again, and moved again with the same id: stored once), never in neither.
 */
export class UndeliverableStore {
  private readonly ready = new Set<string>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
    private readonly opts: UndeliverableStreamOptions,
  ) {}

  /** Creates the app's undeliverable stream when missing (remembered per process). */
  async ensure(app: string): Promise<void> {
    if (this.ready.has(app)) return;
    const jsm = await jetstreamManager(this.nc);
    const config = undeliverableStreamConfig(this.subjects, app, this.opts);
    await upsertStream(
      jsm,
      config,
      (c) => c.max_age === config.max_age && c.num_replicas === config.num_replicas && c.allow_direct,
    );
    this.ready.add(app);
  }

  /** Forgets that the app's stream exists (it was deleted with the app). */
  forget(app: string): void {
    this.ready.delete(app);
  }

  private async request(subject: string, data: string | Uint8Array, h?: ReturnType<typeof headers>): Promise<Msg> {
    try {
      return await this.nc.request(subject, data, { timeout: REQUEST_TIMEOUT_MS, ...(h ? { headers: h } : {}) });
    } catch (err) {
      throw storeError(err);
    }
  }

  /**
   * Moves one inbox message of `user` to the app's undeliverable list: reads it by sequence,
   * stores the copy (`Nats-Msg-Id` `undeliv.<seq>`: two edges moving it at once store it once),
   * then deletes it from the inbox. `gone` when the inbox no longer holds it (acked, expired,
   * evicted, or moved by another edge) or it is not the user's. Rejects with PushError
   * `store_unavailable`.
   */
  async move(app: string, user: string, seq: number, deliveries: number): Promise<MoveOutcome> {
    const inboxStream = this.subjects.inboxStream(app);
    const got = await this.request(`$JS.API.DIRECT.GET.${inboxStream}`, JSON.stringify({ seq }));
    const code = got.headers?.code ?? 0;
    if (code === 404) return 'gone';
    if (code !== 0 && code !== 200) {
      throw new PushError('store_unavailable', `direct get failed: ${code} ${got.headers?.description ?? ''}`);
    }
    const subject = got.headers?.get('Nats-Subject') ?? '';
    if (subject !== this.subjects.inbox(app, user, 'b') && subject !== this.subjects.inbox(app, user, 'c')) {
      return 'gone';
    }
    const h = headers();
    h.set('Nats-Msg-Id', `undeliv.${seq}`);
    h.set(INBOX_SEQ, String(seq));
    h.set(DELIVERIES, String(deliveries));
    h.set(MOVED_AT, String(Date.now()));
    await this.ensure(app);
    let ack: Msg;
    try {
      ack = await this.request(this.subjects.undeliverable(app, user), got.data, h);
    } catch (err) {
      // No stream answers: deleted with the app since this process made it, or by an operator.
      if (!/no responders/i.test(String((err as Error).cause ?? err))) throw err;
      this.ready.delete(app);
      await this.ensure(app);
      ack = await this.request(this.subjects.undeliverable(app, user), got.data, h);
    }
    const stored = parseJson(ack) as { seq?: number; error?: { description?: string } };
    if (ack.headers?.code === 503 || stored.error !== undefined || typeof stored.seq !== 'number') {
      throw new PushError(
        'store_unavailable',
        `undeliverable store refused: ${stored.error?.description ?? 'no stream'}`,
      );
    }
    const del = await this.request(`$JS.API.STREAM.MSG.DELETE.${inboxStream}`, JSON.stringify({ seq, no_erase: true }));
    const r = parseJson(del) as { success?: boolean; error?: { err_code?: number; description?: string } };
    if (r.success === true) return 'moved';
    if (deletedNothing(r.error)) return 'gone';
    throw new PushError('store_unavailable', `delete failed: ${r.error?.description ?? 'unknown'}`);
  }

  /** The filter of a list, replay or purge: one user's, or the whole app's. */
  private filter(app: string, user: string | undefined): string {
    return user === undefined ? this.subjects.undeliverableOfApp(app) : this.subjects.undeliverable(app, user);
  }

  /** Whether the app's stream exists (none: nothing was ever moved). */
  private async exists(app: string): Promise<boolean> {
    const jsm = await jetstreamManager(this.nc);
    return jsm.streams.info(this.subjects.undeliverableStream(app)).then(
      () => true,
      (err: unknown) => {
        if (isNotFound(err)) return false;
        throw err;
      },
    );
  }

  /** Raw messages of the list from `fromSeq` on, oldest first, at most `limit`. */
  private async read(app: string, user: string | undefined, fromSeq: number, limit: number): Promise<Msg[]> {
    const out: Msg[] = [];
    const stream = this.subjects.undeliverableStream(app);
    const filter = this.filter(app, user);
    let seq = fromSeq;
    while (out.length < limit) {
      const m = await this.request(`$JS.API.DIRECT.GET.${stream}`, JSON.stringify({ seq, next_by_subj: filter }));
      const code = m.headers?.code ?? 0;
      if (code === 404) break;
      if (code !== 0 && code !== 200) {
        throw new PushError('store_unavailable', `direct get failed: ${code} ${m.headers?.description ?? ''}`);
      }
      out.push(m);
      seq = Number(m.headers?.get('Nats-Sequence')) + 1;
    }
    return out;
  }

  /**
   * The app's undeliverable messages (one user's when `user` is given), oldest first, at most
   * `limit` (at most MAX_UNDELIVERABLE_LISTED), from list sequence `after + 1` on.
   */
  async list(
    app: string,
    opts: { user?: string; limit?: number; after?: number } = {},
  ): Promise<ListedUndeliverable[]> {
    if (!(await this.exists(app))) return [];
    const limit = Math.min(opts.limit ?? MAX_UNDELIVERABLE_LISTED, MAX_UNDELIVERABLE_LISTED);
    const out: ListedUndeliverable[] = [];
    for (const m of await this.read(app, opts.user, (opts.after ?? 0) + 1, limit)) {
      const item = this.listed(m);
      if (item !== undefined) out.push(item);
    }
    return out;
  }

  private listed(m: Msg): ListedUndeliverable | undefined {
    const env = decodeEnvelope(m.data);
    const subject = m.headers?.get('Nats-Subject') ?? '';
    if (env === undefined) return undefined;
    const item: ListedUndeliverable = {
      seq: Number(m.headers?.get('Nats-Sequence')),
      user: decodeToken(subject.slice(subject.lastIndexOf('.') + 1)),
      inboxSeq: Number(m.headers?.get(INBOX_SEQ)),
      deliveries: Number(m.headers?.get(DELIVERIES)),
      movedAt: Number(m.headers?.get(MOVED_AT)),
      ts: env.meta.ts,
      expires: env.meta.expires,
    };
    if (env.meta.from !== undefined) item.from = env.meta.from;
    const bytes = Buffer.from(env.payload);
    if (env.meta.binary) item.b64 = bytes.toString('base64');
    else item.data = JSON.parse(bytes.toString('utf8')) as unknown;
    return item;
  }

  /**
   * Puts the app's undeliverable messages (one user's when `user` is given) back into their
   * users' inboxes, each with its remaining TTL and a new inbox sequence (its delivery count
   * starts again), then deletes it from the list. Messages whose TTL passed meanwhile are
   * dropped (counted in `expired`). The inbox copy carries `Nats-Msg-Id` `undeliv-replay.<seq>`,
   * so a replay repeated after a failure half-way stores each once.
   */
  async replay(app: string, user?: string): Promise<{ replayed: number; expired: number }> {
    let replayed = 0;
    let expired = 0;
    if (!(await this.exists(app))) return { replayed, expired };
    const stream = this.subjects.undeliverableStream(app);
    let from = 1;
    for (;;) {
      const batch = await this.read(app, user, from, 256);
      if (batch.length === 0) return { replayed, expired };
      for (const m of batch) {
        const seq = Number(m.headers?.get('Nats-Sequence'));
        from = seq + 1;
        const env = decodeEnvelope(m.data);
        const subject = m.headers?.get('Nats-Subject') ?? '';
        const now = Date.now();
        const live = env !== undefined && env.meta.expires > now;
        if (live) {
          const owner = decodeToken(subject.slice(subject.lastIndexOf('.') + 1));
          const kind: InboxKind = env.meta.from === undefined ? 'b' : 'c';
          const h = headers();
          h.set('Nats-TTL', String(Math.max(1, Math.ceil((env.meta.expires - now) / 1000))));
          h.set('Nats-Msg-Id', `undeliv-replay.${seq}`);
          const ack = await this.request(this.subjects.inbox(app, owner, kind), m.data, h);
          const r = parseJson(ack) as { seq?: number; error?: { description?: string } };
          if (ack.headers?.code === 503 || r.error !== undefined || typeof r.seq !== 'number') {
            throw new PushError('store_unavailable', `replay refused: ${r.error?.description ?? 'no inbox stream'}`);
          }
        }
        // Counted by the replay that removes it from the list: replays at once each put it back
        // (stored once), and each message counts in one answer only.
        if (!(await this.deleteOne(stream, seq))) continue;
        if (live) replayed++;
        else expired++;
      }
    }
  }

  /** Deletes one message of the list: true, or false when it was gone already (another replay or purge). */
  private async deleteOne(stream: string, seq: number): Promise<boolean> {
    const del = await this.request(`$JS.API.STREAM.MSG.DELETE.${stream}`, JSON.stringify({ seq, no_erase: true }));
    const r = parseJson(del) as { success?: boolean; error?: { err_code?: number; description?: string } };
    if (r.success === true) return true;
    if (deletedNothing(r.error)) return false;
    throw new PushError('store_unavailable', `delete failed: ${r.error?.description ?? 'unknown'}`);
  }

  /** Drops the app's undeliverable messages (one user's when `user` is given); resolves with how many. */
  async purge(app: string, user?: string): Promise<number> {
    const stream = this.subjects.undeliverableStream(app);
    const reply = await this.request(
      `$JS.API.STREAM.PURGE.${stream}`,
      JSON.stringify({ filter: this.filter(app, user) }),
    );
    const r = parseJson(reply) as {
      success?: boolean;
      purged?: number;
      error?: { err_code?: number; description?: string };
    };
    if (r.success === true) return r.purged ?? 0;
    // 10059: stream not found: nothing was ever moved.
    if (r.error?.err_code === 10059) return 0;
    throw new PushError('store_unavailable', `purge failed: ${r.error?.description ?? 'unknown'}`);
  }

  /** Deletes the app's undeliverable stream (the app was deleted). Missing is no error. */
  async deleteStream(app: string): Promise<void> {
    this.ready.delete(app);
    const jsm = await jetstreamManager(this.nc);
    await jsm.streams.delete(this.subjects.undeliverableStream(app)).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
  }
}
