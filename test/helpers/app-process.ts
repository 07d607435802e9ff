import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { trackChild } from './children.js';
import { freePort } from './nats-server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * One of the apps in its own process (`node apps/<name>/dist/main.js`, as in production), on a
 * free port of 127.0.0.1, so a test can kill it without a goodbye. The edge, center and
 * coordinator helpers are this with their names.
 */
export class AppProcess {
  private proc: ChildProcess | undefined;
  /** Everything the process printed (stdout and stderr), for failure messages. */
  output = '';
  port = 0;

  /**
   * @param app the app's folder under apps/ (`edge`, `center`, `coordinator`)
   * @param envPrefix its host and port variables' prefix (`PUSH_EDGE`: PUSH_EDGE_HOST, PUSH_EDGE_PORT)
   * @param readyMs how long to wait for /readyz
   */
  constructor(
    private readonly app: string,
    private readonly envPrefix: string,
    private readonly readyMs = 15_000,
  ) {}

  /** Starts it with `env` (a stack's environment) and waits for /readyz. */
  async start(env: Record<string, string>): Promise<void> {
    this.port = await freePort();
    const proc = spawn(process.execPath, [path.join(ROOT, `apps/${this.app}/dist/main.js`)], {
      cwd: ROOT,
      env: {
        PATH: process.env['PATH'] ?? '',
        ...env,
        // Warnings and errors reach `output` (and failure messages) even when the stack is silent.
        PUSH_LOG_LEVEL: process.env['PUSH_TEST_LOG_LEVEL'] ?? 'warn',
        [`${this.envPrefix}_HOST`]: '127.0.0.1',
        [`${this.envPrefix}_PORT`]: String(this.port),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    trackChild(proc);
    proc.stdout?.on('data', (c: Buffer) => (this.output += c.toString()));
    proc.stderr?.on('data', (c: Buffer) => (this.output += c.toString()));
    const deadline = Date.now() + this.readyMs;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`${this.app} exited with ${proc.exitCode}: ${this.output}`);
      const ok = await fetch(`http://127.0.0.1:${this.port}/readyz`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`${this.app} did not get ready: ${this.output}`);
      await sleep(50);
    }
  }

  /** Whether the process runs (started, not exited). */
  get alive(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** The exit status of a process that exited by itself (null while it runs, or when killed). */
  get exitCode(): number | null {
    return this.proc?.exitCode ?? null;
  }

  /** SIGKILL: no drain, nothing saved, no goodbye. */
  async kill(): Promise<void> {
    await this.signal('SIGKILL');
  }

  /** SIGTERM: the app's ordered stop. */
  async stop(): Promise<void> {
    await this.signal('SIGTERM');
  }

  /** SIGSTOP: the process stays, its sockets open, and does nothing (a stalled event loop) until `resume`. */
  pause(): void {
    this.proc?.kill('SIGSTOP');
  }

  /** SIGCONT: a paused process goes on. */
  resume(): void {
    this.proc?.kill('SIGCONT');
  }

  /** The exit status of the last process `stop` or `kill` ended (null: ended by a signal, or none yet). */
  lastExitCode: number | null = null;

  private async signal(sig: NodeJS.Signals): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (p === undefined || p.exitCode !== null || p.signalCode !== null) return; // already gone: no exit event to wait for
    await new Promise<void>((resolve) => {
      p.once('exit', (code) => {
        this.lastExitCode = code;
        resolve();
      });
      p.kill(sig);
    });
  }
}
