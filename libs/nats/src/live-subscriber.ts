import net from 'node:net';
import type { Logger } from 'pino';
import { createInbox } from '@nats-io/nats-core';
import { backoffDelay, type BackoffPolicy } from '@push/protocol';
import type { PipelineWire } from './request-pipeline.js';

/**
 * Receives the messages of one subscription: NATS headers block (empty when none), payload,
 * subject, and the `owner` given to `subscribe` (so one handler can serve many subscriptions
 * without a closure each).
 */
export type LiveHandler<T = undefined> = (headers: Buffer, payload: Buffer, subject: string, owner: T) => void;

interface Subscription {
  subject: string;
  handler: LiveHandler<unknown>;
  owner: unknown;
}

/**
 * `s` as one flat string. A subject built by concatenation is a tree of string pieces (a cons
 * string, ~200 bytes for a user's subject) until something flattens it; one kept for as long as a
 * connection is flattened first. ToNumber flattens (V8), and fails at the first character here.
 */
const flatStrings = { last: 0 };
export function flatString(s: string): string {
  flatStrings.last = Number(s); // kept, so that an optimizing compiler cannot drop the call
  return s;
}

export interface LiveSubscriberOptions {
  /** `nats://host:port` URLs, or one string of comma-separated URLs. */
  servers: string | string[];
  auth?: { user: string; pass: string } | undefined;
  name: string;
  logger: Logger;
  /**
   * Called after every reconnect, once every subscription is back: live messages may be lost.
   * Messages the new connection got before (between its resubscriptions and the server's
   * confirmation) are handed over only after it returns, so the caller can first switch to
   * reading what it missed from the store.
   */
  onReconnect?: () => void;
  /** Seconds between pings; a connection that misses two pongs is replaced. */
  pingSeconds?: number;
}

const CRLF = Buffer.from('\r\n');
/**
 * Delay before the next reconnect attempt: 100-350 ms the first time (as before the shared
 * helper), the random window doubling per failed attempt up to 2 s, so a restarted nats-server
 * is not met by every edge at once, and a long outage costs a try every second or two.
 */
const RECONNECT_BACKOFF: BackoffPolicy = { minMs: 100, baseMs: 250, capMs: 2000 };
/** Largest control line accepted from the server. */
const MAX_LINE = 64 * 1024;

/**
 * A minimal NATS client for the edge's live subscriptions: SUB, UNSUB, MSG/HMSG, PING/PONG,
 * reconnect with every subscription restored. Nothing else.
 *
 * Why not the nats.js client for these? A nats.js subscription object costs about 1.5 KB of heap
 * (an async-iterator queue with deferred promises), and an edge holds one per connected user:
 * that alone would double the edge's memory per connection. Here a subscription is one Map
 * entry from its sid to a handler. Everything else (JetStream, KV, requests) uses nats.js.
 */
export class LiveSubscriber {
  private readonly servers: string[];
  private readonly opts: LiveSubscriberOptions;
  private readonly log: Logger;
  private readonly handlers = new Map<number, Subscription>();
  /**
   * The socket CONNECT was written to (set when the server greeted, before it confirmed): writes
   * go to it from then on, in order after the CONNECT and the resubscriptions sent with it.
   */
  private socket: net.Socket | undefined;
  /** The server confirmed the handshake (answered the PING sent after CONNECT). */
  private connected = false;
  private closed = false;
  private nextSid = 1;
  private serverIndex = 0;
  private attempts = 0;
  private out: string[] = [];
  private flushQueued = false;
  private pingTimer: NodeJS.Timeout | undefined;
  private pingsOut = 0;
  /**
   * Messages a reconnecting socket received before `onReconnect` ran (see it), in order; undefined
   * when not reconnecting.
   */
  private held: Array<{ sid: number; headers: Buffer; payload: Buffer; subject: string }> | undefined;
  // Parser state: bytes not yet consumed; when `expect` > 0, a message of `expect` bytes (its
  // payload plus the CRLF after it, so never 0, even for an empty message) is awaited for
  // `expectSid` with `expectHdr` header bytes at its start.
  private buf: Buffer = Buffer.alloc(0);
  private expect = 0;
  private expectSid = 0;
  private expectHdr = 0;
  private expectSubject = '';
  /** Told when the connection is lost (false) and when it is back with every subscription (true). */
  private readonly statusListeners = new Set<(up: boolean) => void>();

  private constructor(opts: LiveSubscriberOptions) {
    this.opts = opts;
    this.log = opts.logger;
    const list = typeof opts.servers === 'string' ? opts.servers.split(',') : opts.servers;
    this.servers = list.map((s) => s.trim()).filter((s) => s !== '');
    if (this.servers.length === 0) throw new Error('no NATS server URL');
  }

  /** Connects (to the first server that answers); rejects when none does. */
  static async connect(opts: LiveSubscriberOptions): Promise<LiveSubscriber> {
    const s = new LiveSubscriber(opts);
    let lastErr: unknown;
    for (let i = 0; i < s.servers.length; i++) {
      try {
        await s.open();
        return s;
      } catch (err) {
        lastErr = err;
        s.serverIndex = (s.serverIndex + 1) % s.servers.length;
      }
    }
    throw lastErr instanceof Error ? lastErr : new Error(String(lastErr));
  }

  /** Subscriptions held now. */
  get size(): number {
    return this.handlers.size;
  }

  /** True while connected (false while reconnecting). */
  get isConnected(): boolean {
    return this.connected;
  }

  subscribe(subject: string, handler: LiveHandler): number;
  subscribe<T>(subject: string, handler: LiveHandler<T>, owner: T): number;
  subscribe(subject: string, handler: LiveHandler<never>, owner?: unknown): number {
    if (this.closed) throw new Error('live subscriber is closed');
    const sid = this.nextSid++;
    // Held as long as the subscription: flat (the caller's string too, flattened in place).
    this.handlers.set(sid, { subject: flatString(subject), handler: handler as LiveHandler<unknown>, owner });
    // Also during the handshake: the resubscriptions were sent with CONNECT when the server
    // greeted, so a subscription made after that must follow them (written after, in order).
    // Without a socket, the next greeting sends it.
    if (this.socket !== undefined) this.write(`SUB ${subject} ${sid}\r\n`);
    return sid;
  }

  /**
   * Publishes `payload` with a reply subject and a headers block (`NATS/1.0\r\n...\r\n\r\n`,
   * or '' for none), written with this event-loop turn's other writes. Throws while no server
   * has greeted (reconnecting): a caller that waits for replies hears of the loss and the return
   * through `onStatus` (RequestPipeline over `liveWire`).
   */
  publish(subject: string, reply: string, headers: string, payload: string): void {
    if (this.closed || this.socket === undefined) throw new Error('the live connection to NATS is down');
    const hlen = Buffer.byteLength(headers);
    const total = hlen + Buffer.byteLength(payload);
    // The payload as its own part: joined once with the turn's other writes, not copied here too.
    this.write(
      headers === ''
        ? `PUB ${subject} ${reply} ${total}\r\n`
        : `HPUB ${subject} ${reply} ${hlen} ${total}\r\n${headers}`,
      payload,
      '\r\n',
    );
  }

  /** Calls `listener(false)` when the connection is lost and `listener(true)` once it is back; returns how to stop. */
  onStatus(listener: (up: boolean) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  private tell(up: boolean): void {
    for (const l of this.statusListeners) {
      try {
        l(up);
      } catch (err) {
        this.log.error({ err }, 'live subscriber: status listener failed');
      }
    }
  }

  unsubscribe(sid: number): void {
    if (!this.handlers.delete(sid)) return;
    if (this.socket !== undefined) this.write(`UNSUB ${sid}\r\n`);
  }

  /**
   * Resolves once the server has processed everything written so far (its PONG to a PING sent
   * after it), so a subscription made before is active. Calls in one event-loop turn share one PING.
   * During a handshake it waits for it (its PING follows the CONNECT). Resolves at once while
   * no server has greeted, and when the connection drops first: the reconnect restores every
   * subscription and reports through `onReconnect`.
   */
  flush(): Promise<void> {
    if (this.socket === undefined) return Promise.resolve();
    if (this.flushing !== undefined) return this.flushing;
    const p = new Promise<void>((resolve) => {
      this.pongWaiters.push(resolve);
      this.write('PING\r\n');
    });
    this.flushing = p;
    // One PING answers every flush() of this event-loop turn (written with them, below).
    setImmediate(() => {
      if (this.flushing === p) this.flushing = undefined;
    });
    return p;
  }

  private flushing: Promise<void> | undefined;
  private pongWaiters: Array<() => void> = [];

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.connected = false;
    if (this.pingTimer !== undefined) clearInterval(this.pingTimer);
    this.socket?.destroy();
    this.handlers.clear();
    this.statusListeners.clear();
    for (const w of this.pongWaiters.splice(0)) w();
  }

  private url(): URL {
    const raw = this.servers[this.serverIndex] as string;
    return new URL(raw.includes('://') ? raw : `nats://${raw}`);
  }

  /** Opens a connection, handshakes, restores every subscription; resolves when the server confirmed. */
  private open(): Promise<void> {
    const u = this.url();
    return new Promise<void>((resolve, reject) => {
      const socket = net.connect({ host: u.hostname, port: Number(u.port || 4222) });
      socket.setNoDelay(true);
      let greeted = false;
      let settled = false;
      /** The server answered the handshake's PING: this socket is the live connection. */
      let confirmed = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        socket.destroy();
        reject(err);
      };
      /** Drops this socket's state; flush() waiters (and the handshake's) are answered now. */
      const forget = () => {
        if (this.socket !== socket) return false;
        this.socket = undefined;
        this.connected = false;
        // Unsent writes are superseded: the next connection resends every subscription.
        this.out = [];
        // Also the handshake's own waiter: left queued, it would take the next server's first PONG.
        for (const w of this.pongWaiters.splice(0)) w();
        return true;
      };
      const timer = setTimeout(() => fail(new Error(`NATS ${u.host}: no handshake within 5 s`)), 5000);
      this.buf = Buffer.alloc(0);
      this.expect = 0;
      socket.on('error', (err) => fail(err));
      socket.on('data', (chunk: Buffer) => {
        this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
        if (!greeted) {
          // The server speaks first: INFO {...}\r\n. Answer CONNECT, then PING to learn the verdict.
          const nl = this.buf.indexOf(CRLF);
          if (nl < 0) return;
          const line = this.buf.toString('latin1', 0, nl);
          this.buf = this.buf.subarray(nl + 2);
          if (!line.startsWith('INFO ')) return fail(new Error(`NATS ${u.host}: unexpected greeting`));
          const info = JSON.parse(line.slice(5)) as { tls_required?: boolean };
          if (info.tls_required === true)
            return fail(new Error(`NATS ${u.host} requires TLS, which the live subscriber does not speak`));
          greeted = true;
          const connect = {
            verbose: false,
            pedantic: false,
            headers: true,
            no_responders: true, // a request nobody answers (no stream) hears a 503 at once
            protocol: 1,
            lang: 'push-live',
            version: '1',
            name: this.opts.name,
            ...(this.opts.auth !== undefined ? { user: this.opts.auth.user, pass: this.opts.auth.pass } : {}),
          };
          let subs = '';
          for (const [sid, h] of this.handlers) subs += `SUB ${h.subject} ${sid}\r\n`;
          socket.write(`CONNECT ${JSON.stringify(connect)}\r\n${subs}PING\r\n`);
          // Waiters left from an earlier socket were answered when it closed.
          this.pongWaiters.push(() => {
            if (settled) return;
            settled = true;
            confirmed = true;
            clearTimeout(timer);
            resolve();
          });
          this.socket = socket;
        }
        this.onData(socket);
      });
      socket.on('close', () => {
        clearTimeout(timer);
        if (!confirmed) {
          // The handshake failed (or timed out): open()'s caller retries; no reconnect here.
          forget();
          fail(new Error(`NATS ${u.host}: connection closed during the handshake`));
          return;
        }
        const was = this.connected;
        if (!forget()) return;
        if (this.pingTimer !== undefined) clearInterval(this.pingTimer);
        if (this.closed) return;
        // What was written to it gets no reply (what was not is dropped: `forget`).
        this.tell(false);
        if (was) this.log.warn({ server: u.host }, 'live subscriber disconnected');
        this.reconnectSoon();
      });
    }).then(() => {
      this.connected = true;
      this.attempts = 0;
      this.pingsOut = 0;
      this.pingTimer = setInterval(() => this.ping(), (this.opts.pingSeconds ?? 10) * 1000);
      this.pingTimer.unref();
      this.flushOut();
    });
  }

  private reconnectSoon(): void {
    const delay = backoffDelay(this.attempts++, RECONNECT_BACKOFF);
    setTimeout(() => {
      if (this.closed) return;
      this.serverIndex = (this.serverIndex + 1) % this.servers.length;
      // A message that arrives before onReconnect ran must not reach a user's connection still
      // live on its old cursor: it would move past the messages missed while disconnected.
      this.held = [];
      this.open().then(
        () => {
          this.log.info({ server: this.url().host, subscriptions: this.handlers.size }, 'live subscriber reconnected');
          this.tell(true);
          try {
            this.opts.onReconnect?.();
          } catch (err) {
            this.log.error({ err }, 'live subscriber: onReconnect failed');
          }
          const held = this.held ?? [];
          this.held = undefined;
          for (const m of held) this.dispatch(m.sid, m.headers, m.payload, m.subject);
        },
        () => this.reconnectSoon(),
      );
    }, delay).unref();
  }

  private ping(): void {
    if (!this.connected) return;
    if (this.pingsOut >= 2) {
      this.log.warn('live subscriber: server stopped answering pings; reconnecting');
      this.socket?.destroy();
      return;
    }
    this.pingsOut++;
    this.pongWaiters.push(() => undefined); // answers come in order: keep the queue aligned
    this.write('PING\r\n');
  }

  private write(...parts: string[]): void {
    for (const s of parts) this.out.push(s);
    if (this.flushQueued) return;
    this.flushQueued = true;
    // Once per event-loop turn, not per microtask checkpoint: uWS runs each upgrade in its own
    // callback, and a write per upgrade (a syscall and a loopback round into nats-server) was a
    // sixth of the edge's CPU in a connect storm.
    setImmediate(() => this.flushOut());
  }

  private flushOut(): void {
    this.flushQueued = false;
    if (this.out.length === 0 || this.socket === undefined) return;
    const text = this.out.join('');
    this.out = [];
    this.socket.write(text);
  }

  private dispatch(sid: number, headers: Buffer, payload: Buffer, subject: string): void {
    const h = this.handlers.get(sid);
    if (h === undefined) return;
    try {
      h.handler(headers, payload, subject, h.owner);
    } catch (err) {
      this.log.error({ err }, 'live message handler failed');
    }
  }

  private onData(socket: net.Socket): void {
    for (;;) {
      if (this.expect > 0) {
        if (this.buf.length < this.expect) return;
        const body = this.buf.subarray(0, this.expect - 2);
        this.buf = this.buf.subarray(this.expect);
        this.expect = 0;
        const headers = body.subarray(0, this.expectHdr);
        const payload = body.subarray(this.expectHdr);
        if (this.held !== undefined)
          this.held.push({ sid: this.expectSid, headers, payload, subject: this.expectSubject });
        else this.dispatch(this.expectSid, headers, payload, this.expectSubject);
        continue;
      }
      const nl = this.buf.indexOf(CRLF);
      if (nl < 0) {
        if (this.buf.length > MAX_LINE) socket.destroy(new Error('NATS control line too long'));
        return;
      }
      const line = this.buf.toString('latin1', 0, nl);
      this.buf = this.buf.subarray(nl + 2);
      this.control(line, socket);
    }
  }

  private control(line: string, socket: net.Socket): void {
    if (line.startsWith('MSG ') || line.startsWith('HMSG ')) {
      // MSG <subject> <sid> [reply] <#bytes>; HMSG <subject> <sid> [reply] <#hdr> <#total>
      const parts = line.split(' ');
      const headers = parts[0] === 'HMSG';
      const total = Number(parts[parts.length - 1]);
      const hdr = headers ? Number(parts[parts.length - 2]) : 0;
      const sid = Number(parts[2]);
      if (!Number.isInteger(total) || !Number.isInteger(hdr) || hdr > total) {
        socket.destroy(new Error(`bad NATS message line: ${line.slice(0, 100)}`));
        return;
      }
      this.expectSid = sid;
      this.expectHdr = hdr;
      this.expectSubject = parts[1] ?? '';
      // An empty message too waits for its CRLF: it may not have arrived yet.
      this.expect = total + 2;
      return;
    }
    if (line === 'PING') {
      socket.write('PONG\r\n');
      return;
    }
    if (line === 'PONG') {
      this.pingsOut = 0;
      this.pongWaiters.shift()?.();
      return;
    }
    if (line.startsWith('-ERR')) {
      this.log.error({ err: line }, 'NATS error on the live subscriber');
      if (/authorization|authentication/i.test(line)) socket.destroy(new Error(line));
      return;
    }
    // INFO updates and +OK need nothing.
  }
}

const STATUS_LINE = Buffer.from('NATS/1.0 ');

/** The status code of a NATS headers block (`NATS/1.0 503`), or 0 when it has none. */
export function headerStatus(headers: Buffer): number {
  if (headers.length < STATUS_LINE.length + 3 || !headers.subarray(0, STATUS_LINE.length).equals(STATUS_LINE)) return 0;
  const code = Number(headers.toString('latin1', STATUS_LINE.length, STATUS_LINE.length + 3));
  return Number.isInteger(code) ? code : 0;
}

const SEQ_HEADER = Buffer.from('Nats-Sequence:');
const LAST_SEQ_HEADER = Buffer.from('Nats-Last-Sequence:');

/** The `Nats-Sequence` header of a NATS headers block, or 0 when absent or malformed. */
export function headerSequence(headers: Buffer): number {
  return headerNumber(headers, SEQ_HEADER);
}

/**
 * The `Nats-Last-Sequence` header a stream's RePublish adds: the sequence of the previous
 * message on the same subject (0 when none, or absent), for gap detection.
 */
export function headerLastSequence(headers: Buffer): number {
  return headerNumber(headers, LAST_SEQ_HEADER);
}

/** `\r\n<name>:` of the header names asked for (a few), made once. */
const HEADER_NEEDLES = new Map<string, Buffer>();

/**
 * The value of header `name` in a NATS headers block (the first, trimmed), or undefined when it
 * has none. Names are matched as nats-server writes them (`Nats-Subject`), at a line's start.
 */
export function headerValue(headers: Buffer, name: string): string | undefined {
  const needle = needleOf(name);
  const at = headers.indexOf(needle);
  if (at < 0) return undefined;
  const start = at + needle.length;
  let end = headers.indexOf(CRLF, start);
  if (end < 0) end = headers.length;
  return headers.toString('latin1', start, end).trim();
}

/** Whether a NATS headers block has header `name` (matched as `headerValue` does), without reading its value. */
export function headerHas(headers: Buffer, name: string): boolean {
  return headers.includes(needleOf(name));
}

function needleOf(name: string): Buffer {
  let needle = HEADER_NEEDLES.get(name);
  if (needle === undefined) {
    needle = Buffer.from(`\r\n${name}:`, 'latin1');
    if (HEADER_NEEDLES.size < 64) HEADER_NEEDLES.set(name, needle);
  }
  return needle;
}

/** The description of a NATS status line (`NATS/1.0 408 Request Timeout`), or '' when none. */
export function headerDescription(headers: Buffer): string {
  if (headerStatus(headers) === 0) return '';
  let end = headers.indexOf(CRLF);
  if (end < 0) end = headers.length;
  return headers.toString('latin1', STATUS_LINE.length + 3, end).trim();
}

function headerNumber(headers: Buffer, name: Buffer): number {
  const at = headers.indexOf(name);
  if (at < 0) return 0;
  let i = at + name.length;
  while (headers[i] === 0x20) i++;
  let n = 0;
  const start = i;
  for (; i < headers.length; i++) {
    const c = headers[i] as number;
    if (c < 0x30 || c > 0x39) break;
    n = n * 10 + (c - 0x30);
  }
  return i > start && Number.isSafeInteger(n) ? n : 0;
}

/** A reply heard on the live connection: its headers block (empty when none) and payload. */
export interface LiveReply {
  headers: Buffer;
  payload: Buffer;
}

/**
 * A LiveSubscriber as a RequestPipeline's wire: requests are written with the connection's other
 * writes (text payloads, headers as a ready block), replies come on one wildcard subscription.
 */
export function liveWire(live: LiveSubscriber): PipelineWire<LiveReply, string> {
  return {
    inbox: () => createInbox(),
    listen: (prefix, onReply) => {
      const sid = live.subscribe(`${prefix}*`, (headers, payload, subject) => onReply(subject, { headers, payload }));
      return () => live.unsubscribe(sid);
    },
    send: (subject, payload, headers, reply) => {
      if (typeof payload !== 'string') throw new TypeError('the live wire sends text payloads');
      live.publish(subject, reply, headers ?? '', payload);
    },
    watch: (lost, back, stopped) => {
      const stop = live.onStatus((up) => {
        if (stopped()) stop();
        else if (up) back();
        else lost();
      });
    },
  };
}
