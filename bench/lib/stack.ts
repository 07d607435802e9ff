import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { dropDatabase } from '@push/db';
import type { AppRecord } from '@push/protocol';
import { freePort, onCleanup, sleep, spawnNode, waitHttpOk, type Child } from './procs.js';
import { note } from './results.js';

/**
 * A setting from .data/services.env, which `scripts/services.sh up` (make bench, make test) writes:
 * there PUSH_NATS_URL is a private current nats-server when the one on :4222 is older than 2.11.
 */
function servicesEnv(name: string): string | undefined {
  const file = fileURLToPath(new URL('../../.data/services.env', import.meta.url));
  if (!existsSync(file)) return undefined;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line);
    if (m?.[1] === name && m[2] !== undefined && m[2] !== '') return m[2];
  }
  return undefined;
}

/** PUSH_BENCH_NATS_URL overrides; else PUSH_NATS_URL (environment, then .data/services.env). */
export const NATS_URL =
  process.env['PUSH_BENCH_NATS_URL'] ||
  process.env['PUSH_NATS_URL'] ||
  servicesEnv('PUSH_NATS_URL') ||
  'nats://127.0.0.1:4222';
export const REDIS_URL = process.env['PUSH_BENCH_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const PG_BASE = process.env['PUSH_BENCH_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
/** Extra node flags for our center and edges, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile them. */
const NODE_ARGS = (process.env['BENCH_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');

/** A unique subject/key prefix for one benchmark run: its own streams, KV bucket, Redis keys. */
export function benchPrefix(): string {
  return `b${randomBytes(4).toString('hex')}`;
}

/**
 * Deletes what a prefix made on the shared services: the apps' streams, every KV bucket of the
 * prefix (apps; webhooks, which the center makes too), the Redis keys and (when given) the
 * database. `natsUrl` (one URL or comma-separated seeds) is where the streams live: the shared
 * server unless the run used its own (the failover scenario's private cluster).
 */
export async function removePrefix(prefix: string, databaseUrl?: string, natsUrl = NATS_URL): Promise<void> {
  // Each part on its own: a NATS server that died (a run that ran out of memory) must not leave
  // the Redis keys and the database behind too. The first failure is thrown once all were tried.
  const parts = await Promise.allSettled([
    removeStreams(prefix, natsUrl),
    removeKeys(prefix),
    databaseUrl === undefined ? Promise.resolve() : dropDatabase(databaseUrl),
  ]);
  const failed = parts.find((p): p is PromiseRejectedResult => p.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

async function removeStreams(prefix: string, natsUrl: string): Promise<void> {
  const nc = await connect({ servers: natsUrl.split(',') });
  try {
    const jsm = await jetstreamManager(nc);
    const mine: string[] = [];
    for await (const name of jsm.streams.names())
      if (name.startsWith(`${prefix.toUpperCase()}_`) || name.startsWith(`KV_${prefix}_`)) mine.push(name);
    for (const name of mine)
      await jsm.streams.delete(name).catch((err: unknown) => {
        // Gone meanwhile is fine; anything else is worth a line.
        if (!/not found/i.test(String(err))) note(`cleanup: could not delete stream ${name}: ${String(err)}`);
      });
  } finally {
    await nc.close();
  }
}

async function removeKeys(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL, { lazyConnect: true });
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

/** An app created through the center's admin API. */
export interface BenchApp {
  record: AppRecord;
  apiKey: string;
}

/**
 * A center and edges run as child processes (`node apps/<x>/dist/main.js`), as in production,
 * with a unique PUSH_PREFIX and a fresh database. `close()` stops them and removes every stream,
 * KV bucket, Redis key and database the prefix made; it is also registered as a cleanup.
 */
export class BenchStack {
  readonly prefix = benchPrefix();
  readonly adminKey = `admin-${randomBytes(12).toString('hex')}`;
  readonly databaseUrl: string;
  center: Child | undefined;
  centerPort = 0;
  readonly edges: Array<{ child: Child; port: number }> = [];
  private closed: Promise<void> | undefined;
  private readonly env: Record<string, string>;

  constructor(env: Record<string, string> = {}) {
    const u = new URL(PG_BASE);
    u.pathname = `/push_${this.prefix}`;
    this.databaseUrl = u.toString();
    this.env = {
      PUSH_PREFIX: this.prefix,
      PUSH_NATS_URL: NATS_URL,
      PUSH_REDIS_URL: REDIS_URL,
      PUSH_DATABASE_URL: this.databaseUrl,
      PUSH_ADMIN_KEY: this.adminKey,
      PUSH_LOG_LEVEL: process.env['PUSH_BENCH_LOG_LEVEL'] ?? 'warn',
      PUSH_CENTER_HOST: '127.0.0.1',
      PUSH_EDGE_HOST: '127.0.0.1',
      PUSH_EDGE_WORKERS: '1',
      PUSH_EDGE_DRAIN_MS: '0',
      ...env,
    };
    onCleanup(`stack ${this.prefix}`, () => this.close());
  }

  get centerUrl(): string {
    return `http://127.0.0.1:${this.centerPort}`;
  }

  edgeUrl(i = 0): string {
    const e = this.edges[i];
    if (e === undefined) throw new Error(`no edge ${i}`);
    return `ws://127.0.0.1:${e.port}/ws`;
  }

  edgeHttp(i = 0): string {
    const e = this.edges[i];
    if (e === undefined) throw new Error(`no edge ${i}`);
    return `http://127.0.0.1:${e.port}`;
  }

  /** Starts the center (migrates the database, provisions the streams) and waits for /readyz. */
  async startCenter(extra: Record<string, string> = {}): Promise<void> {
    this.centerPort = await freePort();
    this.center = spawnNode('center', 'apps/center/dist/main.js', {
      env: { ...this.env, PUSH_CENTER_PORT: String(this.centerPort), ...extra },
      nodeArgs: NODE_ARGS,
    });
    await waitHttpOk(`${this.centerUrl}/readyz`, this.center);
  }

  /** Starts one edge process (one worker) and waits for /readyz; returns its index in `edges`. */
  async startEdge(extra: Record<string, string> = {}, nodeArgs: string[] = [], fixedPort?: number): Promise<number> {
    const port = fixedPort ?? (await freePort());
    const child = spawnNode(`edge${this.edges.length}`, 'apps/edge/dist/main.js', {
      env: { ...this.env, PUSH_EDGE_PORT: String(port), ...extra },
      nodeArgs: [...NODE_ARGS, ...nodeArgs],
    });
    this.edges.push({ child, port });
    await waitHttpOk(`http://127.0.0.1:${port}/readyz`, child);
    return this.edges.length - 1;
  }

  /** Creates an app through POST /v1/admin/apps. */
  async createApp(settings: Record<string, unknown> = {}): Promise<BenchApp> {
    const res = await fetch(`${this.centerUrl}/v1/admin/apps`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ settings }),
    });
    const body = (await res.json()) as { app: AppRecord; apiKey: string };
    if (res.status !== 201 && res.status !== 200) throw new Error(`create app: ${res.status} ${JSON.stringify(body)}`);
    return { record: body.app, apiKey: body.apiKey };
  }

  /** Stops the processes and removes what the prefix made. Idempotent. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      await Promise.allSettled(this.edges.map((e) => e.child.stop()));
      await this.center?.stop();
      await removePrefix(this.prefix, this.databaseUrl, this.env['PUSH_NATS_URL']);
    })();
    return this.closed;
  }
}

/** Reads Prometheus text metrics (unlabelled or first series) by name. */
export async function scrapeMetrics(url: string, names: readonly string[]): Promise<Record<string, number>> {
  const res = await fetch(url);
  const text = await res.text();
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m === null) continue;
    const name = m[1] as string;
    if (names.includes(name) && out[name] === undefined) out[name] = Number(m[3]);
  }
  return out;
}

/** Messages stored in a stream now (acked ones are deleted, so this is what is pending). */
export async function streamMessages(stream: string): Promise<number> {
  const nc = await connect({ servers: NATS_URL });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(stream);
    return info.state.messages;
  } finally {
    await nc.close();
  }
}

/**
 * Waits until a stream holds no message (every delivered message acked and removed), at most
 * `timeoutMs`; returns what is left and how long it took.
 */
export async function waitStreamEmpty(stream: string, timeoutMs: number): Promise<{ left: number; ms: number }> {
  const nc = await connect({ servers: NATS_URL });
  try {
    const jsm = await jetstreamManager(nc);
    const start = Date.now();
    for (;;) {
      // A server busy applying a storm of acks may not answer one info in time: ask again.
      const left = await jsm.streams.info(stream).then(
        (i) => i.state.messages,
        (err: unknown) => {
          if (Date.now() - start > timeoutMs) throw err;
          return -1;
        },
      );
      if (left === 0 || (left > 0 && Date.now() - start > timeoutMs)) return { left, ms: Date.now() - start };
      await sleep(100);
    }
  } finally {
    await nc.close();
  }
}
