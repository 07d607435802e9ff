import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { trackChild } from './children.js';
import { freePort, waitForPort } from './nats-server.js';

/** Whether a `redis-server` binary is on PATH. */
export function hasRedisServer(): boolean {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false; // not installed: the caller skips or falls back
  }
}

/**
 * A private redis-server without persistence (no RDB, no AOF) in a temp dir, for tests that
 * inject faults: `kill()` sends SIGKILL, and `start()` brings it back on the same port, empty, as
 * a Redis run without persistence comes back after a crash. Clients reconnect to the URL.
 */
export class PrivateRedisServer {
  readonly dir = mkdtempSync(path.join(os.tmpdir(), 'push-redis-'));
  port = 0;
  private proc: ChildProcess | undefined;

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts the server (empty), or does nothing while it runs. */
  async start(): Promise<void> {
    if (this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null) return;
    if (this.port === 0) this.port = await freePort();
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', ''];
    const proc = spawn('redis-server', [...args, '--appendonly', 'no'], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc = proc;
    trackChild(proc);
    await waitForPort(this.port, 10_000);
  }

  /** SIGKILL: the data is gone with the process. */
  async kill(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (p === undefined || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGKILL');
    });
  }

  /** Kills the server and removes its dir. Idempotent. */
  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
