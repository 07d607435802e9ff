import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

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

function findBinary(name: string, dirs: string[]): string {
  for (const d of dirs) {
    const p = path.join(d, name);
    if (existsSync(p)) return p;
  }
  for (const d of (process.env['PATH'] ?? '').split(':')) {
    const p = path.join(d, name);
    if (d !== '' && existsSync(p)) return p;
  }
  throw new Error(`${name} not found in ${dirs.join(', ')} or PATH: install it (Debian: apt-get install ${name})`);
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
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

/** Every server started by this process, killed when it exits (a crashed run skips the after hooks). */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

/**
 * A private nats-server with JetStream and a file store in a temp dir, on a free port, for tests
 * that inject faults: `kill()` sends SIGKILL, `start()` brings it back on the same port and store.
 */
export class PrivateNatsServer {
  readonly storeDir: string;
  port = 0;
  private proc: ChildProcess | undefined;
  private readonly bin: string;

  /** Extra nats-server arguments (e.g. `--user`, `--pass`). */
  constructor(private readonly extraArgs: string[] = []) {
    this.bin =
      process.env['PUSH_NATS_SERVER_BIN'] || findBinary('nats-server', ['/usr/sbin', '/usr/local/bin', '/usr/bin']);
    this.storeDir = mkdtempSync(path.join(os.tmpdir(), 'push-nats-'));
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Starts the server, or does nothing while it runs (a second copy would fail to bind and orphan the first). */
  async start(): Promise<void> {
    if (this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null) return;
    if (this.port === 0) this.port = await freePort();
    this.proc = spawn(
      this.bin,
      ['-a', '127.0.0.1', '-p', String(this.port), '-js', '-sd', this.storeDir, ...this.extraArgs],
      { stdio: 'ignore' },
    );
    const proc = this.proc;
    running.add(proc);
    proc.once('exit', () => running.delete(proc));
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
