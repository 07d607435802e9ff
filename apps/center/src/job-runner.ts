import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { databaseLogFields, type ClaimedJob } from '@push/db';
import { JobRun, type JobRunDeps } from './job-run.js';

/** How often a center looks for jobs to run (queued, or left by a center whose lease lapsed), ms. */
const POLL_MS = 1000;
/** How often a running job saves its checkpoint and renews its lease, ms: cancel takes effect within it. */
const CHECKPOINT_MS = 250;
/** Writes one job keeps in flight. */
const MAX_IN_FLIGHT = 1000;

export interface JobRunnerOptions {
  /** Jobs run at once by this center. */
  runners: number;
  leaseSeconds: number;
}

/**
 * The center's share of the fan-out jobs: claims runnable jobs in Postgres (queued ones, and
 * running ones whose center's lease lapsed), up to `runners` at once, and runs each (JobRun).
 * It looks every second, and at once when this center queued a job. `stop()` lets go of the jobs
 * it runs (progress saved, lease cleared) so another center resumes them without waiting.
 */
export class JobRunner {
  /** This center's name in `locked_by`: host, pid and a random part (a restarted center is another owner). */
  readonly owner = `${os.hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  private readonly active = new Map<string, { run: JobRun; done: Promise<unknown> }>();
  private timer: NodeJS.Timeout | undefined;
  private claiming: Promise<void> | undefined;
  private again = false;
  /** Claims fail (Postgres is down): logged when it starts and when it ends, not every poll. */
  private claimFailing = false;
  private stopping = false;
  private stopPromise: Promise<void> | undefined;

  constructor(
    private readonly deps: JobRunDeps,
    private readonly opts: JobRunnerOptions,
  ) {}

  start(): void {
    if (this.opts.runners <= 0) return;
    this.timer = setInterval(() => this.wake(), POLL_MS);
    this.wake();
  }

  /** Looks for jobs now (a job was queued here), not at the next poll. */
  wake(): void {
    if (this.stopping || this.opts.runners <= 0) return;
    if (this.claiming !== undefined) {
      this.again = true;
      return;
    }
    this.claiming = this.claimAll().finally(() => {
      this.claiming = undefined;
      if (this.again) {
        this.again = false;
        this.wake();
      }
    });
  }

  /** A job was cancelled through this center: its run here (if any) stops at once. */
  cancelled(jobId: string): void {
    this.active.get(jobId)?.run.halt('cancelled');
  }

  private async claimAll(): Promise<void> {
    try {
      while (!this.stopping && this.active.size < this.opts.runners) {
        const job = await this.deps.repo.claim(this.owner, this.opts.leaseSeconds);
        if (this.claimFailing) this.deps.log.info('fan-out job claims work again');
        this.claimFailing = false;
        if (job === undefined) return;
        this.launch(job);
      }
    } catch (err) {
      if (!this.claimFailing)
        this.deps.log.warn(databaseLogFields(err), 'fan-out job claim failed; trying again every poll');
      this.claimFailing = true;
    }
  }

  private launch(job: ClaimedJob): void {
    const { metrics, log } = this.deps;
    metrics.jobsClaimed.inc({ resumed: job.resumed ? '1' : '0' });
    metrics.jobsRunning.inc();
    const run = new JobRun(job, this.deps, {
      owner: this.owner,
      leaseSeconds: this.opts.leaseSeconds,
      checkpointMs: CHECKPOINT_MS,
      maxInFlight: MAX_IN_FLIGHT,
    });
    const done = run
      .run()
      .catch((err: unknown) => log.error({ err, job: job.id }, 'fan-out job run ended with an error'))
      .finally(() => {
        metrics.jobsRunning.dec();
        this.active.delete(job.id);
        // A slot is free: the next job need not wait for the poll.
        this.wake();
      });
    this.active.set(job.id, { run, done });
  }

  /** Stops claiming, lets go of every job it runs (after their in-flight writes). Idempotent. */
  stop(): Promise<void> {
    this.stopPromise ??= (async () => {
      this.stopping = true;
      clearInterval(this.timer);
      await this.claiming;
      const all = [...this.active.values()];
      for (const a of all) a.run.halt('stopped');
      await Promise.all(all.map((a) => a.done));
    })();
    return this.stopPromise;
  }
}
