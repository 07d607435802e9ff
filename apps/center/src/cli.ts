import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { PushClient } from '@push/client';
import { AppDirectory, RateLimiter, WebhookDirectory, hashApiKey, signClientToken, signTopicToken } from '@push/apps';
import { ConfigError, loadConfig, type Config } from '@push/config';
import {
  AppsRepository,
  BindingsRepository,
  JOB_CHUNK_USERS,
  JobsRepository,
  WebhooksRepository,
  createDatabase,
  ensureDatabase,
  migrate,
  type DatabaseLog,
  type Knex,
} from '@push/db';
import {
  InboxStore,
  NatsServerTooOldError,
  TopicStore,
  UndeliverableStore,
  connectNats,
  provisionStreams,
  type NatsConnection,
} from '@push/nats';
import { createRegistry } from '@push/http';
import { Redis } from 'ioredis';
import { PresenceRegistry } from '@push/presence';
import { createLogger } from '@push/logger';
import { PushError, Subjects, idProblem, isPushError, type AppRecord } from '@push/protocol';
import { adminView, createAppAdmin, type AppAdmin } from './app-admin.js';
import { BindingService } from './bindings.js';
import { createCenterMetrics } from './metrics.js';
import { TransientPush } from './transient-push.js';
import { PushService } from './push-service.js';
import { TopicService } from './topic-service.js';
import { JobService } from './job-service.js';
import { ApiKeyVerifier } from './api-keys.js';
import { WebhookAdmin } from './webhook-admin.js';
import { UndeliverableAdmin, readUndeliverableQuery } from './undeliverable-admin.js';

/** One command's help: what `<command> --help` prints, and its lines in the global usage. */
interface CommandHelp {
  /** Synopsis lines with a short note each, as the global usage lists them. */
  usage: string;
  /** What it does and what its options mean. */
  details: string;
  example: string;
}

const CLI = 'node apps/center/dist/cli.js';

const COMMANDS: Record<string, CommandHelp> = {
  migrate: {
    usage: '  migrate                                   apply Postgres migrations',
    details:
      'Creates the database when missing (PUSH_DATABASE_URL) and applies the migrations;\nprints {"applied":[...]}.',
    example: `${CLI} migrate`,
  },
  provision: {
    usage:
      "  provision                                 create/update the apps bucket and every app's inbox and topic streams",
    details: 'Needs Postgres and NATS (PUSH_NATS_URL); prints {"provisioned":true,"prefix":...,"apps":N}.',
    example: `${CLI} provision`,
  },
  apps: {
    usage: `  apps create [--id ID] [--name NAME] [--settings JSON] [--disable]
  apps list
  apps get ID
  apps update ID [--name NAME] [--settings JSON] [--disable | --enable]
  apps rotate-secret ID                     new signing secret (previous stays valid)
  apps add-key ID                           new API key (printed once)
  apps revoke-key ID KEY_ID
  apps delete ID                            delete the app, its keys, streams and messages;
                                            closes its clients (exit 1, app_not_found, if absent)`,
    details: `  --id ID          the new app's id (default: a random one)
  --name NAME      a display name
  --settings JSON  app settings (docs/api.md, "App settings"); update merges them
  --disable, --enable  refuse or accept the app's clients and pushes (create: --disable only)
list and get read Postgres only; the others also write the apps bucket and streams (NATS).`,
    example: `${CLI} apps create --id chat --settings '{"clientMessaging":true}'`,
  },
  token: {
    usage: `  token --app ID --user USER [--device DEV] [--ttl SECONDS] [--topics P1,P2]
                                            sign a client token with the app's newest secret
                                            (--topics: topic patterns it grants, e.g. news,room-*)`,
    details: `  --device DEV     the token's device (default cli)
  --ttl SECONDS    lifetime (default 3600)
Prints the bare token (not JSON), so TOKEN=$(... token ...) works.`,
    example: `${CLI} token --app demo --user alice --ttl 600`,
  },
  'topic-token': {
    usage: `  topic-token --app ID --user USER --topic TOPIC [--ttl SECONDS]
                                            sign a per-topic subscription token (sub.token)`,
    details: '  --ttl SECONDS    lifetime (default 3600)\nPrints the bare token.',
    example: `${CLI} topic-token --app demo --user alice --topic news`,
  },
  push: {
    usage: `  push APP USER --data JSON|TEXT [--ttl SECONDS] [--id MSG_ID] [--transient]
                                            push a message to USER's inbox (prints seq, duplicate)`,
    details: `  --data JSON|TEXT   the message: JSON when it parses as JSON, else the text as a string
  --ttl SECONDS      how long it is kept until acked (default: the app's)
  --id MSG_ID        idempotency id: the same id within the duplicate window is stored once
  --transient        never stored: only USER's connections online now get it (no --ttl, --id);
                     prints {"transient":true,"connections":N} (N from presence, in Redis)
Stores it as POST /v1/apps/APP/push does (NATS; no API key) and prints {"seq":N,"duplicate":false}.`,
    example: `${CLI} push demo alice --data '{"hello":"world"}'`,
  },
  watch: {
    usage: '  watch --app ID --user USER [--url WS_URL] connect as USER, print and ack messages',
    details: `  --url WS_URL     the edge (default ws://127.0.0.1:<PUSH_EDGE_PORT>/ws)
  --device DEV     the device it connects as (default cli)
Prints each message once as a JSON line on stdout (connection changes on stderr) and acks it;
Ctrl-C ends it (exit 0), a kick or a refusal exit 1.`,
    example: `${CLI} watch --app demo --user alice`,
  },
  'dev-setup': {
    usage: "  dev-setup [--out FILE]                    migrate, provision, ensure the 'demo' app, write creds",
    details: '  --out FILE       where the credentials go (default .data/demo.json, mode 600)',
    example: `${CLI} dev-setup --out .data/demo.json`,
  },
  jobs: {
    usage: `  jobs create --app ID --users FILE (--data JSON | --b64 BASE64) [--ttl SECONDS] [--transient]
                                            fan-out job: the message to every user in FILE (one id
                                            a line; - reads stdin); a running center writes it
  jobs get --app ID JOB                     a job's state and counts
  jobs list --app ID                        the app's newest jobs
  jobs cancel --app ID JOB                  cancel a job (its center stops within a second)`,
    details: `  --users FILE     user ids, one a line (- reads stdin)
  --data JSON, --b64 BASE64  the message
  --ttl SECONDS    how long each message is kept until acked
  --transient      never stored: sent to the users' connections online when their turn comes`,
    example: `printf 'alice\\nbob\\n' | ${CLI} jobs create --app demo --users - --data '{"news":1}'`,
  },
  topics: {
    usage: `  topics publish --app ID --topic T (--data JSON | --b64 BASE64) [--ttl SECONDS]
                                            publish to a topic (answers its sequence)
  topics watch --app ID --user USER --topic T [--url WS_URL]
                                            connect as USER, subscribe to T, print its messages
  topics bind --app ID --user USER --topic T   bind USER to T: every connection of USER, now
                                            and later, subscribes to it (no grant needed)
  topics unbind --app ID --user USER --topic T the user's connections leave T
  topics bindings --app ID --user USER      the topics USER is bound to`,
    details: `  --data JSON, --b64 BASE64  the message (publish)
  --ttl SECONDS    how long it stays in the topic's history (publish)
  --url WS_URL     the edge (watch; default ws://127.0.0.1:<PUSH_EDGE_PORT>/ws)`,
    example: `${CLI} topics publish --app demo --topic news --data '{"headline":"hi"}'`,
  },
  webhooks: {
    usage: `  webhooks create APP --url URL [--events T,T|*] [--kinds K,K|*] [--description TEXT]
  webhooks list APP
  webhooks get APP ID
  webhooks update APP ID [--url URL] [--events ...] [--kinds ...] [--disable | --enable]
  webhooks rotate-secret APP ID             new signing secret (previous still signs)
  webhooks delete APP ID
  webhooks dead-letters APP ID              list the endpoint's dead letters
  webhooks replay APP ID                    send its dead letters back to delivery
  webhooks purge APP ID                     drop its dead letters`,
    details: `  --url URL        where the coordinator POSTs batches
  --events T,T|*   event types to deliver (* for all)
  --kinds K,K|*    upstream kinds to deliver (* for all)`,
    example: `${CLI} webhooks create demo --url http://127.0.0.1:9000/hook --events '*'`,
  },
  undeliverable: {
    usage: `  undeliverable list APP [--user USER] [--limit N] [--after SEQ]
                                            list messages delivered maxDeliveries times unacked
  undeliverable replay APP [--user USER]    put them back into their users' inboxes
  undeliverable purge APP [--user USER]     drop them`,
    details: `  --user USER      only this user's undeliverable messages
  --limit N        list at most N (at most 1000, the default)
  --after SEQ      list from the list sequence after SEQ (paging)
Needs NATS only. replay prints {"replayed":N,"expired":N} (expired ones are dropped), purge {"purged":N}.`,
    example: `${CLI} undeliverable list demo --user alice`,
  },
};

const USAGE = `push admin CLI (configuration from PUSH_* environment variables, see README)

${Object.values(COMMANDS)
  .map((c) => c.usage)
  .join('\n')}

\`<command> --help\` prints one command's options and an example.
`;

/** `<command> --help`: its usage, options and an example. */
function commandHelp(name: string, help: CommandHelp): string {
  return `usage of ${name}:\n${help.usage}\n\n${help.details}\n\nexample:\n  ${help.example}\n`;
}

/** A subcommand missing or unknown: the command's help on stderr, exit status 2. */
function usageError(name: string): number {
  const help = COMMANDS[name];
  process.stderr.write(help === undefined ? USAGE : commandHelp(name, help));
  return 2;
}

/**
 * A command line the CLI cannot run (an unknown option, an option without its value, an argument
 * missing, two flags that exclude each other): its message and then the command's help (the usage
 * when the command is not known) on stderr, exit status 2.
 */
class UsageError extends Error {
  override name = 'UsageError';
}

/** The file `scripts/services.sh up` writes: the NATS to use (a private current one when the configured is too old). */
const SERVICES_ENV = '.data/services.env';

/**
 * `env`, with the settings of `.data/services.env` added when it sets no PUSH_NATS_URL: so that
 * the CLI, run from a new shell, uses the NATS that `make dev` or `scripts/services.sh up` settled
 * on. The file is looked for in the working directory, then in the checkout the CLI runs from.
 * Variables the environment sets win.
 */
function withServicesEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  if (env['PUSH_NATS_URL'] !== undefined && env['PUSH_NATS_URL'] !== '') return env;
  const here = dirname(fileURLToPath(import.meta.url)); // apps/center/dist
  const file = [resolve(SERVICES_ENV), resolve(here, '../../..', SERVICES_ENV)].find((f) => existsSync(f));
  if (file === undefined) return env;
  const added: NodeJS.ProcessEnv = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    // services.sh quotes with printf %q: URLs and paths need no quoting, so nothing to undo.
    const m = /^(PUSH_[A-Z_]+)=(.+)$/.exec(line);
    if (m?.[1] !== undefined && m[2] !== undefined) added[m[1]] = m[2];
  }
  return { ...added, ...env };
}

/** A failure the CLI explains in one line (no stack): what is missing and what to run. */
class CliError extends Error {
  override name = 'CliError';
}

/**
 * The CLI's NATS connection. A server that does not answer is said in one line with what to do
 * (NatsServerTooOldError already says it).
 */
async function openNats(config: Config, log: ReturnType<typeof createLogger>): Promise<NatsConnection> {
  try {
    return await connectNats({ servers: config.natsUrl, auth: config.natsAuth, name: 'cli', logger: log });
  } catch (err) {
    if (err instanceof NatsServerTooOldError) throw err;
    throw new CliError(
      `cannot connect to NATS at ${config.natsUrl} (${err instanceof Error ? err.message : String(err)}): ` +
        `start one with scripts/services.sh up (it writes ${SERVICES_ENV}, which the CLI reads) or set PUSH_NATS_URL`,
      { cause: err },
    );
  }
}

/**
 * knex's own messages: stdout is the command's JSON, and a failure is one line on stderr, so its
 * connection errors (each with a stack; the failure itself is reported) are dropped, and anything
 * else it warns of goes to stderr.
 */
const DATABASE_LOG: DatabaseLog = {
  debug: () => undefined,
  warn: (_obj, message) => process.stderr.write(`knex: ${message}\n`),
};

/** Postgres SQLSTATEs of a database that does not exist yet, or has no tables yet. */
const NOT_SET_UP = new Set(['3D000', '42P01']);

/**
 * Runs `fn` with a small Postgres pool, closed after. With `migrate`, first creates the database
 * when missing and applies the migrations (what commands that write need); without, only reads,
 * and a database not set up yet is reported as such (run `migrate`), not as an SQL error.
 */
async function withDatabase<T>(config: Config, opts: { migrate: boolean }, fn: (db: Knex) => Promise<T>): Promise<T> {
  if (opts.migrate) await ensureDatabase(config.databaseUrl);
  const db = createDatabase(config.databaseUrl, { min: 0, max: 2 }, DATABASE_LOG);
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
  // As the HTTP routes answer: an id that can be no app's is invalid, not missing.
  const problem = idProblem('app', id);
  if (problem !== undefined) throw new PushError('invalid_id', problem);
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
    const nc = await openNats(config, log);
    try {
      const subjects = new Subjects(config.prefix);
      await provisionStreams(nc, subjects, config.inbox);
      const apps = await AppDirectory.open(nc, subjects, log);
      try {
        const admin = createAppAdmin(db, apps, nc, subjects, config.inbox);
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

/** `parseArgs`, its refusals (ERR_PARSE_ARGS_*: an unknown option, a value missing or ambiguous) as usage errors. */
function parseCommandLine(argv: string[]): ReturnType<typeof parseOptions> {
  try {
    return parseOptions(argv);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_')) throw new UsageError((err as Error).message);
    throw err;
  }
}

function parseOptions(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      id: { type: 'string' },
      name: { type: 'string' },
      settings: { type: 'string' },
      disable: { type: 'boolean' },
      enable: { type: 'boolean' },
      transient: { type: 'boolean' },
      app: { type: 'string' },
      user: { type: 'string' },
      device: { type: 'string' },
      ttl: { type: 'string' },
      url: { type: 'string' },
      out: { type: 'string' },
      users: { type: 'string' },
      data: { type: 'string' },
      b64: { type: 'string' },
      events: { type: 'string' },
      kinds: { type: 'string' },
      description: { type: 'string' },
      topic: { type: 'string' },
      topics: { type: 'string' },
      limit: { type: 'string' },
      after: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(argv);
  if (values.disable === true && values.enable === true) throw new UsageError('give --disable or --enable, not both');
  const [cmd, sub, arg1, arg2] = positionals;
  if (values.help === true || cmd === undefined) {
    const help = cmd === undefined ? undefined : COMMANDS[cmd];
    process.stdout.write(help === undefined ? USAGE : commandHelp(cmd ?? '', help));
    return cmd === undefined && values.help !== true ? 2 : 0;
  }
  const config = loadConfig(withServicesEnv(process.env));
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
        `${await token(app, need(values.user, '--user'), values.device ?? 'cli', ttlSeconds(values.ttl), topics)}\n`,
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
        ttlSeconds: ttlSeconds(values.ttl),
      });
      process.stdout.write(`${t}\n`);
      return 0;
    }
    case 'watch': {
      const app = await readApp(config, need(values.app, '--app'));
      const user = need(values.user, '--user');
      const url = values.url ?? `ws://127.0.0.1:${config.edge.port}/ws`;
      return watch(url, () => token(app, user, values.device ?? 'cli', 24 * 3600));
    }
    case 'push':
      return pushCommand(config, need(sub, 'APP'), need(arg1, 'USER'), values);
    case 'jobs':
      return jobsCommand(config, sub, arg1, values);
    case 'topics':
      return topicsCommand(config, sub, values);
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
    case 'webhooks':
      return webhooksCommand(config, sub, arg1, arg2, values);
    case 'undeliverable':
      return undeliverableCommand(config, sub, arg1, values);
    default:
      process.stderr.write(`unknown command '${cmd}'\n\n${USAGE}`);
      return 2;
  }
}

/** `--events a,b` -> ['a', 'b'] (undefined when the flag is absent). */
const list = (v: string | undefined): string[] | undefined =>
  v === undefined
    ? undefined
    : v
        .split(',')
        .map((x) => x.trim())
        .filter((x) => x !== '');

const WEBHOOK_COMMANDS = new Set([
  'create',
  'list',
  'get',
  'update',
  'rotate-secret',
  'delete',
  'dead-letters',
  'replay',
  'purge',
]);

/**
 * `webhooks <sub> APP [ID]`: through WebhookAdmin, which saves to Postgres and the webhooks KV
 * bucket (as the center's routes do). Trusted like the rest of the CLI: no key is checked.
 */
async function webhooksCommand(
  config: Config,
  sub: string | undefined,
  app: string | undefined,
  id: string | undefined,
  flags: { url?: string; events?: string; kinds?: string; description?: string; disable?: boolean; enable?: boolean },
): Promise<number> {
  if (sub === undefined || !WEBHOOK_COMMANDS.has(sub)) return usageError('webhooks');
  const appId = need(app, 'APP');
  const log = createLogger({ level: 'warn', name: 'cli' });
  return withDatabase(config, { migrate: true }, async (db) => {
    if ((await new AppsRepository(db).get(appId)) === undefined) throw new PushError('app_not_found');
    const nc = await openNats(config, log);
    try {
      const subjects = new Subjects(config.prefix);
      await provisionStreams(nc, subjects, config.inbox);
      const apps = await AppDirectory.open(nc, subjects, log);
      const dir = await WebhookDirectory.open(nc, subjects, log, { replicas: config.inbox.replicas });
      try {
        const w = new WebhookAdmin(
          new WebhooksRepository(db),
          dir,
          apps,
          new ApiKeyVerifier(apps),
          undefined,
          nc,
          subjects,
        );
        const body: Record<string, unknown> = {};
        if (flags.url !== undefined) body['url'] = flags.url;
        if (flags.events !== undefined) body['events'] = list(flags.events);
        if (flags.kinds !== undefined) body['kinds'] = list(flags.kinds);
        if (flags.description !== undefined) body['description'] = flags.description;
        if (flags.disable === true) body['disabled'] = true;
        if (flags.enable === true) body['disabled'] = false;
        switch (sub) {
          case 'create':
            print({ webhook: await w.create(appId, body) });
            return 0;
          case 'list':
            print({ webhooks: await w.list(appId) });
            return 0;
          case 'get':
            print({ webhook: await w.get(appId, WebhookAdmin.id(need(id, 'ID'))) });
            return 0;
          case 'update':
            print({ webhook: await w.update(appId, WebhookAdmin.id(need(id, 'ID')), body) });
            return 0;
          case 'rotate-secret':
            print({ webhook: await w.rotateSecret(appId, WebhookAdmin.id(need(id, 'ID'))) });
            return 0;
          case 'delete':
            await w.delete(appId, WebhookAdmin.id(need(id, 'ID')));
            print({ deleted: id });
            return 0;
          case 'dead-letters':
            print({ deadLetters: await w.deadLetters(appId, WebhookAdmin.id(need(id, 'ID'))) });
            return 0;
          case 'replay':
            print({ replayed: await w.replay(appId, WebhookAdmin.id(need(id, 'ID'))) });
            return 0;
          default: // purge
            print({ purged: await w.purge(appId, WebhookAdmin.id(need(id, 'ID'))) });
            return 0;
        }
      } finally {
        dir.close();
        apps.close();
      }
    } finally {
      await nc.drain().catch((err: unknown) => log.warn({ err }, 'nats drain failed'));
    }
  });
}

/**
 * `undeliverable <list|replay|purge> APP`: an app's never-acked messages (docs/api.md
 * "Undeliverable messages"), straight on NATS like the center's routes. Trusted: no key.
 */
async function undeliverableCommand(
  config: Config,
  sub: string | undefined,
  app: string | undefined,
  flags: { user?: string; limit?: string; after?: string },
): Promise<number> {
  if (sub !== 'list' && sub !== 'replay' && sub !== 'purge') return usageError('undeliverable');
  const appId = need(app, 'APP');
  const q = readUndeliverableQuery(flags, 'text');
  const log = createLogger({ level: 'warn', name: 'cli' });
  const nc = await openNats(config, log);
  try {
    const subjects = new Subjects(config.prefix);
    const apps = await AppDirectory.open(nc, subjects, log);
    try {
      if (apps.get(appId) === undefined) throw new PushError('app_not_found');
    } finally {
      apps.close();
    }
    const u = new UndeliverableAdmin(new UndeliverableStore(nc, subjects, config.inbox));
    if (sub === 'list') print({ undeliverable: await u.list(appId, q) });
    else if (sub === 'replay') print(await u.replay(appId, q));
    else print(await u.purge(appId, q));
    return 0;
  } finally {
    await nc.drain().catch((err: unknown) => log.warn({ err }, 'nats drain failed'));
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
  if (sub === undefined || !APP_WRITES.has(sub)) return usageError('apps');
  return withAdmin(config, async (admin) => {
    switch (sub) {
      case 'create': {
        const r = await admin.create({
          id: flags.id,
          name: flags.name,
          settings: parseJsonFlag(flags.settings, 'settings'),
          disabled: flags.disable === true,
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

/**
 * `jobs <create|get|list|cancel>`: straight on Postgres through the JobService the center uses;
 * a running center picks a created job up within a second (its runners poll). A list of more
 * than a chunk goes in chunks into an open job, which is then started.
 */
async function jobsCommand(
  config: Config,
  sub: string | undefined,
  jobId: string | undefined,
  flags: { app?: string; users?: string; data?: string; b64?: string; ttl?: string; transient?: boolean },
): Promise<number> {
  if (sub === undefined || !['create', 'get', 'list', 'cancel'].includes(sub)) return usageError('jobs');
  const app = await readApp(config, need(flags.app, '--app'));
  return withDatabase(config, { migrate: sub === 'create' }, async (db) => {
    const jobs = new JobService(new JobsRepository(db), {
      maxUsers: config.jobs.maxUsers,
      maxTtlSeconds: config.inbox.maxAgeSeconds,
    });
    switch (sub) {
      case 'get':
        print({ job: await jobs.get(app, need(jobId, 'JOB')) });
        return 0;
      case 'list':
        print({ jobs: await jobs.list(app) });
        return 0;
      case 'cancel':
        print({ job: await jobs.cancel(app, need(jobId, 'JOB')) });
        return 0;
      default: {
        const file = need(flags.users, '--users');
        const users = readFileSync(file === '-' ? 0 : file, 'utf8')
          .split('\n')
          .map((l) => l.replace(/\r$/, ''))
          .filter((l) => l !== '');
        const message: Record<string, unknown> = {};
        if (flags.data !== undefined) message['data'] = parseJsonFlag(flags.data, 'data');
        if (flags.b64 !== undefined) message['b64'] = flags.b64;
        if (flags.ttl !== undefined) message['ttl'] = Number(flags.ttl);
        if (flags.transient === true) message['transient'] = true;
        if (users.length <= JOB_CHUNK_USERS) {
          print({ job: await jobs.create(app, { ...message, users }) });
          return 0;
        }
        const open = await jobs.create(app, { ...message, open: true });
        for (let i = 0; i < users.length; i += JOB_CHUNK_USERS) {
          await jobs.addUsers(app, open.id, { users: users.slice(i, i + JOB_CHUNK_USERS) });
        }
        print({ job: await jobs.start(app, open.id) });
        return 0;
      }
    }
  });
}

/**
 * `topics <publish|watch|bind|unbind|bindings>`: through the services the center uses (the
 * TopicService on the topic stream; the BindingService writing Postgres, the Redis mirror and
 * the control message), trusted like the rest of the CLI: no API key is checked.
 */
async function topicsCommand(
  config: Config,
  sub: string | undefined,
  flags: { app?: string; user?: string; topic?: string; data?: string; b64?: string; ttl?: string; url?: string },
): Promise<number> {
  if (sub === undefined || !['publish', 'watch', 'bind', 'unbind', 'bindings'].includes(sub)) {
    return usageError('topics');
  }
  const app = await readApp(config, need(flags.app, '--app'));
  const subjects = new Subjects(config.prefix);
  if (sub === 'bindings') {
    const user = need(flags.user, '--user');
    const topics = await withDatabase(config, { migrate: false }, (db) =>
      new BindingService(new BindingsRepository(db), noRedis, noNats, subjects).list(app, user),
    );
    print({ topics });
    return 0;
  }
  const topic = need(flags.topic, '--topic');
  if (sub === 'watch') {
    const user = need(flags.user, '--user');
    const url = flags.url ?? `ws://127.0.0.1:${config.edge.port}/ws`;
    return watchTopic(url, await token(app, user, 'cli', 24 * 3600, [topic]), topic);
  }
  const log = createLogger({ level: 'warn', name: 'cli' });
  const nc = await openNats(config, log);
  try {
    if (sub === 'publish') {
      const message: Record<string, unknown> = {};
      if (flags.data !== undefined) message['data'] = parseJsonFlag(flags.data, 'data');
      if (flags.b64 !== undefined) message['b64'] = flags.b64;
      if (flags.ttl !== undefined) message['ttl'] = Number(flags.ttl);
      const store = new TopicStore(nc, subjects, { timeoutMs: config.inbox.timeoutMs });
      try {
        const metrics = createCenterMetrics(createRegistry('cli'));
        const topics = new TopicService(store, subjects, new RateLimiter(), { maxBatch: 1 }, metrics);
        const r = await topics.publish(app, message, topic);
        print(r.batch ? r : { topic: r.topic, seq: r.seq, duplicate: r.duplicate });
      } finally {
        store.close();
      }
      return 0;
    }
    const user = need(flags.user, '--user');
    const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 2, lazyConnect: true });
    redis.on('error', (err) => log.warn({ err }, 'redis error'));
    try {
      await redis.connect();
      return await withDatabase(config, { migrate: true }, async (db) => {
        const bindings = new BindingService(new BindingsRepository(db), redis, nc, subjects);
        print(sub === 'bind' ? await bindings.bind(app, user, topic) : await bindings.unbind(app, user, topic));
        return 0;
      });
    } finally {
      redis.disconnect();
    }
  } finally {
    await nc.drain().catch((err: unknown) => log.warn({ err }, 'nats drain failed'));
  }
}

/**
 * `push APP USER --data ...`: one message to the user's inbox through the PushService the center
 * uses (validation, TTL, idempotency id), on NATS directly; prints what the HTTP route answers.
 */
async function pushCommand(
  config: Config,
  appId: string,
  user: string,
  flags: { data?: string; ttl?: string; id?: string; transient?: boolean },
): Promise<number> {
  const app = await readApp(config, appId);
  const text = need(flags.data, '--data');
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    data = text; // not JSON: the text itself, as a string
  }
  const body: Record<string, unknown> = { user, data };
  if (flags.ttl !== undefined) body['ttl'] = Number(flags.ttl);
  if (flags.id !== undefined) body['id'] = flags.id;
  if (flags.transient === true) body['transient'] = true;
  const log = createLogger({ level: 'warn', name: 'cli' });
  const subjects = new Subjects(config.prefix);
  const nc = await openNats(config, log);
  const store = new InboxStore(nc, subjects, { timeoutMs: config.inbox.timeoutMs });
  // Only a transient push reads presence (for its answer's connections).
  const redis =
    flags.transient === true ? new Redis(config.redisUrl, { maxRetriesPerRequest: 2, lazyConnect: true }) : undefined;
  redis?.on('error', (err) => log.warn({ err }, 'redis error'));
  try {
    await redis?.connect();
    const presence = redis === undefined ? noPresence : new PresenceRegistry(redis, subjects, 'cli');
    const push = new PushService(
      store,
      subjects,
      presence,
      new RateLimiter(),
      { maxBatch: 1, maxTtlSeconds: config.inbox.maxAgeSeconds },
      createCenterMetrics(createRegistry('cli')),
      new TransientPush(nc, subjects, presence, log),
    );
    const r = await push.push(app, body);
    print(r.batch ? r : r.answer);
    return 0;
  } finally {
    redis?.disconnect();
    store.close();
    // Drained: a transient message goes out before the connection closes.
    await nc.drain().catch((err: unknown) => log.warn({ err }, 'nats drain failed'));
  }
}

/** For a PushService that only pushes: a status lookup is a bug. */
const noPresence = {
  lookup: () => Promise.reject(new Error('no presence here')),
} as unknown as PresenceRegistry;

/** For a BindingService that only lists (reads Postgres): writing is a bug. */
const noRedis = {
  sadd: () => Promise.reject(new Error('no redis here')),
  srem: () => Promise.reject(new Error('no redis here')),
} as unknown as Pick<Redis, 'sadd' | 'srem'>;
const noNats = {
  publish: () => {
    throw new Error('no nats here');
  },
};

/**
 * Connects as a client (raw WebSocket, token granting the topic), subscribes to the topic and
 * prints each of its messages as one JSON line on stdout; status goes to stderr. Ends on Ctrl-C
 * (exit 0), or when the edge refuses the subscription or closes the connection (exit 1).
 */
function watchTopic(url: string, clientToken: string, topic: string): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${url}?token=${encodeURIComponent(clientToken)}`);
    let stopping = false;
    ws.on('message', (raw: Buffer, isBinary: boolean) => {
      if (isBinary) return;
      let f: Record<string, unknown>;
      try {
        f = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
      } catch {
        process.stderr.write('unreadable frame ignored\n');
        return;
      }
      if (f['t'] === 'hello') ws.send(JSON.stringify({ t: 'sub', topic }));
      else if (f['t'] === 'subscribed' && f['topic'] === topic) process.stderr.write(`subscribed to ${topic}\n`);
      else if (f['t'] === 'msg' && f['topic'] === topic) process.stdout.write(`${JSON.stringify(f)}\n`);
      else if (f['t'] === 'error' && f['topic'] === topic) {
        process.stderr.write(`error ${String(f['code'])}: ${String(f['message'])}\n`);
        ws.close(1000);
        resolve(1);
      }
    });
    ws.on('error', (err) => process.stderr.write(`connection error: ${err.message}\n`));
    ws.on('close', (code, reason) => {
      process.stderr.write(`closed: ${code} ${reason.toString()}\n`);
      resolve(stopping ? 0 : 1);
    });
    process.once('SIGINT', () => {
      stopping = true;
      ws.close(1000);
    });
  });
}

/** `--ttl`: a positive whole number of seconds (3600 when not given); `bad_request` otherwise. */
function ttlSeconds(value: string | undefined): number {
  if (value === undefined) return 3600;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
    throw new PushError('bad_request', `--ttl must be a whole number of seconds from 1, not ${JSON.stringify(value)}`);
  }
  return n;
}

function need(value: string | undefined, what: string): string {
  if (value === undefined || value === '') throw new UsageError(`missing ${what}`);
  return value;
}

/**
 * Connects as a client with the SDK (reconnects, refreshes its token, acks, drops repeats) and
 * prints every message once, as one JSON line on stdout; connection changes go to stderr. Ends
 * on Ctrl-C (exit 0) or when the edge ends it for good: kicked, replaced by a newer connection
 * (app setting devicePolicy), app disabled, refused (exit 1).
 */
function watch(url: string, getToken: () => Promise<string>): Promise<number> {
  return new Promise((resolve) => {
    const client = new PushClient({ edges: [url], token: getToken, WebSocket });
    const say = (text: string): void => {
      process.stderr.write(`${text}\n`);
    };
    client.on('connected', (c) => say(`connected to ${c.edge} as ${c.user}; waiting for messages (Ctrl-C to stop)`));
    client.on('connecting', (why) => {
      if (why.code !== 0) say(`connection lost (${why.code} ${why.reason}); reconnecting`);
    });
    client.on('error', (e) => say(`error ${e.error.code}: ${e.error.message}`));
    client.on('message', (m) => {
      const { seq, ts, from, data, b64, transient } = m;
      // A transient message has no seq: printed as it came (`"transient":true`), not as seq 0.
      const head = transient === true ? { t: 'msg', transient } : { t: 'msg', seq };
      process.stdout.write(`${JSON.stringify({ ...head, ts, from, data, b64 })}\n`);
    });
    client.on('disconnected', (why) => {
      say(`closed: ${why.code} ${why.reason}`);
      resolve(why.code === 1000 ? 0 : 1);
    });
    process.once('SIGINT', () => client.disconnect());
    client.connect();
  });
}

/**
 * The one line an expected failure prints: the message of a configuration or CLI error, `error
 * <code>: <message>` for anything with a code (API errors, an old nats-server, a refused
 * connection); else the stack, which is a bug.
 */
function failureLine(err: unknown): string {
  if (err instanceof ConfigError || err instanceof CliError) return err.message;
  if (err instanceof NatsServerTooOldError) {
    return `error ${err.code}: ${err.message}; or run scripts/services.sh up, which starts a current one and writes ${SERVICES_ENV} (the CLI reads it)`;
  }
  const code = (err as { code?: unknown } | null)?.code;
  if (err instanceof Error && typeof code === 'string' && code !== '') {
    // Node's connection errors come as an AggregateError (one per address) with an empty message.
    const message = err.message !== '' ? err.message : ((err as { errors?: Error[] }).errors?.[0]?.message ?? err.name);
    return `error ${code}: ${message.replace(/\s*\n\s*/g, ' ')}`;
  }
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError) {
      // As the apps: a bad setting is exit status 2, with every problem listed.
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    if (err instanceof UsageError) {
      process.stderr.write(`usage error: ${err.message}\n\n`);
      // The command is the first word that is no option (a flag's value before it is rare).
      process.exit(usageError(process.argv.slice(2).find((a) => !a.startsWith('-')) ?? ''));
    }
    process.stderr.write(`${failureLine(err)}\n`);
    process.exit(1);
  },
);
