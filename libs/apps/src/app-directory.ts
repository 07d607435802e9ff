import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import { DEFAULT_APP_SETTINGS, type AppRecord, type Subjects } from '@push/protocol';
import type { Logger } from 'pino';

type Listener = (id: string, app: AppRecord | undefined) => void;

/**
 * Every app's record, cached in memory and kept current from the apps KV bucket (which the
 * center writes after each change in Postgres). Edges and centers read apps synchronously from
 * here; a change reaches every process within one KV watch round trip.
 */
export class AppDirectory {
  /** `born`: the revision that made this incarnation of the id (a re-created app gets a new one). */
  private readonly apps = new Map<string, { record: AppRecord; revision: number; born: number }>();
  private readonly listeners = new Set<Listener>();
  private readonly kv: KV;
  private readonly subjects: Subjects;
  private readonly log: Logger;
  private stopWatch: (() => void) | undefined;

  private constructor(kv: KV, subjects: Subjects, log: Logger) {
    this.kv = kv;
    this.subjects = subjects;
    this.log = log;
  }

  /** Opens the bucket (created by provisioning), loads every app, then follows changes. */
  static async open(nc: NatsConnection, subjects: Subjects, log: Logger): Promise<AppDirectory> {
    const kv = await new Kvm(nc).open(subjects.appsBucket);
    const dir = new AppDirectory(kv, subjects, log);
    // Watch first (updates only), then load: nothing changed between the two is missed, and
    // revisions keep an older loaded value from replacing a newer watched one.
    const watch = await kv.watch({ include: 'updates' });
    dir.stopWatch = () => watch.stop();
    void (async () => {
      for await (const e of watch) dir.apply(e.key, e.operation === 'PUT' ? e.value : undefined, e.revision);
    })().catch((err: unknown) => log.error({ err }, 'apps watch ended'));
    const keys = await kv.keys();
    const all: string[] = [];
    for await (const k of keys) all.push(k);
    for (const k of all) {
      const e = await kv.get(k);
      if (e !== null) dir.apply(k, e.operation === 'PUT' ? e.value : undefined, e.revision);
    }
    return dir;
  }

  private apply(key: string, value: Uint8Array | undefined, revision: number): void {
    let record: AppRecord | undefined;
    if (value !== undefined && value.length > 0) {
      try {
        record = JSON.parse(new TextDecoder().decode(value)) as AppRecord;
        // A record written before a setting existed gets its default.
        record.settings = { ...DEFAULT_APP_SETTINGS, ...record.settings };
      } catch (err) {
        this.log.error({ err, key }, 'unreadable app record in KV; ignored');
        return;
      }
    }
    const id = record?.id ?? this.findIdByKey(key);
    if (id === undefined) return;
    let current = this.apps.get(id);
    if (current !== undefined && current.revision >= revision) return;
    const created = current?.record.createdAt;
    if (current !== undefined && record !== undefined && created !== undefined && record.createdAt !== created) {
      // Deleted and created again while this watch lagged: the old app is gone first, for
      // the listeners (edges close its connections) and for `holds`.
      this.apps.delete(id);
      current = undefined;
      for (const l of this.listeners) l(id, undefined);
    }
    if (record === undefined) this.apps.delete(id);
    else this.apps.set(id, { record, revision, born: current?.born ?? revision });
    for (const l of this.listeners) l(id, record);
  }

  private findIdByKey(key: string): string | undefined {
    for (const id of this.apps.keys()) if (this.subjects.appKey(id) === key) return id;
    return undefined;
  }

  /** The app's record, or undefined when no such app exists. */
  get(id: string): AppRecord | undefined {
    return this.apps.get(id)?.record;
  }

  /** Ids of every known app. */
  ids(): string[] {
    return [...this.apps.keys()];
  }

  /**
   * A test that holds while the app `id` this process knows now is still there: false once it is
   * deleted, and stays false when an app is created again with the same id. A store of the app's
   * that waits (queued, or held through an election) checks it before each send, so that a write
   * of a deleted app never lands in the streams of a new one given its id. An app not known here
   * yet (a center whose watch has not brought it) is taken as the incarnation first seen.
   */
  holds(id: string): () => boolean {
    let born = this.apps.get(id)?.born;
    return () => {
      const now = this.apps.get(id)?.born;
      born ??= now;
      return now !== undefined && now === born;
    };
  }

  /** Calls `listener` after every change (undefined app = deleted). Returns an unsubscribe. */
  onChange(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Writes an app's record for every process to see (the center calls this after Postgres). */
  async put(record: AppRecord): Promise<void> {
    const revision = await this.kv.put(this.subjects.appKey(record.id), JSON.stringify(record));
    this.apply(this.subjects.appKey(record.id), new TextEncoder().encode(JSON.stringify(record)), revision);
  }

  /**
   * Removes an app's record for every process (a KV purge: no history kept). Every process's
   * listeners hear `undefined` (edges close the app's connections). Nothing when it is absent.
   */
  async delete(id: string): Promise<void> {
    await this.kv.purge(this.subjects.appKey(id));
    if (!this.apps.delete(id)) return;
    for (const l of this.listeners) l(id, undefined);
  }

  /** Stops following changes. Idempotent. */
  close(): void {
    this.stopWatch?.();
    this.stopWatch = undefined;
  }
}
