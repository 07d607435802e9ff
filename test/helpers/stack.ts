import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { jetstreamManager } from '@nats-io/jetstream';
import { signClientToken } from '@push/apps';
import { createCenter, type Center } from '@push/center';
import { loadConfig, type Config } from '@push/config';
import { dropDatabase } from '@push/db';
import { createEdge, type Edge } from '@push/edge';
import { createLogger } from '@push/logger';
import { connectNats, type NatsConnection } from '@push/nats';
import type { AppRecord } from '@push/protocol';
import { NATS_URL } from './nats-server.js';
import { TcpProxy } from './tcp-proxy.js';
import { TestClient } from './ws-client.js';
import { reportCleanupFailure } from './cleanup.js';

const PG_BASE = process.env['PUSH_TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** The named variables of this process's environment that are set. */
function passThrough(...names: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of names) {
    const v = process.env[n];
    if (v !== undefined && v !== '') out[n] = v;
  }
  return out;
}

/** Answer of an HTTP call to the center. */
export interface HttpAnswer<T = Record<string, unknown>> {
  status: number;
  body: T;
  headers: Headers;
}

/**
 * A whole system for one test file: a unique subject prefix (its own streams, KV bucket and
 * Redis keys on the shared services), its own Postgres database, a center and any number of
 * edges in this process on free ports. `close()` removes everything it made.
 */
export class Stack {
  readonly prefix = `t${randomBytes(4).toString('hex')}`;
  readonly adminKey = `admin-${randomBytes(12).toString('hex')}`;
  readonly databaseUrl: string;
  center!: Center;
  readonly edges: Edge[] = [];
  /** The environment the stack's parts run with (for parts run as child processes). */
  readonly env: Record<string, string>;

  constructor(env: Record<string, string> = {}) {
    const u = new URL(PG_BASE);
    u.pathname = `/push_${this.prefix}`;
    this.databaseUrl = u.toString();
    this.env = {
      PUSH_PREFIX: this.prefix,
      PUSH_DATABASE_URL: this.databaseUrl,
      PUSH_ADMIN_KEY: this.adminKey,
      PUSH_CENTER_HOST: '127.0.0.1',
      PUSH_CENTER_PORT: '0',
      PUSH_EDGE_HOST: '127.0.0.1',
      PUSH_EDGE_PORT: '0',
      PUSH_EDGE_DRAIN_MS: '0',
      PUSH_LOG_LEVEL: process.env['PUSH_TEST_LOG_LEVEL'] ?? 'silent',
      // The services `make test` found or started (scripts/services.sh exports their URLs).
      PUSH_NATS_URL: NATS_URL,
      ...passThrough('PUSH_REDIS_URL'),
      ...env,
    };
  }

  config(extra: Record<string, string> = {}): Config {
    return loadConfig({ ...this.env, ...extra });
  }

  /** A NATS connection of the test's own, to the stack's server (the caller closes it). */
  connectNats(name: string): Promise<NatsConnection> {
    const cfg = this.config();
    return connectNats({
      servers: cfg.natsUrl,
      auth: cfg.natsAuth,
      name,
      logger: createLogger({ level: 'silent', name: 'test' }),
    });
  }

  static async start(env: Record<string, string> = {}): Promise<Stack> {
    const s = new Stack(env);
    const cfg = s.config();
    try {
      s.center = createCenter(cfg, { logger: createLogger({ level: cfg.log.level, name: 'center' }) });
      await s.center.start();
      await s.startEdge();
      return s;
    } catch (err) {
      // The caller never gets the stack to close: what did start must not keep the run alive.
      await s.close().catch(reportCleanupFailure('close of a stack that failed to start'));
      throw err;
    }
  }

  /** Starts one more edge (extra env on top of the stack's). */
  async startEdge(extra: Record<string, string> = {}): Promise<Edge> {
    const cfg = this.config(extra);
    const edge = createEdge(cfg, { logger: createLogger({ level: cfg.log.level, name: 'edge' }) });
    await edge.start();
    this.edges.push(edge);
    return edge;
  }

  /**
   * Starts one more edge whose NATS connections go through a TcpProxy (to cut them: `setDown`,
   * `dropAll`). The caller stops the proxy after `close()`.
   */
  async startEdgeBehindProxy(): Promise<{ edge: Edge; proxy: TcpProxy }> {
    const nats = new URL(this.config().natsUrl.split(',')[0] ?? '');
    const proxy = new TcpProxy(nats.hostname, Number(nats.port || 4222));
    await proxy.start();
    try {
      return { edge: await this.startEdge({ PUSH_NATS_URL: proxy.url }), proxy };
    } catch (err) {
      await proxy.stop();
      throw err;
    }
  }

  get edge(): Edge {
    const e = this.edges[0];
    if (e === undefined) throw new Error('no edge');
    return e;
  }

  wsUrl(edge: Edge = this.edge): string {
    return `ws://127.0.0.1:${edge.port}/ws`;
  }

  get httpUrl(): string {
    return `http://127.0.0.1:${this.center.port}`;
  }

  /** Creates an app through the center's admin HTTP API; returns its record and API key. */
  async createApp(settings: Record<string, unknown> = {}, id?: string): Promise<TestApp> {
    const r = await this.http<{ app: AppRecord; apiKey: string }>('POST', '/v1/admin/apps', this.adminKey, {
      ...(id !== undefined ? { id } : {}),
      settings,
    });
    if (r.status !== 201 && r.status !== 200) throw new Error(`create app: ${r.status} ${JSON.stringify(r.body)}`);
    // Edges hear of a new app through a KV watch: a connect in the same millisecond may not.
    const deadline = Date.now() + 5000;
    while (!this.edges.every((e) => e.knowsApp(r.body.app.id))) {
      if (Date.now() > deadline) throw new Error(`the edges did not hear of app ${r.body.app.id} within 5 s`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return new TestApp(this, r.body.app, r.body.apiKey);
  }

  async http<T = Record<string, unknown>>(
    method: string,
    path: string,
    bearer?: string,
    body?: unknown,
    raw?: string,
  ): Promise<HttpAnswer<T>> {
    const headers: Record<string, string> = {};
    if (bearer !== undefined) headers['authorization'] = `Bearer ${bearer}`;
    if (body !== undefined || raw !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${this.httpUrl}${path}`, {
      method,
      headers,
      body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
    });
    const text = await res.text();
    let parsed: unknown = {};
    try {
      parsed = text.length > 0 ? JSON.parse(text) : {};
    } catch {
      parsed = { raw: text };
    }
    return { status: res.status, body: parsed as T, headers: res.headers };
  }

  /** Stops every part and deletes the streams, KV bucket, Redis keys and database it made. */
  async close(): Promise<void> {
    await Promise.allSettled(this.edges.map((e) => e.stop()));
    await this.center?.stop().catch(reportCleanupFailure('center stop'));
    const cfg = this.config();
    const nc = await connectNats({
      servers: cfg.natsUrl,
      auth: cfg.natsAuth,
      name: 'test-cleanup',
      logger: createLogger({ level: 'silent', name: 'test' }),
    });
    try {
      const jsm = await jetstreamManager(nc);
      // Its streams and every KV bucket it made (apps, webhooks, ...).
      const mine: string[] = [];
      for await (const name of jsm.streams.names())
        if (name.startsWith(`${this.prefix.toUpperCase()}_`) || name.startsWith(`KV_${this.prefix}_`)) mine.push(name);
      for (const name of mine) await jsm.streams.delete(name).catch(reportCleanupFailure(`delete stream ${name}`));
    } finally {
      await nc.close();
    }
    const redis = new Redis(this.env['PUSH_REDIS_URL'] ?? 'redis://127.0.0.1:6379');
    try {
      const keys = await redis.keys(`${this.prefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
    } finally {
      redis.disconnect();
    }
    await dropDatabase(this.databaseUrl).catch(reportCleanupFailure('drop database'));
  }
}

/** An app created in a stack, with helpers to mint tokens, connect clients and push. */
export class TestApp {
  constructor(
    readonly stack: Stack,
    public record: AppRecord,
    readonly apiKey: string,
  ) {}

  get id(): string {
    return this.record.id;
  }

  async token(user: string, device = 'default', ttlSeconds = 3600, topics?: string[]): Promise<string> {
    const secret = this.record.secrets[0];
    if (secret === undefined) throw new Error('app without secret');
    return signClientToken(secret, {
      app: this.id,
      user,
      device,
      ttlSeconds,
      ...(topics !== undefined ? { topics } : {}),
    });
  }

  /** Connects with a client token granting the topic patterns. */
  async connectWithTopics(user: string, topics: string[], edge?: Edge, device = 'default'): Promise<TestClient> {
    return TestClient.connect(this.stack.wsUrl(edge), await this.token(user, device, 3600, topics));
  }

  /** POST /v1/apps/:app/topics/:topic/messages with this app's key. */
  publishTopic(topic: string, body: unknown): Promise<HttpAnswer> {
    return this.stack.http(
      'POST',
      `/v1/apps/${encodeURIComponent(this.id)}/topics/${encodeURIComponent(topic)}/messages`,
      this.apiKey,
      body,
    );
  }

  /** Publishes `data` to a topic and expects success; returns the sequence. */
  async publishTopicOk(topic: string, data: unknown, extra: Record<string, unknown> = {}): Promise<number> {
    const r = await this.publishTopic(topic, { data, ...extra });
    if (r.status !== 200) throw new Error(`topic publish failed: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body['seq'] as number;
  }

  async connect(user: string, device = 'default', query = '', edge?: Edge): Promise<TestClient> {
    return TestClient.connect(this.stack.wsUrl(edge), await this.token(user, device), query);
  }

  /** POST /v1/apps/:app/push with this app's key. */
  push(body: unknown): Promise<HttpAnswer> {
    return this.stack.http('POST', `/v1/apps/${encodeURIComponent(this.id)}/push`, this.apiKey, body);
  }

  /** Pushes and expects success; returns the sequence. */
  async pushOk(user: string, data: unknown, extra: Record<string, unknown> = {}): Promise<number> {
    const r = await this.push({ user, data, ...extra });
    if (r.status !== 200) throw new Error(`push failed: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body['seq'] as number;
  }

  /** Waits until the center reports `pending` stored messages for the user (acks remove asynchronously). */
  async waitPending(user: string, pending: number, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.user(user);
      if (r.body['pending'] === pending) return;
      if (Date.now() > deadline)
        throw new Error(`pending of ${user} stayed ${String(r.body['pending'])}, wanted ${pending}`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  /** Waits until presence lists `n` connections of the user (entries are written as sockets open and close). */
  async waitConnections(user: string, n: number, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = ((await this.user(user)).body['connections'] as unknown[]).length;
      if (got === n) return;
      if (Date.now() > deadline) throw new Error(`presence of ${user}: ${got} connections, wanted ${n}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  user(user: string): Promise<HttpAnswer> {
    return this.stack.http(
      'GET',
      `/v1/apps/${encodeURIComponent(this.id)}/users/${encodeURIComponent(user)}`,
      this.apiKey,
    );
  }
}
