import http from 'node:http';
import { readFile } from 'node:fs/promises';
import WebSocket from 'ws';
import { Subjects } from '@push/protocol';
import type { OpenCommand, Protocol } from '../loadgen.js';
import { freePort, spawnNode, waitHttpOk, type Child } from './procs.js';
import { BenchStack, scrapeMetrics, type BenchApp } from './stack.js';

export interface Memory {
  rss: number;
  heapUsed: number;
  connections: number;
}

export interface Message {
  user: string;
  data: unknown;
  /** Ours only: a transient push (never stored; docs/api.md#transient-pushes). */
  transient?: true;
}

/**
 * What a scenario loads: our system, or a peer, behind one interface. `send` and `broadcast`
 * resolve once the server accepted the work (for ours: stored in JetStream).
 */
export interface Target {
  readonly name: TargetName;
  readonly label: string;
  readonly protocol: Protocol;
  readonly ports: number[];
  /** The server processes, for CPU accounting. */
  readonly servers: Child[];
  readonly token?: OpenCommand['token'];
  /** Memory summed over the server processes, after a forced full GC. */
  memory(): Promise<Memory>;
  /** Unicast: each message to its user's connections (as many calls as it takes). */
  send(messages: Message[]): Promise<void>;
  /** One message in one call (ours: the single-message form of the push API). */
  sendOne(m: Message): Promise<void>;
  /** The same data to every user in `users` (ours: batch API calls; peers: their broadcast). */
  fanout(users: string[], data: unknown): Promise<void>;
  /** Kills the connection-holding processes (SIGKILL) and starts fresh ones on the same ports. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export type TargetName = 'ours' | 'uws' | 'sio';

export const LABELS: Record<TargetName, string> = {
  ours: 'our edge',
  uws: 'bare uWS',
  sio: 'Socket.IO 4 + Redis adapter',
};

/**
 * Keep-alive HTTP client for the load this process drives. node:http, not fetch: fetch spends
 * about a millisecond of CPU per call here, so a driver built on it could not send 1,000
 * single-message calls per second and its own queue showed up as server latency.
 */
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<unknown> {
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': String(payload.length), ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode !== 200) reject(new Error(`POST ${url}: ${res.statusCode} ${text.slice(0, 300)}`));
          else resolve(text.length > 0 ? JSON.parse(text) : undefined);
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/**
 * Forces a full GC in a process started with --inspect, through the inspector protocol: V8's
 * most thorough collection (`HeapProfiler.collectGarbage`, twice: several full GCs in a row), or
 * with `once`, one full GC (`gc()`, the process started with --expose-gc), which costs a busy
 * process a fraction of that.
 */
export async function inspectorGc(inspectPort: number, once = false): Promise<void> {
  const list = (await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`)).json()) as Array<{
    webSocketDebuggerUrl: string;
  }>;
  const target = list[0]?.webSocketDebuggerUrl;
  if (target === undefined) throw new Error('no inspector target');
  const ws = new WebSocket(target);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  let id = 0;
  const call = (method: string, params?: Record<string, unknown>): Promise<void> =>
    new Promise((resolve, reject) => {
      const my = ++id;
      const onMessage = (data: Buffer): void => {
        const m = JSON.parse(data.toString('utf8')) as { id?: number; error?: { message: string } };
        if (m.id !== my) return;
        ws.off('message', onMessage);
        if (m.error !== undefined) reject(new Error(`${method}: ${m.error.message}`));
        else resolve();
      };
      ws.on('message', onMessage);
      ws.send(JSON.stringify({ id: my, method, params }));
    });
  try {
    if (once) {
      await call('Runtime.evaluate', { expression: 'gc()' });
    } else {
      await call('HeapProfiler.collectGarbage');
      await call('HeapProfiler.collectGarbage');
    }
  } finally {
    ws.close();
  }
}

/** One edge's figures, scraped with no forced GC (OursTarget.sample). */
export interface EdgeSample {
  rss: number;
  heapUsed: number;
  connections: number;
  loopP99: number;
  loopMax: number;
}

/** Batch API calls in flight at once when a scenario pushes many messages to our center. */
const PUSH_CONCURRENCY = 8;
const MAX_BATCH = 1000;

/** Our system: a center and `edges` one-worker edge processes (each with its own port). */
export class OursTarget implements Target {
  readonly name = 'ours';
  readonly label = LABELS.ours;
  readonly protocol = 'push';
  readonly ports: number[] = [];
  token: OpenCommand['token'];
  private readonly inspectPorts: number[] = [];
  private edgeNodeArgs: string[] = [];

  private constructor(
    readonly stack: BenchStack,
    readonly app: BenchApp,
  ) {}

  /** `edgeNodeArgs`: node flags for the edges only (V8 tuning, see bench/README.md "million"). */
  static async start(edges = 1, env: Record<string, string> = {}, edgeNodeArgs: string[] = []): Promise<OursTarget> {
    const stack = new BenchStack({ PUSH_EDGE_MAX_CONNECTIONS: '19500', ...env });
    await stack.startCenter();
    const app = await stack.createApp({ maxPendingPerUser: 1000 });
    const t = new OursTarget(stack, app);
    const secret = app.record.secrets[0];
    if (secret === undefined) throw new Error('the app has no secret');
    t.token = { app: app.record.id, kid: secret.kid, secret: secret.secret, ttlSeconds: 3600 };
    t.edgeNodeArgs = edgeNodeArgs;
    for (let i = 0; i < edges; i++) await t.startEdge();
    return t;
  }

  /** Starts edge `i` (a new one when i is past the end) and records its port, process, inspector. */
  private async startEdge(i = this.ports.length): Promise<void> {
    const inspect = await freePort();
    const idx = await this.stack.startEdge({}, [...this.edgeNodeArgs, `--inspect=127.0.0.1:${inspect}`], this.ports[i]);
    const e = this.stack.edges[idx];
    if (e === undefined) throw new Error('edge did not start');
    this.ports[i] = e.port;
    this.edgeChildren[i] = e.child;
    this.inspectPorts[i] = inspect;
  }

  private readonly edgeChildren: Child[] = [];

  get servers(): Child[] {
    return this.stack.center !== undefined ? [...this.edgeChildren, this.stack.center] : [...this.edgeChildren];
  }

  async restart(): Promise<void> {
    for (const [i, child] of this.edgeChildren.entries()) {
      await child.stop(0);
      await this.startEdge(i);
    }
  }

  /**
   * Edge memory only (the center holds no connections), each edge after a forced GC (`gcOnce`:
   * one full GC each, the edges started with --expose-gc; see inspectorGc).
   */
  async memory(gcOnce = false): Promise<Memory> {
    const out: Memory = { rss: 0, heapUsed: 0, connections: 0 };
    for (const [i, port] of this.ports.entries()) {
      await inspectorGc(this.inspectPorts[i] as number, gcOnce);
      const m = await scrapeMetrics(`http://127.0.0.1:${port}/metrics`, [
        'process_resident_memory_bytes',
        'nodejs_heap_size_used_bytes',
        'push_edge_connections',
      ]);
      out.rss += m['process_resident_memory_bytes'] ?? Number.NaN;
      out.heapUsed += m['nodejs_heap_size_used_bytes'] ?? Number.NaN;
      out.connections += m['push_edge_connections'] ?? Number.NaN;
    }
    return out;
  }

  /**
   * The edges' proportional set size summed, bytes (Linux `/proc/<pid>/smaps_rollup`, `Pss`): what
   * they cost the host together. Summed RSS counts the pages every edge maps from the node binary
   * and its libraries (about 45 MB an edge, shared in the page cache) once per process; PSS
   * charges each shared page to its processes in shares. NaN where /proc cannot be read.
   */
  async pss(): Promise<number> {
    let total = 0;
    for (const child of this.edgeChildren) {
      try {
        const text = await readFile(`/proc/${child.proc.pid}/smaps_rollup`, 'utf8');
        const kb = /^Pss:\s+(\d+) kB$/m.exec(text)?.[1];
        total += kb === undefined ? Number.NaN : Number(kb) * 1024;
      } catch {
        return Number.NaN;
      }
    }
    return total;
  }

  /**
   * Each edge as an operator sees it, with no forced GC: resident and heap memory, connections,
   * and the event-loop delay since the previous scrape (p99 and max, seconds).
   */
  async sample(): Promise<EdgeSample[]> {
    return Promise.all(
      this.ports.map(async (port) => {
        const m = await scrapeMetrics(`http://127.0.0.1:${port}/metrics`, [
          'process_resident_memory_bytes',
          'nodejs_heap_size_used_bytes',
          'push_edge_connections',
          'nodejs_eventloop_lag_p99_seconds',
          'nodejs_eventloop_lag_max_seconds',
        ]);
        return {
          rss: m['process_resident_memory_bytes'] ?? Number.NaN,
          heapUsed: m['nodejs_heap_size_used_bytes'] ?? Number.NaN,
          connections: m['push_edge_connections'] ?? Number.NaN,
          loopP99: m['nodejs_eventloop_lag_p99_seconds'] ?? Number.NaN,
          loopMax: m['nodejs_eventloop_lag_max_seconds'] ?? Number.NaN,
        };
      }),
    );
  }

  /** One batch API call, answering the center's results (one per message: `seq`, or an error). */
  async pushResults(messages: Message[]): Promise<Array<{ seq?: number }>> {
    const body = (await postJson(
      `${this.stack.centerUrl}/v1/apps/${encodeURIComponent(this.app.record.id)}/push`,
      { messages },
      { authorization: `Bearer ${this.app.apiKey}` },
    )) as { results?: Array<{ seq?: number }> };
    return body.results ?? [];
  }

  /** One batch API call. */
  async push(messages: Message[]): Promise<void> {
    await postJson(
      `${this.stack.centerUrl}/v1/apps/${encodeURIComponent(this.app.record.id)}/push`,
      { messages },
      { authorization: `Bearer ${this.app.apiKey}` },
    );
  }

  /** One single-message API call. */
  async sendOne(m: Message): Promise<void> {
    await postJson(`${this.stack.centerUrl}/v1/apps/${encodeURIComponent(this.app.record.id)}/push`, m, {
      authorization: `Bearer ${this.app.apiKey}`,
    });
  }

  /** Any number of messages, as batches of up to 1,000, PUSH_CONCURRENCY calls in flight. */
  async send(messages: Message[]): Promise<void> {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < messages.length) {
        const from = next;
        next += MAX_BATCH;
        await this.push(messages.slice(from, from + MAX_BATCH));
      }
    };
    await Promise.all(Array.from({ length: PUSH_CONCURRENCY }, worker));
  }

  /**
   * One message to every connected user through the app's broadcast topic `_all` (one stored
   * copy, fanned out by each edge with uWS pub/sub), the same round as the peers' broadcast.
   */
  async fanout(_users: string[], data: unknown): Promise<void> {
    await postJson(
      `${this.stack.centerUrl}/v1/apps/${encodeURIComponent(this.app.record.id)}/topics/_all/messages`,
      { data },
      { authorization: `Bearer ${this.app.apiKey}` },
    );
  }

  get inboxStream(): string {
    return new Subjects(this.stack.prefix).inboxStream(this.app.record.id);
  }

  close(): Promise<void> {
    return this.stack.close();
  }
}

/** A peer server from bench/peers/ (the HTTP control interface described there). */
export class PeerTarget implements Target {
  readonly label: string;
  readonly protocol: Protocol;

  private constructor(
    readonly name: TargetName,
    private child: Child,
    readonly ports: number[],
  ) {
    this.label = LABELS[name];
    this.protocol = name === 'sio' ? 'sio' : 'uws';
  }

  get servers(): Child[] {
    return [this.child];
  }

  private static async spawn(name: 'uws' | 'sio', port: number): Promise<Child> {
    const script = name === 'uws' ? 'bench/peers/uws-bare.ts' : 'bench/peers/socketio.ts';
    // Bare uWS listens on as many sockets as our edge (PUSH_EDGE_LISTEN_SOCKETS, 4 by default):
    // the same accept backlog, so a storm compares the work per connection, not the backlogs.
    const env = { PORT: String(port), LISTEN_SOCKETS: process.env['PUSH_EDGE_LISTEN_SOCKETS'] ?? '4' };
    const child = spawnNode(name, script, { env, nodeArgs: ['--expose-gc'] });
    await waitHttpOk(`http://127.0.0.1:${port}/healthz`, child);
    return child;
  }

  static async start(name: 'uws' | 'sio'): Promise<PeerTarget> {
    const port = await freePort();
    return new PeerTarget(name, await PeerTarget.spawn(name, port), [port]);
  }

  async restart(): Promise<void> {
    await this.child.stop(0);
    this.child = await PeerTarget.spawn(this.name as 'uws' | 'sio', this.ports[0] as number);
  }

  private get url(): string {
    return `http://127.0.0.1:${this.ports[0] as number}`;
  }

  async memory(): Promise<Memory> {
    return (await postJson(`${this.url}/gc`, {})) as Memory;
  }

  async send(messages: Message[]): Promise<void> {
    for (let i = 0; i < messages.length; i += MAX_BATCH)
      await postJson(`${this.url}/send`, { messages: messages.slice(i, i + MAX_BATCH) });
  }

  sendOne(m: Message): Promise<void> {
    return this.send([m]);
  }

  async fanout(_users: string[], data: unknown): Promise<void> {
    await postJson(`${this.url}/broadcast`, { data });
  }

  close(): Promise<void> {
    return this.child.stop();
  }
}

/** Starts a target by name; `edges` only applies to ours. */
export function startTarget(name: TargetName, edges = 1): Promise<Target> {
  return name === 'ours' ? OursTarget.start(edges) : PeerTarget.start(name);
}
