import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

/** How the receiver answers. */
export type ReceiverMode =
  | { kind: 'ok' }
  | { kind: 'fail'; status?: number }
  /**
   * Fails this share of requests (0..1) with 500, at random; the first request answered in this
   * mode always fails, so a test sees a failure however few batches the coordinator sends.
   */
  | { kind: 'flaky'; failRate: number }
  /** Closes the connection without an answer (a dead endpoint). */
  | { kind: 'down' }
  /** Never answers (the coordinator's timeout fires). */
  | { kind: 'hang' }
  /** Answers 200 after `ms`. */
  | { kind: 'slow'; ms: number }
  /** Answers 500 to the first `request - 1` requests (from this mode on), then never answers. */
  | { kind: 'hangFrom'; request: number };

/** One request the receiver got, after its signature was verified. */
export interface Received {
  webhookId: string;
  /** Whether the receiver answered 2xx. */
  ok: boolean;
  body: { app: string; endpoint: string; source: string; items: Array<{ id: string } & Record<string, unknown>> };
  at: number;
}

/**
 * A webhook receiver in the test process: every request's signature is checked with the
 * `standardwebhooks` package (an implementation independent of ours) against the secrets it is
 * told; a request that fails the check is recorded in `badSignatures` and answered 401.
 */
export class WebhookReceiver {
  readonly received: Received[] = [];
  badSignatures = 0;
  mode: ReceiverMode = { kind: 'ok' };
  /** Requests answered in `flaky` mode so far. */
  private flakyAnswered = 0;
  secrets: string[] = [];
  /** How many verified requests held each item id, in any mode (`hang` and `down` too): its attempts. */
  readonly tries = new Map<string, number>();
  /** For RPC: the answer to a verified request (the body as JSON). */
  rpcAnswer: ((req: Record<string, unknown>) => unknown) | undefined;
  private readonly server: http.Server;
  private readonly hanging = new Set<http.ServerResponse>();
  private hangFromSeen = 0;

  private constructor() {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => this.handle(req, res, Buffer.concat(chunks).toString('utf8')));
    });
    this.server.keepAliveTimeout = 30_000;
  }

  static async start(): Promise<WebhookReceiver> {
    const r = new WebhookReceiver();
    await new Promise<void>((resolve) => r.server.listen(0, '127.0.0.1', resolve));
    return r;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hook`;
  }

  private verify(body: string, headers: http.IncomingHttpHeaders): boolean {
    const h = {
      'webhook-id': String(headers['webhook-id'] ?? ''),
      'webhook-timestamp': String(headers['webhook-timestamp'] ?? ''),
      'webhook-signature': String(headers['webhook-signature'] ?? ''),
    };
    return this.secrets.some((s) => {
      try {
        new Webhook(s).verify(body, h);
        return true;
      } catch {
        // Not this secret; the next may verify (rotation).
        return false;
      }
    });
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse, body: string): void {
    if (!this.verify(body, req.headers)) {
      this.badSignatures++;
      res.writeHead(401).end();
      return;
    }
    try {
      for (const i of (JSON.parse(body) as Received['body']).items ?? [])
        this.tries.set(i.id, (this.tries.get(i.id) ?? 0) + 1);
    } catch {
      // Not a webhook batch (an RPC): no items to count.
    }
    let mode = this.mode;
    if (mode.kind === 'hangFrom') mode = ++this.hangFromSeen >= mode.request ? { kind: 'hang' } : { kind: 'fail' };
    if (this.rpcAnswer !== undefined && mode.kind === 'ok') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(this.rpcAnswer(JSON.parse(body) as Record<string, unknown>)));
      return;
    }
    if (mode.kind === 'hang') {
      this.hanging.add(res);
      return;
    }
    if (mode.kind === 'down') {
      req.socket.destroy();
      return;
    }
    const ok =
      mode.kind === 'ok' ||
      mode.kind === 'slow' ||
      (mode.kind === 'flaky' && this.flakyAnswered++ > 0 && Math.random() >= mode.failRate);
    const record = () =>
      this.received.push({
        webhookId: String(req.headers['webhook-id']),
        ok,
        body: JSON.parse(body) as Received['body'],
        at: Date.now(),
      });
    if (mode.kind === 'slow') {
      setTimeout(() => {
        record();
        res.writeHead(200).end();
      }, mode.ms);
      return;
    }
    record();
    res.writeHead(ok ? 200 : mode.kind === 'fail' ? (mode.status ?? 500) : 500).end();
  }

  /** Ids of the items of every 2xx-answered request, in arrival order (duplicates kept). */
  okIds(): string[] {
    return this.received.filter((r) => r.ok).flatMap((r) => r.body.items.map((i) => i.id));
  }

  /** Waits until every id was answered 2xx at least once. */
  async waitFor(ids: readonly string[], timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = new Set(this.okIds());
      const missing = ids.filter((id) => !got.has(id));
      if (missing.length === 0) return;
      if (Date.now() > deadline)
        throw new Error(`${missing.length} of ${ids.length} items not delivered within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Requests held by `hang` now (in flight for the sender). */
  get held(): number {
    return this.hanging.size;
  }

  /** Ends the requests held by `hang` (their connections drop: the sender sees a failure). */
  release(): void {
    for (const res of this.hanging) res.destroy();
    this.hanging.clear();
  }

  async close(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
