/**
 * Several apps on one connection (issue 17): what an edge holds per device when 4 apps share
 * one connection, next to 1 app alone and to 4 separate connections, in one run.
 *
 * Phase 1, one fresh edge: N connections of app A (memory per connection, 1 app), then each
 * attaches apps B, C and D with their own tokens (memory per connection, 4 apps). Phase 2, the
 * edge started afresh: 4N separate connections, N per app (memory per 4 connections). Memory is
 * the edge's RSS and V8 heap after a forced full GC, (at N - at 0) / N. The clients are `ws`
 * sockets in this process (not the edge's memory); every one is ready at its `hello` or
 * `attached`. Goal: 4 apps on one connection cost < 40% of 4 connections.
 *
 *   npx tsx bench/multi-app.ts          # BENCH_MULTI_CONNS (2,000) devices, BENCH_MULTI_ROUNDS (2)
 */
import { createHmac } from 'node:crypto';
import WebSocket from 'ws';
import { runIfMain } from './lib/main.js';
import { sleep } from './lib/procs.js';
import { note, type BenchResult, type SummaryRow } from './lib/results.js';
import { env, quietFirst, spread, showSpread, type RunOptions } from './lib/scenario.js';
import type { BenchApp } from './lib/stack.js';
import { round } from './lib/stats.js';
import { OursTarget, type Memory } from './lib/targets.js';

const APPS = 4;
const GOAL_RATIO = 0.4;

function token(app: BenchApp, user: string): string {
  const secret = app.record.secrets[0];
  if (secret === undefined) throw new Error('the app has no secret');
  const now = Math.floor(Date.now() / 1000);
  const part = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  const signed = `${part({ alg: 'HS256', kid: secret.kid })}.${part({ app: app.record.id, sub: user, dev: 'd', iat: now, exp: now + 3600 })}`;
  return `${signed}.${createHmac('sha256', secret.secret).update(signed).digest('base64url')}`;
}

/** Opens one client; resolves once its `hello` came. */
function openClient(url: string, tok: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url}?token=${tok}`);
    const timer = setTimeout(() => reject(new Error('no hello within 20 s')), 20_000);
    ws.once('message', () => {
      clearTimeout(timer);
      resolve(ws);
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Attaches an app on a client; resolves at its `attached`, rejects on an `error`. */
function attach(ws: WebSocket, app: BenchApp, user: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onMessage = (data: Buffer): void => {
      const f = JSON.parse(data.toString('utf8')) as { t: string; app?: string; code?: string };
      if (f.app !== app.record.id) return;
      ws.off('message', onMessage);
      if (f.t === 'attached') resolve();
      else reject(new Error(`attach refused: ${f.code ?? f.t}`));
    };
    ws.on('message', onMessage);
    ws.send(JSON.stringify({ t: 'attach', token: token(app, user) }));
  });
}

/** Runs `n` tasks with at most `width` in flight. */
async function inBatches(n: number, width: number, task: (i: number) => Promise<void>): Promise<void> {
  for (let i = 0; i < n; i += width) {
    await Promise.all(Array.from({ length: Math.min(width, n - i) }, (_, k) => task(i + k)));
  }
}

interface Round {
  oneApp: { rssKB: number; heapKB: number };
  fourOnOne: { rssKB: number; heapKB: number };
  fourSeparate: { rssKB: number; heapKB: number };
}

const per = (m: Memory, base: Memory, n: number) => ({
  rssKB: round((m.rss - base.rss) / n / 1024, 2),
  heapKB: round((m.heapUsed - base.heapUsed) / n / 1024, 2),
});

async function oneRound(n: number, settleMs: number): Promise<Round> {
  const target = await OursTarget.start(1, { PUSH_EDGE_MAX_APPS_PER_CONNECTION: String(APPS) });
  const clients: WebSocket[] = [];
  try {
    const apps: BenchApp[] = [target.app];
    for (let i = 1; i < APPS; i++) apps.push(await target.stack.createApp({ maxPendingPerUser: 1000 }));
    const url = target.stack.edgeUrl(0);
    // Phase 1: N devices, one app each; then each attaches the other three.
    await sleep(settleMs);
    const base = await target.memory();
    await inBatches(n, 200, async (i) => {
      clients[i] = await openClient(url, token(apps[0] as BenchApp, `u${i}`));
    });
    await sleep(settleMs);
    const one = await target.memory();
    await inBatches(n, 200, async (i) => {
      for (const app of apps.slice(1)) await attach(clients[i] as WebSocket, app, `u${i}`);
    });
    await sleep(settleMs);
    const four = await target.memory();
    if (four.connections !== n) throw new Error(`the edge holds ${four.connections} connections, expected ${n}`);
    for (const c of clients.splice(0)) c.terminate();
    note(`multi-app: ${n} connections, 1 app then ${APPS} apps each`);

    // Phase 2: the edge afresh, N connections per app, separate.
    await target.restart();
    await sleep(settleMs);
    const base2 = await target.memory();
    await inBatches(n * APPS, 200, async (i) => {
      clients[i] = await openClient(url, token(apps[i % APPS] as BenchApp, `u${Math.floor(i / APPS)}`));
    });
    await sleep(settleMs);
    const sep = await target.memory();
    if (sep.connections !== n * APPS) throw new Error(`the edge holds ${sep.connections}, expected ${n * APPS}`);
    return { oneApp: per(one, base, n), fourOnOne: per(four, base, n), fourSeparate: per(sep, base2, n) };
  } finally {
    for (const c of clients) c.terminate();
    await target.stack.close();
  }
}

export async function runMultiApp(opts: RunOptions = { smoke: false }): Promise<BenchResult> {
  const n = opts.smoke ? 50 : env('BENCH_MULTI_CONNS', 2000);
  const rounds = opts.smoke ? 1 : env('BENCH_MULTI_ROUNDS', 2);
  const settleMs = opts.smoke ? 100 : env('BENCH_MULTI_SETTLE_MS', 2000);
  const all: Round[] = [];
  for (let r = 0; r < rounds; r++) {
    await quietFirst(opts.smoke);
    const x = await oneRound(n, settleMs);
    note(`multi-app round ${r + 1}: ${JSON.stringify(x)}`);
    all.push(x);
  }
  const s = (pick: (r: Round) => number) => spread(all.map(pick), 2);
  const ratio = s((r) => r.fourOnOne.rssKB / r.fourSeparate.rssKB);
  const heapRatio = s((r) => r.fourOnOne.heapKB / r.fourSeparate.heapKB);
  const summary: SummaryRow[] = [
    {
      bench: 'multi-app',
      figure: `edge RSS / heap per device, 1 app (${n.toLocaleString('en-US')} devices)`,
      value: `${showSpread(
        s((r) => r.oneApp.rssKB),
        'KB',
      )} / ${showSpread(
        s((r) => r.oneApp.heapKB),
        'KB',
      )}`,
    },
    {
      bench: 'multi-app',
      figure: `edge RSS / heap per device, ${APPS} apps on one connection`,
      value: `${showSpread(
        s((r) => r.fourOnOne.rssKB),
        'KB',
      )} / ${showSpread(
        s((r) => r.fourOnOne.heapKB),
        'KB',
      )}`,
    },
    {
      bench: 'multi-app',
      figure: `edge RSS / heap per device, ${APPS} separate connections`,
      value: `${showSpread(
        s((r) => r.fourSeparate.rssKB),
        'KB',
      )} / ${showSpread(
        s((r) => r.fourSeparate.heapKB),
        'KB',
      )}`,
    },
    {
      bench: 'multi-app',
      figure: `${APPS} apps on one connection / ${APPS} connections (RSS; heap)`,
      value: `${round(ratio.median * 100, 0)}%; ${round(heapRatio.median * 100, 0)}%`,
      target: `< ${GOAL_RATIO * 100}%`,
      met: ratio.median < GOAL_RATIO ? 'yes' : 'no',
    },
  ];
  return { name: 'multi-app', figures: { devices: n, rounds, apps: APPS, perRound: all, ratio, heapRatio }, summary };
}

runIfMain(import.meta.url, () => runMultiApp());
