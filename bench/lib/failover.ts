/**
 * The failover driver shared by the fault suite (test/faults/) and the `failover` benchmark: our
 * center and one edge on a private 3-node JetStream cluster (R3 streams), a steady open-loop load
 * of single-message pushes (or topic publishes) while a fault is injected into the cluster, and
 * the accounting a user would notice: pushes refused (and the longest stretch of them), accepted
 * pushes lost or delivered twice or out of order, acked messages left stored, accept latency.
 */
import http from 'node:http';
import WebSocket from 'ws';
import { signClientToken } from '@push/apps';
import { Subjects, type AppSecret } from '@push/protocol';
import { NatsCluster, type ClusterNode } from '../../test/helpers/nats-cluster.js';
import { onCleanup, sleep } from './procs.js';
import { BenchStack, type BenchApp } from './stack.js';

/** The load of one fault run. */
export interface FailoverLoad {
  /** Pushes (or topic publishes) per second, open loop: sent on time whatever the answers. */
  rate: number;
  /** Users connected through the edge all along, acking what they get. */
  onlineUsers: number;
  /** Users who connect only at the end and must read what was stored for them meanwhile (inbox faults). */
  offlineUsers: number;
  /** Load before the fault starts, ms. */
  beforeMs: number;
  /** Load after the fault is over (the node back and current), ms. */
  afterMs: number;
  /**
   * Give every push an idempotency `id` (the API's `id` field, stored as its Nats-Msg-Id), as a
   * careful business does; default false: pushes without one, the common case.
   */
  withIds?: boolean;
}

export const DEFAULT_LOAD: FailoverLoad = {
  rate: 300,
  onlineUsers: 100,
  offlineUsers: 10,
  beforeMs: 3000,
  afterMs: 3000,
};

/** What a fault run measured. */
export interface FaultFigures {
  fault: FaultName;
  /** What was done to the cluster (which node, its role). */
  what: string;
  /** How long the fault took, ms (from the first signal to the node back and current). */
  faultMs: number;
  /** Leader kills: ms from the kill -9 until another node answered as the stream's leader (null: other faults). */
  newLeaderMs: number | null;
  pushes: number;
  accepted: number;
  refused: number;
  /** refused / pushes, percent. */
  refusedPercent: number;
  /** Refusals by answer (`503 store_unavailable`, `timeout`...). */
  refusals: Record<string, number>;
  /** The longest run of consecutive refused pushes, ms from its first send to the next accepted push's send (0: none). */
  longestRefusedMs: number;
  /** Accepted pushes (2xx with a seq) never delivered to their user (for topics: to a subscriber). */
  lost: number;
  /** Some of the lost, as `recipient#seq` (recipient: user, or `user/topic`), for the report. */
  lostExamples: string[];
  /** Deliveries of a message to a user (subscriber) that had it already. */
  duplicates: number;
  /** Deliveries with a seq lower than one delivered before to the same user (subscriber, per topic). */
  outOfOrder: number;
  /** Refused pushes whose message was stored all the same and delivered (no loss: the caller was told no). */
  deliveredThoughRefused: number;
  /** Messages left in the inbox stream after every user acked everything it got (inbox faults); null for topics. */
  ackedLeftStored: number | null;
  /** When some were left: up to 5 of them (`seq subject id, delivered to a client or not`) and each replica's count. */
  leftStored: string[];
  /** Accept latency of the accepted pushes, ms. */
  latencyMs: { p50: number; p99: number; max: number };
  /** How long the refused pushes took to be answered, ms (NaN: none refused): a hold that ran out, or a quick no. */
  refusedAfterMs: { min: number; max: number };
}

export type FaultName = 'leader-kill' | 'topic-leader-kill' | 'follower-kill' | 'rolling-ldm' | 'rolling-term';

/** The faults, in the order the suite and the bench run them. */
export const FAULT_NAMES: FaultName[] = [
  'leader-kill',
  'topic-leader-kill',
  'follower-kill',
  'rolling-ldm',
  'rolling-term',
];

/** How long a killed node stays down before it is started again, ms. */
const DOWN_MS = 3000;

interface Fault {
  /** What the load writes: user inboxes, or topics with subscribers. */
  mode: 'inbox' | 'topic';
  /** Does the fault; resolves with what it did once the cluster is whole and current again. */
  inject(cluster: NatsCluster, streams: { inbox: string; topic: string }): Promise<Injected>;
}

interface Injected {
  what: string;
  /** For a leader kill: ms from the kill to another node answering as the stream's leader. */
  newLeaderMs?: number;
}

/**
 * kill -9 of `node`, started again DOWN_MS later and waited for until current. With `ledStream`
 * (the node led it), also measures how long the stream had no leader: the election that every
 * store request waits through.
 */
async function killAndRestart(
  cluster: NatsCluster,
  node: ClusterNode,
  role: string,
  ledStream?: string,
): Promise<Injected> {
  const t0 = Date.now();
  await cluster.kill(node);
  let newLeaderMs: number | undefined;
  const election =
    ledStream === undefined
      ? Promise.resolve()
      : cluster
          .streamInfo(ledStream, 30_000, (i) => i.cluster?.leader !== undefined && i.cluster.leader !== node.name)
          .then(
            () => {
              newLeaderMs = Date.now() - t0;
            },
            () => undefined,
          );
  await sleep(DOWN_MS);
  await election;
  await cluster.restart(node);
  return {
    what: `kill -9 of ${node.name} (${role}), started again after ${DOWN_MS} ms`,
    ...(newLeaderMs !== undefined ? { newLeaderMs } : {}),
  };
}

export const FAULTS: Record<FaultName, Fault> = {
  'leader-kill': {
    mode: 'inbox',
    async inject(cluster, s) {
      const leader = await cluster.streamLeader(s.inbox);
      return killAndRestart(cluster, leader, `leader of ${s.inbox}`, s.inbox);
    },
  },
  'topic-leader-kill': {
    mode: 'topic',
    async inject(cluster, s) {
      const leader = await cluster.streamLeader(s.topic);
      return killAndRestart(cluster, leader, `leader of ${s.topic}`, s.topic);
    },
  },
  'follower-kill': {
    mode: 'inbox',
    async inject(cluster, s) {
      const inbox = await cluster.streamLeader(s.inbox);
      const topic = await cluster.streamLeader(s.topic);
      // A follower of the inbox stream; one that leads neither stream when there is one.
      const followers = cluster.nodes.filter((n) => n !== inbox);
      const node = followers.find((n) => n !== topic) ?? followers[0];
      if (node === undefined) throw new Error('a cluster of one node has no follower');
      return killAndRestart(cluster, node, `a follower of ${s.inbox}, whose leader is ${inbox.name}`);
    },
  },
  'rolling-ldm': {
    mode: 'inbox',
    async inject(cluster) {
      await cluster.rollingRestart({ ldm: true });
      return { what: 'rolling restart of n1, n2, n3 with lame duck mode (scripts/rolling-restart.sh)' };
    },
  },
  'rolling-term': {
    mode: 'inbox',
    async inject(cluster) {
      await cluster.rollingRestart({ ldm: false });
      return { what: 'rolling restart of n1, n2, n3 with SIGTERM (scripts/rolling-restart.sh --no-ldm)' };
    },
  },
};

/** A center and an edge (child processes) on a private 3-node cluster with R3 streams. */
export class FailoverSystem {
  private constructor(
    readonly cluster: NatsCluster,
    readonly stack: BenchStack,
  ) {}

  /**
   * Starts the cluster and our processes on it (PUSH_NATS_URL: every node, so they fail over;
   * PUSH_REPLICAS=3). Both are registered as cleanups (bench/lib/procs.ts: on completion,
   * failure and Ctrl-C) and closed by `close()`.
   */
  static async start(env: Record<string, string> = {}): Promise<FailoverSystem> {
    const cluster = await NatsCluster.start();
    onCleanup('nats cluster', () => cluster.stop());
    const stack = new BenchStack({ PUSH_NATS_URL: cluster.urls, PUSH_REPLICAS: '3', ...env });
    await stack.startCenter();
    await stack.startEdge();
    return new FailoverSystem(cluster, stack);
  }

  /** Stops the apps, removes the prefix's keys and database, then stops the cluster. */
  async close(): Promise<void> {
    await this.stack.close();
    await this.cluster.stop();
  }

  /**
   * Runs one fault under load on a fresh app (its own R3 inbox and topic streams) and returns
   * its figures. Fails only when the harness cannot run (the app, the clients); what the fault
   * did to the pushes is in the figures.
   */
  async run(
    name: FaultName,
    load: FailoverLoad = DEFAULT_LOAD,
    log: (line: string) => void = () => {},
  ): Promise<FaultFigures> {
    const fault = FAULTS[name];
    const app = await this.stack.createApp({ maxPendingPerUser: 10_000 });
    const subjects = new Subjects(this.stack.prefix);
    const streams = { inbox: subjects.inboxStream(app.record.id), topic: subjects.topicStream(app.record.id) };
    // Streams are made as the app is saved; both must be R3 with a leader before the fault.
    for (const s of [streams.inbox, streams.topic]) {
      const info = await this.cluster.streamInfo(s, 20_000, (i) => i.cluster?.leader !== undefined);
      if (info.config.num_replicas !== 3) throw new Error(`${s} has ${info.config.num_replicas} replicas, not 3`);
    }
    const secret = app.record.secrets[0];
    if (secret === undefined) throw new Error('the app has no secret');
    const topics = fault.mode === 'topic' ? Array.from({ length: 10 }, (_, i) => `t${i}`) : [];
    const online: FailoverClient[] = [];
    const offline: FailoverClient[] = [];
    try {
      for (let i = 0; i < load.onlineUsers; i++) {
        const topic = topics.length > 0 ? topics[i % topics.length] : undefined;
        online.push(new FailoverClient(this.stack.edgeUrl(0), app.record.id, secret, `u${i}`, topic));
      }
      await Promise.all(online.map((c) => c.start()));
      const targets =
        fault.mode === 'topic'
          ? topics
          : [...online.map((c) => c.user), ...Array.from({ length: load.offlineUsers }, (_, i) => `off${i}`)];
      const driver = new PushLoad(this.stack.centerUrl, app, fault.mode, targets, load.rate, load.withIds === true);
      log(`${name}: ${load.rate}/s to ${targets.length} ${fault.mode === 'topic' ? 'topics' : 'users'}`);
      driver.start();
      await sleep(load.beforeMs);
      const t0 = Date.now();
      const { what, newLeaderMs } = await fault.inject(this.cluster, streams);
      const faultMs = Date.now() - t0;
      log(`${name}: ${what} (${faultMs} ms${newLeaderMs !== undefined ? `, new leader after ${newLeaderMs} ms` : ''})`);
      await sleep(load.afterMs);
      await driver.stop();
      await this.cluster.waitReady();

      // Every accepted message must reach its online users; then the offline users come.
      const want = driver.expected(fault.mode === 'topic' ? online : undefined);
      const wantOnline: Expected = new Map([...want].filter(([k]) => !k.startsWith('off')));
      const deadline = Date.now() + 30_000;
      while (countMissing(wantOnline, online) > 0 && Date.now() < deadline) await sleep(100);
      const settledMs = (): number => Date.now() - t0 - faultMs;
      if (fault.mode === 'inbox') {
        for (let i = 0; i < load.offlineUsers; i++)
          offline.push(new FailoverClient(this.stack.edgeUrl(0), app.record.id, secret, `off${i}`));
        await Promise.all(offline.map((c) => c.start()));
      }
      const everyone = [...online, ...offline];
      const deadline2 = Date.now() + 30_000;
      while (countMissing(want, everyone) > 0 && Date.now() < deadline2) await sleep(100);
      let ackedLeftStored: number | null = null;
      let leftStored: string[] = [];
      if (fault.mode === 'inbox') {
        // Every client acked what it got (refused-but-stored messages included): the stream
        // must empty, acks being applied asynchronously.
        const deadline3 = Date.now() + 20_000;
        for (;;) {
          ackedLeftStored = (await this.cluster.streamInfo(streams.inbox)).state.messages;
          if (ackedLeftStored === 0 || Date.now() > deadline3) break;
          await sleep(200);
        }
        if (ackedLeftStored > 0) leftStored = await this.leftStored(streams.inbox, everyone);
      }
      log(`${name}: settled ${settledMs()} ms after the fault`);
      return {
        ...driver.figures(name, what, faultMs, everyone, want, ackedLeftStored),
        leftStored,
        newLeaderMs: newLeaderMs ?? null,
      };
    } finally {
      for (const c of [...online, ...offline]) c.stop();
    }
  }

  /** What stayed stored after everyone acked: up to 5 messages, whether a client got each, and each replica's count. */
  private async leftStored(stream: string, clients: FailoverClient[]): Promise<string[]> {
    const out: string[] = [];
    try {
      let seq = 1;
      for (let i = 0; i < 5; i++) {
        const r = await this.cluster.api<{
          message?: { seq: number; subject: string; hdrs?: string };
          error?: { description?: string };
        }>(`$JS.API.STREAM.MSG.GET.${stream}`, { seq, next_by_subj: '>' });
        if (r.message === undefined) break;
        const m = r.message;
        const hdrs = m.hdrs === undefined ? '' : Buffer.from(m.hdrs, 'base64').toString('utf8');
        const id = /Nats-Msg-Id:\s*(\S+)/i.exec(hdrs)?.[1] ?? '?';
        const got = clients.some((c) => [...c.received.values()].some((seqs) => seqs.has(m.seq)));
        out.push(`#${m.seq} ${m.subject} id=${id} ${got ? 'delivered' : 'never delivered'}`);
        seq = m.seq + 1;
      }
    } catch (err) {
      out.push(`reading them failed: ${String(err)}`);
    }
    out.push(`replicas: ${(await this.cluster.replicaCounts(stream)).join(' ')}`);
    return out;
  }
}

/** Per recipient (user, or subscriber `user/topic`), the seqs accepted for it. */
type Expected = Map<string, Set<number>>;

/** Up to `limit` accepted messages no client got, as `recipient#seq`. */
function missingExamples(want: Expected, clients: FailoverClient[], limit = 10): string[] {
  const got = new Map<string, Set<number>>();
  for (const c of clients) for (const [k, seqs] of c.received) got.set(k, seqs);
  const out: string[] = [];
  for (const [k, seqs] of want)
    for (const s of seqs) if (got.get(k)?.has(s) !== true && out.length < limit) out.push(`${k}#${s}`);
  return out;
}

function countMissing(want: Expected, clients: FailoverClient[]): number {
  const got = new Map<string, Set<number>>();
  for (const c of clients) for (const [k, seqs] of c.received) got.set(k, seqs);
  let missing = 0;
  for (const [k, seqs] of want) {
    const have = got.get(k);
    for (const s of seqs) if (have?.has(s) !== true) missing++;
  }
  return missing;
}

interface PushRecord {
  target: string;
  id: string;
  sentAt: number;
  doneAt: number;
  /** `200`, or the refusal: `503 store_unavailable`, `timeout`, `error`. */
  answer: string;
  seq: number | undefined;
}

/** Keep-alive HTTP for the pushes (fetch costs about a millisecond of CPU per call). */
const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
/** Requests sent again after ECONNRESET on a reused keep-alive socket (a reset on a new socket is a refusal). */
const STALE_SOCKET_RETRIES = 5;

/**
 * One POST. A keep-alive socket the center closed as idle just as it was reused fails at once
 * with ECONNRESET before the request was read (`reusedSocket`): sent again, as Node's
 * documentation advises, up to STALE_SOCKET_RETRIES times (the agent may hand out another such
 * socket), so the figures count the store's refusals, not that race. A reset on a new socket counts.
 */
function post(
  url: string,
  key: string,
  body: unknown,
  timeoutMs: number,
  retries = 0,
): Promise<{ status: number; body: string }> {
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: 'POST',
        agent,
        timeout: timeoutMs,
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'application/json',
          'content-length': String(payload.length),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err: NodeJS.ErrnoException) => {
      // The agent may hand out several sockets the server closed in the same instant (idle
      // keep-alive sockets time out together): each such reset is a request never read.
      if (retries < STALE_SOCKET_RETRIES && req.reusedSocket && err.code === 'ECONNRESET') {
        post(url, key, body, timeoutMs, retries + 1).then(resolve, reject);
      } else reject(err);
    });
    req.end(payload);
  });
}

/** Open-loop pushes (or topic publishes) at `rate` per second, each one call, round-robin over the targets. */
class PushLoad {
  readonly records: PushRecord[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly inflight = new Set<Promise<void>>();
  private n = 0;
  private started = 0;

  constructor(
    private readonly centerUrl: string,
    private readonly app: BenchApp,
    private readonly mode: 'inbox' | 'topic',
    private readonly targets: string[],
    private readonly rate: number,
    private readonly withIds: boolean,
  ) {}

  start(): void {
    this.started = performance.now();
    // What is due is sent every 5 ms, so the pace holds whatever the answers take.
    this.timer = setInterval(() => {
      const due = Math.floor(((performance.now() - this.started) / 1000) * this.rate);
      while (this.n < due) this.sendOne();
    }, 5);
  }

  private sendOne(): void {
    const n = this.n++;
    const target = this.targets[n % this.targets.length] as string;
    const id = `m${n}`;
    const appId = encodeURIComponent(this.app.record.id);
    const rec: PushRecord = { target, id, sentAt: performance.now(), doneAt: 0, answer: '', seq: undefined };
    this.records.push(rec);
    const url =
      this.mode === 'topic'
        ? `${this.centerUrl}/v1/apps/${appId}/topics/${encodeURIComponent(target)}/messages`
        : `${this.centerUrl}/v1/apps/${appId}/push`;
    const body = {
      ...(this.mode === 'topic' ? {} : { user: target }),
      data: { id },
      ...(this.withIds ? { id } : {}),
    };
    const p = post(url, this.app.apiKey, body, 30_000).then(
      (r) => {
        rec.doneAt = performance.now();
        let parsed: { seq?: unknown; error?: { code?: string } } = {};
        try {
          parsed = JSON.parse(r.body) as typeof parsed;
        } catch {
          parsed = {};
        }
        if (r.status === 200 && typeof parsed.seq === 'number') {
          rec.answer = '200';
          rec.seq = parsed.seq;
        } else rec.answer = `${r.status} ${parsed.error?.code ?? ''}`.trim();
      },
      (err: unknown) => {
        rec.doneAt = performance.now();
        const e = err as NodeJS.ErrnoException;
        rec.answer = e.message === 'timeout' ? 'timeout' : `error ${e.code ?? e.message}`;
      },
    );
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }

  /** Stops sending and waits for every answer. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    while (this.inflight.size > 0) await Promise.all([...this.inflight]);
  }

  /**
   * The seqs each recipient must get: per user (inbox), or per subscriber and topic (topics:
   * every online client subscribed to the topic).
   */
  expected(subscribers?: FailoverClient[]): Expected {
    const want: Expected = new Map();
    const add = (k: string, seq: number): void => {
      let s = want.get(k);
      if (s === undefined) want.set(k, (s = new Set()));
      s.add(seq);
    };
    for (const r of this.records) {
      if (r.seq === undefined) continue;
      if (this.mode === 'inbox') add(r.target, r.seq);
      else for (const c of subscribers ?? []) if (c.topic === r.target) add(`${c.user}/${r.target}`, r.seq);
    }
    return want;
  }

  figures(
    fault: FaultName,
    what: string,
    faultMs: number,
    clients: FailoverClient[],
    want: Expected,
    ackedLeftStored: number | null,
  ): Omit<FaultFigures, 'newLeaderMs' | 'leftStored'> {
    const refusals: Record<string, number> = {};
    let longest = 0;
    let runStart: number | undefined;
    for (const r of this.records) {
      if (r.answer === '200') {
        if (runStart !== undefined) longest = Math.max(longest, r.sentAt - runStart);
        runStart = undefined;
      } else {
        refusals[r.answer] = (refusals[r.answer] ?? 0) + 1;
        runStart ??= r.sentAt;
      }
    }
    if (runStart !== undefined) longest = Math.max(longest, (this.records.at(-1)?.sentAt ?? runStart) - runStart);
    const refused = Object.values(refusals).reduce((a, b) => a + b, 0);
    // Refused pushes whose message arrived all the same (stored, but the answer was lost).
    const refusedIds = new Set(this.records.filter((r) => r.answer !== '200').map((r) => r.id));
    let deliveredThoughRefused = 0;
    for (const c of clients) for (const id of c.ids) if (refusedIds.has(id)) deliveredThoughRefused++;
    const refusedTimes = this.records.filter((r) => r.answer !== '200').map((r) => r.doneAt - r.sentAt);
    const latencies = this.records
      .filter((r) => r.answer === '200')
      .map((r) => r.doneAt - r.sentAt)
      .sort((a, b) => a - b);
    const pct = (p: number): number =>
      latencies.length === 0
        ? Number.NaN
        : (latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] as number);
    const round = (x: number): number => Math.round(x * 10) / 10;
    return {
      fault,
      what,
      faultMs,
      pushes: this.records.length,
      accepted: this.records.length - refused,
      refused,
      refusedPercent: this.records.length === 0 ? 0 : Math.round((refused / this.records.length) * 10_000) / 100,
      refusals,
      longestRefusedMs: Math.round(longest),
      lost: countMissing(want, clients),
      lostExamples: missingExamples(want, clients),
      duplicates: clients.reduce((s, c) => s + c.duplicates, 0),
      outOfOrder: clients.reduce((s, c) => s + c.outOfOrder, 0),
      deliveredThoughRefused,
      ackedLeftStored,
      latencyMs: { p50: round(pct(50)), p99: round(pct(99)), max: round(latencies.at(-1) ?? Number.NaN) },
      refusedAfterMs: {
        min: refusedTimes.length === 0 ? Number.NaN : round(Math.min(...refusedTimes)),
        max: refusedTimes.length === 0 ? Number.NaN : round(Math.max(...refusedTimes)),
      },
    };
  }
}

interface MsgFrame {
  t: 'msg';
  seq: number;
  topic?: string;
  prev?: number;
  data?: { id?: string };
}

/**
 * One user's device, as the SDK behaves: acks every inbox message (batched per event-loop turn),
 * reconnects 100 ms after its socket closes, and on a topic resumes from the last seq it saw
 * (after a reconnect, or when a message's `prev` shows a gap). Records, per recipient key
 * (`user`, or `user/topic`), the seqs it got, duplicates and seqs that went backwards.
 */
class FailoverClient {
  /** Recipient key -> seqs received. */
  readonly received = new Map<string, Set<number>>();
  /** Data ids received (to spot refused pushes that were stored all the same). */
  readonly ids = new Set<string>();
  duplicates = 0;
  outOfOrder = 0;
  private ws: WebSocket | undefined;
  private stopped = false;
  private pendingAcks: number[] = [];
  private lastTopicSeq = 0;
  private resuming = false;
  private readonly lastSeq = new Map<string, number>();

  constructor(
    private readonly url: string,
    private readonly app: string,
    private readonly secret: AppSecret,
    readonly user: string,
    readonly topic?: string,
  ) {}

  private get key(): string {
    return this.topic === undefined ? this.user : `${this.user}/${this.topic}`;
  }

  /** Connects; resolves at the hello (and, with a topic, once subscribed). Retries for 15 s. */
  async start(): Promise<void> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        await this.connect();
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`${this.user} could not connect: ${String(err)}`);
        await sleep(200);
      }
    }
  }

  private async connect(): Promise<void> {
    const token = await signClientToken(this.secret, {
      app: this.app,
      user: this.user,
      ttlSeconds: 3600,
      ...(this.topic !== undefined ? { topics: [this.topic] } : {}),
    });
    const ws = new WebSocket(`${this.url}?token=${encodeURIComponent(token)}`);
    this.ws = ws;
    this.resuming = false;
    await new Promise<void>((resolve, reject) => {
      let ready = false;
      ws.on('message', (data: Buffer) => {
        const f = JSON.parse(data.toString('utf8')) as { t: string; topic?: string };
        if (f.t === 'hello') {
          if (this.topic === undefined) {
            ready = true;
            resolve();
          } else
            ws.send(
              JSON.stringify({
                t: 'sub',
                topic: this.topic,
                ...(this.lastTopicSeq > 0 ? { since: this.lastTopicSeq } : {}),
              }),
            );
        } else if (f.t === 'subscribed') {
          this.resuming = false;
          if (!ready) {
            ready = true;
            resolve();
          }
        } else if (f.t === 'msg') this.onMessage(f as MsgFrame);
      });
      ws.once('error', (err) => {
        if (!ready) reject(err);
      });
      ws.once('close', () => {
        if (!ready) reject(new Error('closed before ready'));
        else if (!this.stopped) setTimeout(() => void this.reconnect(), 100);
      });
    });
  }

  private async reconnect(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.connect();
        return;
      } catch {
        await sleep(200);
      }
    }
  }

  private onMessage(m: MsgFrame): void {
    if (m.topic !== undefined) {
      if (m.prev !== undefined && m.prev > this.lastTopicSeq && this.lastTopicSeq > 0) {
        // A gap: leave this one for the resume, which asks for what history holds after the
        // last seq seen (once, until it is answered).
        if (!this.resuming) {
          this.resuming = true;
          this.ws?.send(JSON.stringify({ t: 'sub', topic: m.topic, since: this.lastTopicSeq }));
        }
        return;
      }
      this.record(this.key, m);
      if (m.seq > this.lastTopicSeq) this.lastTopicSeq = m.seq;
      return;
    }
    this.record(this.user, m);
    if (this.pendingAcks.length === 0)
      setImmediate(() => {
        const seqs = this.pendingAcks;
        this.pendingAcks = [];
        if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ t: 'ack', seqs }));
      });
    this.pendingAcks.push(m.seq);
  }

  private record(key: string, m: MsgFrame): void {
    let seqs = this.received.get(key);
    if (seqs === undefined) this.received.set(key, (seqs = new Set()));
    if (seqs.has(m.seq)) this.duplicates++;
    const last = this.lastSeq.get(key) ?? 0;
    if (m.seq < last && !seqs.has(m.seq)) this.outOfOrder++;
    if (m.seq > last) this.lastSeq.set(key, m.seq);
    seqs.add(m.seq);
    if (typeof m.data?.id === 'string') this.ids.add(m.data.id);
  }

  stop(): void {
    this.stopped = true;
    this.ws?.terminate();
  }
}
