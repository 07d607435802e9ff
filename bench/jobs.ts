/**
 * A fan-out job's inbox writes per second: one center (a child process, as in production) runs a
 * job of USERS users with the app's `fanoutRate` at 0 (no pacing), writing one stored copy per
 * user through the pipelined InboxStore. Each round uses a fresh app (its own, empty stream).
 *
 * Figures: writes/s = users written / (job finished - job started), both stamped by Postgres as
 * the center claims and finishes the job; the time the create request took (the whole user list in
 * one body); and the cores the center and nats-server used while the job ran.
 *
 *   npx tsx bench/jobs.ts            # BENCH_JOBS_USERS (100,000), BENCH_JOBS_ROUNDS (3)
 *   npx tsx bench/jobs.ts --smoke
 */
import { Subjects, type JobView } from '@push/protocol';
import { runIfMain } from './lib/main.js';
import { CpuMeter, natsServerPid, sleep } from './lib/procs.js';
import { note, type BenchResult } from './lib/results.js';
import { env, quietFirst, showSpread, spread, type RunOptions } from './lib/scenario.js';
import { BenchStack, NATS_URL, streamMessages } from './lib/stack.js';
import { round } from './lib/stats.js';

interface Round {
  users: number;
  createMs: number;
  runSeconds: number;
  writesPerSecond: number;
  cores: Record<string, number>;
}

export async function runJobs(opts: RunOptions = { smoke: false }): Promise<BenchResult> {
  const USERS = opts.smoke ? 2000 : env('BENCH_JOBS_USERS', 100_000);
  const ROUNDS = opts.smoke ? 1 : env('BENCH_JOBS_ROUNDS', 3);
  // A million-user job fits in one request only with a body limit to match (about 13 bytes a user here).
  const stack = new BenchStack({ PUSH_CENTER_MAX_BODY: String(Math.max(4 * 1024 * 1024, USERS * 16)) });
  const rounds: Round[] = [];
  try {
    await stack.startCenter();
    const centerPid = stack.center?.proc.pid;
    const meter = new CpuMeter({ center: centerPid, nats: natsServerPid(Number(new URL(NATS_URL).port || 4222)) });
    for (let r = 0; r < ROUNDS; r++) {
      await quietFirst(opts.smoke);
      const app = await stack.createApp({ fanoutRate: 0 });
      const users = Array.from({ length: USERS }, (_, i) => `user-${i}`);
      const call = async (method: string, path: string, body?: unknown): Promise<{ job: JobView }> => {
        const res = await fetch(`${stack.centerUrl}/v1/apps/${app.record.id}/jobs${path}`, {
          method,
          headers: { authorization: `Bearer ${app.apiKey}`, 'content-type': 'application/json' },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
        const answer = (await res.json()) as { job: JobView };
        if (res.status >= 300) throw new Error(`${method} jobs${path}: ${res.status} ${JSON.stringify(answer)}`);
        return answer;
      };
      meter.start();
      const t0 = performance.now();
      const { job } = await call('POST', '', { data: { text: 'fan-out bench', round: r }, ttl: 3600, users });
      const createMs = performance.now() - t0;
      let last = job;
      const deadline = Date.now() + 10 * 60_000;
      while (last.state !== 'completed') {
        if (Date.now() > deadline) throw new Error(`job not completed in 10 min: ${JSON.stringify(last)}`);
        await sleep(50);
        last = (await call('GET', `/${job.id}`)).job;
      }
      const cores = meter.stop();
      if (last.written !== USERS) throw new Error(`job wrote ${last.written} of ${USERS}: ${JSON.stringify(last)}`);
      const stored = await streamMessages(new Subjects(stack.prefix).inboxStream(app.record.id));
      if (stored !== USERS) throw new Error(`the stream holds ${stored} messages, wanted ${USERS}`);
      const runSeconds = (Date.parse(last.finishedAt ?? '') - Date.parse(last.startedAt ?? '')) / 1000;
      const fig: Round = {
        users: USERS,
        createMs: round(createMs, 1),
        runSeconds: round(runSeconds, 3),
        writesPerSecond: round(USERS / runSeconds),
        cores,
      };
      rounds.push(fig);
      note(
        `jobs round ${r + 1}/${ROUNDS}: ${fig.writesPerSecond.toLocaleString('en-US')} writes/s (${USERS} users in ${fig.runSeconds} s), create ${fig.createMs} ms, cores ${JSON.stringify(cores)}`,
      );
    }
  } finally {
    await stack.close();
  }
  const rate = spread(rounds.map((x) => x.writesPerSecond));
  const create = spread(
    rounds.map((x) => x.createMs),
    1,
  );
  return {
    name: 'jobs',
    figures: {
      config: { users: USERS, rounds: ROUNDS, fanoutRate: 0, runners: 'one center, default PUSH_JOB_RUNNERS' },
      writesPerSecond: rate,
      createMs: create,
      rounds,
    },
    summary: [
      {
        bench: 'jobs',
        figure: `fan-out job to ${USERS.toLocaleString('en-US')} users: inbox writes/s (fanoutRate 0), median`,
        value: `${showSpread(rate)} writes/s`,
      },
      {
        bench: 'jobs',
        figure: `create request with ${USERS.toLocaleString('en-US')} users in one body`,
        value: `${showSpread(create)} ms`,
      },
    ],
  };
}

runIfMain(import.meta.url, () => runJobs({ smoke: process.argv.includes('--smoke') }));
