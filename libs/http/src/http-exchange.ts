import { PushError, isPushError } from '@push/protocol';
import type { CorsPolicy } from './cors.js';
import type { HttpRequest, HttpResponse } from './uws.js';

const STATUS_TEXT: Record<number, string> = {
  200: '200 OK',
  201: '201 Created',
  202: '202 Accepted',
  204: '204 No Content',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  403: '403 Forbidden',
  404: '404 Not Found',
  405: '405 Method Not Allowed',
  409: '409 Conflict',
  413: '413 Payload Too Large',
  429: '429 Too Many Requests',
  500: '500 Internal Server Error',
  503: '503 Service Unavailable',
};

/**
 * Bounds of the lingering close after a refused body (`body_too_large`): the answer goes out at
 * once, then what the client still sends is read and dropped (never kept) for at most this long
 * and this many bytes, so that a client still sending its body reads the answer instead of a
 * reset (a client that writes its whole request before it reads loses the answer to a reset);
 * then the connection closes. docs/api.md documents both.
 */
export const LINGER_MAX_MS = 10_000;
export const LINGER_MAX_BYTES = 64 * 1024 * 1024;

/** `"NNN Text"` for a status code. */
export function statusLine(status: number): string {
  return STATUS_TEXT[status] ?? `${status} Status`;
}

/**
 * One HTTP request/response on uWebSockets.js, safe to use across awaits: it registers the
 * abort handler uWS requires, copies what it needs from the stack-allocated request up front,
 * and corks every write.
 */
export class HttpExchange {
  readonly method: string;
  readonly url: string;
  readonly query: string;
  private readonly res: HttpResponse;
  private readonly headers: Map<string, string>;
  /** The request's Content-Length header, empty when absent (chunked). */
  private readonly contentLength: string;
  private aborted = false;
  private done = false;
  /**
   * The body was refused (too large): the answer goes out at once but the response stays open
   * while the rest of the body is dropped, up to LINGER_MAX_MS and LINGER_MAX_BYTES; then the
   * response ends and the connection closes. Closing at once, with the client's bytes unread,
   * made the kernel answer them with a reset, and a client still sending never read its 413.
   */
  private lingering = false;
  /** Close the connection after the answer (`Connection: close`): the server is stopping. */
  closeAfter = false;
  /** The refused body ended (or its bound was hit) before the answer was sent. */
  private lingerDone = false;
  private lingerTimer: NodeJS.Timeout | undefined;
  /** CORS headers every answer carries (empty without a policy or an Origin). */
  private readonly corsHeaders: Record<string, string>;

  /** With `cors`, every answer carries the CORS headers the policy gives the request's Origin. */
  constructor(res: HttpResponse, req: HttpRequest, wantHeaders: readonly string[] = [], cors?: CorsPolicy) {
    this.res = res;
    this.method = req.getMethod();
    this.url = req.getUrl();
    this.query = req.getQuery() ?? '';
    this.headers = new Map();
    for (const h of wantHeaders) this.headers.set(h, req.getHeader(h));
    this.contentLength = req.getHeader('content-length');
    this.corsHeaders = cors === undefined ? {} : cors.headers(req.getHeader('origin'));
    res.onAborted(() => {
      this.aborted = true;
      clearTimeout(this.lingerTimer);
    });
  }

  /** A header copied at construction (lowercase name, empty when absent). */
  header(name: string): string {
    return this.headers.get(name) ?? '';
  }

  /** Whether the client went away; nothing can be sent then. */
  get isAborted(): boolean {
    return this.aborted;
  }

  /**
   * Reads the whole body, refusing more than `maxBytes` with PushError `body_too_large` (at once
   * when Content-Length says so); the rest of a refused body is then dropped unread, within the
   * linger bounds, and the answer closes the connection. Must be called before the first await
   * of the handler (uWS streams the body right away).
   */
  readBody(maxBytes: number): Promise<Buffer> {
    const tooLarge = () => new PushError('body_too_large', `the request body is larger than ${maxBytes} bytes`);
    if (this.contentLength !== '' && Number(this.contentLength) > maxBytes) {
      this.linger(0);
      return Promise.reject(tooLarge());
    }
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      this.res.onData((chunk, isLast) => {
        size += chunk.byteLength;
        if (size > maxBytes) {
          this.linger(chunk.byteLength, isLast);
          reject(tooLarge());
          return;
        }
        // uWS neuters the ArrayBuffer after the callback: copy it.
        chunks.push(Buffer.from(new Uint8Array(chunk).slice()));
        if (isLast) resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
      });
    });
  }

  /** Drops the rest of a refused body (`dropped` bytes of it so far), counting, never keeping. */
  private linger(dropped: number, isLast = false): void {
    this.lingering = true;
    let total = dropped;
    if (isLast) {
      this.endLinger(true);
      return;
    }
    this.res.onData((chunk, last) => {
      total += chunk.byteLength;
      if (last || total > LINGER_MAX_BYTES) this.endLinger(last);
    });
  }

  /**
   * The refused body ended (`whole`) or hit a bound. Ended: the answer's last chunk goes out
   * (the client was told `connection: close`). A bound: the connection closes, the answer as it
   * stands (its status and JSON went out at once; only the chunked framing's end is missing).
   * uWS' end(…, true) after write() would break the framing, so it is not used.
   */
  private endLinger(whole: boolean): void {
    clearTimeout(this.lingerTimer);
    if (this.lingerDone) return;
    this.lingerDone = true;
    // Not answered yet: send() answers in full and closes (nothing is left unread when whole).
    if (!this.done || this.aborted) return;
    if (whole) this.res.cork(() => this.res.end());
    else this.res.close();
  }

  /** Reads and parses a JSON body; PushError `bad_json` when it is not JSON. */
  async readJson(maxBytes: number, opts: { optional?: boolean } = {}): Promise<unknown> {
    const body = await this.readBody(maxBytes);
    if (opts.optional === true && body.length === 0) return undefined;
    try {
      return JSON.parse(body.toString('utf8'));
    } catch (err) {
      throw new PushError('bad_json', undefined, { cause: err });
    }
  }

  /** Sends a JSON body with a status; ignored when aborted or already answered. */
  json(status: number, body: unknown, extraHeaders?: Record<string, string>): void {
    this.send(status, JSON.stringify(body), 'application/json', extraHeaders);
  }

  /** Sends a text body. */
  send(
    status: number,
    body: string,
    contentType = 'text/plain; charset=utf-8',
    extraHeaders?: Record<string, string>,
  ): void {
    if (this.aborted || this.done) return;
    this.done = true;
    // Still reading a refused body: answer now, in a chunked response that ends when it does.
    const open = this.lingering && !this.lingerDone;
    this.res.cork(() => {
      this.res.writeStatus(statusLine(status)).writeHeader('content-type', contentType);
      for (const [k, v] of Object.entries(this.corsHeaders)) this.res.writeHeader(k, v);
      if (extraHeaders) for (const [k, v] of Object.entries(extraHeaders)) this.res.writeHeader(k, v);
      if (open) {
        this.res.writeHeader('connection', 'close');
        this.res.write(body);
      } else this.res.end(body, this.lingering || this.closeAfter);
    });
    if (open) this.lingerTimer = setTimeout(() => this.endLinger(false), LINGER_MAX_MS).unref();
  }

  /** Answers with an error body `{ error: { code, message } }` and the code's status. */
  error(err: unknown): void {
    const e = toPushError(err);
    this.json(e.status, { error: e.toJSON() });
  }
}

/** Any thrown value as a PushError (unknown errors become `internal`, their cause kept). */
export function toPushError(err: unknown): PushError {
  if (isPushError(err)) return err;
  return new PushError('internal', undefined, { cause: err });
}
