import { expect } from 'chai';
import type net from 'node:net';
import WebSocket from 'ws';
import { Stack, type TestApp } from '../helpers/stack.js';
import { TestClient } from '../helpers/ws-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface TopicMsg {
  t: string;
  topic?: string;
  seq?: number;
  prev?: number;
  first?: number;
  data?: { n: number };
}

/**
 * A topic subscriber as protocol.md asks clients to be: it keeps the last `seq` it took, takes a
 * message only when its `prev` is not past that (else it resumes with `sub` `since`), and after a
 * close reconnects and resumes with `since`. Its TCP socket can stop being read (`pause`).
 */
class ResumingSubscriber {
  readonly got: number[] = [];
  last = 0;
  closes = 0;
  readonly closeCodes: number[] = [];
  resubs = 0;
  private ws: WebSocket | undefined;
  private tcp: net.Socket | undefined;
  private stopped = false;

  constructor(
    private readonly url: () => Promise<string>,
    private readonly topic: string,
  ) {}

  async connect(since?: number): Promise<void> {
    const ws = new WebSocket(await this.url());
    this.ws = ws;
    ws.once('upgrade', (res) => (this.tcp = res.socket));
    ws.on('message', (data: Buffer) => this.onFrame(JSON.parse(data.toString('utf8')) as TopicMsg));
    ws.on('close', (code) => {
      if (this.stopped || this.ws !== ws) return;
      this.closes++;
      this.closeCodes.push(code);
      void this.connect(this.last);
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.send(JSON.stringify({ t: 'sub', topic: this.topic, ...(since !== undefined ? { since } : {}) }));
  }

  private pendingResub = false;

  private onFrame(f: TopicMsg): void {
    if (f.topic !== this.topic) return;
    if (f.t === 'subscribed') this.pendingResub = false;
    if (f.t === 'lost') throw new Error(`history lost from ${String(f.first)}`);
    if (f.t !== 'msg' || f.seq === undefined || f.data === undefined) return;
    if (f.seq <= this.last) return; // a duplicate: already taken
    if ((f.prev ?? 0) > this.last) {
      // Missed messages: resume from the last one taken.
      if (!this.pendingResub) {
        this.pendingResub = true;
        this.resubs++;
        this.ws?.send(JSON.stringify({ t: 'sub', topic: this.topic, since: this.last }));
      }
      return;
    }
    this.got.push(f.data.n);
    this.last = f.seq;
  }

  pause(): void {
    this.tcp?.pause();
  }

  resume(): void {
    this.tcp?.resume();
  }

  stop(): void {
    this.stopped = true;
    this.ws?.terminate();
  }
}

describe('topics: a slow subscriber', function () {
  this.timeout(120_000);
  const BACKPRESSURE = 64 * 1024;
  const N = 600;
  const PAD = 'x'.repeat(40_000);
  let stack: Stack;
  let app: TestApp;
  let slow: ResumingSubscriber | undefined;
  let fast: TestClient | undefined;

  before(async function () {
    stack = await Stack.start({ PUSH_EDGE_MAX_BACKPRESSURE: String(BACKPRESSURE) });
    app = await stack.createApp({ topicHistory: 1000 });
  });
  after(async function () {
    slow?.stop();
    fast?.terminate();
    await stack?.close();
  });

  it('never stalls the others, and gets every message once, in order, by resuming with since', async function () {
    slow = new ResumingSubscriber(
      async () => `${stack.wsUrl()}?token=${await app.token('slow', 'd', 3600, ['*'])}`,
      'feed',
    );
    await slow.connect();
    fast = await app.connectWithTopics('fast', ['*']);
    fast.send({ t: 'sub', topic: 'feed' });
    await fast.waitFor((f) => f.t === 'subscribed');
    await sleep(100);
    slow.pause();

    // About 24 MB, far more than the kernel buffers of a loopback connection hold.
    for (let from = 0; from < N; from += 50) {
      const messages = Array.from({ length: 50 }, (_, k) => ({ topic: 'feed', data: { n: from + k, pad: PAD } }));
      const r = await stack.http('POST', `/v1/apps/${app.id}/topics/messages`, app.apiKey, { messages });
      expect(r.status, JSON.stringify(r.body)).to.equal(200);
    }
    // The fast subscriber is not held up by the slow one.
    await fast.waitFor(() => fast!.frames.filter((f) => f.t === 'msg' && f['topic'] === 'feed').length >= N, 30_000);
    const fastGot = fast.frames
      .filter((f) => f.t === 'msg' && f['topic'] === 'feed')
      .map((f) => (f['data'] as { n: number }).n);
    expect(fastGot).to.deep.equal(Array.from({ length: N }, (_, i) => i));
    expect(slow.got.length).to.be.lessThan(N);

    slow.resume();
    const deadline = Date.now() + 60_000;
    while (slow.got.length < N && Date.now() < deadline) await sleep(50);
    expect(slow.got).to.deep.equal(Array.from({ length: N }, (_, i) => i));
    // It was told, not left with a silent gap: the edge closed it (1006) once a topic frame was
    // dropped past its backpressure bound, and it resumed with `since` after reconnecting.
    expect(slow.closeCodes).to.include(1006);
  });
});
