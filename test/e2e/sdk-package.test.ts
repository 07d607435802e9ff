import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { Stack, type TestApp } from '../helpers/stack.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const run = promisify(execFile);

/** A user's ESM script: connects with the installed package, prints the first message, leaves. */
const SCRIPT = `
import { PushClient, PushClientError, CLOSE } from '@push/client';
import WebSocket from ${JSON.stringify(pathToFileURL(path.join(ROOT, 'node_modules/ws/wrapper.mjs')).href)};
const [edge, token] = process.argv.slice(2);
if (typeof CLOSE !== 'object' || typeof PushClientError !== 'function') throw new Error('exports missing');
const client = new PushClient({ edges: [edge], token, WebSocket });
const timer = setTimeout(() => { console.error('no message'); process.exit(2); }, 10000);
client.on('message', (m) => {
  console.log(JSON.stringify({ seq: m.seq, data: m.data }));
  clearTimeout(timer);
  setTimeout(() => client.disconnect(), 50); // after the auto ack went out
});
client.connect();
`;

/** A user's TypeScript, checked against the package's .d.ts only (no DOM, no @types/node). */
const CHECK = `
import { PushClient, PushClientError, type PushMessage, type PresenceMember, type Subscription } from '@push/client';
const client = new PushClient({ edges: ['ws://127.0.0.1:1/ws'], token: () => 't', fetchMembers: async () => [] });
client.on('message', (m: PushMessage) => {
  const seq: number = m.seq;
  return seq;
});
const room: Subscription = client.subscribe('room-1', { presence: true });
room.on('join', (m: PresenceMember) => m.user.toUpperCase());
const who: string[] = room.members().map((m) => m.user);
// @ts-expect-error: events are typed
client.on('no-such-event', () => undefined);
// @ts-expect-error: so are their arguments
room.on('leave', (m: { user: number }) => m.user);
export const failed = (e: unknown): string | undefined => (e instanceof PushClientError ? e.code : undefined);
export { who };
`;

/**
 * What `make build` leaves for another project (docs/sdk.md#install-it-in-your-project): the
 * tarball of `npm pack`, installed into an empty project offline (the package has no
 * dependencies), imported from an ESM script that receives a message from a real edge, and
 * type-checked with the repo's tsc.
 */
describe('SDK package: the npm tarball installed in another project', function () {
  this.timeout(60_000);
  let stack: Stack;
  let app: TestApp;
  let dir: string;
  let tarball: string;

  before(async function () {
    // Packed afresh, as make build does, so a stale tarball is never tested.
    tarball = execFileSync(process.execPath, [path.join(ROOT, 'libs/client/pack.mjs')], { encoding: 'utf8' }).trim();
    dir = mkdtempSync(path.join(os.tmpdir(), 'push-sdk-user-'));
    writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'user-app', private: true, type: 'module' }));
    await run('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball], { cwd: dir });
    stack = await Stack.start();
    app = await stack.createApp();
  });
  after(async function () {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    await stack?.close();
  });

  it('installs dist and the README only: ESM, types and the browser bundle, no sources or maps', function () {
    const pkg = path.join(dir, 'node_modules/@push/client');
    for (const f of ['dist/index.js', 'dist/index.d.ts', 'dist/push-client.min.js', 'README.md', 'package.json']) {
      expect(existsSync(path.join(pkg, f)), f).to.equal(true);
    }
    for (const f of ['src', 'dist/index.js.map', 'dist/.tsbuildinfo', 'bundle.mjs', path.basename(tarball)]) {
      expect(existsSync(path.join(pkg, f)), f).to.equal(false);
      expect(existsSync(path.join(pkg, 'dist', f)), `dist/${f}`).to.equal(false);
    }
  });

  it('an ESM script of that project imports it and receives a message from a real edge', async function () {
    const seq = await app.pushOk('pat', { hello: 'from the business' });
    writeFileSync(path.join(dir, 'client.mjs'), SCRIPT);
    const { stdout } = await run(process.execPath, ['client.mjs', stack.wsUrl(), await app.token('pat')], { cwd: dir });
    expect(JSON.parse(stdout)).to.deep.equal({ seq, data: { hello: 'from the business' } });
    await app.waitPending('pat', 0); // acked
  });

  it("a TypeScript file of that project type-checks against the package's types", async function () {
    writeFileSync(path.join(dir, 'check.ts'), CHECK);
    const tsconfig = {
      compilerOptions: { module: 'nodenext', target: 'es2022', lib: ['es2022'], types: [], strict: true, noEmit: true },
      files: ['check.ts'],
    };
    writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify(tsconfig));
    const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc');
    const out = await run(process.execPath, [tsc, '-p', dir]).then(
      () => 'ok',
      (e: { stdout: string }) => e.stdout,
    );
    expect(out).to.equal('ok');
  });
});
