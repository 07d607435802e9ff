import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

/** The repository root (bench/lib/../..). */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

type Cleanup = () => Promise<void> | void;

/**
 * Cleanups run in reverse order of registration, once, on normal completion (`runCleanups()`)
 * or on SIGINT/SIGTERM, so a failed or interrupted benchmark leaves no process, stream,
 * database or Redis key behind.
 */
const cleanups: Array<{ name: string; fn: Cleanup }> = [];
let signalsHooked = false;

export function onCleanup(name: string, fn: Cleanup): () => void {
  hookSignals();
  const entry = { name, fn };
  cleanups.push(entry);
  return () => {
    const i = cleanups.indexOf(entry);
    if (i >= 0) cleanups.splice(i, 1);
  };
}

/** Children started and not yet gone: a cleanup stops them all at once. */
const running = new Set<Child>();

/**
 * Runs (and forgets) every registered cleanup, newest first; logs but survives failures. Every
 * child still running is stopped first, all at once: one after the other, 56 edges that each
 * take a few seconds to drain kept a Ctrl-C waiting for minutes.
 */
export async function runCleanups(): Promise<void> {
  await Promise.allSettled([...running].map((c) => c.stop()));
  while (cleanups.length > 0) {
    const c = cleanups.pop();
    if (c === undefined) break;
    try {
      await c.fn();
    } catch (err) {
      process.stderr.write(`cleanup ${c.name} failed: ${String(err)}\n`);
    }
  }
}

function hookSignals(): void {
  if (signalsHooked) return;
  signalsHooked = true;
  let cleaning = false;
  // Every signal is handled, not only the first: a Ctrl-C reaches tsx and this process both, and
  // tsx passes its own on, so a second SIGINT arrives at once; with the default action it would
  // kill this process halfway through stopping the servers and leave the rest running.
  const handler = (signal: NodeJS.Signals): void => {
    if (cleaning) {
      process.stderr.write(`${signal}: still cleaning up (stopping the processes this run started)\n`);
      return;
    }
    cleaning = true;
    process.stderr.write(`\n${signal}: cleaning up\n`);
    void runCleanups().finally(() => process.exit(130));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

/** Ports `freePort` handed out: each only once per run. */
const handedOut = new Set<number>();

/**
 * A port that was free a moment ago on 127.0.0.1 (children get a fixed port to listen on), and
 * not handed out before by this process: the kernel may give a port it just freed again, and one
 * million run started an edge whose inspector took the port it was then told to listen on.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await anyFreePort();
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

function anyFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const ECHO_LIMIT = 30;

/** A child process this benchmark started, with the tail of its output for error messages. */
export class Child {
  readonly proc: ChildProcess;
  readonly name: string;
  private tail: string[] = [];
  exited = false;
  exitCode: number | null = null;
  private readonly exitPromise: Promise<void>;

  constructor(name: string, proc: ChildProcess, echo: boolean) {
    this.name = name;
    this.proc = proc;
    const partial = { out: '', err: '' };
    const take = (stream: 'out' | 'err', chunk: Buffer): void => {
      // Chunks split lines anywhere: keep the unfinished end for the next chunk.
      const lines = (partial[stream] + chunk.toString('utf8')).split('\n');
      partial[stream] = lines.pop() ?? '';
      for (const line of lines) {
        if (line.length === 0) continue;
        this.tail.push(line);
        if (this.tail.length > 40) this.tail.shift();
        if (echo) this.echo(line);
      }
    };
    proc.stdout?.on('data', (c: Buffer) => take('out', c));
    proc.stderr?.on('data', (c: Buffer) => take('err', c));
    // A message sent to a child that is exiting fails with EPIPE as an 'error' event: unheard,
    // it would crash the benchmark before its cleanups (a Ctrl-C reaches every child at once).
    proc.on('error', (err) => this.tail.push(`[${this.name}] ${String(err)}`));
    this.exitPromise = new Promise((resolve) => {
      proc.once('exit', (code) => {
        if (this.repeats > 0)
          process.stderr.write(`  [${this.name}] (the line above repeated ${this.repeats} times)\n`);
        this.repeats = 0;
        this.exited = true;
        this.exitCode = code;
        resolve();
      });
    });
  }

  private lastEcho = '';
  private repeats = 0;

  /** Lines of output by kind: pino's `msg` for JSON logs, else the line's start. */
  readonly lineCounts: Record<string, number> = {};
  private echoed = 0;
  private suppressed = 0;

  /**
   * Echoes a line to stderr, folding runs of the same line (a warning per connection, say) and
   * stopping after ECHO_LIMIT lines (a warning per message would drown the figures); every line
   * is still counted by kind in `lineCounts`.
   */
  private echo(line: string): void {
    // The inspector's own chatter when a benchmark forces a GC through it.
    if (/^(Debugger (listening|attached|ending)|For help, see)/.test(line)) return;
    const kind = /"msg":"([^"]*)"/.exec(line)?.[1] ?? line.slice(0, 100);
    this.lineCounts[kind] = (this.lineCounts[kind] ?? 0) + 1;
    if (this.echoed >= ECHO_LIMIT) {
      if (this.suppressed++ === 0) process.stderr.write(`  [${this.name}] (more output is counted, not shown)\n`);
      return;
    }
    if (line === this.lastEcho) {
      this.repeats++;
      if (this.repeats % 10_000 === 0)
        process.stderr.write(`  [${this.name}] (the line above, ${this.repeats} times so far)\n`);
      return;
    }
    if (this.repeats > 0) process.stderr.write(`  [${this.name}] (the line above repeated ${this.repeats} times)\n`);
    this.lastEcho = line;
    this.repeats = 0;
    this.echoed++;
    process.stderr.write(`  [${this.name}] ${line.slice(0, 400)}\n`);
  }

  get pid(): number {
    return this.proc.pid ?? 0;
  }

  output(): string {
    return this.tail.join('\n');
  }

  /** Resolves when the process has exited. */
  wait(): Promise<void> {
    return this.exitPromise;
  }

  /** SIGTERM, then SIGKILL after `graceMs`. Resolves when it is gone. Idempotent. */
  async stop(graceMs = 8000): Promise<void> {
    if (this.exited) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => {
      if (!this.exited) this.proc.kill('SIGKILL');
    }, graceMs);
    await this.exitPromise;
    clearTimeout(timer);
  }

  /** Resident set size from /proc, bytes. */
  rss(): number {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+) kB/.exec(status);
    if (m === null) throw new Error(`no VmRSS for ${this.name}`);
    return Number(m[1]) * 1024;
  }
}

export interface SpawnOptions {
  env?: Record<string, string>;
  /** Extra node flags (before the script). */
  nodeArgs?: string[];
  args?: string[];
  /** Open an IPC channel (for bench client children). */
  ipc?: boolean;
  /** Echo the child's output to stderr (default true). */
  echo?: boolean;
}

/**
 * Starts `node [nodeArgs] script [args]` from the repository root; TypeScript scripts get tsx.
 * The child is stopped by the cleanups if the benchmark does not stop it first.
 */
export function spawnNode(name: string, script: string, opts: SpawnOptions = {}): Child {
  const nodeArgs = [...(opts.nodeArgs ?? [])];
  if (script.endsWith('.ts')) nodeArgs.push('--import', 'tsx');
  const proc = spawn(process.execPath, [...nodeArgs, script, ...(opts.args ?? [])], {
    cwd: ROOT,
    env: { ...process.env, ...opts.env },
    stdio: opts.ipc === true ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
  });
  const child = new Child(name, proc, opts.echo ?? true);
  const forget = onCleanup(`stop ${name}`, () => child.stop());
  running.add(child);
  void child.wait().then(() => {
    running.delete(child);
    forget();
  });
  return child;
}

/** Polls `url` until it answers 200; fails early if the child exits, or after `timeoutMs`. */
export async function waitHttpOk(url: string, child: Child, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exited) throw new Error(`${child.name} exited (${child.exitCode}) before ready:\n${child.output()}`);
    try {
      const res = await fetch(url);
      await res.text();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline)
      throw new Error(`${child.name} not ready at ${url} after ${timeoutMs} ms:\n${child.output()}`);
    await sleep(100);
  }
}

/** Messages a bench child sends its parent over IPC. */
export type ChildMessage = { type: string } & Record<string, unknown>;

/**
 * Sends `msg` to a child over IPC and resolves with its first answer of type `answer`; rejects
 * when the child exits first or after `timeoutMs`.
 */
export function ask<T = ChildMessage>(
  child: Child,
  msg: ChildMessage,
  answer: string,
  timeoutMs = 120_000,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onMessage = (m: ChildMessage): void => {
      if (m.type === 'error') {
        done();
        reject(new Error(`${child.name}: ${String(m['message'])}`));
      } else if (m.type === answer) {
        done();
        resolve(m as unknown as T);
      }
    };
    const onExit = (): void => {
      done();
      reject(new Error(`${child.name} exited (${child.exitCode}) while waiting for ${answer}:\n${child.output()}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${child.name}: no ${answer} within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      child.proc.off('message', onMessage);
      child.proc.off('exit', onExit);
    };
    child.proc.on('message', onMessage);
    child.proc.once('exit', onExit);
    if (child.exited) onExit();
    else
      child.proc.send(msg, (err) => {
        if (err === null) return;
        done();
        reject(new Error(`${child.name}: could not send ${msg.type}: ${err.message}`));
      });
  });
}

/** In a bench child: answers parent messages with `handler`; exits when the parent goes away. */
export function serveParent(handler: (msg: ChildMessage) => Promise<ChildMessage | undefined>): void {
  if (process.send === undefined) throw new Error('this script is a bench child: start it through its benchmark');
  process.on('disconnect', () => process.exit(0));
  process.on('message', (m: ChildMessage) => {
    handler(m).then(
      (reply) => {
        if (reply !== undefined) process.send?.(reply);
      },
      (err: unknown) => {
        process.send?.({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
      },
    );
  });
}

/** CPU time (user + system) a process has used, seconds, from /proc (clock ticks of 1/100 s). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Inodes of the TCP sockets listening on `port` (any address), from /proc/net/tcp{,6}. */
function listeningInodes(port: number): Set<string> {
  const inodes = new Set<string>();
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue; // no IPv6 table on this machine
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is HEXADDR:HEXPORT; state 0A is LISTEN; the inode is the 10th field.
      if (f[1]?.endsWith(`:${hexPort}`) === true && f[3] === '0A' && f[9] !== undefined) inodes.add(f[9]);
    }
  }
  return inodes;
}

/** True when process `pid` holds one of the socket `inodes` open. */
function holdsSocket(pid: string, inodes: Set<string>): boolean {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false; // gone, or not ours to read
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1] !== undefined && inodes.has(m[1])) return true;
    } catch {
      continue; // closed while we looked
    }
  }
  return false;
}

/**
 * The pid of the nats-server listening on `port`, found by its command line (`-p <port>` or
 * `--port <port>`, or the default 4222 with no port flag), else by the listening socket (a
 * server started with `-p -1`, as scripts/services.sh starts a private current one); undefined
 * when not found (e.g. NATS runs elsewhere). Used only to report the server's CPU time next to
 * the client's.
 */
export function natsServerPid(port: number): number | undefined {
  let found: number | undefined;
  const unknownPort: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8')
        .split('\0')
        .filter((a) => a.length > 0);
    } catch {
      continue;
    }
    if (!(argv[0] ?? '').endsWith('nats-server')) continue;
    const i = argv.findIndex((a) => a === '-p' || a === '--port');
    const p = i >= 0 ? Number(argv[i + 1]) : 4222;
    if (p === port) found = Number(entry);
    else if (p === -1) unknownPort.push(entry);
  }
  if (found === undefined && unknownPort.length > 0) {
    const inodes = listeningInodes(port);
    const pid = unknownPort.find((p) => holdsSocket(p, inodes));
    if (pid !== undefined) found = Number(pid);
  }
  return found;
}

/** Measures CPU seconds used by processes between `start()` and `stop()`. */
export class CpuMeter {
  private readonly pids: Array<[string, number]>;
  private before = new Map<string, number>();
  private t0 = 0;

  constructor(pids: Record<string, number | undefined>) {
    this.pids = Object.entries(pids).filter((e): e is [string, number] => e[1] !== undefined && e[1] > 0);
  }

  start(): void {
    this.t0 = performance.now();
    this.before = new Map(this.pids.map(([name, pid]) => [name, cpuSeconds(pid)]));
  }

  /** Cores used by each process over the interval (1.0 = one core busy all along). */
  stop(): Record<string, number> {
    const seconds = (performance.now() - this.t0) / 1000;
    const out: Record<string, number> = {};
    for (const [name, pid] of this.pids) {
      try {
        out[name] = Math.round(((cpuSeconds(pid) - (this.before.get(name) ?? 0)) / seconds) * 100) / 100;
      } catch {
        // the process is gone
      }
    }
    return out;
  }
}

/** The pid of the first process whose command line matches, or undefined. */
export function findPid(match: (argv: string[]) => boolean): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8')
        .split('\0')
        .filter((a) => a.length > 0);
      if (argv.length > 0 && match(argv)) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

/** The redis-server serving `port` (its command line names the port), for CPU accounting. */
export function redisServerPid(port: number): number | undefined {
  return findPid((argv) => (argv[0] ?? '').includes('redis-server') && argv.join(' ').includes(`:${port}`));
}

function cpuTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((s, x) => s + x, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}

/** Share of all cores busy over `ms` (0..1), from /proc/stat. */
export async function machineBusy(ms = 1000): Promise<number> {
  const a = cpuTicks();
  await sleep(ms);
  const b = cpuTicks();
  return b.total > a.total ? (b.busy - a.busy) / (b.total - a.total) : 0;
}

/**
 * Waits until the machine is quiet (under `threshold` of all cores busy for two seconds in a
 * row), at most `maxMs`; says whether it got quiet and how busy the last second was.
 */
export async function waitQuiet(maxMs = 60_000, threshold = 0.15): Promise<{ quiet: boolean; busy: number }> {
  const deadline = Date.now() + maxMs;
  let calm = 0;
  let busy = 1;
  while (Date.now() < deadline) {
    busy = await machineBusy(1000);
    calm = busy < threshold ? calm + 1 : 0;
    if (calm >= 2) return { quiet: true, busy };
  }
  return { quiet: false, busy };
}

/** `MemAvailable` and `MemTotal` of /proc/meminfo, bytes. */
export function hostMemory(): { available: number; total: number } {
  const text = readFileSync('/proc/meminfo', 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
  return { available: kb('MemAvailable'), total: kb('MemTotal') };
}

/**
 * Stops a benchmark before the kernel's OOM killer does: a run of the million scenario's churn
 * at 1,000,000 used up this 24 GiB host's memory, and the OOM killer took nats-server and the
 * host's Redis, so the benchmark could not clean up (streams stayed on disk) and the next test
 * run found Redis down. Checks `MemAvailable` every second; `guard` races a phase against it
 * and rejects once it fell below the floor (`BENCH_MIN_AVAILABLE_MB`, default the larger of
 * 1 GiB and 5% of the host's memory), so the run fails, keeps what it measured and cleans up.
 */
export class MemoryGuard {
  readonly floor: number;
  private timer: ReturnType<typeof setInterval> | undefined;
  private trip: ((err: Error) => void) | undefined;
  private readonly tripped: Promise<never>;

  constructor(floorMB = Number(process.env['BENCH_MIN_AVAILABLE_MB'] ?? 0)) {
    const { total } = hostMemory();
    this.floor = floorMB > 0 ? floorMB * 1024 * 1024 : Math.max(1024 ** 3, total * 0.05);
    this.tripped = new Promise<never>((_, reject) => (this.trip = reject));
    this.tripped.catch(() => undefined); // seen by `guard`, or by nobody once stopped
    this.timer = setInterval(() => this.check(), 1000);
    this.timer.unref();
  }

  private check(): void {
    const { available } = hostMemory();
    if (available >= this.floor) return;
    const mb = (b: number) => Math.round(b / 1024 / 1024).toLocaleString('en-US');
    this.stop();
    this.trip?.(
      new Error(
        `host memory nearly used up: ${mb(available)} MB available, below the floor of ${mb(this.floor)} MB ` +
          '(BENCH_MIN_AVAILABLE_MB); stopped before the OOM killer takes a server',
      ),
    );
  }

  /** `p`, or the guard's error if memory runs low first. */
  guard<T>(p: Promise<T>): Promise<T> {
    p.catch(() => undefined); // a phase left behind fails once its processes are stopped
    return Promise.race([p, this.tripped]);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
