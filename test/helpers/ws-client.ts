import WebSocket from 'ws';

/** A frame the edge sent, parsed. */
export type Frame = { t: string } & Record<string, unknown>;
export interface MsgFrame {
  t: 'msg';
  seq: number;
  ts: number;
  data?: unknown;
  b64?: string;
  from?: string;
}

/** The result of a refused upgrade. */
export interface Refusal {
  status: number;
  body: { error?: { code: string; message: string } };
  headers: Record<string, string | string[] | undefined>;
}

/**
 * A WebSocket client for tests: collects frames in order and lets a test wait for the ones it
 * expects. Speaks only the documented protocol (docs/protocol.md).
 */
export class TestClient {
  readonly frames: Frame[] = [];
  closeCode: number | undefined;
  closeReason = '';
  /** The last socket error (e.g. an invalid frame from the server), for diagnostics. */
  error: Error | undefined;
  private readonly ws: WebSocket;
  private waiters: Array<() => void> = [];
  /** The TCP socket the frames come on (set at the upgrade). */
  private tcp: { pause(): void; resume(): void } | undefined;

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.once('upgrade', (res) => (this.tcp = res.socket));
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.frames.push(isBinary ? { t: '<binary>' } : (JSON.parse(data.toString('utf8')) as Frame));
      this.wake();
    });
    ws.on('error', (err) => {
      this.error = err;
    });
    ws.on('close', (code, reason) => {
      this.closeCode = code;
      this.closeReason = reason.toString();
      this.wake();
    });
  }

  private wake(): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  /** Connects; resolves once the hello frame arrived. Rejects with the refusal on a refused upgrade. */
  static connect(url: string, token: string | undefined, query = '', helloMs = 5000): Promise<TestClient> {
    const full = `${url}?${token !== undefined ? `token=${encodeURIComponent(token)}` : ''}${query}`;
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(full);
      const client = new TestClient(ws);
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => {
          let parsed: Refusal['body'] = {};
          try {
            parsed = JSON.parse(body) as Refusal['body'];
          } catch {
            parsed = {};
          }
          reject(
            Object.assign(new Error(`refused ${res.statusCode}`), {
              refusal: { status: res.statusCode ?? 0, body: parsed, headers: res.headers },
            }),
          );
        });
      });
      ws.once('error', (err) => reject(err));
      ws.once('open', () => {
        client.waitFor((f) => f.t === 'hello', helloMs).then(() => resolve(client), reject);
      });
    });
  }

  /** Connects expecting a refusal; resolves with it (rejects if the upgrade succeeds). */
  static async refused(url: string, token: string | undefined, query = ''): Promise<Refusal> {
    try {
      const c = await TestClient.connect(url, token, query);
      c.close();
    } catch (err) {
      const r = (err as { refusal?: Refusal }).refusal;
      if (r !== undefined) return r;
      throw err;
    }
    throw new Error('expected the upgrade to be refused, but it succeeded');
  }

  get hello(): Frame {
    const h = this.frames.find((f) => f.t === 'hello');
    if (h === undefined) throw new Error('no hello');
    return h;
  }

  /** Every message frame received so far, in order. */
  get messages(): MsgFrame[] {
    return this.frames.filter((f) => f.t === 'msg') as unknown as MsgFrame[];
  }

  /** Waits until a frame matching `pred` has arrived (looking at all frames so far). */
  async waitFor(pred: (f: Frame) => boolean, timeoutMs = 5000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = this.frames.find(pred);
      if (f !== undefined) return f;
      if (this.closeCode !== undefined)
        throw new Error(
          `closed (${this.closeCode} ${this.closeReason}) before the frame came${this.error ? `: ${this.error.message}` : ''}`,
        );
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`timed out waiting for a frame; have ${JSON.stringify(this.frames).slice(0, 500)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits until at least `n` messages arrived. */
  async waitForMessages(n: number, timeoutMs = 10_000): Promise<MsgFrame[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.messages.length < n) {
      if (this.closeCode !== undefined) {
        throw new Error(
          `closed (${this.closeCode} ${this.error?.message ?? ''}) with ${this.messages.length}/${n} messages`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out with ${this.messages.length}/${n} messages`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.messages;
  }

  /** Waits until the socket is closed; resolves with the close code. */
  async waitClosed(timeoutMs = 5000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (this.closeCode === undefined) {
      if (Date.now() > deadline) throw new Error('socket still open');
      await new Promise((r) => setTimeout(r, 20));
    }
    return this.closeCode;
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  sendRaw(data: string | Buffer, binary = false): void {
    this.ws.send(data, { binary });
  }

  ack(seqs: number[]): void {
    this.send({ t: 'ack', seqs });
  }

  /** Resolves with the pong, proving the socket still serves. */
  async ping(): Promise<void> {
    const before = this.frames.filter((f) => f.t === 'pong').length;
    this.send({ t: 'ping' });
    await this.waitFor(() => this.frames.filter((f) => f.t === 'pong').length > before);
  }

  close(): void {
    this.ws.close();
  }

  /** Stops reading the TCP socket: the kernel's buffers fill, then the edge's (a slow client). */
  pauseReading(): void {
    this.tcp?.pause();
  }

  /** Reads the TCP socket again. */
  resumeReading(): void {
    this.tcp?.resume();
  }

  /** Drops the TCP connection without a close frame (like a phone losing signal). */
  terminate(): void {
    this.ws.terminate();
  }
}
