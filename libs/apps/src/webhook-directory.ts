import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import type { Subjects, WebhookEndpoint } from '@push/protocol';
import type { Logger } from 'pino';

type Listener = (key: string, endpoint: WebhookEndpoint | undefined) => void;

/**
 * Every webhook endpoint, cached in memory and kept current from the webhooks KV bucket, which
 * the center writes after each change in Postgres (as the apps bucket). Coordinators learn of a
 * new, changed or deleted endpoint within one KV watch round trip, without reading Postgres.
 */
export class WebhookDirectory {
  private readonly endpoints = new Map<string, { endpoint: WebhookEndpoint; revision: number }>();
  private readonly listeners = new Set<Listener>();
  private stopWatch: (() => void) | undefined;

  private constructor(
    private readonly kv: KV,
    private readonly subjects: Subjects,
    private readonly log: Logger,
  ) {}

  /** Opens (creating when missing) the bucket, loads every endpoint, then follows changes. */
  static async open(
    nc: NatsConnection,
    subjects: Subjects,
    log: Logger,
    opts: { replicas: number },
  ): Promise<WebhookDirectory> {
    const kv = await new Kvm(nc).create(subjects.webhooksBucket, { history: 1, replicas: opts.replicas });
    const dir = new WebhookDirectory(kv, subjects, log);
    // As AppDirectory: watch first (updates only), then load; revisions order the two.
    const watch = await kv.watch({ include: 'updates' });
    dir.stopWatch = () => watch.stop();
    void (async () => {
      for await (const e of watch) dir.apply(e.key, e.operation === 'PUT' ? e.value : undefined, e.revision);
    })().catch((err: unknown) => log.error({ err }, 'webhooks watch ended'));
    const keys: string[] = [];
    for await (const k of await kv.keys()) keys.push(k);
    for (const k of keys) {
      const e = await kv.get(k);
      if (e !== null) dir.apply(k, e.operation === 'PUT' ? e.value : undefined, e.revision);
    }
    return dir;
  }

  private apply(key: string, value: Uint8Array | undefined, revision: number): void {
    let endpoint: WebhookEndpoint | undefined;
    if (value !== undefined && value.length > 0) {
      try {
        endpoint = JSON.parse(new TextDecoder().decode(value)) as WebhookEndpoint;
      } catch (err) {
        this.log.error({ err, key }, 'unreadable webhook endpoint in KV; ignored');
        return;
      }
    }
    const current = this.endpoints.get(key);
    if (current !== undefined && current.revision >= revision) return;
    if (endpoint === undefined) this.endpoints.delete(key);
    else this.endpoints.set(key, { endpoint, revision });
    for (const l of this.listeners) l(key, endpoint);
  }

  /** Every known endpoint, by KV key. */
  all(): Map<string, WebhookEndpoint> {
    return new Map([...this.endpoints].map(([k, v]) => [k, v.endpoint]));
  }

  /** Calls `listener` after every change (undefined = deleted). Returns an unsubscribe. */
  onChange(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Whether the endpoint is in the bucket now: a read of the bucket itself, not of this cache
   * (which learns of a delete a watch round trip later).
   */
  async exists(app: string, id: string): Promise<boolean> {
    const e = await this.kv.get(this.subjects.webhookKey(app, id));
    return e !== null && e.operation === 'PUT' && e.value.length > 0;
  }

  /** Writes an endpoint for every coordinator to see (the center calls this after Postgres). */
  async put(endpoint: WebhookEndpoint): Promise<void> {
    const key = this.subjects.webhookKey(endpoint.app, endpoint.id);
    const json = JSON.stringify(endpoint);
    const revision = await this.kv.put(key, json);
    this.apply(key, new TextEncoder().encode(json), revision);
  }

  /** Removes an endpoint for every coordinator (a purge: no history). Nothing when absent. */
  async delete(app: string, id: string): Promise<void> {
    const key = this.subjects.webhookKey(app, id);
    await this.kv.purge(key);
    if (!this.endpoints.delete(key)) return;
    for (const l of this.listeners) l(key, undefined);
  }

  /** Stops following changes. Idempotent. */
  close(): void {
    this.stopWatch?.();
    this.stopWatch = undefined;
  }
}
