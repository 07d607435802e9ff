import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { AppDirectory, hashApiKey, signClientToken, signTopicToken } from '@push/apps';
import { ConfigError, loadConfig, type Config } from '@push/config';
import { AppsRepository, createDatabase, ensureDatabase, migrate, type Knex } from '@push/db';
import { connectNats, deleteAppStreams, ensureInboxStream, ensureTopicStream, provisionStreams } from '@push/nats';
import { createLogger } from '@push/logger';
import { PushError, Subjects, isPushError, type AppRecord } from '@push/protocol';
import { AppAdmin, adminView } from './app-admin.js';

const USAGE = `push admin CLI (configuration from PUSH_* environment variables, see README)

  migrate                                   apply Postgres migrations
  provision                                 create/update the apps bucket and every app's inbox and topic streams
  apps create [--id ID] [--name NAME] [--settings JSON]
  apps list
  apps get ID
  apps update ID [--name NAME] [--settings JSON] [--disable | --enable]
  apps rotate-secret ID                     new signing secret (previous stays valid)
  apps add-key ID                           new API key (printed once)
  apps revoke-key ID KEY_ID
  apps delete ID                            delete the app, its keys, streams and messages;
                                            closes its clients (exit 1, app_not_found, if absent)
  token --app ID --user USER [--device DEV] [--ttl SECONDS] [--topics P1,P2]
                                            sign a client token with the app's newest secret
                                            (--topics: topic patterns it grants, e.g. news,room-*)
  topic-token --app ID --user USER --topic TOPIC [--ttl SECONDS]
                                            sign a per-topic subscription token (sub.token)
  watch --app ID --user USER [--url WS_URL] connect as USER, print and ack messages
  dev-setup [--out FILE]                    migrate, provision, ensure the 'demo' app, write creds
`;

/** A failure the CLI explains in one line (no stack): what is missing and what to run. */
class CliError extends Error {
  override name = 'CliError';
}

/** Postgres SQLSTATEs of a database that does not exist yet, or has no tables yet. */
const NOT_SET_UP = new Set(['3D000', '42P01']);

/**
 * Runs `fn` with a small Postgres pool, closed after. With `migrate`, first creates the database
 * when missing and applies the migrations (what commands that write need); without, only reads,
 * and a database not set up yet is reported as such (run `migrate`), not as an SQL error.
 */
async function withDatabase<T>(config: Config, opts: { migrate: boolean }, fn: (db: Knex) => Promise<T>): Promise<T> {
  if (opts.migrate) await ensureDatabase(config.databaseUrl);
  const db = createDatabase(config.databaseUrl, { min: 0, max: 2 });
  try {
    if (opts.migrate) await migrate(db);
    return await fn(db);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (!opts.migrate && typeof code === 'string' && NOT_SET_UP.has(code)) {
      throw new CliError('the database is not set up yet: run `cli.js migrate` (or start a center) first', {
        cause: err,
      });
    }
    throw err;
  } finally {
    await db.destroy();
  }
}

/** An app as Postgres has it (read only: no migrations, no NATS). PushError app_not_found when missing. */
async function readApp(config: Config, id: string): Promise<AppRecord> {
  const app = await withDatabase(config, { migrate: false }, (db) => new AppsRepository(db).get(id));
  if (app === undefined) throw new PushError('app_not_found');
  return app;
}

/**
 * Runs `fn` with what saving apps needs: the migrated database, NATS with the apps bucket and
 * streams provisioned, and an AppAdmin that writes both (as the center's admin routes do).
 */
async function withAdmin<T>(config: Config, fn: (admin: AppAdmin, apps: AppDirectory) => Promise<T>): Promise<T> {
  const log = createLogger({ level: 'warn', name: 'cli' });
  return withDatabase(config, { migrate: true }, async (db) => {
    const nc = await connectNats({ servers: config.natsUrl, auth: config.natsAuth, name: 'cli', logger: log });
    try {
      const subjects = new Subjects(config.prefix);
      await provisionStreams(nc, subjects, config.inbox);
      const apps = await AppDirectory.open(nc, subjects, log);
      try {
        const admin = new AppAdmin(
          new AppsRepository(db),
          apps,
          {
            maxTtlSeconds: config.inbox.maxAgeSeconds,
            maxPerUser: config.inbox.maxPerUser,
          },
          {
            ensure: async (record) => {
              await ensureInboxStream(nc, subjects, record, config.inbox);
              await ensureTopicStream(nc, subjects, record, config.inbox);
            },
            remove: (appId) => deleteAppStreams(nc, subjects, appId),
          },
        );
        return await fn(admin, apps);
      } finally {
        apps.close();
      }
    } finally {
      await nc.drain().catch((err: unknown) => log.warn({ err }, 'nats drain failed'));
    }
  });
}

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

function parseJsonFlag(value: string | undefined, name: string): unknown {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value);
  } catch {
    throw new PushError('bad_request', `--${name} must be JSON`);
  }
}

async function token(app: AppRecord, user: string, device: string, ttl: number, topics?: string[]): Promise<string> {
  const secret = app.secrets[0];
  if (secret === undefined) throw new Error(`app ${app.id} has no secret`);
  return signClientToken(secret, {
    app: app.id,
    user,
    device,
    ttlSeconds: ttl,
    ...(topics !== undefined ? { topics } : {}),
  });
}

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      id: { type: 'string' },
      name: { type: 'string' },
      settings: { type: 'string' },
      disable: { type: 'boolean' },
      enable: { type: 'boolean' },
      app: { type: 'string' },
      user: { type: 'string' },
      device: { type: 'string' },
      ttl: { type: 'string' },
      url: { type: 'string' },
      out: { type: 'string' },
      topic: { type: 'string' },
      topics: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [cmd, sub, arg1, arg2] = positionals;
  if (values.help === true || cmd === undefined) {
    process.stdout.write(USAGE);
    return cmd === undefined && values.help !== true ? 2 : 0;
  }
  const config = loadConfig();
  switch (cmd) {
    case 'migrate':
      await ensureDatabase(config.databaseUrl);
      print({ applied: await withDatabase(config, { migrate: false }, (db) => migrate(db)) });
      return 0;
    // Reading needs Postgres only: no migrations, no NATS.
    case 'apps':
      if (sub === 'list') {
        const all = await withDatabase(config, { migrate: false }, (db) => new AppsRepository(db).list());
        print({ apps: all.map(adminView) });
        return 0;
      }
      if (sub === 'get') {
        print({ app: adminView(await readApp(config, need(arg1, 'ID'))) });
        return 0;
      }
      return appsWrite(config, sub, arg1, arg2, values);
    case 'provision':
      // withAdmin creates the apps bucket; syncAll creates or updates every app's inbox and topic streams.
      return withAdmin(config, async (admin) => {
        print({ provisioned: true, prefix: config.prefix, apps: await admin.syncAll() });
        return 0;
      });
    case 'token': {
      const app = await readApp(config, need(values.app, '--app'));
      const topics = values.topics?.split(',').filter((p) => p !== '');
      process.stdout.write(
        `${await token(app, need(values.user, '--user'), values.device ?? 'cli', Number(values.ttl ?? 3600), topics)}\n`,
      );
      return 0;
    }
    case 'topic-token': {
      const app = await readApp(config, need(values.app, '--app'));
      const secret = app.secrets[0];
      if (secret === undefined) throw new CliError(`app ${app.id} has no secret`);
      const t = await signTopicToken(secret, {
        app: app.id,
        user: need(values.user, '--user'),
        topic: need(values.topic, '--topic'),
        ttlSeconds: Number(values.ttl ?? 3600),
      });
      process.stdout.write(`${t}\n`);
      return 0;
    }
    case 'watch': {
      const app = await readApp(config, need(values.app, '--app'));
      const t = await token(app, need(values.user, '--user'), values.device ?? 'cli', 24 * 3600);
      const url = values.url ?? `ws://127.0.0.1:${config.edge.port}/ws`;
      return watch(url, t);
    }
    case 'dev-setup':
      return withAdmin(config, async (admin, apps) => {
        const out = values.out ?? '.data/demo.json';
        let previous: { apiKey?: string } = {};
        if (existsSync(out)) {
          try {
            previous = JSON.parse(readFileSync(out, 'utf8')) as { apiKey?: string };
          } catch {
            previous = {};
          }
        }
        let app =
          apps.get('demo') ??
          (await admin.get('demo').catch((err: unknown) => {
            if (isPushError(err) && err.code === 'app_not_found') return undefined;
            throw err;
          }));
        let apiKey = previous.apiKey;
        if (app === undefined) {
          const r = await admin.create({ id: 'demo', name: 'Demo', settings: { clientMessaging: true } });
          app = r.app;
          apiKey = r.apiKey;
        } else if (apiKey === undefined || !app.apiKeys.some((k) => k.hash === hashApiKey(apiKey ?? ''))) {
          const r = await admin.addApiKey('demo');
          app = r.app;
          apiKey = r.apiKey;
        }
        const creds = {
          app: 'demo',
          apiKey,
          centerUrl: `http://127.0.0.1:${config.center.port}`,
          edgeUrl: `ws://127.0.0.1:${config.edge.port}/ws`,
          token: await token(app, 'alice', 'demo-device', 24 * 3600),
        };
        mkdirSync(dirname(out), { recursive: true });
        writeFileSync(out, `${JSON.stringify(creds, null, 2)}\n`, { mode: 0o600 });
        print(creds);
        return 0;
      });
    default:
      process.stderr.write(USAGE);
      return 2;
  }
}

/** The `apps` subcommands that save (the others only read). */
const APP_WRITES = new Set(['create', 'update', 'rotate-secret', 'add-key', 'revoke-key', 'delete']);

/** `apps <write> ...`: through AppAdmin, which saves to Postgres and the apps bucket and stream. */
async function appsWrite(
  config: Config,
  sub: string | undefined,
  arg1: string | undefined,
  arg2: string | undefined,
  flags: { id?: string; name?: string; settings?: string; disable?: boolean; enable?: boolean },
): Promise<number> {
  if (sub === undefined || !APP_WRITES.has(sub)) {
    process.stderr.write(USAGE);
    return 2;
  }
  return withAdmin(config, async (admin) => {
    switch (sub) {
      case 'create': {
        const r = await admin.create({
          id: flags.id,
          name: flags.name,
          settings: parseJsonFlag(flags.settings, 'settings'),
        });
        print({ app: adminView(r.app), apiKey: r.apiKey, apiKeyId: r.apiKeyId });
        return 0;
      }
      case 'update': {
        const patch: Record<string, unknown> = {};
        if (flags.name !== undefined) patch['name'] = flags.name;
        if (flags.settings !== undefined) patch['settings'] = parseJsonFlag(flags.settings, 'settings');
        if (flags.disable === true) patch['disabled'] = true;
        if (flags.enable === true) patch['disabled'] = false;
        print({ app: adminView(await admin.update(need(arg1, 'ID'), patch)) });
        return 0;
      }
      case 'rotate-secret':
        print({ app: adminView(await admin.rotateSecret(need(arg1, 'ID'))) });
        return 0;
      case 'add-key': {
        const r = await admin.addApiKey(need(arg1, 'ID'));
        print({ apiKey: r.apiKey, apiKeyId: r.apiKeyId });
        return 0;
      }
      case 'delete':
        await admin.delete(need(arg1, 'ID'));
        print({ deleted: arg1 });
        return 0;
      default: // revoke-key
        await admin.revokeApiKey(need(arg1, 'ID'), need(arg2, 'KEY_ID'));
        print({ revoked: arg2 });
        return 0;
    }
  });
}

function need(value: string | undefined, what: string): string {
  if (value === undefined || value === '') throw new PushError('bad_request', `missing ${what}`);
  return value;
}

/** Connects as a client, prints every frame, acks every message. Ends on Ctrl-C. */
function watch(url: string, token: string): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${url}?token=${encodeURIComponent(token)}`);
    ws.on('open', () => process.stderr.write(`connected to ${url}; waiting for messages (Ctrl-C to stop)\n`));
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => {
        process.stderr.write(`refused: ${res.statusCode} ${body}\n`);
        resolve(1);
      });
    });
    ws.on('message', (data: Buffer) => {
      const text = data.toString('utf8');
      process.stdout.write(`${text}\n`);
      const f = JSON.parse(text) as { t: string; seq?: number };
      if (f.t === 'msg' && f.seq !== undefined) ws.send(JSON.stringify({ t: 'ack', seqs: [f.seq] }));
    });
    ws.on('close', (code, reason) => {
      process.stderr.write(`closed: ${code} ${reason.toString()}\n`);
      resolve(0);
    });
    ws.on('error', (err) => {
      process.stderr.write(`error: ${err.message}\n`);
      resolve(1);
    });
    process.once('SIGINT', () => ws.close());
  });
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError || err instanceof CliError) process.stderr.write(`${err.message}\n`);
    else if (err instanceof PushError) process.stderr.write(`error ${err.code}: ${err.message}\n`);
    else process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
