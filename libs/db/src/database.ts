import { fileURLToPath } from 'node:url';
import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import { DATABASE_CONNECT_TIMEOUT_MS } from './database-errors.js';

export type { Knex };

/** The repository's `migrations/` folder (knex migrations, plain ESM JavaScript). */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../../migrations', import.meta.url));

/** Where knex's own messages go (a pino logger fits). */
export interface DatabaseLog {
  debug(obj: object, message: string): void;
  warn(obj: object, message: string): void;
}

/** knex's messages of a connection that failed or was lost: each comes with its stack, per call. */
const CONNECTION_NOISE = /^(Acquire connection error|Connection Error)/;

/**
 * A knex pool on Postgres. A call fails within DATABASE_CONNECT_TIMEOUT_MS when no connection can
 * be had (Postgres down or unreachable) instead of waiting; TCP keepalive notices a peer that
 * vanished without a word. With `log`, knex's messages go there instead of the console, those of
 * failed connections at debug (the caller reports an outage once, not a stack per call).
 */
export function createDatabase(url: string, pool = { min: 0, max: 10 }, log?: DatabaseLog): Knex {
  const warn = (message: unknown): void => {
    const text = String(message);
    if (CONNECTION_NOISE.test(text)) log?.debug({ component: 'knex' }, text);
    else log?.warn({ component: 'knex' }, text);
  };
  return knexFactory({
    client: 'pg',
    ...(log === undefined
      ? {}
      : {
          log: {
            warn,
            error: warn,
            deprecate: warn,
            debug: (m: unknown) => log.debug({ component: 'knex' }, String(m)),
          },
        }),
    connection: { connectionString: url, connectionTimeoutMillis: DATABASE_CONNECT_TIMEOUT_MS, keepAlive: true },
    acquireConnectionTimeout: DATABASE_CONNECT_TIMEOUT_MS,
    pool,
    migrations: { directory: MIGRATIONS_DIR, loadExtensions: ['.js'] },
  });
}

/** Applies pending migrations; returns the names applied. */
export async function migrate(db: Knex): Promise<string[]> {
  const [, applied] = (await db.migrate.latest()) as [number, string[]];
  return applied;
}

/**
 * Runs `fn` with the database name in `url` (checked: it is spliced into SQL, which cannot bind
 * identifiers) and a client connected to the same server's `postgres` database, closed after.
 */
async function onServer(url: string, fn: (client: pg.Client, name: string) => Promise<void>): Promise<void> {
  const u = new URL(url);
  const name = decodeURIComponent(u.pathname.slice(1));
  if (!/^[A-Za-z0-9_]+$/.test(name)) throw new Error(`database name must be [A-Za-z0-9_]+, got ${name}`);
  u.pathname = '/postgres';
  const client = new pg.Client({
    connectionString: u.toString(),
    connectionTimeoutMillis: DATABASE_CONNECT_TIMEOUT_MS,
  });
  // A connection lost mid-query also rejects the query (handled by the caller): without a
  // listener, the client's 'error' event would end the process.
  client.on('error', () => undefined);
  await client.connect();
  try {
    await fn(client, name);
  } finally {
    await client.end();
  }
}

/**
 * Creates the database named in `url` when it does not exist (connecting to the server's
 * `postgres` database to do so). For `make dev` and tests.
 */
export async function ensureDatabase(url: string): Promise<void> {
  await onServer(url, async (client, name) => {
    const r = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (r.rowCount === 0) await client.query(`CREATE DATABASE "${name}"`);
  });
}

/** Drops the database named in `url` (tests). */
export async function dropDatabase(url: string): Promise<void> {
  await onServer(url, async (client, name) => {
    await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  });
}
