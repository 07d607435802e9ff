import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { trackChild } from './children.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * `scripts/services.sh up` (run by `make test`) writes the NATS it settled on to this file: a
 * private current nats-server when the one on :4222 is older than 2.11. Read here too, so that
 * `npx mocha <file>` after `make test` or `scripts/services.sh up` uses the same server.
 */
function servicesEnv(name: string): string | undefined {
  const file = path.join(ROOT, '.data/services.env');
  if (!existsSync(file)) return undefined;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line);
    // services.sh quotes with printf %q: paths and URLs need no quoting, so nothing to undo.
    if (m?.[1] === name && m[2] !== undefined && m[2] !== '') return m[2];
  }
  return undefined;
}

/**
 * The shared NATS the tests use: PUSH_NATS_URL from the environment, else from
 * .data/services.env, else the default `nats://127.0.0.1:4222`.
 */
export const NATS_URL: string = process.env['PUSH_NATS_URL'] || servicesEnv('PUSH_NATS_URL') || 'nats://127.0.0.1:4222';

/** A free TCP port on 127.0.0.1 (bound then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr !== null ? addr.port : 0));
    });
  });
}

let currentBin: string | undefined;

/**
 * A nats-server >= 2.11: PUSH_NATS_SERVER_BIN (environment, then .data/services.env), else what
 * scripts/nats-server.sh prints (it may fetch one). Throws, with the script's advice, when there
 * is none: a test that needs its own server must not quietly run against an old one.
 */
export function currentNatsServerBin(): string {
  if (currentBin !== undefined) return currentBin;
  const given = process.env['PUSH_NATS_SERVER_BIN'] || servicesEnv('PUSH_NATS_SERVER_BIN');
  if (given !== undefined) {
    if (!existsSync(given)) throw new Error(`PUSH_NATS_SERVER_BIN=${given} does not exist`);
    currentBin = given;
    return given;
  }
  try {
    currentBin = execFileSync(path.join(ROOT, 'scripts/nats-server.sh'), {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim();
  } catch (err) {
    const stderr = (err as { stderr?: unknown }).stderr;
    throw new Error(`no nats-server >= 2.11 for the tests:\n${typeof stderr === 'string' ? stderr : String(err)}`, {
      cause: err,
    });
  }
  return currentBin;
}

/** Resolves once something accepts TCP connections on 127.0.0.1:`port`; rejects after `timeoutMs`. */
export async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface PrivateNatsServerOptions {
  /** The nats-server binary (default: currentNatsServerBin()); an old one to test refusals. */
  bin?: string;
}

/**
 * A private nats-server with JetStream and a file store in a temp dir, for tests that inject
 * faults: `kill()` sends SIGKILL, `start()` brings it back on the same port and store (clients
 * reconnect to the URL they were given). The first start asks for `-p -1` and reads the port the
 * server chose from its ports file, so no other process can take the port between a probe and
 * the bind; restarts ask for that port again.
 */
export class PrivateNatsServer {
  readonly storeDir: string;
  port = 0;
  /** The monitoring URL (`http://127.0.0.1:<port>`) when started with `-m -1` or `-m <port>`. */
  monitorUrl: string | undefined;
  private proc: ChildProcess | undefined;
  private readonly bin: string;
  private readonly portsDir: string;

  /** Extra nats-server arguments (e.g. `--user`, `--pass`). */
  constructor(
    private readonly extraArgs: string[] = [],
    opts: PrivateNatsServerOptions = {},
  ) {
    this.bin = opts.bin ?? currentNatsServerBin();
    this.storeDir = mkdtempSync(path.join(os.tmpdir(), 'push-nats-'));
    this.portsDir = path.join(this.storeDir, 'ports');
    mkdirSync(this.portsDir);
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Starts the server, or does nothing while it runs (a second copy would fail to bind and orphan the first). */
  async start(): Promise<void> {
    if (this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null) return;
    const port = this.port === 0 ? '-1' : String(this.port);
    const proc = spawn(
      this.bin,
      [
        '-a',
        '127.0.0.1',
        '-p',
        port,
        '--ports_file_dir',
        this.portsDir,
        '-js',
        '-sd',
        this.storeDir,
        ...this.extraArgs,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    this.proc = proc;
    trackChild(proc);
    let log = '';
    proc.stderr?.on('data', (c: Buffer) => (log = (log + c.toString()).slice(-4000)));
    let exited = false;
    proc.once('exit', () => {
      exited = true;
    });
    // The ports file of this process (named after the binary and the pid): the port it listens on.
    const file = path.join(this.portsDir, `${path.basename(this.bin)}_${proc.pid ?? 0}.ports`);
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (exited) throw new Error(`${this.bin} -p ${port} exited at start:\n${log}`);
      if (existsSync(file)) {
        const ports = JSON.parse(readFileSync(file, 'utf8')) as { nats?: string[]; monitoring?: string[] };
        const listening = ports.nats?.[0];
        if (listening !== undefined) {
          this.port = Number(new URL(listening).port);
          this.monitorUrl = ports.monitoring?.[0];
          break;
        }
      }
      if (Date.now() > deadline) throw new Error(`${this.bin} wrote no ports file in 10 s:\n${log}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await waitForPort(this.port, 10_000);
  }

  /** SIGKILL: no flush, no goodbye. */
  async kill(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (p === undefined || p.exitCode !== null || p.signalCode !== null) return; // already gone: no exit event to wait for
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGKILL');
    });
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.storeDir, { recursive: true, force: true });
  }
}
