import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { loadUws } from '@push/http';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const HOOK = fileURLToPath(new URL('../helpers/break-uws-binary.cjs', import.meta.url));

/** Runs an app entry the way an operator would, with a short timeout. */
function run(entry: string, env: Record<string, string>, args: string[] = []) {
  return spawnSync(process.execPath, [...args, entry], {
    cwd: ROOT,
    env: {
      ...process.env,
      PUSH_LOG_LEVEL: 'info',
      PUSH_EDGE_WORKERS: '1',
      PUSH_EDGE_PORT: '0',
      PUSH_PREFIX: 'nativecheck',
      ...env,
    },
    encoding: 'utf8',
    timeout: 20_000,
  });
}

describe('uWebSockets.js native binary check', function () {
  it('loads the native binary in this process', function () {
    const uws = loadUws();
    expect(Function.prototype.toString.call(uws.App)).to.include('[native code]');
  });

  it('an edge whose binary fails to load exits with a clear error instead of running on the JS fallback', function () {
    const r = run('apps/edge/dist/main.js', {}, ['--require', HOOK]);
    expect(r.status).to.not.equal(0);
    expect(r.stdout + r.stderr).to.match(/native binary did not load/);
  });

  it('an edge refuses UWS_USE_FALLBACK', function () {
    const r = run('apps/edge/dist/main.js', { UWS_USE_FALLBACK: '1' });
    expect(r.status).to.not.equal(0);
    expect(r.stdout + r.stderr).to.match(/UWS_USE_FALLBACK/);
  });
});
