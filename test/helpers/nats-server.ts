import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { trackChild } from './children.js';
import { currentNatsServerBin, freePort, servicesEnv } from './nats-bin.js';

export { currentNatsServerBin, freePort };

/**
 * The shared NATS the tests use: PUSH_NATS_URL from the environment, else from
 * .data/services.env, else the default `nats://127.0.0.1:4222`.
 */
export const NATS_URL: string = process.env['PUSH_NATS_URL'] || servicesEnv('PUSH_NATS_URL') || 'nats://127.0.0.1:4222';

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
