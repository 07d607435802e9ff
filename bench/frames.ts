/**
 * The edge's frame path: client frames parsed and validated per second, today's schema-checked
 * parser (`parseClientFrame`, TypeBox compiled checker) beside the hand-written parser it
 * replaced (copied below, unchanged), in the same process and run, interleaved round by round
 * so both see the same machine. One core, no I/O.
 *
 *   npx tsx bench/frames.ts            # about 40 s; writes bench/results/<date>-frames.json
 *   npx tsx bench/frames.ts --smoke    # a quick pass that only checks the harness
 *
 * The target (issue 7): the new parser costs at most 10% more per frame than the old one, i.e.
 * new/old frames per CPU second >= 0.90 for each kind.
 */
import { PushError, idProblem, parseClientFrame } from '@push/protocol';
import { runIfMain } from './lib/main.js';
import type { BenchResult, SummaryRow } from './lib/results.js';

// --- The hand-written parser before the schemas (libs/protocol/src/frames.ts at 721625d) ---------

const OLD_MAX_ACKS_PER_FRAME = 1000;

function oldIsObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function oldReadPayload(obj: Record<string, unknown>): { bytes: Uint8Array; binary: boolean } {
  const hasData = obj['data'] !== undefined;
  const hasB64 = obj['b64'] !== undefined;
  if (hasData === hasB64) throw new PushError('invalid_data');
  if (hasData) {
    let text: string;
    try {
      text = JSON.stringify(obj['data']);
    } catch (err) {
      throw new PushError('invalid_data', 'data is nested too deeply', { cause: err });
    }
    return { bytes: Buffer.from(text, 'utf8'), binary: false };
  }
  const b64 = obj['b64'];
  if (
    typeof b64 !== 'string' ||
    !/^(?:[A-Za-z0-9+/]*|[A-Za-z0-9_-]*)={0,2}$/.test(b64) ||
    b64.replace(/=+$/, '').length % 4 === 1
  ) {
    throw new PushError('invalid_data', 'b64 must be a base64 string');
  }
  return { bytes: Buffer.from(b64, 'base64'), binary: true };
}

function oldReadTtl(obj: Record<string, unknown>): number | undefined {
  const ttl = obj['ttl'];
  if (ttl === undefined) return undefined;
  if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl <= 0) throw new PushError('invalid_ttl');
  return ttl;
}

function oldReadId(obj: Record<string, unknown>, field: string, kind: Parameters<typeof idProblem>[0]): string {
  const value = obj[field];
  const problem = idProblem(kind, value);
  if (problem !== undefined) throw new PushError('invalid_id', `${field}: ${problem}`);
  return value as string;
}

function oldParseClientFrame(text: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new PushError('bad_frame', 'frame is not valid JSON');
  }
  if (!oldIsObject(value)) throw new PushError('bad_frame', 'frame must be a JSON object');
  switch (value['t']) {
    case 'ack': {
      const seqs = value['seqs'];
      if (!Array.isArray(seqs) || seqs.length === 0 || seqs.length > OLD_MAX_ACKS_PER_FRAME) {
        throw new PushError('bad_frame', `ack.seqs must be an array of 1 to ${OLD_MAX_ACKS_PER_FRAME} sequences`);
      }
      for (const s of seqs) {
        if (!Number.isSafeInteger(s) || (s as number) <= 0) {
          throw new PushError('bad_frame', 'ack.seqs must hold positive integers');
        }
      }
      return { t: 'ack', seqs: seqs as number[] };
    }
    case 'ping':
      return { t: 'ping' };
    case 'send': {
      const to = oldReadId(value, 'to', 'user');
      const id = oldReadId(value, 'id', 'clientMessageId');
      const payload = oldReadPayload(value);
      const ttl = oldReadTtl(value);
      return ttl === undefined ? { t: 'send', to, id, payload } : { t: 'send', to, id, payload, ttl };
    }
    default:
      if (typeof value['t'] !== 'string') throw new PushError('bad_frame', 'frame needs a string field t');
      throw new PushError('unknown_frame', `unknown frame type ${JSON.stringify(value['t']).slice(0, 40)}`);
  }
}

// --- The measurement ----------------------------------------------------------------------------

/** Frames as clients send them: what the edge sees most (acks of one or a few messages, pings, sends). */
const KINDS: Record<string, string[]> = {
  'ack (1 seq)': Array.from({ length: 64 }, (_, i) => JSON.stringify({ t: 'ack', seqs: [1000 + i] })),
  'ack (20 seqs)': Array.from({ length: 64 }, (_, i) =>
    JSON.stringify({ t: 'ack', seqs: Array.from({ length: 20 }, (_, j) => 1000 + i * 20 + j) }),
  ),
  ping: ['{"t":"ping"}'],
  'send (data)': Array.from({ length: 64 }, (_, i) =>
    JSON.stringify({ t: 'send', to: `user-${i}`, id: `m-${i}`, data: { text: 'hello there', n: i } }),
  ),
  'send (b64, ttl)': Array.from({ length: 64 }, (_, i) =>
    JSON.stringify({ t: 'send', to: `user-${i}`, id: `m-${i}`, b64: Buffer.alloc(48, i).toString('base64'), ttl: 60 }),
  ),
};

type Parser = (text: string) => unknown;
let sink = 0;

/**
 * Frames parsed per CPU second by `parse` over `frames`, for about `ms` milliseconds of CPU. CPU
 * time, not wall time: on a shared machine the process is descheduled at random, which wall time
 * would count against whichever parser was running.
 */
function rate(parse: Parser, frames: string[], ms: number): number {
  let n = 0;
  const start = process.cpuUsage();
  let used = 0;
  while (used < ms * 1000) {
    for (let i = 0; i < 1000; i++) {
      const f = parse(frames[(n + i) % frames.length] as string) as { t: string };
      sink += f.t.length;
    }
    n += 1000;
    const d = process.cpuUsage(start);
    used = d.user + d.system;
  }
  return n / (used / 1e6);
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
};

function measure(): BenchResult {
  const smoke = process.argv.includes('--smoke');
  const rounds = smoke ? 1 : 15;
  const ms = smoke ? 50 : 200;
  const parsers: Record<'old' | 'new', Parser> = { old: oldParseClientFrame, new: parseClientFrame };
  const perKind: Record<string, { old: number; new: number; ratio: number; roundsOld: number[]; roundsNew: number[] }> =
    {};
  for (const [kind, frames] of Object.entries(KINDS)) {
    // Both parse the same frames to the same result before anything is timed.
    for (const f of frames) {
      const a = JSON.stringify(parsers.old(f));
      const b = JSON.stringify(parsers.new(f));
      if (a !== b) throw new Error(`parsers disagree on ${f}: ${a} vs ${b}`);
    }
    rate(parsers.old, frames, ms); // warm up both (JIT)
    rate(parsers.new, frames, ms);
    const roundsOld: number[] = [];
    const roundsNew: number[] = [];
    for (let r = 0; r < rounds; r++) {
      // Alternate which goes first, so neither always runs on a warmer or a busier machine.
      if (r % 2 === 0) {
        roundsOld.push(rate(parsers.old, frames, ms));
        roundsNew.push(rate(parsers.new, frames, ms));
      } else {
        roundsNew.push(rate(parsers.new, frames, ms));
        roundsOld.push(rate(parsers.old, frames, ms));
      }
    }
    const old = median(roundsOld);
    const now = median(roundsNew);
    perKind[kind] = { old: Math.round(old), new: Math.round(now), ratio: now / old, roundsOld, roundsNew };
  }
  if (sink < 0) throw new Error('unreachable: keeps the parse results alive');
  const summary: SummaryRow[] = Object.entries(perKind).map(([kind, r]) => ({
    bench: 'frames',
    figure: `${kind}: frames/s old -> new`,
    value: `${r.old.toLocaleString('en')} -> ${r.new.toLocaleString('en')} (${(r.ratio * 100).toFixed(1)}%)`,
    target: '>= 90% of old',
    met: r.ratio >= 0.9 ? 'yes' : 'no',
  }));
  return { name: smoke ? 'frames-smoke' : 'frames', figures: { roundMs: ms, rounds, perKind }, summary };
}

// Synchronous on purpose: a timed loop with no await, so nothing else runs inside a round.
runIfMain(import.meta.url, () => Promise.resolve(measure()));
