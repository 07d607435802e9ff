import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './nats-server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

/** A coordinator in its own process, so it can be killed (SIGKILL) in the middle of a delivery. */
export class CoordinatorProcess {
  private proc: ChildProcess | undefined;
  output = '';
  port = 0;

  async start(env: Record<string, string>): Promise<void> {
    this.port = await freePort();
    const proc = spawn(process.execPath, [path.join(ROOT, 'apps/coordinator/dist/main.js')], {
      cwd: ROOT,
      env: {
        PATH: process.env['PATH'] ?? '',
        ...env,
        PUSH_COORDINATOR_HOST: '127.0.0.1',
        PUSH_COORDINATOR_PORT: String(this.port),
        PUSH_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    running.add(proc);
    proc.once('exit', () => running.delete(proc));
    proc.stdout?.on('data', (c: Buffer) => (this.output += c.toString()));
    proc.stderr?.on('data', (c: Buffer) => (this.output += c.toString()));
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`coordinator exited with ${proc.exitCode}: ${this.output}`);
      const ok = await fetch(`http://127.0.0.1:${this.port}/readyz`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`coordinator did not get ready: ${this.output}`);
      await sleep(50);
    }
  }

  /** SIGKILL: no drain, no acks or naks of what it holds. */
  async kill(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (p === undefined || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGKILL');
    });
  }
}
