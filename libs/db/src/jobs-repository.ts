import type { Knex } from 'knex';
import { PushError, type JobState, type JobView } from '@push/protocol';

/** Users per row of `fanout_job_users`: a million-user job is a hundred rows. */
export const JOB_CHUNK_USERS = 10_000;

/** A row of `fanout_jobs`. */
interface JobRow {
  id: string;
  app_id: string;
  state: JobState;
  payload: Buffer;
  binary: boolean;
  ttl_seconds: number;
  total: number;
  skipped: number;
  stored: number;
  chunks: number;
  done: number;
  written: number;
  failed: number;
  dedupe: boolean;
  transient: boolean;
  locked_by: string | null;
  lease_until: Date | null;
  created_at: Date;
  updated_at: Date;
  /** When it was queued (created queued, or started when open); null while open. */
  queued_at: Date | null;
  started_at: Date | null;
  finished_at: Date | null;
}

/** A job a center has claimed: what its runner needs to write the rest of it. */
export interface ClaimedJob {
  id: string;
  appId: string;
  payload: Buffer;
  binary: boolean;
  ttlSeconds: number;
  /** Sent live to the connections online, never stored (no ttl, no dedupe). */
  transient: boolean;
  /** Users stored for the job (valid, without repeats), in chunk order. */
  stored: number;
  /** The checkpoint: the first `done` users are handled and counted in `written` and `failed`. */
  done: number;
  written: number;
  failed: number;
  /** Whether a center held the job before (a takeover or a resume after a restart). */
  resumed: boolean;
}

/** Where a runner is: the checkpoint and the counts of the users before it. */
export interface JobProgress {
  done: number;
  written: number;
  failed: number;
}

/** A new job's message and its first users (already checked and without repeats). */
export interface NewJob {
  id: string;
  appId: string;
  payload: Buffer;
  binary: boolean;
  ttlSeconds: number;
  transient: boolean;
  /** `open`: waits for more users and a start; `queued`: runs as soon as a center claims it. */
  state: 'open' | 'queued';
  users: string[];
  /** Users given, counting the skipped ones. */
  total: number;
  skipped: number;
}

/** Chunks of a user list, JOB_CHUNK_USERS each. */
function chunksOf(users: string[]): string[][] {
  const out: string[][] = [];
  for (let i = 0; i < users.length; i += JOB_CHUNK_USERS) out.push(users.slice(i, i + JOB_CHUNK_USERS));
  return out;
}

/** Rows of chunks per INSERT: a few megabytes of parameters at most. */
const CHUNK_ROWS_PER_INSERT = 10;

const ACTIVE: JobState[] = ['open', 'queued', 'running'];

/** The row an INSERT or UPDATE ... RETURNING of a row known to exist gave back. */
function must(row: JobRow | undefined): JobRow {
  if (row === undefined) throw new Error('fanout_jobs: the statement returned no row');
  return row;
}

/**
 * Fan-out jobs in Postgres: the API's side (create, add users, start, read, cancel) and the
 * runner's (claim with a lease, read users a chunk at a time, checkpoint, finish, release). Every
 * change of a job's state happens in one statement or one transaction holding the job's row lock,
 * so a cancel and a runner's checkpoint never interleave half-way.
 */
export class JobsRepository {
  constructor(private readonly db: Knex) {}

  /** The job as the API shows it. */
  static view(row: JobRow): JobView {
    const handled = row.written + row.skipped + row.failed;
    const remaining = Math.max(0, row.total - handled);
    return {
      id: row.id,
      app: row.app_id,
      state: row.state,
      total: row.total,
      written: row.written,
      skipped: row.skipped,
      failed: row.failed,
      remaining,
      progress: row.total === 0 ? 1 : Math.min(1, handled / row.total),
      ttl: row.ttl_seconds,
      createdAt: row.created_at.toISOString(),
      startedAt: row.started_at?.toISOString() ?? null,
      finishedAt: row.finished_at?.toISOString() ?? null,
      transient: row.transient,
    };
  }

  /** Inserts chunk rows numbered from `first`. */
  private async insertChunks(trx: Knex.Transaction, jobId: string, first: number, chunks: string[][]): Promise<void> {
    const rows = chunks.map((users, i) => ({ job_id: jobId, chunk: first + i, users }));
    for (let i = 0; i < rows.length; i += CHUNK_ROWS_PER_INSERT) {
      await trx('fanout_job_users').insert(rows.slice(i, i + CHUNK_ROWS_PER_INSERT));
    }
  }

  /** Creates a job with its first users. A queued job without users is completed at once. */
  async create(job: NewJob): Promise<JobView> {
    const chunks = chunksOf(job.users);
    const empty = job.state === 'queued' && job.users.length === 0;
    const row = await this.db.transaction(async (trx) => {
      const [inserted] = await trx<JobRow>('fanout_jobs')
        .insert({
          id: job.id,
          app_id: job.appId,
          state: empty ? 'completed' : job.state,
          payload: job.payload,
          binary: job.binary,
          ttl_seconds: job.ttlSeconds,
          transient: job.transient,
          total: job.total,
          skipped: job.skipped,
          stored: job.users.length,
          chunks: chunks.length,
          // The statement's time, not the transaction's (now()): jobs run in the order they became queued.
          ...(job.state === 'queued' ? { queued_at: trx.raw('clock_timestamp()') } : {}),
          ...(empty ? { started_at: trx.fn.now(), finished_at: trx.fn.now() } : {}),
        })
        .returning('*');
      await this.insertChunks(trx, job.id, 0, chunks);
      return must(inserted);
    });
    return JobsRepository.view(row);
  }

  /** The job's row, locked for the transaction; PushError `job_not_found` when the app has no such job. */
  private async lock(trx: Knex.Transaction, appId: string, jobId: string): Promise<JobRow> {
    const row = await trx<JobRow>('fanout_jobs').where({ id: jobId, app_id: appId }).forUpdate().first();
    if (row === undefined) throw new PushError('job_not_found');
    return row;
  }

  /**
   * Adds users (already checked, without repeats among themselves) to an open job. `given` counts
   * every entry of the request, `skipped` the invalid and repeated ones. PushError `job_not_open`
   * once the job was started or cancelled; `job_too_large` when the job would hold more than
   * `maxUsers` given users (nothing is added then).
   */
  async addUsers(
    appId: string,
    jobId: string,
    add: { users: string[]; given: number; skipped: number },
    maxUsers: number,
  ): Promise<JobView> {
    const row = await this.db.transaction(async (trx) => {
      const job = await this.lock(trx, appId, jobId);
      if (job.state !== 'open') throw new PushError('job_not_open', `the job is ${job.state}: it takes no more users`);
      if (job.total + add.given > maxUsers) {
        throw new PushError(
          'job_too_large',
          `the job holds ${job.total} users; ${add.given} more would pass the limit of ${maxUsers}`,
        );
      }
      const chunks = chunksOf(add.users);
      await this.insertChunks(trx, jobId, job.chunks, chunks);
      const [updated] = await trx<JobRow>('fanout_jobs')
        .where({ id: jobId })
        .update({
          total: job.total + add.given,
          skipped: job.skipped + add.skipped,
          stored: job.stored + add.users.length,
          chunks: job.chunks + chunks.length,
          // Users of two requests may repeat each other: the start removes those repeats.
          dedupe: job.dedupe || (job.stored > 0 && add.users.length > 0),
          updated_at: trx.fn.now(),
        })
        .returning('*');
      return must(updated);
    });
    return JobsRepository.view(row);
  }

  /**
   * Starts an open job: removes users repeated across chunks (the first occurrence stays; the
   * others count as skipped), then queues it for a runner (or completes it when no user is left).
   * Starting a job that is already started, finished or cancelled changes nothing (a retried
   * start is safe).
   */
  async start(appId: string, jobId: string): Promise<JobView> {
    const row = await this.db.transaction(async (trx) => {
      const job = await this.lock(trx, appId, jobId);
      if (job.state !== 'open') return job;
      let { stored, skipped, chunks } = job;
      if (job.dedupe) {
        // One pass over the job's users: byte order ("C") is exact and cheaper than the locale's.
        const kept = await trx.raw<{ rows: Array<{ chunk: number; users: string[] }> }>(
          `WITH flat AS (
             SELECT c.chunk, t.ord, t.u
               FROM fanout_job_users c, unnest(c.users) WITH ORDINALITY AS t(u, ord)
              WHERE c.job_id = ?
           ), firsts AS (
             SELECT DISTINCT ON (u COLLATE "C") chunk, ord, u FROM flat ORDER BY u COLLATE "C", chunk, ord
           )
           SELECT chunk, array_agg(u ORDER BY ord) AS users FROM firsts GROUP BY chunk ORDER BY chunk`,
          [jobId],
        );
        const users = kept.rows.flatMap((r) => r.users);
        if (users.length < stored) {
          await trx('fanout_job_users').where({ job_id: jobId }).delete();
          const rechunked = chunksOf(users);
          await this.insertChunks(trx, jobId, 0, rechunked);
          skipped += stored - users.length;
          stored = users.length;
          chunks = rechunked.length;
        }
      }
      const empty = stored === 0;
      const [updated] = await trx<JobRow>('fanout_jobs')
        .where({ id: jobId })
        .update({
          state: empty ? 'completed' : 'queued',
          stored,
          skipped,
          chunks,
          dedupe: false,
          updated_at: trx.fn.now(),
          queued_at: trx.raw('clock_timestamp()'),
          ...(empty ? { started_at: trx.fn.now(), finished_at: trx.fn.now() } : {}),
        })
        .returning('*');
      return must(updated);
    });
    return JobsRepository.view(row);
  }

  /** The job; PushError `job_not_found` when the app has no such job. */
  async get(appId: string, jobId: string): Promise<JobView> {
    const row = await this.db<JobRow>('fanout_jobs').where({ id: jobId, app_id: appId }).first();
    if (row === undefined) throw new PushError('job_not_found');
    return JobsRepository.view(row);
  }

  /** The app's newest jobs first, at most `limit`. */
  async list(appId: string, limit: number): Promise<JobView[]> {
    const rows = await this.db<JobRow>('fanout_jobs')
      .where({ app_id: appId })
      .orderBy([
        { column: 'created_at', order: 'desc' },
        { column: 'id', order: 'desc' },
      ])
      .limit(limit);
    return rows.map((r) => JobsRepository.view(r));
  }

  /**
   * Cancels a job that is open, queued or running, and drops its users (its runner, if any,
   * stops at its next checkpoint and records what it wrote until then). A finished job stays as
   * it is. PushError `job_not_found`.
   */
  async cancel(appId: string, jobId: string): Promise<JobView> {
    const row = await this.db.transaction(async (trx) => {
      const job = await this.lock(trx, appId, jobId);
      if (!ACTIVE.includes(job.state)) return job;
      await trx('fanout_job_users').where({ job_id: jobId }).delete();
      const [updated] = await trx<JobRow>('fanout_jobs')
        .where({ id: jobId })
        .update({ state: 'cancelled', finished_at: trx.fn.now(), updated_at: trx.fn.now() })
        .returning('*');
      return must(updated);
    });
    return JobsRepository.view(row);
  }

  // --- the runner's side ------------------------------------------------------------------------

  /**
   * Claims the job queued first that is queued, or running under a lease that lapsed (its center died
   * or let go), for `owner` until `leaseSeconds` from now (the database's clock). An app's jobs
   * run one at a time: a job whose app has another job under a live lease waits, which makes the
   * app's `fanoutRate` its total over all centers. Claims are serialized by an advisory lock so
   * that two centers never claim two jobs of one app at once. Undefined when nothing is due.
   */
  async claim(owner: string, leaseSeconds: number): Promise<ClaimedJob | undefined> {
    return this.db.transaction(async (trx) => {
      await trx.raw("SELECT pg_advisory_xact_lock(hashtext('push.fanout_jobs.claim'))");
      const candidate = await trx('fanout_jobs as j')
        .whereIn('j.state', ['queued', 'running'])
        .whereRaw('(j.lease_until IS NULL OR j.lease_until < now())')
        .whereRaw(
          `NOT EXISTS (SELECT 1 FROM fanout_jobs r
                        WHERE r.app_id = j.app_id AND r.id <> j.id AND r.state = 'running' AND r.lease_until >= now())`,
        )
        .orderBy([{ column: 'j.queued_at' }, { column: 'j.id' }])
        .first<{ id: string; started_at: Date | null } | undefined>('j.id', 'j.started_at');
      if (candidate === undefined) return undefined;
      // The state is checked again on the locked row: a cancel that committed meanwhile wins.
      const [row] = await trx<JobRow>('fanout_jobs')
        .where({ id: candidate.id })
        .whereIn('state', ['queued', 'running'])
        .update({
          state: 'running',
          locked_by: owner,
          lease_until: trx.raw(`now() + make_interval(secs => ?)`, [leaseSeconds]),
          started_at: trx.raw('coalesce(started_at, now())'),
          updated_at: trx.fn.now(),
        })
        .returning('*');
      if (row === undefined) return undefined;
      const r = row;
      return {
        id: r.id,
        appId: r.app_id,
        payload: r.payload,
        binary: r.binary,
        ttlSeconds: r.ttl_seconds,
        transient: r.transient,
        stored: r.stored,
        done: r.done,
        written: r.written,
        failed: r.failed,
        // A claim before this one started it: the job ran somewhere already.
        resumed: candidate.started_at !== null,
      };
    });
  }

  /** Sizes of the job's chunks in order (to find where the checkpoint falls). */
  async chunkSizes(jobId: string): Promise<Array<{ chunk: number; size: number }>> {
    const rows = await this.db('fanout_job_users')
      .where({ job_id: jobId })
      .orderBy('chunk')
      .select<Array<{ chunk: number; size: number }>>('chunk', this.db.raw('cardinality(users) AS size'));
    return rows;
  }

  /** One chunk's users; undefined when it is gone (the job was cancelled or deleted). */
  async chunk(jobId: string, chunk: number): Promise<string[] | undefined> {
    const row = await this.db('fanout_job_users')
      .where({ job_id: jobId, chunk })
      .first<{ users: string[] } | undefined>('users');
    return row?.users;
  }

  /**
   * Records progress and renews the lease while `owner` holds the job. Answers the job's state
   * (`cancelled` when it was cancelled meanwhile), or undefined when the owner no longer holds it
   * (another center took it over, or the job or its app was deleted): the runner must stop then.
   */
  async checkpoint(jobId: string, owner: string, leaseSeconds: number, p: JobProgress): Promise<JobState | undefined> {
    const rows = await this.db<JobRow>('fanout_jobs')
      .where({ id: jobId, locked_by: owner })
      .update({
        done: p.done,
        written: p.written,
        failed: p.failed,
        lease_until: this.db.raw(`now() + make_interval(secs => ?)`, [leaseSeconds]),
        updated_at: this.db.fn.now(),
      })
      .returning('state');
    return rows[0]?.state;
  }

  /**
   * The runner handled every user: records the final counts, marks the job completed (unless it
   * was cancelled meanwhile, which stays) and drops its users. False when `owner` no longer held it.
   */
  async finish(jobId: string, owner: string, p: JobProgress): Promise<boolean> {
    return this.db.transaction(async (trx) => {
      const job = await trx<JobRow>('fanout_jobs').where({ id: jobId, locked_by: owner }).forUpdate().first();
      if (job === undefined) return false;
      await trx('fanout_jobs')
        .where({ id: jobId })
        .update({
          done: p.done,
          written: p.written,
          failed: p.failed,
          locked_by: null,
          lease_until: null,
          updated_at: trx.fn.now(),
          ...(job.state === 'running' ? { state: 'completed', finished_at: trx.fn.now() } : {}),
        });
      await trx('fanout_job_users').where({ job_id: jobId }).delete();
      return true;
    });
  }

  /**
   * Lets go of a job before its end (the center stops, or the job was cancelled): records the
   * counts and clears the lease so that another center can take a running job over at once.
   */
  async release(jobId: string, owner: string, p: JobProgress): Promise<void> {
    await this.db('fanout_jobs').where({ id: jobId, locked_by: owner }).update({
      done: p.done,
      written: p.written,
      failed: p.failed,
      locked_by: null,
      lease_until: null,
      updated_at: this.db.fn.now(),
    });
  }
}
