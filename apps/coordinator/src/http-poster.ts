import http from 'node:http';
import https from 'node:https';

/** The answer to a POST: its status (the body is read and dropped, so the socket is reused). */
export interface PostResult {
  status: number;
  /** The answer's body, when `readBody` was asked (RPC). */
  body?: Buffer;
}

/** A POST that got no HTTP answer: a timeout, a refused connection, a reset. */
export class PostError extends Error {
  constructor(
    message: string,
    readonly timedOut: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PostError';
  }
}

/** Most bytes of an answer read (an RPC reply); a longer one fails the POST. */
const MAX_ANSWER_BYTES = 1024 * 1024;

/**
 * A keep-alive HTTP client for one destination (a webhook endpoint or an app's RPC URL): one
 * pooled agent per destination with at most `maxSockets` connections, so one slow or dead
 * destination holds its own sockets and never another's.
 */
export class HttpPoster {
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: https.Agent;

  /**
   * @param timeFromSocket start a POST's deadline when it gets its connection (webhooks: a batch
   *   waiting for one of the endpoint's busy sockets has not been sent, so waiting is no part of
   *   the endpoint's time to answer), not when it is called (RPC: the client is waiting).
   */
  constructor(
    maxSockets: number,
    private readonly timeFromSocket = false,
  ) {
    const opts = { keepAlive: true, maxSockets, maxFreeSockets: maxSockets, scheduling: 'lifo' as const };
    this.httpAgent = new http.Agent(opts);
    this.httpsAgent = new https.Agent(opts);
  }

  /**
   * POSTs `body` as JSON. Resolves with the status for any HTTP answer; rejects with PostError
   * when there is none within `timeoutMs` (from the call, or with `timeFromSocket` from getting a
   * connection, to the answer's last byte) or the connection failed.
   */
  post(
    url: string,
    body: string | Buffer,
    headers: Record<string, string>,
    timeoutMs: number,
    readBody = false,
  ): Promise<PostResult> {
    return new Promise<PostResult>((resolve, reject) => {
      let u: URL;
      try {
        u = new URL(url);
      } catch (cause) {
        reject(new PostError(`bad URL ${url}`, false, { cause }));
        return;
      }
      const mod = u.protocol === 'https:' ? https : http;
      const agent = u.protocol === 'https:' ? this.httpsAgent : this.httpAgent;
      const req = mod.request(
        u,
        {
          method: 'POST',
          agent,
          headers: {
            ...headers,
            'content-type': 'application/json',
            'content-length': String(Buffer.byteLength(body)),
            'user-agent': 'push-coordinator',
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            if (!readBody) return;
            size += c.length;
            if (size > MAX_ANSWER_BYTES) {
              req.destroy(new PostError(`answer larger than ${MAX_ANSWER_BYTES} bytes`, false));
              return;
            }
            chunks.push(c);
          });
          res.on('end', () => {
            clearTimeout(timer);
            resolve({ status: res.statusCode ?? 0, ...(readBody ? { body: Buffer.concat(chunks) } : {}) });
          });
          res.on('error', (err) => {
            clearTimeout(timer);
            reject(err instanceof PostError ? err : new PostError(err.message, false, { cause: err }));
          });
        },
      );
      let timer: NodeJS.Timeout | undefined;
      const arm = (): void => {
        timer = setTimeout(() => req.destroy(new PostError(`no answer within ${timeoutMs} ms`, true)), timeoutMs);
      };
      if (this.timeFromSocket) req.once('socket', arm);
      else arm();
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(err instanceof PostError ? err : new PostError(err.message, false, { cause: err }));
      });
      req.end(body);
    });
  }

  /** Closes the pooled sockets. */
  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}
