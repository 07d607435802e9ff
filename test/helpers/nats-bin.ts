import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Finding a current nats-server and free ports, with no side effect on import: the bench imports
 * the cluster helper, which must not bring in the tests' process-wide signal handlers
 * (children.ts) that nats-server.ts installs.
 */

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * `scripts/services.sh up` (run by `make test`) writes the NATS it settled on to this file: a
 * private current nats-server when the one on :4222 is older than 2.11. Read here too, so that
 * `npx mocha <file>` after `make test` or `scripts/services.sh up` uses the same server.
 */
export function servicesEnv(name: string): string | undefined {
  const file = path.join(ROOT, '.data/services.env');
  if (!existsSync(file)) return undefined;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line);
    // services.sh quotes with printf %q: paths and URLs need no quoting, so nothing to undo.
    if (m?.[1] === name && m[2] !== undefined && m[2] !== '') return m[2];
  }
  return undefined;
}

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
