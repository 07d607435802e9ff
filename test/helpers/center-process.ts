import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './nats-server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Every center started by this process, killed when it exits (a crashed run skips the after hooks). */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

/**
 * A center in its own process (`node apps/center/dist/main.js`, as in production), so a test can
 * kill it without a goodbye: no checkpoint saved, no lease let go.
 */
export class CenterProcess {
  private proc: ChildProcess | undefined;
  /** Everything the center printed (stdout and stderr), for failure messages. */
  output = '';
  port = 0;

  /** Starts it with `env` (a stack's environment) and waits for /readyz. */
  async start(env: Record<string, string>): Promise<void> {
    this.port = await freePort();
    const proc = spawn(process.execPath, [path.join(ROOT, 'apps/center/dist/main.js')], {
      cwd: ROOT,
      env: {
        PATH: process.env['PATH'] ?? '',
        ...env,
        PUSH_CENTER_HOST: '127.0.0.1',
        PUSH_CENTER_PORT: String(this.port),
        PUSH_LOG_LEVEL: process.env['PUSH_TEST_LOG_LEVEL'] ?? 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    running.add(proc);
    proc.once('exit', () => running.delete(proc));
    proc.stdout?.on('data', (c: Buffer) => (this.output += c.toString()));
    proc.stderr?.on('data', (c: Buffer) => (this.output += c.toString()));
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`center exited with ${proc.exitCode}: ${this.output}`);
      const ok = await fetch(`http://127.0.0.1:${this.port}/readyz`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`center did not get ready: ${this.output}`);
      await sleep(50);
    }
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The sum of a metric's series that carry every label given (0 when there is none). */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    const text = await fetch(`${this.url}/metrics`).then((r) => r.text());
    let sum = 0;
    for (const line of text.split('\n')) {
      if (!line.startsWith(`${name} `) && !line.startsWith(`${name}{`)) continue;
      if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return sum;
  }

  /** SIGKILL: no drain, nothing saved. */
  async kill(): Promise<void> {
    await this.signal('SIGKILL');
  }

  /** SIGTERM: the center's ordered stop. */
  async stop(): Promise<void> {
    await this.signal('SIGTERM');
  }

  private async signal(sig: NodeJS.Signals): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (p === undefined || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill(sig);
    });
  }
}
