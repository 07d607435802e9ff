import type { AppDirectory } from '@push/apps';
import { databaseLogFields, type ClaimedJob, type JobProgress, type JobsRepository } from '@push/db';
import type { InboxStore } from '@push/nats';
import {
  DEFAULT_APP_SETTINGS,
  backoffDelay,
  type BackoffPolicy,
  type MessagePayload,
  type Subjects,
} from '@push/protocol';
import type { Logger } from 'pino';
import type { CenterMetrics } from './metrics.js';
import type { TransientPush } from './transient-push.js';

/** How one user's write ended: stored, already stored (a rewrite after a resume), given up, or not finished. */
type Outcome = 'written' | 'duplicate' | 'failed' | 'aborted';

/** Why a run ended. */
export type RunEnd = 'completed' | 'cancelled' | 'stopped' | 'lost' | 'app_deleted';

/** Tries per user before it counts as failed. With WRITE_BACKOFF that is about 15 s of retrying. */
const WRITE_ATTEMPTS = 8;
const WRITE_BACKOFF: BackoffPolicy = { baseMs: 200, capMs: 5000, minMs: 100 };

export interface JobRunOptions {
  owner: string;
  leaseSeconds: number;
  /** How often progress is saved and the lease renewed, ms. Bounds what a crash makes rewrite. */
  checkpointMs: number;
  /** Writes in flight at once. */
  maxInFlight: number;
}

export interface JobRunDeps {
  repo: JobsRepository;
  store: InboxStore;
  subjects: Subjects;
  apps: AppDirectory;
  metrics: CenterMetrics;
  log: Logger;
  /** Sends a transient job's copies (published live, never stored). */
  transient: Pick<TransientPush, 'publish'>;
}

/**
 * One claimed fan-out job, run to its end or until it must stop: writes the message into each
 * user's inbox from the checkpoint on, in order, pipelined (up to `maxInFlight` at once) and paced
 * to the app's `fanoutRate`; saves the checkpoint (the users before the first unfinished one, with
 * their counts) and renews the lease every `checkpointMs`.
 *
 * Each copy carries `Nats-Msg-Id` `job.<app>.<job>.<user>`: a runner that resumes after a crash
 * rewrites the users after the last checkpoint and the stream keeps one copy of each, as long as
 * the first write is younger than the stream's duplicate window.
 *
 * It stops writing when the job is cancelled (seen at the next checkpoint, or at once through
 * `halt` on the center that took the cancel), when the lease is lost (another center took over,
 * or the lease could not be renewed in time: two runners write the same ids then, which the
 * stream dedupes), or when the center stops (it lets go of the job for another center).
 */
export class JobRun {
  private halted: RunEnd | undefined;
  /** Holds while the job's app is the one it was run for (`AppDirectory.holds`), set at the start. */
  private appLive: (() => boolean) | undefined;
  private inFlight = 0;
  /** Writes waiting to be tried again: while any does, no new user is started (the store is failing). */
  private retrying = 0;
  /** When the store last took a copy (performance.now()). */
  private lastStored = 0;
  /** Wakes the write loop (a write finished, the job was halted) before its timer. */
  private wakeLoop: (() => void) | undefined;
  /** Finished users past the checkpoint, by index: the checkpoint moves over them in order. */
  private readonly finished = new Map<number, Outcome>();
  private readonly progress: JobProgress;
  private checkpointing = false;
  /** Checkpoints fail (Postgres is down): logged once, not every `checkpointMs`. */
  private checkpointFailing = false;
  private leaseValidUntil: number;
  private rate: number;
  private readonly payload: MessagePayload;
  private readonly ttlMs: number;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private settled: (() => void) | undefined;

  constructor(
    readonly job: ClaimedJob,
    private readonly deps: JobRunDeps,
    private readonly opts: JobRunOptions,
  ) {
    this.progress = { done: job.done, written: job.written, failed: job.failed };
    this.leaseValidUntil = Date.now() + opts.leaseSeconds * 1000;
    this.rate = this.appRate() ?? DEFAULT_APP_SETTINGS.fanoutRate;
    this.payload = { bytes: job.payload, binary: job.binary };
    this.ttlMs = Math.round(job.ttlSeconds * 1000);
    this.log = deps.log.child({ job: job.id, app: job.appId });
  }

  /** The app's fan-out rate now; undefined when the app is gone. */
  private appRate(): number | undefined {
    return this.deps.apps.get(this.job.appId)?.settings.fanoutRate;
  }

  /** Stops writing new users (in-flight writes finish); `run` then ends with `reason`. */
  halt(reason: RunEnd): void {
    this.halted ??= reason;
    this.wake();
  }

  private wake(): void {
    const w = this.wakeLoop;
    this.wakeLoop = undefined;
    w?.();
  }

  /** Sleeps up to `ms`, or until woken. */
  private nap(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wakeLoop = undefined;
        resolve();
      }, ms);
      this.wakeLoop = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  /** Runs the job; resolves with why it ended, after recording its progress (unless the lease was lost). */
  async run(): Promise<RunEnd> {
    this.log.info(
      { done: this.job.done, stored: this.job.stored, resumed: this.job.resumed, rate: this.rate },
      'fan-out job running',
    );
    this.timer = setInterval(() => void this.checkpoint(), this.opts.checkpointMs);
    // The app deleted (its KV entry goes first, before its streams and rows): stop at once. Its
    // id may be taken by a new app a moment later, and a write retried after that would land in
    // the new app's inboxes.
    const appId = this.job.appId;
    this.appLive = this.deps.apps.holds(appId);
    const unwatch = this.deps.apps.onChange((id, app) => {
      if (id === appId && app === undefined) this.halt('app_deleted');
    });
    let end: RunEnd;
    try {
      end = await this.writeAll();
    } catch (err) {
      this.log.error(databaseLogFields(err), 'fan-out job run failed; letting go of it for a retry');
      this.halt('stopped');
      end = 'stopped';
    }
    await this.drain();
    unwatch();
    clearInterval(this.timer);
    // A checkpoint in flight finishes before the last word, so it cannot overwrite it.
    while (this.checkpointing) await new Promise((r) => setTimeout(r, 5));
    await this.close(end);
    return end;
  }

  /** Resolves when no write is in flight. */
  private async drain(): Promise<void> {
    if (this.inFlight === 0) return;
    await new Promise<void>((resolve) => {
      this.settled = resolve;
    });
  }

  private async close(end: RunEnd): Promise<void> {
    if (end === 'lost') {
      this.log.warn({ done: this.progress.done }, 'fan-out job lease lost: stopped writing');
      return;
    }
    if (end === 'app_deleted') {
      this.log.info({ done: this.progress.done }, "fan-out job's app deleted: stopped writing");
      return;
    }
    try {
      if (end === 'completed') {
        const held = await this.deps.repo.finish(this.job.id, this.opts.owner, this.progress);
        this.log.info({ ...this.progress, held }, 'fan-out job completed');
      } else {
        await this.deps.repo.release(this.job.id, this.opts.owner, this.progress);
        this.log.info({ ...this.progress, end }, 'fan-out job let go');
      }
    } catch (err) {
      // The lease lapses by itself: another center resumes from the last checkpoint saved.
      this.log.warn({ ...databaseLogFields(err), end }, 'fan-out job end not recorded');
    }
  }

  /** The write loop: users from the checkpoint on, paced and pipelined. */
  private async writeAll(): Promise<RunEnd> {
    const sizes = await this.deps.repo.chunkSizes(this.job.id);
    // Where the checkpoint falls: chunk `ci`, position `offset` in it.
    let ci = 0;
    let offset = this.job.done;
    while (ci < sizes.length && offset >= (sizes[ci]?.size ?? 0)) offset -= sizes[ci++]?.size ?? 0;
    let index = this.job.done;
    let users: string[] | undefined;
    let prefetch: Promise<string[] | undefined> | undefined;
    const load = (i: number): Promise<string[] | undefined> => this.deps.repo.chunk(this.job.id, sizes[i]?.chunk ?? -1);
    // Pacing: the n-th write since `t0` is due at t0 + n / rate.
    let t0 = performance.now();
    let sinceT0 = 0;
    let pacedRate = this.rate;
    for (;;) {
      if (this.halted !== undefined) return this.halted;
      if (this.inFlight >= this.opts.maxInFlight || this.retrying > 0) {
        await this.nap(100);
        continue;
      }
      if (this.rate !== pacedRate) {
        pacedRate = this.rate;
        t0 = performance.now();
        sinceT0 = 0;
      }
      if (pacedRate > 0) {
        const now = performance.now();
        const due = t0 + (sinceT0 * 1000) / pacedRate;
        if (now < due) {
          await this.nap(Math.max(1, due - now));
          continue;
        }
        // After a pause (store failing, window full) catch up at most a second's worth.
        if (now - due > 1000) {
          t0 = now;
          sinceT0 = 0;
        }
      }
      if (users === undefined || offset >= users.length) {
        // The next chunk (the checkpoint's own at first, starting at its offset).
        if (users !== undefined) {
          ci++;
          offset = 0;
        }
        if (ci >= sizes.length) break;
        users = await (prefetch ?? load(ci));
        prefetch = ci + 1 < sizes.length ? load(ci + 1) : undefined;
        // A failed prefetch is awaited (and throws) in its turn; until then it is no unhandled rejection.
        if (prefetch !== undefined) void prefetch.catch(() => undefined);
        if (users === undefined) {
          // Dropped: the job was cancelled (or deleted); the checkpoint tells which.
          await this.checkpoint();
          return this.halted ?? 'cancelled';
        }
        continue;
      }
      const user = users[offset++] as string;
      this.issue(index++, user);
      sinceT0++;
    }
    await this.drain();
    return this.halted ?? (this.progress.done >= this.job.stored ? 'completed' : 'stopped');
  }

  /** Starts one user's write; its outcome moves the checkpoint when it is the oldest unfinished. */
  private issue(index: number, user: string): void {
    this.inFlight++;
    void this.write(user).then((outcome) => {
      this.inFlight--;
      this.finished.set(index, outcome);
      this.advance();
      if (this.inFlight === 0) {
        const s = this.settled;
        this.settled = undefined;
        s?.();
      }
      this.wake();
    });
  }

  /** Moves the checkpoint over the finished users in order; stops at the first unfinished or aborted. */
  private advance(): void {
    for (;;) {
      const o = this.finished.get(this.progress.done);
      if (o === undefined || o === 'aborted') return;
      this.finished.delete(this.progress.done);
      this.progress.done++;
      if (o === 'failed') this.progress.failed++;
      else this.progress.written++;
    }
  }

  /**
   * Writes one user's copy, retrying store failures with backoff; never rejects. A copy counts as
   * failed after WRITE_ATTEMPTS tries only when the store took other copies meanwhile (this one is
   * the problem); while it takes none (the store is down) the write keeps trying and, since no
   * new user starts while one retries, the job pauses instead of failing every user.
   */
  private async write(user: string): Promise<Outcome> {
    const { store, subjects, metrics } = this.deps;
    if (this.job.transient) return this.sendTransient(user);
    const msgId = subjects.jobMessageId(this.job.appId, this.job.id, user);
    const started = performance.now();
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await store.publish(this.job.appId, user, this.payload, {
          ttlMs: this.ttlMs,
          msgId,
          live: this.appLive,
        });
        if (this.halted === 'app_deleted') {
          // A write sent before this center heard of the delete (its check passed) that reached
          // the stream of a new app given the deleted one's id.
          if (!r.duplicate) await store.remove(this.job.appId, r.seq).catch(() => false);
          return 'aborted';
        }
        this.lastStored = performance.now();
        if (r.duplicate) metrics.jobRewrites.inc();
        else metrics.jobWrites.inc();
        return r.duplicate ? 'duplicate' : 'written';
      } catch (err) {
        if (this.halted !== undefined) return 'aborted';
        if (attempt + 1 >= WRITE_ATTEMPTS && this.lastStored > started) {
          metrics.jobWriteFailures.inc();
          this.log.warn({ err, user }, 'fan-out job write failed after every retry; counted as failed');
          return 'failed';
        }
        if (attempt + 1 === WRITE_ATTEMPTS) this.log.warn({ err }, 'fan-out job paused: the store takes no writes');
        metrics.jobWriteRetries.inc();
        this.retrying++;
        await new Promise((r) => setTimeout(r, backoffDelay(attempt, WRITE_BACKOFF)));
        this.retrying--;
        if (this.halted !== undefined) return 'aborted';
      }
    }
  }

  /**
   * Sends a transient job's copy to whatever connection of the user is online (core NATS, no
   * presence read per user: a publish nobody listens to costs the server next to nothing). Only
   * a closed NATS connection fails it; the job then pauses as for a store failure.
   */
  private async sendTransient(user: string): Promise<Outcome> {
    for (let attempt = 0; ; attempt++) {
      try {
        this.deps.transient.publish(this.job.appId, user, this.payload, Date.now());
        this.deps.metrics.transientMessages.inc();
        return 'written';
      } catch (err) {
        if (this.halted !== undefined) return 'aborted';
        if (attempt === 0) this.log.warn({ err }, 'transient fan-out job paused: NATS takes no publishes');
        this.retrying++;
        await new Promise((r) => setTimeout(r, backoffDelay(attempt, WRITE_BACKOFF)));
        this.retrying--;
        if (this.halted !== undefined) return 'aborted';
      }
    }
  }

  /**
   * Saves progress and renews the lease; reads back whether the job was cancelled, picks up a
   * changed `fanoutRate`, and halts when the lease is gone or could not be renewed in time.
   */
  private async checkpoint(): Promise<void> {
    if (this.checkpointing) return;
    this.checkpointing = true;
    const sent = Date.now();
    try {
      const state = await this.deps.repo.checkpoint(this.job.id, this.opts.owner, this.opts.leaseSeconds, {
        ...this.progress,
      });
      if (state === undefined) this.halt('lost');
      else if (state === 'cancelled') this.halt('cancelled');
      else this.leaseValidUntil = sent + this.opts.leaseSeconds * 1000;
      const rate = this.appRate();
      if (rate !== undefined && rate !== this.rate) {
        this.log.info({ from: this.rate, to: rate }, 'fan-out rate changed');
        this.rate = rate;
      }
      if (this.checkpointFailing) this.log.info({ done: this.progress.done }, 'fan-out job checkpoint saved again');
      this.checkpointFailing = false;
    } catch (err) {
      if (!this.checkpointFailing)
        this.log.warn(
          { ...databaseLogFields(err), leaseValidForMs: this.leaseValidUntil - Date.now() },
          'fan-out job checkpoint failed; writing on until the lease runs out, then another try resumes from the last checkpoint',
        );
      this.checkpointFailing = true;
    } finally {
      this.checkpointing = false;
    }
    // Past the lease another center may be running the job: stop before it could.
    if (Date.now() > this.leaseValidUntil - this.opts.checkpointMs) this.halt('lost');
  }
}
