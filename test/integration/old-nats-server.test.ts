import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { createCenter } from '@push/center';
import { createCoordinator } from '@push/coordinator';
import { dropDatabase } from '@push/db';
import { createEdge } from '@push/edge';
import { NatsServerTooOldError } from '@push/nats';
import { PrivateNatsServer } from '../helpers/nats-server.js';
import { Stack } from '../helpers/stack.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Debian 12's package: nats-server 2.9.10, the old server these machines run on :4222. */
const OLD_BIN = process.env['PUSH_OLD_NATS_SERVER_BIN'] ?? '/usr/sbin/nats-server';

function versionOf(bin: string): string {
  return /v(\d+\.\d+\.\d+\S*)/.exec(execFileSync(bin, ['--version'], { encoding: 'utf8' }))?.[1] ?? '';
}

/** Client connections the server holds (its /connz monitoring endpoint). */
async function serverConnections(server: PrivateNatsServer): Promise<number> {
  const res = await fetch(`${server.monitorUrl ?? ''}/connz`);
  return ((await res.json()) as { num_connections: number }).num_connections;
}

/** Waits up to 2 s for the server to count no client connection (it sees a close a moment later). */
async function noConnectionsLeft(server: PrivateNatsServer): Promise<number> {
  let n = await serverConnections(server);
  for (let i = 0; i < 40 && n > 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    n = await serverConnections(server);
  }
  return n;
}

/** Open TCP handles of this process (sockets keep the event loop, and a finished test run, alive). */
function tcpHandles(): number {
  return process.getActiveResourcesInfo().filter((r) => r.startsWith('TCP')).length;
}

/** TCP handles once closing sockets are gone (a closed socket's handle goes a tick or two later). */
async function tcpHandlesSettled(before: number): Promise<number> {
  for (let i = 0; i < 50 && tcpHandles() > before; i++) await new Promise((r) => setTimeout(r, 20));
  return tcpHandles();
}

function expectRefusal(err: unknown, version: string, url: string): void {
  expect(err).to.be.instanceOf(NatsServerTooOldError);
  const e = err as NatsServerTooOldError;
  expect(e.code).to.equal('nats_server_too_old');
  expect(e.found).to.equal(version);
  expect(e.message)
    .to.contain(`nats-server ${version} at ${url}`)
    .and.contain('2.11.0 or newer')
    .and.contain('scripts/nats-server.sh')
    .and.contain('nats:2.11-alpine');
}

describe('an old nats-server (2.9.10) is refused', function () {
  let old: PrivateNatsServer | undefined;
  let version = '';
  let stack: Stack;

  before(async function () {
    if (!existsSync(OLD_BIN)) this.skip(); // no old server on this machine to try
    version = versionOf(OLD_BIN);
    if (!version.startsWith('2.9.') && !version.startsWith('2.10.')) this.skip();
    old = new PrivateNatsServer(['-m', '-1'], { bin: OLD_BIN });
    await old.start();
    stack = new Stack({
      PUSH_NATS_URL: old.url,
      PUSH_COORDINATOR_HOST: '127.0.0.1',
      PUSH_COORDINATOR_PORT: '0',
    });
  });
  after(async function () {
    await old?.stop();
  });

  it('by the center, which names the version found, the one needed and how to get one, and closes what it opened', async function () {
    const server = old as PrivateNatsServer;
    const before = tcpHandles();
    const center = createCenter(stack.config());
    let err: unknown;
    await center.start().catch((e: unknown) => (err = e));
    expectRefusal(err, version, server.url);
    expect(await noConnectionsLeft(server)).to.equal(0);
    await center.stop();
    await dropDatabase(stack.databaseUrl);
    expect(await tcpHandlesSettled(before)).to.equal(before);
  });

  it('by the edge, before it listens or opens its live connection', async function () {
    const server = old as PrivateNatsServer;
    const before = tcpHandles();
    const edge = createEdge(stack.config());
    let err: unknown;
    await edge.start().catch((e: unknown) => (err = e));
    expectRefusal(err, version, server.url);
    expect(edge.port).to.equal(0);
    expect(await noConnectionsLeft(server)).to.equal(0);
    await edge.stop();
    expect(await tcpHandlesSettled(before)).to.equal(before);
  });

  it('by the coordinator', async function () {
    const server = old as PrivateNatsServer;
    const before = tcpHandles();
    const coordinator = createCoordinator(stack.config());
    let err: unknown;
    await coordinator.start().catch((e: unknown) => (err = e));
    expectRefusal(err, version, server.url);
    expect(coordinator.port).to.equal(0);
    expect(await noConnectionsLeft(server)).to.equal(0);
    await coordinator.stop();
    expect(await tcpHandlesSettled(before)).to.equal(before);
  });

  it('by the CLI commands that touch NATS (exit code 1 and the same message, in one line)', async function () {
    const server = old as PrivateNatsServer;
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
      let output = '';
      const p = spawn(process.execPath, [path.join(ROOT, 'apps/center/dist/cli.js'), 'provision'], {
        cwd: ROOT,
        env: { PATH: process.env['PATH'] ?? '', PUSH_NATS_URL: server.url, PUSH_DATABASE_URL: stack.databaseUrl },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      p.stdout.on('data', (c: Buffer) => (output += c.toString()));
      p.stderr.on('data', (c: Buffer) => (output += c.toString()));
      p.on('exit', (c) => resolve({ code: c, output }));
    });
    await dropDatabase(stack.databaseUrl);
    expect(code, output).to.equal(1);
    expect(output).to.contain(`nats-server ${version} at ${server.url} is too old`).and.contain('2.11.0 or newer');
    // One line that says what to do, not a stack trace.
    expect(output.trim().split('\n'), output).to.have.length(1);
    expect(output).to.contain('scripts/services.sh up');
  });
});
