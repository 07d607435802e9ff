import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** What a CLI run printed, and its exit status. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node apps/center/dist/cli.js ARGS` with exactly `env` (nothing of this process's
 * environment) in `cwd` (default the repository), as a user's shell would; 20 s at most.
 */
export async function runCli(args: string[], env: Record<string, string>, cwd = ROOT): Promise<CliResult> {
  try {
    const r = await run(process.execPath, [path.join(ROOT, 'apps/center/dist/cli.js'), ...args], {
      cwd,
      env: { PATH: process.env['PATH'] ?? '', ...env },
      timeout: 20_000,
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}
