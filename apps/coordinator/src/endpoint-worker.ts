import { createHash } from 'node:crypto';
import {
  jetstream,
  jetstreamManager,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { signWebhook, type AppDirectory } from '@push/apps';
import {
  ensureDlqStream,
  sourceStream,
  webhookConsumerConfig,
  webhookConsumerName,
  webhookFilters,
  type NatsConnection,
} from '@push/nats';
import {
  backoffDelay,
  type AppSettings,
  type BackoffPolicy,
  type DeadLetter,
  type Subjects,
  type WebhookEndpoint,
  type WebhookSource,
} from '@push/protocol';
import type { Logger } from 'pino';
import type { Handbacks, HandbackItem } from './handbacks.js';
import { HttpPoster, PostError } from './http-poster.js';
import { pusherWebhook } from './pusher-webhook.js';
import type { CoordinatorMetrics } from './metrics.js';

/** What every endpoint worker shares. */
export interface WorkerDeps {
  nc: NatsConnection;
  subjects: Subjects;
  apps: AppDirectory;
  metrics: CoordinatorMetrics;
  log: Logger;
  batch: { maxItems: number; maxBytes: number; lingerMs: number };
  dlq: { replicas: number; duplicateWindowSeconds: number };
  /** Whether an endpoint exists now (read from the bucket): a dead letter of a deleted one is removed. */
  endpointExists(app: string, id: string): Promise<boolean>;
  /** Items handed back unsent, which are no attempts. */
  handbacks: Handbacks;
}

/** Where a consumer reads: upstream, events, or the endpoint's replayed dead letters. */
type Source = WebhookSource | 'replay';

/** One item of a batch: the stored JSON as it was (`raw`), its id and its store time. */
interface Item {
  id: string;
  time: number;
  raw: string;
}

const decoder = new TextDecoder();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());
/** How often an endpoint's pending counts are read for the metrics, ms. */
const PENDING_POLL_MS = 5000;

/**
 * How long a delivered message may stay unacked before JetStream hands it to another
 * coordinator (this one was killed): a message waits at most one linger and one POST before the
 * loop holds it (from then on `working()` resets the wait every quarter of it), then one POST. So
 * twice the timeout, the linger and a margin.
 */
export function ackWaitMs(settings: AppSettings, lingerMs: number): number {
  return 2 * settings.webhookTimeoutMs + lingerMs + 1000;
}

/**
 * The nak delay before an item's next delivery after its `attempts`th POST failed, whole ms (at
 * least 1). Whole: the client sends it as nanoseconds in JSON, and the server does not take a
 * fractional number there; it then redelivers at once, which turned the backoff into a busy loop.
 */
export function retryDelay(attempts: number, policy: BackoffPolicy): number {
  return Math.max(1, Math.round(backoffDelay(attempts - 1, policy)));
}

/** The webhook-id of a batch: the item's own id when alone, else a digest of the items' ids (same items, same id). */
export function batchWebhookId(ids: readonly string[]): string {
  if (ids.length === 1) return ids[0] as string;
  return `msg_${createHash('sha256').update(ids.join('\n')).digest('base64url').slice(0, 32)}`;
}

/**
 * Delivery of one webhook endpoint: a durable pull consumer per source it wants (shared by every
 * coordinator, so they split the work and a killed one's messages go to the others after the ack
 * wait), batches bounded by count, bytes and linger, at most `webhookConcurrency` POSTs in flight
 * on its own keep-alive pool, acks only after a 2xx, naks with full-jitter backoff otherwise,
 * and the dead-letter stream after `webhookMaxAttempts`. Nothing here is shared with another
 * endpoint, so a slow one delays only itself.
 */
export class EndpointWorker {
  private ep: WebhookEndpoint;
  private readonly loops: SourceLoop[] = [];
  readonly poster: HttpPoster;
  /** Settings this worker was built with; a change of these needs a new worker (pool size, ack wait). */
  readonly builtWith: string;

  constructor(
    ep: WebhookEndpoint,
    settings: AppSettings,
    readonly deps: WorkerDeps,
  ) {
    this.ep = ep;
    this.builtWith = EndpointWorker.shape(ep, settings);
    this.poster = new HttpPoster(settings.webhookConcurrency, true);
    const sources: Source[] = ['replay'];
    if (ep.kinds.length > 0) sources.push('up');
    if (ep.events.length > 0) sources.push('events');
    for (const s of sources) this.loops.push(new SourceLoop(this, s, ackWaitMs(settings, deps.batch.lingerMs)));
  }

  /** What decides the consumers and the pool: when it changes, the worker is replaced. */
  static shape(ep: WebhookEndpoint, settings: AppSettings): string {
    return JSON.stringify([ep.events, ep.kinds, settings.webhookConcurrency, settings.webhookTimeoutMs]);
  }

  get endpoint(): WebhookEndpoint {
    return this.ep;
  }

  /** Takes a change that needs no new consumer (URL, secrets, description). */
  update(ep: WebhookEndpoint): void {
    this.ep = ep;
  }

  start(): void {
    for (const l of this.loops) l.start();
  }

  /** Stops pulling, finishes the POSTs in flight (each bounded by its timeout), hands the rest back. */
  async stop(): Promise<void> {
    await Promise.all(this.loops.map((l) => l.stop()));
    this.poster.close();
  }
}

/** One source of one endpoint: its consumer, its batches, its POSTs. */
class SourceLoop {
  private stopped = false;
  private messages: ConsumerMessages | undefined;
  private pending: JsMsg[] = [];
  private pendingBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly ready: JsMsg[][] = [];
  private readonly inFlight = new Set<Promise<void>>();
  /** The batches of `inFlight`. */
  private readonly sending = new Set<JsMsg[]>();
  /** Tells JetStream every message held here is still being worked on (see `stillWorking`). */
  private alive: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private running: Promise<void> | undefined;
  private poll: NodeJS.Timeout | undefined;
  private readonly js: JetStreamClient;
  private jsm: JetStreamManager | undefined;
  private readonly stream: string;
  private readonly log: Logger;
  private dlqReady = false;
  /**
   * Whether the endpoint wants a message's subject now. The consumer's filter says so for what it
   * delivers first; this catches what it hands out again after a change of `events` or `kinds`
   * (items retrying under the old filter), which the endpoint no longer wants.
   */
  private readonly wants: (subject: string) => boolean;
  /** Resolves on stop: ends a wait between retries at once. */
  private readonly stopSignal: Promise<void>;
  private signalStop: () => void = () => undefined;

  constructor(
    private readonly worker: EndpointWorker,
    private readonly source: Source,
    private readonly ackWait: number,
  ) {
    const { deps } = worker;
    this.js = jetstream(deps.nc);
    this.stream = sourceStream(deps.subjects, worker.endpoint.app, source);
    this.log = deps.log.child({ endpoint: worker.endpoint.id, app: worker.endpoint.app, source });
    this.stopSignal = new Promise((resolve) => (this.signalStop = resolve));
    const filters = webhookFilters(deps.subjects, worker.endpoint, source);
    const all = filters.find((f) => f.endsWith('.*'))?.slice(0, -1);
    const exact = new Set(filters);
    this.wants = (subject) =>
      exact.has(subject) || (all !== undefined && subject.startsWith(all) && !subject.includes('.', all.length));
  }

  private get labels() {
    return { app: this.worker.endpoint.app, endpoint: this.worker.endpoint.id };
  }

  start(): void {
    this.running = this.run();
    this.poll = setInterval(() => void this.readPending(), PENDING_POLL_MS);
    this.poll.unref();
    this.alive = setInterval(() => this.stillWorking(), this.ackWait / 4);
    this.alive.unref();
  }

  /**
   * Resets the ack wait of every message this loop holds (gathering, cut and waiting for a slot,
   * or being POSTed): the sources of an endpoint share its sockets, so a batch may wait for other
   * sources' POSTs, and its POST's deadline starts only with a socket. While this process lives,
   * JetStream must not hand them to another coordinator; once it is killed, they come back after
   * the ack wait.
   */
  private stillWorking(): void {
    for (const batch of [this.pending, ...this.ready, ...this.sending]) for (const m of batch) m.working();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.signalStop();
    clearInterval(this.poll);
    clearInterval(this.alive);
    clearTimeout(this.timer);
    this.wake?.();
    await this.messages?.close().catch((err: unknown) => this.log.warn({ err }, 'consumer close failed'));
    await this.running;
    await this.forgetDeleted();
    await Promise.allSettled([...this.inFlight]);
    // Not sent: back to the stream now rather than after the ack wait.
    const unsent = [...this.pending, ...this.ready.flat()];
    this.pending = [];
    this.ready.length = 0;
    await this.handBack(unsent);
  }

  private get item(): HandbackItem {
    return { app: this.worker.endpoint.app, endpoint: this.worker.endpoint.id, source: this.source };
  }

  /**
   * Gives messages back to the stream unsent (`delayMs` before their next delivery), counted as
   * handbacks first: their delivery is no attempt. A count not written (NATS failing) only makes
   * the item's attempts run out one early.
   */
  private async handBack(msgs: JsMsg[], delayMs?: number): Promise<void> {
    if (msgs.length === 0) return;
    await this.worker.deps.handbacks
      .record(this.item, msgs)
      .catch((err: unknown) => this.log.warn({ err, items: msgs.length }, 'handbacks not counted'));
    for (const m of msgs) m.nak(delayMs);
  }

  /**
   * POSTs each message's item has had, this one included: its deliveries less its handbacks,
   * which are read only for a message whose deliveries reached `max` (the rest are below it either
   * way). A count that cannot be read is taken as none.
   */
  private async attempts(msgs: JsMsg[], max: number): Promise<number[]> {
    return Promise.all(
      msgs.map(async (m) => {
        const delivered = m.info.deliveryCount;
        if (delivered < max) return delivered;
        const handedBack = await this.worker.deps.handbacks
          .count(this.item, m.info.streamSequence)
          .catch((err: unknown) => {
            this.log.warn({ err }, 'handbacks not read');
            return 0;
          });
        return Math.max(1, delivered - handedBack);
      }),
    );
  }

  private async run(): Promise<void> {
    const { deps } = this.worker;
    let attempt = 0;
    while (!this.stopped) {
      try {
        // A stop may come at any of these awaits: checked after each (stop() closes only a
        // message stream that exists, and the loop below would otherwise run on, handing
        // every message back at once).
        this.jsm ??= await jetstreamManager(deps.nc);
        if (this.stopped) break;
        await this.ensureConsumer(this.jsm);
        if (this.stopped) break;
        const consumer = await this.js.consumers.get(this.stream, webhookConsumerName(this.worker.endpoint.id));
        if (this.stopped) break;
        const settings = deps.apps.get(this.worker.endpoint.app)?.settings;
        const window = this.source === 'replay' ? 1 : deps.batch.maxItems * (settings?.webhookConcurrency ?? 1);
        const messages = await consumer.consume({ max_messages: Math.min(window, 10_000), expires: 30_000 });
        this.messages = messages;
        if (this.stopped) {
          await messages.close().catch(() => undefined);
          break;
        }
        attempt = 0;
        for await (const m of this.messages) {
          if (this.stopped) {
            // Handed back with the rest by stop().
            this.pending.push(m);
            continue;
          }
          this.add(m);
          // A cut batch waiting for a free slot: pull no more until it goes out.
          while (this.ready.length > 0 && !this.stopped) await new Promise<void>((resolve) => (this.wake = resolve));
        }
      } catch (err) {
        if (!this.stopped) this.log.warn({ err }, 'webhook consumer failed; retrying');
      }
      if (!this.stopped)
        await Promise.race([
          sleep(backoffDelay(attempt++, { baseMs: 500, capMs: 10_000, minMs: 250 })),
          this.stopSignal,
        ]);
    }
  }

  /**
   * Stopped because the endpoint was deleted: removes its consumer, which this loop may have made
   * again (`ensureConsumer`) just after the center's delete removed it.
   */
  private async forgetDeleted(): Promise<void> {
    const { endpoint, deps } = this.worker;
    if (this.jsm === undefined || (await deps.endpointExists(endpoint.app, endpoint.id).catch(() => true))) return;
    await this.jsm.consumers.delete(this.stream, webhookConsumerName(endpoint.id)).catch(() => false);
  }

  /** Creates the consumer, or brings its filter and ack wait up to date. Throws while the stream is missing. */
  private async ensureConsumer(jsm: JetStreamManager): Promise<void> {
    const { deps } = this.worker;
    if (this.source === 'replay') await this.ensureDlq();
    const cfg = webhookConsumerConfig(deps.subjects, this.worker.endpoint, this.source, this.ackWait);
    const info = await jsm.consumers.info(this.stream, cfg.durable_name).catch((err: unknown) => {
      if (err instanceof Error && /consumer not found/i.test(err.message)) return undefined;
      throw err;
    });
    if (info === undefined) {
      await jsm.consumers.add(this.stream, cfg);
      return;
    }
    // The endpoint took none of this source's items for a while and takes some again: what was
    // stored meanwhile is not for it (nor what it left unacked), so the consumer starts anew.
    const start = info.config.opt_start_time;
    if (cfg.opt_start_time !== undefined && start !== undefined && Date.parse(start) < Date.parse(cfg.opt_start_time)) {
      await jsm.consumers.delete(this.stream, cfg.durable_name).catch(() => false);
      await jsm.consumers.add(this.stream, cfg);
      return;
    }
    const filters = info.config.filter_subjects ?? (info.config.filter_subject ? [info.config.filter_subject] : []);
    if (JSON.stringify(filters) !== JSON.stringify(cfg.filter_subjects) || info.config.ack_wait !== cfg.ack_wait) {
      await jsm.consumers.update(this.stream, cfg.durable_name, {
        filter_subjects: cfg.filter_subjects ?? [],
        ack_wait: cfg.ack_wait ?? 30_000_000_000,
      });
    }
  }

  private async ensureDlq(): Promise<void> {
    if (this.dlqReady) return;
    const { deps } = this.worker;
    await ensureDlqStream(deps.nc, deps.subjects, this.worker.endpoint.app, deps.dlq);
    this.dlqReady = true;
  }

  private add(m: JsMsg): void {
    this.pending.push(m);
    this.pendingBytes += m.data.length;
    const { batch } = this.worker.deps;
    if (this.source === 'replay' || this.pending.length >= batch.maxItems || this.pendingBytes >= batch.maxBytes) {
      this.cut();
    } else {
      this.timer ??= setTimeout(() => this.cut(), batch.lingerMs);
    }
  }

  /** Closes the current batch and sends it when a slot is free. */
  private cut(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.length === 0) return;
    this.ready.push(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    this.pump();
  }

  private pump(): void {
    const concurrency = this.worker.deps.apps.get(this.worker.endpoint.app)?.settings.webhookConcurrency ?? 1;
    while (this.ready.length > 0 && this.inFlight.size < concurrency && !this.stopped) {
      const batch = this.ready.shift() as JsMsg[];
      this.sending.add(batch);
      const p: Promise<void> = this.deliver(batch)
        .catch((err: unknown) => {
          this.log.error({ err }, 'webhook batch failed unexpectedly; handed back');
          for (const m of batch) m.nak(1000);
        })
        .finally(() => {
          this.inFlight.delete(p);
          this.sending.delete(batch);
          this.pump();
          const wake = this.wake;
          this.wake = undefined;
          wake?.();
        });
      this.inFlight.add(p);
    }
  }

  /** Items of a batch; a message that is not JSON is terminated (logged): it can never be delivered. */
  private items(batch: JsMsg[]): { items: Item[]; kept: JsMsg[]; letter: DeadLetter | undefined } {
    const items: Item[] = [];
    const kept: JsMsg[] = [];
    let letter: DeadLetter | undefined;
    for (const m of batch) {
      if (this.source !== 'replay' && !this.wants(m.subject)) {
        m.ack();
        continue;
      }
      try {
        if (this.source === 'replay') {
          letter = m.json<DeadLetter>();
          for (const it of letter.items) {
            const o = it as { id?: unknown; time?: unknown };
            items.push({
              id: typeof o.id === 'string' ? o.id : letter.id,
              time: typeof o.time === 'number' ? o.time : letter.time,
              raw: JSON.stringify(it),
            });
          }
        } else {
          const raw = decoder.decode(m.data);
          const o = JSON.parse(raw) as { id?: unknown; time?: unknown };
          items.push({
            id: typeof o.id === 'string' ? o.id : `seq_${m.info.streamSequence}`,
            time: typeof o.time === 'number' ? o.time : Math.floor(m.info.timestampNanos / 1e6),
            raw,
          });
        }
        kept.push(m);
      } catch (err) {
        this.log.error({ err, seq: m.info.streamSequence }, 'stored item is not JSON; dropped');
        m.term();
      }
    }
    return { items, kept, letter };
  }

  private async deliver(batch: JsMsg[]): Promise<void> {
    const { deps } = this.worker;
    const ep = this.worker.endpoint;
    const app = deps.apps.get(ep.app);
    if (app === undefined) {
      // The app is not (yet) known here: try again shortly.
      await this.handBack(batch, 1000);
      return;
    }
    const s = app.settings;
    for (const m of batch) m.working();
    const { items, kept, letter } = this.items(batch);
    if (this.source !== 'replay') await this.retireSpent(items, kept, s);
    if (kept.length === 0) return;
    const source: WebhookSource = letter?.source ?? (this.source === 'replay' ? 'events' : this.source);
    const now = Date.now();
    let body: string;
    let headers: Record<string, string>;
    if (ep.format === 'pusher') {
      // Pusher's webhook body (docs/pusher.md): items Pusher has no webhook for are not sent.
      const pusher = pusherWebhook(app, items, now);
      if (pusher === undefined) {
        for (const m of kept) m.ack();
        if (this.source === 'replay') for (const m of kept) await this.dropReplay(m);
        return;
      }
      ({ body, headers } = pusher);
    } else {
      body = `{"app":${JSON.stringify(ep.app)},"endpoint":${JSON.stringify(ep.id)},"source":"${source}","items":[${items.map((i) => i.raw).join(',')}]}`;
      const id = batchWebhookId(items.map((i) => i.id));
      headers = {
        ...signWebhook(
          ep.secrets.slice(0, 2).map((x) => x.secret),
          id,
          now / 1000,
          body,
        ),
      };
    }
    let status: number | null = null;
    let error = '';
    const started = process.hrtime.bigint();
    try {
      status = (await this.worker.poster.post(ep.url, body, headers, s.webhookTimeoutMs)).status;
      if (status < 200 || status > 299) error = `HTTP ${status}`;
    } catch (err) {
      error = err instanceof PostError ? err.message : String(err);
      if (!(err instanceof PostError)) this.log.warn({ err }, 'webhook POST failed');
    }
    deps.metrics.postSeconds.observe({ app: ep.app }, Number(process.hrtime.bigint() - started) / 1e9);
    if (error === '') {
      for (const m of kept) m.ack();
      if (this.source === 'replay') for (const m of kept) await this.dropReplay(m);
      const done = Date.now();
      for (const i of items) deps.metrics.lag.observe({ app: ep.app }, Math.max(0, done - i.time) / 1000);
      deps.metrics.deliveries.inc({ ...this.labels, outcome: 'ok' });
      deps.metrics.items.inc({ ...this.labels, source }, items.length);
      return;
    }
    deps.metrics.deliveries.inc({ ...this.labels, outcome: 'failed' });
    this.log.debug({ status, error, items: items.length }, 'webhook delivery failed');
    const attempts = await this.attempts(kept, s.webhookMaxAttempts);
    const exhausted = kept.filter((_, i) => (attempts[i] as number) >= s.webhookMaxAttempts);
    const policy = { baseMs: s.webhookRetryBaseMs, capMs: s.webhookRetryMaxMs };
    kept.forEach((m, i) => {
      const n = attempts[i] as number;
      if (n < s.webhookMaxAttempts) m.nak(retryDelay(n, policy));
    });
    if (kept.length > exhausted.length) deps.metrics.retries.inc(this.labels, kept.length - exhausted.length);
    if (exhausted.length === 0) return;
    const exhaustedItems =
      this.source === 'replay' ? items : items.filter((_, i) => exhausted.includes(kept[i] as JsMsg));
    await this.retire(exhausted, exhaustedItems, source, s, {
      attempts: (letter?.attempts ?? 0) + Math.max(...attempts.filter((n) => n >= s.webhookMaxAttempts)),
      lastStatus: status,
      lastError: error,
    });
  }

  /**
   * Takes out of a batch (`items` and `kept`, in step) the messages whose POSTs were all made
   * before this delivery, and dead-letters them unsent: a coordinator stopped after their last
   * attempt (or killed while it held them, which counts one) and before it dead-lettered them.
   * POSTing them again would pass `webhookMaxAttempts`. Only a message delivered more times than
   * that can be one, so only those have their handbacks read.
   */
  private async retireSpent(items: Item[], kept: JsMsg[], s: AppSettings): Promise<void> {
    const max = s.webhookMaxAttempts;
    const over = kept.filter((m) => m.info.deliveryCount > max);
    if (over.length === 0) return;
    // `attempts` counts this delivery as one; it has not been POSTed.
    const made = (await this.attempts(over, max)).map((n) => n - 1);
    const spent = over.filter((_, i) => (made[i] as number) >= max);
    if (spent.length === 0) return;
    const spentItems = items.filter((_, i) => spent.includes(kept[i] as JsMsg));
    for (let i = kept.length - 1; i >= 0; i--) {
      if (!spent.includes(kept[i] as JsMsg)) continue;
      kept.splice(i, 1);
      items.splice(i, 1);
    }
    await this.retire(spent, spentItems, this.source === 'up' ? 'up' : 'events', s, {
      attempts: Math.max(...made.filter((n) => n >= max)),
      lastStatus: null,
      lastError: 'no attempt left: the coordinator that made the last one stopped before it finished',
    });
  }

  /** Dead-letters exhausted messages, then acks them (naks them for a retry when the letter cannot be stored). */
  private async retire(
    exhausted: JsMsg[],
    items: Item[],
    source: WebhookSource,
    s: AppSettings,
    why: { attempts: number; lastStatus: number | null; lastError: string },
  ): Promise<void> {
    try {
      const stored = await this.deadLetter(exhausted, items, source, why);
      for (const m of exhausted) m.ack();
      if (this.source === 'replay') for (const m of exhausted) await this.dropReplay(m);
      // A duplicate was stored before (a coordinator killed between store and ack): counted then.
      if (stored) this.worker.deps.metrics.deadLetters.inc(this.labels, items.length);
    } catch (err) {
      this.log.error({ err }, 'dead-lettering failed; the batch is retried');
      const policy = { baseMs: s.webhookRetryBaseMs, capMs: s.webhookRetryMaxMs };
      for (const m of exhausted) m.nak(retryDelay(s.webhookMaxAttempts, policy));
    }
  }

  /**
   * Stores a dead letter; resolves false when the stream already held it. Its Nats-Msg-Id is made
   * of the endpoint and the stream sequences, so the same messages dead-lettered twice for one
   * endpoint (a coordinator killed between the store and the ack) are stored once, while every
   * endpoint that failed them keeps its own letter: the events and upstream streams are shared
   * by all of an app's endpoints, so the sequences alone collided across them.
   */
  private async deadLetter(
    msgs: JsMsg[],
    items: Item[],
    source: WebhookSource,
    why: { attempts: number; lastStatus: number | null; lastError: string },
  ): Promise<boolean> {
    const { deps } = this.worker;
    const ep = this.worker.endpoint;
    await this.ensureDlq();
    const digest = createHash('sha256')
      .update(`${ep.id}:${this.stream}:${msgs.map((m) => m.info.streamSequence).join(',')}`)
      .digest('base64url')
      .slice(0, 32);
    const letter: DeadLetter = {
      id: `dlq_${digest}`,
      app: ep.app,
      endpoint: ep.id,
      source,
      time: Date.now(),
      attempts: why.attempts,
      lastStatus: why.lastStatus,
      lastError: why.lastError,
      items: items.map((i) => JSON.parse(i.raw) as unknown),
    };
    const ack = await this.js.publish(deps.subjects.dlq(ep.app, ep.id), JSON.stringify(letter), {
      msgID: letter.id,
      timeout: 10_000,
    });
    // Deleted while this attempt was in flight: the delete removed the endpoint from the bucket
    // before it purged its dead letters, so a letter stored after that purge is seen here and goes.
    if (!(await deps.endpointExists(ep.app, ep.id))) {
      this.jsm ??= await jetstreamManager(deps.nc);
      await this.jsm.streams.deleteMessage(deps.subjects.dlqStream(ep.app), ack.seq, false).catch((err: unknown) => {
        this.log.debug({ err, seq: ack.seq }, 'dead letter of a deleted endpoint not removed (purged already?)');
      });
      return false;
    }
    return !ack.duplicate;
  }

  /** A replayed dead letter that was delivered (or dead-lettered anew) leaves the stream. */
  private async dropReplay(m: JsMsg): Promise<void> {
    try {
      this.jsm ??= await jetstreamManager(this.worker.deps.nc);
      await this.jsm.streams.deleteMessage(this.stream, m.info.streamSequence, false);
    } catch (err) {
      this.log.warn({ err, seq: m.info.streamSequence }, 'replayed dead letter not removed');
    }
  }

  /** Pending count of the consumer, for the lag gauge. */
  private async readPending(): Promise<void> {
    if (this.stopped || this.source === 'replay') return;
    try {
      this.jsm ??= await jetstreamManager(this.worker.deps.nc);
      const info = await this.jsm.consumers.info(this.stream, webhookConsumerName(this.worker.endpoint.id));
      this.worker.deps.metrics.pending.set(
        { ...this.labels, source: this.source },
        info.num_pending + info.num_ack_pending,
      );
    } catch (err) {
      this.log.debug({ err }, 'pending count not read');
    }
  }
}
