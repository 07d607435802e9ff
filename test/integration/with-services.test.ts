import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { currentNatsServerBin, freePort } from '../helpers/nats-server.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** True while PID runs a nats-server (not some later process given the same pid). */
function natsRuns(pid: number): boolean {
  const file = `/proc/${pid}/cmdline`;
  return existsSync(file) && readFileSync(file, 'utf8').includes('nats-server');
}

interface Run {
  proc: ChildProcess;
  output: () => string;
  /** Resolves with the first line of stdout matching `re`. */
  line: (re: RegExp) => Promise<RegExpExecArray>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, detached = false): Run {
  const proc = spawn(cmd, args, { cwd: ROOT, env, detached, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const waiting: Array<() => void> = [];
  const onData = (c: Buffer): void => {
    out += c.toString();
    for (const w of waiting) w();
  };
  proc.stdout?.on('data', onData);
  proc.stderr?.on('data', onData);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const line = (re: RegExp): Promise<RegExpExecArray> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const m = re.exec(out);
        if (m !== null) resolve(m);
      };
      waiting.push(check);
      check();
      void exit.then(() => reject(new Error(`exited before printing ${String(re)}:\n${out}`)));
    });
  return { proc, output: () => out, line, exit };
}

/**
 * scripts/with-services.sh (what make test, make bench-smoke and make bench run through) against
 * a temp PUSH_DATA_DIR and a NATS URL where nothing answers, so that it starts a private
 * nats-server of its own: never the one this test run uses.
 */
describe('scripts/with-services.sh', function () {
  this.timeout(90_000);
  let dataDir: string;
  let env: NodeJS.ProcessEnv;

  beforeEach(async () => {
    dataDir = mkdtempSync(path.join(os.tmpdir(), 'push-with-services-'));
    env = {
      ...process.env,
      PUSH_DATA_DIR: dataDir,
      PUSH_NATS_URL: `nats://127.0.0.1:${await freePort()}`,
      PUSH_NATS_SERVER_BIN: currentNatsServerBin(),
    };
  });

  afterEach(async () => {
    await run('scripts/services.sh', ['down', 'nats'], env).exit;
    rmSync(dataDir, { recursive: true, force: true });
  });

  // The command prints the pid of the nats-server the wrapper started, and the URL it was given.
  const SHOW = 'echo "nats pid $(cat "$PUSH_DATA_DIR/nats.pid") url $PUSH_NATS_URL"';

  it('stops the nats-server it started when the command fails, and exits with its status', async () => {
    const r = run('scripts/with-services.sh', ['bash', '-c', `${SHOW}; exit 3`], env);
    const m = await r.line(/nats pid (\d+) url (\S+)/);
    expect(m[2]).to.equal(env['PUSH_NATS_URL']);
    expect((await r.exit).code, r.output()).to.equal(3);
    expect(natsRuns(Number(m[1])), 'nats-server still runs').to.equal(false);
  });

  it('stops the command and the nats-server it started on Ctrl-C', async () => {
    // Ctrl-C in a terminal signals the whole foreground process group: so does this test.
    const r = run('scripts/with-services.sh', ['bash', '-c', `${SHOW} pid $$; exec sleep 60`], env, true);
    const m = await r.line(/nats pid (\d+) url \S+ pid (\d+)/);
    expect(natsRuns(Number(m[1]))).to.equal(true);
    process.kill(-(r.proc.pid ?? 0), 'SIGINT');
    expect((await r.exit).code, r.output()).to.equal(130);
    expect(natsRuns(Number(m[1])), 'nats-server still runs').to.equal(false);
    expect(existsSync(`/proc/${m[2]}`), 'the command still runs').to.equal(false);
  });

  it('leaves alone a nats-server that an earlier `up` started', async () => {
    const up = run('scripts/services.sh', ['up', 'nats'], env);
    expect((await up.exit).code, up.output()).to.equal(0);
    const pid = Number(readFileSync(path.join(dataDir, 'nats.pid'), 'utf8').trim());
    const r = run('scripts/with-services.sh', ['bash', '-c', 'exit 1'], env);
    expect((await r.exit).code, r.output()).to.equal(1);
    expect(natsRuns(pid), 'the earlier nats-server was stopped').to.equal(true);
  });
});

describe('test helpers: child processes', function () {
  this.timeout(30_000);

  it('a test process ended by SIGTERM takes its private nats-servers with it', async () => {
    // What a helper-started server leaves behind when mocha is stopped: its pid is in the name
    // of its ports file.
    const script = `
      import { readdirSync } from 'node:fs';
      import { PrivateNatsServer } from './test/helpers/nats-server.ts';
      const s = new PrivateNatsServer();
      await s.start();
      console.log('store ' + s.storeDir + ' ports ' + readdirSync(s.storeDir + '/ports').join(','));
      setInterval(() => {}, 1000);
    `;
    const r = run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], process.env);
    const m = await r.line(/store (\S+) ports \S+_(\d+)\.ports/);
    const pid = Number(m[2]);
    try {
      expect(natsRuns(pid)).to.equal(true);
      r.proc.kill('SIGTERM');
      expect((await r.exit).signal, r.output()).to.equal('SIGTERM');
      expect(natsRuns(pid), 'nats-server still runs').to.equal(false);
    } finally {
      if (natsRuns(pid)) process.kill(pid, 'SIGKILL');
      rmSync(m[1] ?? '', { recursive: true, force: true });
    }
  });
});
