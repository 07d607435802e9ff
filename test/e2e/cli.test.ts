import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { NATS_URL, freePort } from '../helpers/nats-server.js';
import { Stack, type TestApp } from '../helpers/stack.js';
import { runCli, type CliResult } from '../helpers/cli.js';

/**
 * The CLI as a user runs it from a new shell: no PUSH_NATS_URL in the environment, only the
 * `.data/services.env` that `scripts/services.sh up` writes (here in a temp working directory).
 */
describe('CLI in a new shell', function () {
  this.timeout(30_000);
  let stack: Stack;
  let app: TestApp;
  let cwd: string;

  before(async () => {
    stack = await Stack.start();
    app = await stack.createApp();
    cwd = mkdtempSync(path.join(os.tmpdir(), 'push-cli-'));
    mkdirSync(path.join(cwd, '.data'));
    writeFileSync(
      path.join(cwd, '.data/services.env'),
      `# as scripts/services.sh writes it\nPUSH_NATS_URL=${NATS_URL}\n`,
    );
  });
  after(async () => {
    await stack?.close();
    rmSync(cwd, { recursive: true, force: true });
  });

  const cli = (...args: string[]): Promise<CliResult> =>
    runCli(args, { PUSH_PREFIX: stack.prefix, PUSH_DATABASE_URL: stack.databaseUrl }, cwd);

  it('finds NATS through .data/services.env (the default address may be an old server)', async () => {
    const r = await cli('provision');
    expect(r.code, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.include({ provisioned: true, prefix: stack.prefix });
  });

  it('each command has its own --help, naming it, with an example', async () => {
    const usage = (await cli('--help')).stdout;
    const commands = [...new Set([...usage.matchAll(/^ {2}([a-z][a-z-]*)\b/gm)].map((m) => m[1] ?? ''))];
    expect(commands).to.include.members(['migrate', 'apps', 'token', 'watch', 'push', 'topics', 'webhooks']);
    const helps = new Set<string>();
    for (const command of commands) {
      const r = await cli(command, '--help');
      expect(r.code, command).to.equal(0);
      expect(r.stdout, command).to.contain(`usage of ${command}:`).and.contain('example:');
      expect(r.stdout, command).to.not.equal(usage);
      helps.add(r.stdout);
    }
    expect(helps.size).to.equal(commands.length);
  });

  it('push delivers a message that a connected client receives, JSON or text', async () => {
    const client = await app.connect('alice');
    try {
      const r = await cli('push', app.id, 'alice', '--data', '{"hello":"world"}');
      expect(r.code, r.stderr).to.equal(0);
      const answer = JSON.parse(r.stdout) as { seq: number; duplicate: boolean };
      expect(answer.duplicate).to.equal(false);
      const text = await cli('push', app.id, 'alice', '--data', 'hi there', '--id', 'm-1');
      expect(text.code, text.stderr).to.equal(0);
      const again = await cli('push', app.id, 'alice', '--data', 'hi there', '--id', 'm-1');
      expect(JSON.parse(again.stdout)).to.include({ duplicate: true });
      const [first, second] = await client.waitForMessages(2);
      expect(first).to.include({ seq: answer.seq });
      expect(first?.data).to.deep.equal({ hello: 'world' });
      expect(second?.data).to.equal('hi there');
    } finally {
      client.terminate();
    }
  });

  it('an expected failure (no such app, NATS not answering) is one line on stderr and exit 1', async () => {
    const r = await cli('push', 'no-such-app', 'alice', '--data', '1');
    expect(r.code).to.equal(1);
    expect(r.stderr.trim().split('\n'), r.stderr).to.deep.equal(['error app_not_found: no such app']);
    // A --ttl that is no whole number of seconds from 1: refused, not a broken or expired token.
    for (const ttl of ['abc', '0', '1.5']) {
      const t = await cli('token', '--app', app.id, '--user', 'u', '--ttl', ttl);
      expect(t.code, `--ttl ${ttl}: ${t.stdout}`).to.equal(1);
      expect(t.stderr.trim().split('\n'), t.stderr).to.have.length(1);
      expect(t.stderr).to.match(/^error bad_request: --ttl must be a whole number/);
    }
    const nowhere = `nats://127.0.0.1:${await freePort()}`;
    const down = await runCli(
      ['provision'],
      { PUSH_PREFIX: stack.prefix, PUSH_DATABASE_URL: stack.databaseUrl, PUSH_NATS_URL: nowhere },
      cwd,
    );
    expect(down.code).to.equal(1);
    expect(down.stderr.trim().split('\n'), down.stderr).to.deep.equal([
      `cannot connect to NATS at ${nowhere} (connection refused): start one with scripts/services.sh up (it writes .data/services.env, which the CLI reads) or set PUSH_NATS_URL`,
    ]);
    // A read of a database not set up yet, or of a Postgres not answering: stdout stays clean
    // (no driver message nor stack for a script reading the JSON), one line on stderr.
    for (const url of [`${stack.databaseUrl}_none`, `postgres://postgres@127.0.0.1:${await freePort()}/x`]) {
      const r = await runCli(['apps', 'list'], { PUSH_PREFIX: stack.prefix, PUSH_DATABASE_URL: url }, cwd);
      expect(r.code, url).to.equal(1);
      expect(r.stdout, url).to.equal('');
      expect(r.stderr.trim().split('\n'), r.stderr).to.have.length(1);
    }
  });

  it('a command line it cannot run is a usage error: the problem and the help on stderr, exit 2', async () => {
    const cases: Array<[string[], RegExp, string]> = [
      [['apps', 'list', '--nope'], /^usage error: Unknown option '--nope'/, 'usage of apps:'],
      [
        ['push', app.id, 'u', '--data', '1', '--ttl', '-1'],
        /^usage error: Option '--ttl' argument is ambiguous/,
        'usage of push:',
      ],
      [['push', app.id, 'u', '--data'], /^usage error: Option '--data <value>' argument missing/, 'usage of push:'],
      [['push', app.id, 'u'], /^usage error: missing --data/, 'usage of push:'],
      [['apps', 'get'], /^usage error: missing ID/, 'usage of apps:'],
      [['token', '--app', app.id], /^usage error: missing --user/, 'usage of'],
      [
        ['apps', 'update', app.id, '--disable', '--enable'],
        /^usage error: give --disable or --enable, not both/,
        'usage of apps:',
      ],
    ];
    for (const [args, first, help] of cases) {
      const r = await cli(...args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(2);
      expect(r.stdout, args.join(' ')).to.equal('');
      expect(r.stderr, args.join(' ')).to.match(first).and.contain(help);
    }
    // A bad setting: every problem, exit 2, as the apps.
    const bad = await runCli(['apps', 'list'], { PUSH_PREFIX: 'Bad-Prefix', PUSH_REDIS_URL: 'nope' }, cwd);
    expect(bad.code, bad.stderr).to.equal(2);
    expect(bad.stderr).to.match(/^invalid configuration:\n {2}PUSH_PREFIX: .*\n {2}PUSH_REDIS_URL: /);
    // Nothing was changed by the refused update.
    const got = await cli('apps', 'get', app.id);
    expect((JSON.parse(got.stdout) as { app: { disabled: boolean } }).app.disabled).to.equal(false);
  });
});
