import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import type net from 'node:net';
import WebSocket from 'ws';
import type { Edge } from '@push/edge';
import { Stack, type TestApp } from '../helpers/stack.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * What the kernel may hold of a loopback connection whose reader stopped: the sender's socket
 * buffer (at most tcp_wmem's maximum, 4 MiB by default on Linux; measured: about 4 MB of 40 KB
 * frames get out) plus an allowance for the receiver's, which does not grow while nobody reads.
 */
function kernelBuffers(): number {
  const file = '/proc/sys/net/ipv4/tcp_wmem'; // Linux; elsewhere the default, the same order of magnitude
  const wmemMax = existsSync(file) ? Number(readFileSync(file, 'utf8').trim().split(/\s+/)[2]) : NaN;
  return (Number.isFinite(wmemMax) ? wmemMax : 4 * 1024 * 1024) + 4 * 1024 * 1024;
}
const KERNEL_BUFFERS = kernelBuffers();

/** The value of an unlabelled counter of the edge's registry. */
async function counter(edge: Edge, name: string): Promise<number> {
  const m = edge.registry.getSingleMetric(name);
  if (m === undefined) throw new Error(`no metric ${name}`);
  return (await m.get()).values[0]?.value ?? 0;
}

/**
 * A client that reads its TCP socket only when told: `pause()` stops reading (the kernel's receive
 * buffer fills, then the edge's send buffer), `resume()` reads again. It acks what it gets.
 */
class SlowReader {
  readonly got: Array<{ seq: number; n: number }> = [];
  private tcp: net.Socket | undefined;
  private unacked: number[] = [];

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const f = JSON.parse(data.toString('utf8')) as { t: string; seq?: number; data?: { n: number } };
      if (f.t !== 'msg' || f.seq === undefined || f.data === undefined) return;
      this.got.push({ seq: f.seq, n: f.data.n });
      this.unacked.push(f.seq);
      // Acks in batches, as protocol.md advises, well before the window fills.
      if (this.unacked.length >= 50) this.ack();
    });
  }

  static open(url: string): Promise<SlowReader> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      const reader = new SlowReader(ws);
      // The response's socket is the one ws reads the frames from.
      ws.once('upgrade', (res) => (reader.tcp = res.socket));
      ws.once('error', reject);
      ws.on('message', function hello(data: Buffer) {
        if ((JSON.parse(data.toString('utf8')) as { t: string }).t !== 'hello') return;
        ws.off('message', hello);
        resolve(reader);
      });
    });
  }

  ack(): void {
    if (this.unacked.length === 0) return;
    this.ws.send(JSON.stringify({ t: 'ack', seqs: this.unacked.splice(0) }));
  }

  pause(): void {
    this.tcp?.pause();
  }

  resume(): void {
    this.tcp?.resume();
  }

  close(): void {
    this.ws.terminate();
  }
}

describe('slow socket: a client that stops reading', function () {
  this.timeout(120_000);
  // The window is raised so that only the socket's backpressure can stop the edge.
  const BACKPRESSURE = 64 * 1024;
  const N = 600;
  const DATA = 'x'.repeat(40_000);
  let stack: Stack;
  let app: TestApp;
  let reader: SlowReader | undefined;

  before(async function () {
    stack = await Stack.start({ PUSH_EDGE_WINDOW: '10000', PUSH_EDGE_MAX_BACKPRESSURE: String(BACKPRESSURE) });
    app = await stack.createApp();
  });
  after(async function () {
    reader?.close();
    await stack?.close();
  });

  it('stalls the edge within its bound while the client is not reading, then delivers everything in order', async function () {
    reader = await SlowReader.open(`${stack.wsUrl()}?token=${encodeURIComponent(await app.token('slow'))}`);
    const outBefore = await counter(stack.edge, 'push_edge_messages_out_total');
    const stallsBefore = await counter(stack.edge, 'push_edge_stalls_total');
    reader.pause();

    // About 24 MB for one user, far more than the kernel buffers of a loopback connection hold.
    for (let from = 0; from < N; from += 50) {
      const messages = Array.from({ length: 50 }, (_, k) => ({ user: 'slow', data: { n: from + k, pad: DATA } }));
      const r = await app.push({ messages });
      expect(r.status, JSON.stringify(r.body)).to.equal(200);
    }

    // The edge sends until the socket's buffers are full, then stops: its count of messages sent
    // stays still for a second.
    let sent = (await counter(stack.edge, 'push_edge_messages_out_total')) - outBefore;
    for (const deadline = Date.now() + 10_000; Date.now() < deadline;) {
      await sleep(1000);
      const now = (await counter(stack.edge, 'push_edge_messages_out_total')) - outBefore;
      if (now === sent) break;
      sent = now;
    }
    const sentBytes = sent * (DATA.length + 100);
    expect(sentBytes, `${sent} messages sent to a client that reads nothing`).to.be.at.most(
      KERNEL_BUFFERS + BACKPRESSURE,
    );
    expect(sent, 'messages sent before the client read again').to.be.lessThan(N);
    expect(await counter(stack.edge, 'push_edge_stalls_total')).to.be.greaterThan(stallsBefore);
    expect(reader.got).to.have.length(0);

    // Everything comes once the client reads again: in order, none missing, none twice.
    reader.resume();
    const deadline = Date.now() + 60_000;
    while (reader.got.length < N && Date.now() < deadline) {
      await sleep(50);
      reader.ack();
    }
    expect(reader.got.map((m) => m.n)).to.deep.equal(Array.from({ length: N }, (_, i) => i));
    const seqs = reader.got.map((m) => m.seq);
    expect(seqs.every((s, i) => i === 0 || s > (seqs[i - 1] as number))).to.equal(true);
    reader.ack();
    await app.waitPending('slow', 0, 10_000);
  });
});
