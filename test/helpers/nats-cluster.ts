import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { ROOT, currentNatsServerBin, freePort } from './nats-bin.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One node of a NatsCluster: its name (`n1`..), ports, config file and store. */
export interface ClusterNode {
  readonly name: string;
  readonly port: number;
  readonly clusterPort: number;
  readonly monitorPort: number;
  readonly dir: string;
  readonly conf: string;
  readonly url: string;
}

/** Options of a private cluster. */
export interface NatsClusterOptions {
  /** Nodes (default 3). */
  size?: number;
  /**
   * `lame_duck_duration`, seconds (default 30, the server's minimum): the longest a node in lame
   * duck mode spreads its client closes over (it waits at most a second between two, so a node
   * with a few clients exits within seconds of the 2 s grace period).
   */
  lameDuckSeconds?: number;
}

/** Every cluster of this process not stopped yet: the exit hook kills what they left. */
const live = new Set<NatsCluster>();
process.once('exit', () => {
  for (const c of live) c.stopSync();
});

/** True when process `pid` exists and is not a zombie. */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/**
 * A private 3-node JetStream cluster of the current nats-server on free client, cluster and
 * monitoring ports, each node with its own store dir under one temp dir and started as
 * `nats-server -c <dir>/nX.conf` (with a `pid_file`), so a node can be killed, put in lame duck
 * mode, restarted on the same ports and store, and restarted by `scripts/rolling-restart.sh`
 * (whose restarted nodes are no children of ours: every node is found by its pid file).
 *
 * `stop()` kills every node and removes the temp dir; it is idempotent, and an exit hook does
 * the same (synchronously) for a cluster left running when the process exits. The owner
 * registers `stop()` with its own cleanup (the bench's onCleanup, a mocha after hook).
 */
export class NatsCluster {
  readonly nodes: ClusterNode[] = [];
  readonly root: string;
  private readonly bin: string;
  private readonly children = new Map<string, ChildProcess>();
  private readonly logs = new Map<string, string>();
  private stopped = false;

  private constructor(bin: string) {
    this.bin = bin;
    this.root = mkdtempSync(path.join(os.tmpdir(), 'push-nats-cluster-'));
    live.add(this);
  }

  /** Writes the configs and starts every node; resolves once the cluster is ready (see waitReady). */
  static async start(opts: NatsClusterOptions = {}): Promise<NatsCluster> {
    const c = new NatsCluster(currentNatsServerBin());
    try {
      await c.configure(opts.size ?? 3, opts.lameDuckSeconds ?? 30);
      await Promise.all(c.nodes.map((n) => c.startNode(n)));
      await c.waitReady();
      return c;
    } catch (err) {
      await c.stop();
      throw err;
    }
  }

  /** The client URLs of every node, comma-separated: what PUSH_NATS_URL takes as seeds. */
  get urls(): string {
    return this.nodes.map((n) => n.url).join(',');
  }

  private async configure(size: number, lameDuckSeconds: number): Promise<void> {
    const ports: number[] = [];
    while (ports.length < size * 3) {
      const p = await freePort();
      if (!ports.includes(p)) ports.push(p);
    }
    for (let i = 0; i < size; i++) {
      const name = `n${i + 1}`;
      const dir = path.join(this.root, name);
      mkdirSync(dir);
      this.nodes.push({
        name,
        port: ports[i * 3] as number,
        clusterPort: ports[i * 3 + 1] as number,
        monitorPort: ports[i * 3 + 2] as number,
        dir,
        conf: path.join(dir, `${name}.conf`),
        url: `nats://127.0.0.1:${ports[i * 3] as number}`,
      });
    }
    for (const n of this.nodes) {
      const routes = this.nodes.map((o) => `    nats-route://127.0.0.1:${o.clusterPort}`).join('\n');
      writeFileSync(
        n.conf,
        [
          `server_name: ${n.name}`,
          `host: 127.0.0.1`,
          `port: ${n.port}`,
          `http_port: ${n.monitorPort}`,
          `pid_file: "${path.join(n.dir, 'nats.pid')}"`,
          `max_payload: 1MB`,
          `lame_duck_duration: "${lameDuckSeconds}s"`,
          `lame_duck_grace_period: "2s"`,
          `jetstream {`,
          `  store_dir: "${path.join(n.dir, 'js')}"`,
          `  max_memory_store: 64MB`,
          `  max_file_store: 1GB`,
          `}`,
          `cluster {`,
          `  name: push-test`,
          `  listen: 127.0.0.1:${n.clusterPort}`,
          `  routes: [`,
          routes,
          `  ]`,
          `}`,
          '',
        ].join('\n'),
      );
    }
  }

  node(name: string): ClusterNode {
    const n = this.nodes.find((x) => x.name === name);
    if (n === undefined) throw new Error(`no node ${name}`);
    return n;
  }

  /** The pid of a node's server from its pid file, when that process runs. */
  pid(node: ClusterNode): number | undefined {
    const file = path.join(node.dir, 'nats.pid');
    if (!existsSync(file)) return undefined;
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 && running(pid) ? pid : undefined;
  }

  /** Starts a node (on its ports, with its store) and waits until its client port answers. Nothing when it runs. */
  async startNode(node: ClusterNode): Promise<void> {
    if (this.stopped) throw new Error('the cluster was stopped');
    if (this.pid(node) !== undefined) return;
    rmSync(path.join(node.dir, 'nats.pid'), { force: true });
    const proc = spawn(this.bin, ['-c', node.conf], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    this.children.set(node.name, proc);
    proc.stderr?.on('data', (c: Buffer) =>
      this.logs.set(node.name, ((this.logs.get(node.name) ?? '') + c.toString()).slice(-6000)),
    );
    const deadline = Date.now() + 15_000;
    while (this.pid(node) === undefined || !(await this.answers(node))) {
      if (proc.exitCode !== null || proc.signalCode !== null)
        throw new Error(`${node.name} exited at start:\n${this.logs.get(node.name) ?? ''}`);
      if (Date.now() > deadline)
        throw new Error(`${node.name} did not start in 15 s:\n${this.logs.get(node.name) ?? ''}`);
      await sleep(50);
    }
  }

  /** True when the node's monitoring port answers /varz. */
  private async answers(node: ClusterNode): Promise<boolean> {
    return fetch(`http://127.0.0.1:${node.monitorPort}/varz`, { signal: AbortSignal.timeout(1000) }).then(
      (r) => r.ok,
      () => false,
    );
  }

  /** True when the node's /healthz answers 200: JetStream enabled and every stream it holds current. */
  async healthy(node: ClusterNode): Promise<boolean> {
    return fetch(`http://127.0.0.1:${node.monitorPort}/healthz`, { signal: AbortSignal.timeout(2000) }).then(
      (r) => r.ok,
      () => false,
    );
  }

  /**
   * Waits until JetStream answers through every running node (`$JS.API.INFO`: a meta leader is
   * elected) and every running node's /healthz is 200. Fails after `timeoutMs` naming what waits.
   */
  async waitReady(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let waiting = '';
    for (;;) {
      waiting = '';
      for (const n of this.nodes) {
        if (this.pid(n) === undefined) continue;
        if (!(await this.healthy(n))) waiting += ` ${n.name}:healthz`;
        else if (!(await this.jsInfo(n))) waiting += ` ${n.name}:$JS.API.INFO`;
      }
      if (waiting === '') return;
      if (Date.now() > deadline) throw new Error(`cluster not ready after ${timeoutMs} ms, waiting for${waiting}`);
      await sleep(200);
    }
  }

  /** True when `$JS.API.INFO` answers without error through this node. */
  private async jsInfo(node: ClusterNode): Promise<boolean> {
    let nc: NatsConnection | undefined;
    try {
      nc = await connect({ servers: node.url, reconnect: false, timeout: 2000 });
      const m = await nc.request('$JS.API.INFO', '', { timeout: 2000 });
      return (m.json<{ error?: unknown }>().error ?? undefined) === undefined;
    } catch {
      return false;
    } finally {
      await nc?.close().catch(() => undefined);
    }
  }

  /** Waits until the node's process is gone (after a signal), at most `timeoutMs`. */
  async waitExit(node: ClusterNode, pid: number, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (running(pid)) {
      if (Date.now() > deadline) throw new Error(`${node.name} (pid ${pid}) still runs after ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  /** kill -9 of a node; resolves once it is gone. */
  async kill(node: ClusterNode): Promise<void> {
    const pid = this.pid(node);
    if (pid === undefined) return;
    process.kill(pid, 'SIGKILL');
    await this.waitExit(node, pid, 10_000);
  }

  /** Lame duck mode (SIGUSR2, as `nats-server --signal ldm=<pid>`); resolves once the node has exited. */
  async lameDuck(node: ClusterNode, timeoutMs = 60_000): Promise<void> {
    const pid = this.pid(node);
    if (pid === undefined) throw new Error(`${node.name} is not running`);
    process.kill(pid, 'SIGUSR2');
    await this.waitExit(node, pid, timeoutMs);
  }

  /** Starts a stopped node again on the same ports and store, and waits until it is current (/healthz). */
  async restart(node: ClusterNode, timeoutMs = 60_000): Promise<void> {
    await this.startNode(node);
    const deadline = Date.now() + timeoutMs;
    while (!(await this.healthy(node))) {
      if (Date.now() > deadline) throw new Error(`${node.name} not current ${timeoutMs} ms after its restart`);
      await sleep(100);
    }
  }

  /**
   * `scripts/rolling-restart.sh` over every node (lame duck, or SIGTERM with `ldm: false`);
   * resolves when the script is done, rejects with its output when it fails.
   */
  rollingRestart(opts: { ldm: boolean; timeoutSeconds?: number }): Promise<string> {
    const args = [
      ...(opts.ldm ? [] : ['--no-ldm']),
      '--timeout',
      String(opts.timeoutSeconds ?? 60),
      ...this.nodes.map((n) => n.conf),
    ];
    return new Promise((resolve, reject) => {
      execFile(path.join(ROOT, 'scripts/rolling-restart.sh'), args, { cwd: ROOT }, (err, stdout, stderr) => {
        if (err !== null) reject(new Error(`rolling-restart.sh failed: ${err.message}\n${stderr}`, { cause: err }));
        else resolve(`${stdout}${stderr}`);
      });
    });
  }

  /** The node whose server name is `serverName`. */
  byServerName(serverName: string): ClusterNode {
    return this.node(serverName);
  }

  /**
   * The node leading a stream (`$JS.API.STREAM.INFO.<name>` → cluster.leader), asked through
   * any running node; retries while the stream has no leader (an election), up to `timeoutMs`.
   */
  async streamLeader(stream: string, timeoutMs = 20_000): Promise<ClusterNode> {
    const info = await this.streamInfo(stream, timeoutMs, (i) => i.cluster?.leader !== undefined);
    return this.byServerName(info.cluster?.leader as string);
  }

  /** Stream info through any running node, retried until `ok` holds for it or `timeoutMs` passed. */
  async streamInfo(
    stream: string,
    timeoutMs = 20_000,
    ok: (i: StreamInfoAnswer) => boolean = () => true,
  ): Promise<StreamInfoAnswer> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      for (const n of this.nodes) {
        if (this.pid(n) === undefined) continue;
        try {
          const info = await this.requestNode<StreamInfoAnswer & { error?: { description?: string } }>(
            n,
            `$JS.API.STREAM.INFO.${stream}`,
          );
          if (info.error !== undefined) last = info.error.description ?? JSON.stringify(info.error);
          else if (ok(info)) return info;
          else last = JSON.stringify(info.cluster);
        } catch (err) {
          last = String(err);
        }
      }
      if (Date.now() > deadline) throw new Error(`stream ${stream}: no answer as wanted in ${timeoutMs} ms (${last})`);
      await sleep(200);
    }
  }

  /**
   * A JetStream API request (`subject`, JSON `body`) through the first running node that
   * answers; the answer parsed. Throws the last failure when none answers.
   */
  async api<T>(subject: string, body: unknown = ''): Promise<T> {
    let last: unknown = new Error('no node is running');
    for (const n of this.nodes) {
      if (this.pid(n) === undefined) continue;
      try {
        return await this.requestNode<T>(n, subject, body);
      } catch (err) {
        last = err;
      }
    }
    throw last;
  }

  /** One request (JSON `body`, or none) to one node over a connection of its own; the answer parsed. */
  private async requestNode<T>(n: ClusterNode, subject: string, body: unknown = ''): Promise<T> {
    let nc: NatsConnection | undefined;
    try {
      nc = await connect({ servers: n.url, reconnect: false, timeout: 2000 });
      const m = await nc.request(subject, body === '' ? '' : JSON.stringify(body), { timeout: 2000 });
      return m.json<T>();
    } finally {
      await nc?.close().catch(() => undefined);
    }
  }

  /** Each running node's own count of a stream's messages (monitoring `/jsz`), as `n1=3`: replicas that disagree show. */
  async replicaCounts(stream: string): Promise<string[]> {
    const out: string[] = [];
    for (const n of this.nodes) {
      if (this.pid(n) === undefined) continue;
      try {
        const r = await fetch(`http://127.0.0.1:${n.monitorPort}/jsz?accounts=true&streams=true`, {
          signal: AbortSignal.timeout(2000),
        });
        const jsz = (await r.json()) as {
          account_details?: Array<{ stream_detail?: Array<{ name: string; state?: { messages?: number } }> }>;
        };
        const found = (jsz.account_details ?? []).flatMap((a) => a.stream_detail ?? []).find((d) => d.name === stream);
        out.push(`${n.name}=${found?.state?.messages ?? 'none'}`);
      } catch (err) {
        out.push(`${n.name}=${String(err)}`);
      }
    }
    return out;
  }

  /** The last lines a node printed (from our start of it), for failure messages. */
  log(node: ClusterNode): string {
    return this.logs.get(node.name) ?? '';
  }

  /** Kills every node (SIGKILL: the stores are thrown away) and removes the temp dir. Idempotent. */
  async stop(): Promise<void> {
    const pids = this.stopSync();
    const deadline = Date.now() + 10_000;
    while (pids.some(running) && Date.now() < deadline) await sleep(50);
  }

  /** What `stop()` does, without waiting for the processes to go (for the exit hook); returns their pids. */
  stopSync(): number[] {
    if (this.stopped) return [];
    this.stopped = true;
    live.delete(this);
    const pids: number[] = [];
    for (const n of this.nodes) {
      const pid = this.pid(n);
      if (pid !== undefined) pids.push(pid);
    }
    for (const proc of this.children.values()) if (proc.pid !== undefined && running(proc.pid)) pids.push(proc.pid);
    for (const pid of new Set(pids)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    rmSync(this.root, { recursive: true, force: true });
    return pids;
  }
}

/** The part of `$JS.API.STREAM.INFO` the helpers read. */
export interface StreamInfoAnswer {
  config: { name: string; num_replicas: number };
  state: { messages: number; first_seq: number; last_seq: number };
  cluster?: {
    leader?: string;
    replicas?: Array<{ name: string; current: boolean; active: number; lag?: number; offline?: boolean }>;
  };
}
