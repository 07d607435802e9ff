/**
 * A load-generator child: thousands of raw WebSocket clients over node:net in one process, cheap
 * per connection (one socket, a few fields; no `ws` objects, no JSON parse per message), so the
 * servers' costs show and not the client's. Driven by its benchmark over IPC (bench/lib/fleet.ts).
 *
 * It speaks three protocols, to load our edge and its peers the same way:
 * - `push`: our edge (docs/protocol.md): token in the URL, ready at `hello`, every `msg` acked
 *   (acks batched per connection per event-loop turn).
 * - `uws`: the bare uWebSockets.js peer (bench/peers/uws-bare.ts): ready at `{"t":"hello"}`.
 * - `sio`: Socket.IO 4 over its WebSocket transport (Engine.IO v4): answers the open packet with
 *   `40`, ready at `40{`, answers pings `2` with `3`; messages are `42["msg",...]`.
 *
 * Connections come from one loopback source address per child (127.0.0.2, .3, ...), so more than
 * the ~28k ephemeral ports of one address can reach one port, and close with RST (no TIME_WAIT
 * left for the next run). Every message's data carries `"s":<send time>` on CLOCK_MONOTONIC,
 * shared by every process of the machine; the latency is recorded into a histogram.
 * Client frames are masked with a zero key (the servers unmask; a load generator needs no secrecy).
 */
import { createHmac } from 'node:crypto';
import net from 'node:net';
import { backoffDelay, type BackoffPolicy } from '@push/protocol';
import { LatencyHistogram, monoMs } from './lib/hist.js';
import { serveParent, type ChildMessage } from './lib/procs.js';

export type Protocol = 'push' | 'uws' | 'sio';

export interface OpenCommand {
  type: 'open';
  protocol: Protocol;
  port: number;
  /** Local address to connect from (127.0.0.x). */
  source: string;
  /** Users `${userPrefix}${i}` for i in [from, from + count). */
  userPrefix: string;
  from: number;
  count: number;
  /** Handshakes in flight at once. */
  concurrency: number;
  timeoutMs: number;
  /** Attempts after a failed connect, each after CONNECT_RETRY's delay (as a client SDK retries). */
  retries?: number;
  /** For `push`: signs each user's token. */
  token?: { app: string; kid: string; secret: string; ttlSeconds: number };
  /** For `push`: subscribe each connection to topics `t0` .. `t<topics - 1>` once ready (the token grants `*`). */
  topics?: number;
  /**
   * For `push`: ask for this ping interval (`?ping=`) and send `{"t":"ping"}` on every ready
   * connection once per interval, spread evenly (one pacing timer for the child, not one per
   * connection), as clients that keep their connections alive do.
   */
  pingSeconds?: number;
}

const NOT_OPEN = 0;
const HANDSHAKE = 1;
const WAIT_READY = 2;
const READY = 3;
const CLOSED = 4;

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
/**
 * Delay before retrying a failed connect: 100-500 ms, barely growing (cap 500 ms), as in the
 * runs measured so far: the storm and fan-out figures count how fast a fleet gets back, and a
 * longer backoff would measure the client's patience instead of the server.
 */
const CONNECT_RETRY: BackoffPolicy = { minMs: 100, baseMs: 400, capMs: 500 };

/**
 * Local ports are chosen here, not by the kernel: with 100,000 connections on one machine, the
 * kernel's search for a free ephemeral port (shared by every source address) turned connect()
 * into seconds of system time. Each child has its own source address, so [FIRST_PORT, LAST_PORT)
 * is its own; below the kernel's ephemeral range (32768+) so no listener lands on one.
 */
const FIRST_PORT = 10_000;
const LAST_PORT = 32_000;
const portsInUse = new Set<number>();
let nextPort = FIRST_PORT;

function takePort(): number {
  for (let i = 0; i < LAST_PORT - FIRST_PORT; i++) {
    const p = nextPort;
    nextPort = nextPort + 1 >= LAST_PORT ? FIRST_PORT : nextPort + 1;
    if (!portsInUse.has(p)) {
      portsInUse.add(p);
      return p;
    }
  }
  throw new Error(`all ${LAST_PORT - FIRST_PORT} local ports of this load child are in use`);
}

const ZERO_MASK = Buffer.alloc(4);

class Conn {
  state = NOT_OPEN;
  buf: Buffer | undefined;
  lastSeq = 0;
  acks: number[] | undefined;
  closedByUs = false;
  /** Index in `readyList` while ready, else -1. */
  slot = -1;
  /** Told once whether the connection got ready (or why not). */
  settle: ((ok: boolean, kind?: string) => void) | undefined;
  constructor(
    readonly socket: net.Socket,
    readonly port: number,
    /** The user's index (`${userPrefix}${i}`). */
    readonly i: number,
  ) {}
}

const hist = new LatencyHistogram();
/** Unicast (inbox) messages only, for scenarios that also broadcast. */
const unicastHist = new LatencyHistogram();
/** Churn: from dropping a connection to the `hello` of its reconnect. */
const churnHist = new LatencyHistogram();
/** Unicast messages' `"k"` ids received (a scenario that checks nothing was lost sets them). */
const unicastIds = new Set<number>();
/** Broadcast (topic) messages' `"k"` ids: how many connections got each, and when the last did. */
const topicIds = new Map<number, { count: number; lastAt: number }>();
let churnFailed = 0;
/** The last open command: churn reopens its users with it. */
let lastOpen: OpenCommand | undefined;
const conns = new Set<Conn>();
let protocol: Protocol = 'push';
let received = 0;
let duplicates = 0;
let lastReceiveAt = 0;
let firstReceiveAt = 0;
let unexpectedCloses = 0;
/** App-level pings sent and pongs received (`pingSeconds`). */
let pingsSent = 0;
let pongs = 0;
const closeKinds: Record<string, number> = {};
let ackQueue: Conn[] = [];
let ackScheduled = false;
/** The ready connections, for O(1) random picks (churn) and counting. */
const readyList: Conn[] = [];

function addReady(c: Conn): void {
  c.slot = readyList.length;
  readyList.push(c);
}

function removeReady(c: Conn): void {
  if (c.slot < 0) return;
  const last = readyList.pop() as Conn;
  if (last !== c) {
    readyList[c.slot] = last;
    last.slot = c.slot;
  }
  c.slot = -1;
}

function count(rec: Record<string, number>, key: string): void {
  rec[key] = (rec[key] ?? 0) + 1;
}

/** A masked client text frame (zero mask key: the payload goes as is). */
function frame(text: string): Buffer {
  const payload = Buffer.from(text, 'utf8');
  const n = payload.length;
  let head: Buffer;
  if (n < 126) {
    head = Buffer.from([0x81, 0x80 | n]);
  } else if (n < 65536) {
    head = Buffer.alloc(4);
    head[0] = 0x81;
    head[1] = 0x80 | 126;
    head.writeUInt16BE(n, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = 0x81;
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([head, ZERO_MASK, payload]);
}

function control(opcode: number, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | payload.length]), ZERO_MASK, payload]);
}

function signToken(t: NonNullable<OpenCommand['token']>, user: string, topics: boolean): string {
  const now = Math.floor(Date.now() / 1000);
  const part = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  const claims = {
    app: t.app,
    sub: user,
    dev: 'd',
    iat: now,
    exp: now + t.ttlSeconds,
    ...(topics ? { topics: ['*'] } : {}),
  };
  const signed = `${part({ alg: 'HS256', kid: t.kid })}.${part(claims)}`;
  return `${signed}.${createHmac('sha256', t.secret).update(signed).digest('base64url')}`;
}

/** Reads `"s":<number>` (the send time) from a message frame; NaN when absent. */
function sentAt(text: string): number {
  const i = text.indexOf('"s":');
  return i < 0 ? Number.NaN : Number.parseFloat(text.slice(i + 4, i + 30));
}

/** Reads `"k":<integer>` (a message id set by the scenario); -1 when absent. */
function idOf(text: string): number {
  const i = text.indexOf('"k":');
  return i < 0 ? -1 : Number.parseInt(text.slice(i + 4, i + 24), 10);
}

function onMessageFrame(c: Conn, text: string): void {
  const s = sentAt(text);
  const now = monoMs();
  const topic = text.startsWith('{"t":"msg","topic"');
  if (!Number.isNaN(s)) {
    hist.record(now - s);
    if (!topic) unicastHist.record(now - s);
  }
  received++;
  if (firstReceiveAt === 0) firstReceiveAt = now;
  lastReceiveAt = now;
  const k = idOf(text);
  if (k >= 0) {
    if (!topic) unicastIds.add(k);
    else {
      const t = topicIds.get(k);
      if (t === undefined) topicIds.set(k, { count: 1, lastAt: now });
      else {
        t.count++;
        t.lastAt = now;
      }
    }
  }
  // Topic messages (`"topic"` follows `"t":"msg"` in our frames) and transient ones take no ack.
  if (protocol === 'push' && !topic && !text.startsWith('{"t":"msg","transient"')) {
    const i = text.indexOf('"seq":');
    const seq = Number.parseInt(text.slice(i + 6, i + 26), 10);
    if (seq <= c.lastSeq) duplicates++;
    else c.lastSeq = seq;
    if (c.acks === undefined) {
      c.acks = [];
      ackQueue.push(c);
    }
    c.acks.push(seq);
    if (!ackScheduled) {
      ackScheduled = true;
      setImmediate(flushAcks);
    }
  }
}

function flushAcks(): void {
  ackScheduled = false;
  const queue = ackQueue;
  ackQueue = [];
  for (const c of queue) {
    const seqs = c.acks;
    c.acks = undefined;
    if (seqs === undefined || c.state !== READY) continue;
    c.socket.write(frame(`{"t":"ack","seqs":[${seqs.join(',')}]}`));
  }
}

/** Topics each new `push` connection subscribes to once ready (from the open command). */
let topicsPerConnection = 0;

function becomeReady(c: Conn): void {
  c.state = READY;
  addReady(c);
  if (protocol === 'push')
    for (let i = 0; i < topicsPerConnection; i++) c.socket.write(frame(`{"t":"sub","topic":"t${i}"}`));
  c.settle?.(true);
}

function onText(c: Conn, text: string): void {
  if (protocol === 'sio') {
    const type = text.charCodeAt(0);
    if (type === 0x34 /* 4 message */) {
      if (text.startsWith('42')) onMessageFrame(c, text);
      else if (text.startsWith('40') && c.state === WAIT_READY) becomeReady(c);
    } else if (type === 0x32 /* 2 ping */) {
      c.socket.write(frame('3'));
    } else if (type === 0x30 /* 0 open */) {
      c.socket.write(frame('40'));
    }
    return;
  }
  if (text.startsWith('{"t":"msg"')) onMessageFrame(c, text);
  else if (text.startsWith('{"t":"pong"')) pongs++;
  else if (c.state === WAIT_READY && text.startsWith('{"t":"hello"')) becomeReady(c);
}

/** Parses server frames (unmasked) from the bytes received. */
function onData(c: Conn, chunk: Buffer): void {
  let b = c.buf === undefined ? chunk : Buffer.concat([c.buf, chunk]);
  c.buf = undefined;
  if (c.state === HANDSHAKE) {
    const end = b.indexOf('\r\n\r\n');
    if (end < 0) {
      c.buf = b;
      return;
    }
    const status = b.toString('latin1', 9, 12);
    if (status !== '101') {
      closeUnexpectedly(c, `http ${status}`);
      return;
    }
    c.state = WAIT_READY;
    b = b.subarray(end + 4);
  }
  let off = 0;
  while (b.length - off >= 2) {
    const b0 = b[off] as number;
    let len = (b[off + 1] as number) & 0x7f;
    let head = 2;
    if (len === 126) {
      if (b.length - off < 4) break;
      len = b.readUInt16BE(off + 2);
      head = 4;
    } else if (len === 127) {
      if (b.length - off < 10) break;
      len = Number(b.readBigUInt64BE(off + 2));
      head = 10;
    }
    if (b.length - off < head + len) break;
    const payload = b.subarray(off + head, off + head + len);
    off += head + len;
    const opcode = b0 & 0x0f;
    if (opcode === 1) onText(c, payload.toString('utf8'));
    else if (opcode === 9) c.socket.write(control(10, payload));
    else if (opcode === 8) {
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      closeUnexpectedly(c, `close ${code}`);
      return;
    }
  }
  if (off < b.length) c.buf = Buffer.from(b.subarray(off));
}

function closeUnexpectedly(c: Conn, kind: string): void {
  if (c.state === CLOSED) return;
  const wasReady = c.state === READY;
  c.state = CLOSED;
  conns.delete(c);
  portsInUse.delete(c.port);
  // RST, as at the end of a run: no TIME_WAIT holds the port we reuse.
  if (c.socket.destroyed) c.socket.destroy();
  else c.socket.resetAndDestroy();
  if (wasReady) {
    removeReady(c);
    unexpectedCloses++;
    count(closeKinds, kind);
  } else {
    c.settle?.(false, kind);
  }
}

/** Opens one connection; resolves true when ready, false on failure (counted in `failures`). */
function openOne(cmd: OpenCommand, i: number, failures: Record<string, number>): Promise<boolean> {
  return new Promise((resolve) => {
    const user = `${cmd.userPrefix}${i}`;
    let path: string;
    if (cmd.protocol === 'push') {
      const token = cmd.token === undefined ? '' : signToken(cmd.token, user, (cmd.topics ?? 0) > 0);
      path = `/ws?token=${token}${cmd.pingSeconds !== undefined ? `&ping=${cmd.pingSeconds}` : ''}`;
    } else if (cmd.protocol === 'uws') {
      path = `/ws?user=${encodeURIComponent(user)}`;
    } else {
      path = `/socket.io/?EIO=4&transport=websocket&user=${encodeURIComponent(user)}`;
    }
    const localPort = takePort();
    const socket = net.connect({ host: '127.0.0.1', port: cmd.port, localAddress: cmd.source, localPort });
    socket.setNoDelay(true);
    const c = new Conn(socket, localPort, i);
    conns.add(c);
    const timer = setTimeout(() => closeUnexpectedly(c, 'timeout'), cmd.timeoutMs);
    c.settle = (ok, kind) => {
      c.settle = undefined;
      clearTimeout(timer);
      if (!ok) count(failures, kind ?? 'unknown');
      resolve(ok);
    };
    socket.on('connect', () => {
      c.state = HANDSHAKE;
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${cmd.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    socket.on('data', (chunk: Buffer) => onData(c, chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (!c.closedByUs) closeUnexpectedly(c, err.code ?? 'error');
    });
    socket.on('close', () => {
      if (!c.closedByUs) closeUnexpectedly(c, 'eof');
    });
  });
}

/** How often the ping pacer runs, ms: each run pings the share of connections due by then. */
const PING_PACE_MS = 200;
let pingTimer: ReturnType<typeof setInterval> | undefined;
let pingCursor = 0;
let pingCredit = 0;
const PING_FRAME = frame('{"t":"ping"}');

/** Pings every ready connection once per `seconds`, round robin over `readyList`. */
function startPinging(seconds: number): void {
  clearInterval(pingTimer);
  pingCredit = 0;
  pingTimer = setInterval(() => {
    pingCredit += (readyList.length * PING_PACE_MS) / (seconds * 1000);
    while (pingCredit >= 1 && readyList.length > 0) {
      pingCredit--;
      if (pingCursor >= readyList.length) pingCursor = 0;
      (readyList[pingCursor++] as Conn).socket.write(PING_FRAME);
      pingsSent++;
    }
  }, PING_PACE_MS);
}

async function open(cmd: OpenCommand): Promise<ChildMessage> {
  lastOpen = cmd;
  if (cmd.protocol === 'push' && cmd.pingSeconds !== undefined) startPinging(cmd.pingSeconds);
  protocol = cmd.protocol;
  topicsPerConnection = cmd.topics ?? 0;
  const failures: Record<string, number> = {};
  const t0 = monoMs();
  let next = cmd.from;
  const end = cmd.from + cmd.count;
  let ok = 0;
  let retried = 0;
  const worker = async (): Promise<void> => {
    while (next < end) {
      const i = next++;
      for (let attempt = 0; ; attempt++) {
        if (await openOne(cmd, i, failures)) {
          ok++;
          break;
        }
        if (attempt >= (cmd.retries ?? 0)) break;
        retried++;
        await new Promise((r) => setTimeout(r, backoffDelay(attempt, CONNECT_RETRY)));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(cmd.concurrency, cmd.count)) }, worker));
  const ms = monoMs() - t0;
  return { type: 'opened', ok, failed: cmd.count - ok, retried, failures, ms, startedAt: t0, endedAt: t0 + ms };
}

/** Closes one connection with RST (no TIME_WAIT), as a phone losing its network does. */
function drop(c: Conn): void {
  c.closedByUs = true;
  removeReady(c);
  c.state = CLOSED;
  conns.delete(c);
  portsInUse.delete(c.port);
  c.socket.resetAndDestroy();
}

/**
 * Churn: for `durationMs`, every 100 ms drop `perSecond / 10` random ready connections (RST) and
 * reconnect each user at once, as a client SDK does (retrying up to 20 times), recording the
 * time from the drop to the new connection's `hello` (`churnHist`).
 */
async function churn(perSecond: number, durationMs: number): Promise<ChildMessage> {
  const cmd = lastOpen;
  if (cmd === undefined) throw new Error('churn before open');
  const failures: Record<string, number> = {};
  const pending: Array<Promise<void>> = [];
  let dropped = 0;
  let carry = 0;
  const end = monoMs() + durationMs;
  while (monoMs() < end) {
    const tick = monoMs();
    carry += perSecond / 10;
    const n = Math.floor(carry);
    carry -= n;
    // A random ready connection, in O(1): scanning every connection per tick cost each load
    // child 10% of a core at 18,000 connections, taken from the servers it loads.
    for (let j = 0; j < n && readyList.length > 0; j++) {
      const c = readyList[Math.floor(Math.random() * readyList.length)] as Conn;
      drop(c);
      dropped++;
      const t0 = monoMs();
      pending.push(
        (async () => {
          for (let attempt = 0; ; attempt++) {
            if (await openOne(cmd, c.i, failures)) {
              churnHist.record(monoMs() - t0);
              return;
            }
            if (attempt >= 20) {
              churnFailed++;
              return;
            }
            await new Promise((r) => setTimeout(r, backoffDelay(attempt, CONNECT_RETRY)));
          }
        })(),
      );
    }
    await new Promise((r) => setTimeout(r, Math.max(0, 100 - (monoMs() - tick))));
  }
  await Promise.all(pending);
  return { type: 'churned', dropped, failed: churnFailed, failures };
}

/** The ids received (see `idOf`), and this process's memory. */
function ids(): ChildMessage {
  return {
    type: 'ids',
    unicast: [...unicastIds],
    topics: [...topicIds.entries()].map(([k, t]) => [k, t.count, t.lastAt]),
  };
}

/** Closes every connection with RST (no TIME_WAIT). */
function resetAll(): ChildMessage {
  clearInterval(pingTimer);
  pingTimer = undefined;
  const all = [...conns];
  for (const c of all) drop(c);
  return { type: 'reset', closed: all.length };
}

function stats(reset: boolean, withHistogram: boolean): ChildMessage {
  const out = {
    type: 'stats',
    ready: readyList.length,
    received,
    duplicates,
    firstReceiveAt,
    lastReceiveAt,
    unexpectedCloses,
    closeKinds: { ...closeKinds },
    hist: withHistogram ? hist.toPairs() : [],
    histMax: hist.max,
    unicastHist: withHistogram ? unicastHist.toPairs() : [],
    unicastHistMax: unicastHist.max,
    churnHist: withHistogram ? churnHist.toPairs() : [],
    churnHistMax: churnHist.max,
    rss: process.memoryUsage.rss(),
    pings: pingsSent,
    pongs,
  };
  if (reset) {
    hist.reset();
    unicastHist.reset();
    churnHist.reset();
    received = 0;
    duplicates = 0;
    pingsSent = 0;
    pongs = 0;
    firstReceiveAt = 0;
    lastReceiveAt = 0;
  }
  return out;
}

serveParent(async (msg) => {
  switch (msg.type) {
    case 'open':
      return open(msg as unknown as OpenCommand);
    case 'reset':
      return resetAll();
    case 'churn':
      return churn(Number(msg['perSecond']), Number(msg['durationMs']));
    case 'ids':
      return ids();
    case 'stats':
      return stats(msg['reset'] === true, msg['histogram'] !== false);
    default:
      throw new Error(`unknown command ${msg.type}`);
  }
});
