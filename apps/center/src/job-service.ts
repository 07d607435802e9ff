import { randomBytes } from 'node:crypto';
import type { JobsRepository } from '@push/db';
import {
  JobCreateSchema,
  JobUsersSchema,
  PushError,
  compile,
  idProblem,
  isObject,
  readPayload,
  type AppRecord,
  type JobView,
} from '@push/protocol';

const createBody = compile(JobCreateSchema);
const usersBody = compile(JobUsersSchema);

/** Jobs a list answers at most (newest first). */
export const JOB_LIST_LIMIT = 100;

/** What job ids look like (`job_` + 16 base64url characters); anything else names no job. */
const JOB_ID = /^job_[A-Za-z0-9_-]{16}$/;

/** The valid user ids of a request, without repeats (the first stays), and how many were skipped. */
export function acceptUsers(given: readonly unknown[]): { users: string[]; skipped: number } {
  const seen = new Set<string>();
  for (const u of given) if (idProblem('user', u) === undefined) seen.add(u as string);
  return { users: [...seen], skipped: given.length - seen.size };
}

/** Called by the service so a runner in this process reacts at once (and not at its next poll). */
export interface JobHooks {
  /** A job became runnable. */
  queued(jobId: string): void;
  /** A job was cancelled. */
  cancelled(jobId: string): void;
}

/**
 * The fan-out job operations, shared by the HTTP API, `push.api.jobs.*` over NATS and the CLI:
 * checks the message and the users, stores the job in Postgres (see JobsRepository) and lets the
 * runners know. Writing the inboxes is the JobRunner's.
 */
export class JobService {
  constructor(
    private readonly repo: JobsRepository,
    private readonly limits: { maxUsers: number; maxTtlSeconds: number },
    private readonly hooks: JobHooks = { queued: () => undefined, cancelled: () => undefined },
  ) {}

  /** PushError `job_not_found` for a string that cannot be a job id (so a 10 KB id costs no query). */
  private jobId(raw: string): string {
    if (!JOB_ID.test(raw)) throw new PushError('job_not_found');
    return raw;
  }

  /** Counted before the users are read, so an oversized job is refused without reading it. */
  private checkCount(users: unknown): void {
    if (Array.isArray(users) && users.length > this.limits.maxUsers) {
      throw new PushError('job_too_large', `a job holds at most ${this.limits.maxUsers} users`);
    }
  }

  /**
   * `{ data|b64, ttl?, users?, open?, transient? }` (docs/api.md). Without `open` the job is queued at once
   * (and needs `users`); with `open: true` it waits for `addUsers` and `start`.
   */
  async create(app: AppRecord, body: unknown): Promise<JobView> {
    if (!isObject(body)) throw new PushError('bad_request', 'the body must be a JSON object');
    this.checkCount(body['users']);
    const b = createBody.parse(body);
    const open = b.open === true;
    if (!open && b.users === undefined) {
      throw new PushError('bad_request', 'users is required (or open: true to add them in chunks)');
    }
    const payload = readPayload(b);
    if (payload.bytes.length > app.settings.maxMessageBytes) {
      throw new PushError(
        'payload_too_large',
        `the message is ${payload.bytes.length} bytes; the app allows ${app.settings.maxMessageBytes}`,
      );
    }
    const transient = b.transient === true;
    if (transient && b.ttl !== undefined) {
      throw new PushError('transient_conflict', 'a transient job is never stored: it takes no ttl');
    }
    if (b.ttl !== undefined && b.ttl > this.limits.maxTtlSeconds) {
      throw new PushError('invalid_ttl', `ttl may be at most ${this.limits.maxTtlSeconds} seconds`);
    }
    const given = b.users ?? [];
    const { users, skipped } = acceptUsers(given);
    const job = await this.repo.create({
      id: `job_${randomBytes(12).toString('base64url')}`,
      appId: app.id,
      payload: Buffer.from(payload.bytes),
      binary: payload.binary,
      ttlSeconds: transient ? 0 : (b.ttl ?? app.settings.defaultTtlSeconds),
      transient,
      state: open ? 'open' : 'queued',
      users,
      total: given.length,
      skipped,
    });
    if (job.state === 'queued') this.hooks.queued(job.id);
    return job;
  }

  /** Adds a chunk of users to an open job: `{ users }`. Answers what was added and the job. */
  async addUsers(
    app: AppRecord,
    rawJobId: string,
    body: unknown,
  ): Promise<{ added: number; skipped: number; job: JobView }> {
    const jobId = this.jobId(rawJobId);
    if (!isObject(body)) throw new PushError('bad_request', 'the body must be a JSON object');
    this.checkCount(body['users']);
    const given = usersBody.parse(body).users;
    const { users, skipped } = acceptUsers(given);
    const job = await this.repo.addUsers(app.id, jobId, { users, given: given.length, skipped }, this.limits.maxUsers);
    return { added: users.length, skipped, job };
  }

  /** Starts an open job (a no-op for one already started). */
  async start(app: AppRecord, rawJobId: string): Promise<JobView> {
    const job = await this.repo.start(app.id, this.jobId(rawJobId));
    if (job.state === 'queued') this.hooks.queued(job.id);
    return job;
  }

  get(app: AppRecord, rawJobId: string): Promise<JobView> {
    return this.repo.get(app.id, this.jobId(rawJobId));
  }

  list(app: AppRecord): Promise<JobView[]> {
    return this.repo.list(app.id, JOB_LIST_LIMIT);
  }

  /** Cancels a job (a no-op for a finished one); its runner stops within a second. */
  async cancel(app: AppRecord, rawJobId: string): Promise<JobView> {
    const job = await this.repo.cancel(app.id, this.jobId(rawJobId));
    this.hooks.cancelled(job.id);
    return job;
  }
}
