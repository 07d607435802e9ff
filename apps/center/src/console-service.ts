import type { AppDirectory, WebhookDirectory } from '@push/apps';
import type { Knex } from '@push/db';
import {
  appStreamFigures,
  inboxHolds,
  natsReadiness,
  recentEvents,
  webhookBacklog,
  type NatsConnection,
  type TopicStore,
} from '@push/nats';
import {
  PushError,
  isEdgeStats,
  type AppFigures,
  type AppRecord,
  type EdgeStats,
  type Health,
  type Subjects,
  type Summary,
  type TailedMessage,
} from '@push/protocol';
import type { Redis } from 'ioredis';

/** How long the center waits for the edges' answers to a figures request, ms. */
const EDGE_WAIT_MS = 400;
/** How long a health probe (Redis PING, Postgres `select 1`) may take before it counts as down, ms. */
const PROBE_MS = 1500;
/** Most apps a summary covers (the first by id); the answer says when there were more. */
export const SUMMARY_MAX_APPS = 100;
/** Most events a user's recent-events read scans (the last ones of the app's event stream). */
export const USER_EVENTS_SCAN = 500;
/** Most topic messages (and bytes) one tail read answers. */
const TAIL_MAX = 100;
const TAIL_MAX_BYTES = 512 * 1024;

/** Resolves with how long `probe` took, or rejects when it fails or takes over PROBE_MS. */
async function timed(probe: () => Promise<unknown>): Promise<Health> {
  const start = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      probe(),
      new Promise((_r, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${PROBE_MS} ms`)), PROBE_MS);
      }),
    ]);
    return { ok: true, ms: Math.round((performance.now() - start) * 10) / 10 };
  } catch (err) {
    return { ok: false, detail: err instanceof Error ? err.message : String(err) };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * What the web console reads beyond the business API: a summary of the deployment (edges' figures
 * gathered over NATS, stream and webhook figures from JetStream, health of NATS, Redis and
 * Postgres), a user's recent events, and whether a pushed message is still in the inbox. The app
 * scope never holds another app's figures: edges' totals over all apps are left out of it.
 */
export class ConsoleService {
  constructor(
    private readonly nc: NatsConnection,
    private readonly subjects: Subjects,
    private readonly apps: AppDirectory,
    private readonly webhooks: WebhookDirectory,
    private readonly redis: Redis,
    private readonly db: Knex,
    private readonly topics: TopicStore,
  ) {}

  /** Every app's figures (admin key). */
  async all(): Promise<Summary> {
    const ids = this.apps.ids().sort();
    const records = ids
      .slice(0, SUMMARY_MAX_APPS)
      .map((id) => this.apps.get(id))
      .filter((r): r is AppRecord => r !== undefined);
    const [gathered, health, apps] = await Promise.all([this.gatherEdges(), this.health(), this.appFigures(records)]);
    for (const a of apps) a.connections = gathered.edges.reduce((n, e) => n + (e.apps[a.id] ?? 0), 0);
    return {
      at: Date.now(),
      scope: 'all',
      edges: gathered.edges,
      edgesSilent: gathered.silent,
      apps,
      appsOmitted: Math.max(0, ids.length - SUMMARY_MAX_APPS),
      health,
    };
  }

  /** One app's figures (its API key, or the admin key). */
  async forApp(app: AppRecord): Promise<Summary> {
    const [gathered, health, apps] = await Promise.all([this.gatherEdges(), this.health(), this.appFigures([app])]);
    const edges = gathered.edges.map((e) => ({ edge: e.edge, connections: e.apps[app.id] ?? 0 }));
    for (const a of apps) a.connections = edges.reduce((n, e) => n + e.connections, 0);
    return { at: Date.now(), scope: 'app', edges, edgesSilent: gathered.silent, apps, appsOmitted: 0, health };
  }

  /** The user's events among the app's last USER_EVENTS_SCAN events, newest first, at most `limit`. */
  async userEvents(app: AppRecord, user: string, limit: number): Promise<Array<Record<string, unknown>>> {
    const events = await recentEvents(this.nc, this.subjects, app.id, USER_EVENTS_SCAN);
    return events.filter((e) => e['user'] === user).slice(0, limit);
  }

  /** Whether the user's message `seq` is still stored (false once acked, expired or evicted). */
  inboxHolds(app: AppRecord, user: string, seq: number): Promise<boolean> {
    if (!Number.isSafeInteger(seq) || seq < 1) throw new PushError('bad_request', 'seq must be a positive integer');
    return inboxHolds(this.nc, this.subjects, app.id, user, seq);
  }

  /**
   * A topic's messages stored after stream sequence `after`, oldest first (at most TAIL_MAX), and
   * the sequence to ask from next. Without `after`: no messages, and the topic's last sequence
   * (where a tail starts). Rejects with `store_unavailable`.
   */
  async topicTail(
    app: AppRecord,
    topic: string,
    after: number | undefined,
  ): Promise<{ topic: string; last: number; messages: TailedMessage[] }> {
    if (after === undefined) return { topic, last: await this.topics.lastSeq(app.id, topic), messages: [] };
    const { messages } = await this.topics.readBatch(app.id, topic, after + 1, {
      max: TAIL_MAX,
      maxBytes: TAIL_MAX_BYTES,
    });
    const out: TailedMessage[] = [];
    for (const m of messages) {
      if (m.malformed === true) continue;
      const bytes = Buffer.from(m.bytes);
      if (m.binary) out.push({ seq: m.seq, ts: m.ts, b64: bytes.toString('base64') });
      else out.push({ seq: m.seq, ts: m.ts, data: JSON.parse(bytes.toString('utf8')) as unknown });
    }
    return { topic, last: messages.at(-1)?.seq ?? after, messages: out };
  }

  /** Asks every edge for its figures; waits for as many answers as edges hold a lease, or EDGE_WAIT_MS. */
  private async gatherEdges(): Promise<{ edges: EdgeStats[]; silent: number }> {
    const expected = await this.liveEdges().catch(() => 0);
    const edges: EdgeStats[] = [];
    if (natsReadiness(this.nc) !== true) return { edges, silent: expected };
    try {
      const replies = await this.nc.requestMany(this.subjects.edgeStats, '', {
        maxWait: EDGE_WAIT_MS,
        ...(expected > 0 ? { strategy: 'count' as const, maxMessages: expected } : { strategy: 'timer' as const }),
      });
      for await (const m of replies) {
        let v: unknown;
        try {
          v = m.json();
        } catch {
          continue; // not JSON: not an edge of this version
        }
        if (isEdgeStats(v)) edges.push(v);
      }
    } catch (err) {
      // No edge at all answers with "no responders": an empty list, not an error.
      if (!(err instanceof Error && /no responders/i.test(err.message))) throw err;
    }
    edges.sort((a, b) => a.edge.localeCompare(b.edge));
    return { edges, silent: Math.max(0, expected - edges.length) };
  }

  /** Edges whose presence lease is alive now. */
  private async liveEdges(): Promise<number> {
    const ids = await this.redis.smembers(this.subjects.edgesKey);
    if (ids.length === 0) return 0;
    const alive = await this.redis.exists(...ids.map((id) => this.subjects.edgeAliveKey(id)));
    return alive;
  }

  /**
   * Stream and webhook figures per app. JetStream not answering (NATS reconnecting, a stream
   * without a leader) leaves an app's figures null with the reason, so the rest of the summary
   * (health above all) still answers.
   */
  private async appFigures(records: AppRecord[]): Promise<AppFigures[]> {
    const endpoints = [...this.webhooks.all().values()];
    const ready = natsReadiness(this.nc);
    return Promise.all(
      records.map(async (r) => {
        const mine = endpoints.filter((ep) => ep.app === r.id);
        const base = { id: r.id, name: r.name, disabled: r.disabled, connections: 0 };
        const blank = (why: string): AppFigures => ({
          ...base,
          pending: null,
          inboxStored: null,
          topicStored: null,
          webhooks: mine.map((ep) => ({
            id: ep.id,
            url: ep.url,
            disabled: ep.disabled,
            waiting: null,
            deadLetters: null,
          })),
          unavailable: why,
        });
        if (ready !== true) return blank(ready);
        try {
          const { inbox, topics } = await appStreamFigures(this.nc, this.subjects, r.id);
          const webhooks = await Promise.all(
            mine.map(async (ep) => ({
              id: ep.id,
              url: ep.url,
              disabled: ep.disabled,
              ...(await webhookBacklog(this.nc, this.subjects, ep)),
            })),
          );
          return {
            ...base,
            pending: inbox.messages,
            inboxStored: inbox.lastSeq,
            topicStored: topics.lastSeq,
            webhooks,
          };
        } catch (err) {
          return blank(`stream figures not read: ${err instanceof Error ? err.message : String(err)}`);
        }
      }),
    );
  }

  private async health(): Promise<Summary['health']> {
    const ready = natsReadiness(this.nc);
    const [nats, redis, postgres] = await Promise.all([
      ready === true ? timed(() => this.nc.rtt()) : Promise.resolve({ ok: false, detail: ready }),
      timed(() => this.redis.ping()),
      timed(() => this.db.raw('select 1')),
    ]);
    return { nats, redis, postgres };
  }
}
