import { PushError, isPushError } from '@push/protocol';

/**
 * How long a request waits for a Postgres connection before it fails, ms: both the pool's
 * acquire timeout and the driver's connect timeout, so a request answers within a few seconds
 * when Postgres is down or unreachable (knex's default is 60 s; a connect to a host that drops
 * packets would wait for the kernel's TCP timeout).
 */
export const DATABASE_CONNECT_TIMEOUT_MS = 3000;

/**
 * Seconds a caller is told to wait (`Retry-After`) when Postgres is unavailable: a little more
 * than one connect timeout, about what a restart of Postgres takes.
 */
export const DATABASE_RETRY_AFTER_SECONDS = 5;

/** Node's socket errors of a server that cannot be reached or went away. */
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
]);

/**
 * SQLSTATEs of a server that is not there for us: connection exceptions (class 08), shut down or
 * starting (57P01 to 57P03), out of connections (53300), the database missing (3D000).
 */
const SQLSTATE = /^(08...|57P0[1-3]|53300|3D000)$/;

/** node-postgres' own messages for a connection that ended or never opened. */
const PG_MESSAGES = /^(Connection terminated|Client was closed|Client has encountered a connection error)/;

/**
 * Whether a failed database call failed because Postgres could not be reached (down,
 * restarting, the network, the pool's acquire timeout), not because of the request: then the
 * same call can succeed later. Looks through `cause`s.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e.name === 'KnexTimeoutError') return true;
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && (SOCKET_CODES.has(code) || SQLSTATE.test(code))) return true;
    if (PG_MESSAGES.test(e.message)) return true;
  }
  return false;
}

/**
 * A failed database call as the API answers it: PushError `database_unavailable` (503, retry
 * after DATABASE_RETRY_AFTER_SECONDS) when Postgres could not be reached (or `always`), else
 * undefined.
 */
export function databaseUnavailable(err: unknown, always = false): PushError | undefined {
  if (isPushError(err) && err.code === 'database_unavailable') return err;
  if (!always && !isDatabaseUnavailable(err)) return undefined;
  return new PushError('database_unavailable', undefined, { cause: err, retryAfter: DATABASE_RETRY_AFTER_SECONDS });
}

/** A short reason for a log line: the first message down the `cause` chain that says something. */
export function databaseErrorReason(err: unknown): string {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (e.message !== '' && !isPushError(e)) return typeof code === 'string' ? `${code}: ${e.message}` : e.message;
  }
  return String(err);
}

/**
 * What a log line says of a failed database call: the short reason when Postgres could not be
 * reached (an outage is news, its stack is not), the whole error otherwise.
 */
export function databaseLogFields(err: unknown): { reason: string } | { err: unknown } {
  return isDatabaseUnavailable(err) ? { reason: databaseErrorReason(err) } : { err };
}
