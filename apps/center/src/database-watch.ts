import { type Knex, databaseErrorReason, databaseUnavailable } from '@push/db';
import { toPushError } from '@push/http';
import { isPushError, type PushError } from '@push/protocol';
import type { Logger } from 'pino';

/** How often the center tries Postgres again while it is unavailable, ms. */
const RETRY_MS = 2000;

/** API operations (HTTP and NATS names) that read or write Postgres. */
const DATABASE_OPS = /^(admin|apps|webhooks|jobs)\.|^topics\.(bind|unbind|bindings)$/;

/**
 * The center's view of Postgres, which only apps admin, webhook admin, topic bindings and
 * fan-out jobs need (pushes, topics and API keys read the apps KV bucket): it prepares the
 * database (create, migrate, copy apps to the KV bucket) at start, or in the background when
 * Postgres is down then; it turns a failed database call into `503 database_unavailable`; and it
 * logs one line when an outage starts and one when it ends, not a stack per request.
 */
export class DatabaseWatch {
  /** The database was prepared (migrated, apps copied): callers may rely on its tables. */
  private ready = false;
  private outage: { since: number; refused: number } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private attempt: Promise<void> | undefined;
  private closed = false;
  private readonly onReady: Array<() => void> = [];

  constructor(
    private readonly db: Knex,
    private readonly log: Logger,
    /** Told each time Postgres is found available (true) or unavailable (false). */
    private readonly onState: (available: boolean) => void = () => undefined,
  ) {}

  /**
   * Runs `prepare` once. When it fails because Postgres is unavailable, the center starts anyway
   * (logged in one line) and `prepare` is tried again every RETRY_MS until it succeeds; any
   * other failure (a broken migration) rejects, so the center does not start.
   */
  async start(prepare: () => Promise<void>): Promise<void> {
    try {
      await prepare();
      this.prepared();
    } catch (err) {
      if (databaseUnavailable(err) === undefined) throw err;
      this.down(
        err,
        'postgres unavailable at start: serving pushes and topics from the apps KV bucket; migrating and copying apps when it answers',
      );
      this.schedule(prepare);
    }
  }

  /** Runs `fn` once the database is prepared (at once when it is). */
  whenReady(fn: () => void): void {
    if (this.ready) fn();
    else this.onReady.push(fn);
  }

  /**
   * The failure of API operation `op` as its answer: `database_unavailable` (with Retry-After)
   * when Postgres could not be reached, or when `op` uses the database, the database is not
   * prepared yet (its tables may be missing) and the failure is not the request's own; else the
   * error as any other.
   */
  answer(err: unknown, op: string): PushError {
    const early = !this.ready && DATABASE_OPS.test(op) && !isPushError(err);
    const unavailable = databaseUnavailable(err, early);
    if (unavailable === undefined) return toPushError(err);
    if (this.outage === undefined) {
      this.down(
        err,
        'postgres unavailable: admin, webhook admin, bindings and jobs answer 503 database_unavailable until it returns',
      );
      this.schedule(() => this.db.raw('SELECT 1').then(() => undefined));
    }
    if (this.outage !== undefined) this.outage.refused++;
    return unavailable;
  }

  /** Stops trying; waits for an attempt in flight. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.attempt;
  }

  private down(err: unknown, message: string): void {
    this.outage = { since: Date.now(), refused: 0 };
    this.log.warn({ reason: databaseErrorReason(err), retryMs: RETRY_MS }, message);
    this.onState(false);
  }

  /** Tries `probe` every RETRY_MS until it succeeds; then the outage is over. */
  private schedule(probe: () => Promise<void>): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      this.attempt = probe().then(
        () => {
          if (this.closed) return;
          const o = this.outage;
          this.outage = undefined;
          this.log.info(
            { downMs: o === undefined ? 0 : Date.now() - o.since, refused: o?.refused ?? 0 },
            'postgres available again',
          );
          this.onState(true);
          this.prepared();
        },
        (err: unknown) => {
          // Still down (or not preparable yet): quietly again. Another failure is worth a line.
          if (databaseUnavailable(err) === undefined)
            this.log.error({ err }, 'preparing the database failed; trying again');
          this.schedule(probe);
        },
      );
    }, RETRY_MS);
  }

  private prepared(): void {
    if (this.ready) return;
    this.ready = true;
    for (const fn of this.onReady.splice(0)) fn();
  }
}
