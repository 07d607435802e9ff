import { expect } from 'chai';
import { Registry } from 'prom-client';
import type { InboxMessage } from '@push/nats';
import { AckBatcher } from '../../apps/edge/src/ack-batcher.js';
import { ClientConnection } from '../../apps/edge/src/client-connection.js';
import type { EdgeContext } from '../../apps/edge/src/edge-context.js';
import { createEdgeMetrics } from '../../apps/edge/src/metrics.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function message(seq: number): InboxMessage {
  return { seq, ts: 1, expires: Date.now() + 60_000, bytes: Buffer.from(String(seq)), binary: false, from: undefined };
}

interface Read {
  fromSeq: number;
  max: number;
  answer: (messages: number[], more: boolean) => void;
}

/**
 * A connection wired to a store whose batched reads the test answers by hand, so that live
 * messages can be made to arrive exactly while a read is out.
 */
function harness(window = 100) {
  const reads: Read[] = [];
  const sent: number[] = [];
  const store = {
    readBatch(_app: string, _user: string, fromSeq: number, bounds: { max: number }) {
      return new Promise<{ messages: InboxMessage[]; more: boolean }>((resolve) => {
        reads.push({
          fromSeq,
          max: bounds.max,
          answer: (seqs, more) => resolve({ messages: seqs.map(message), more }),
        });
      });
    },
    purge: () => Promise.resolve(0),
    remove: () => Promise.resolve(true),
  };
  const metrics = createEdgeMetrics(new Registry());
  const ctx = {
    edgeId: 'e',
    config: { window },
    store,
    channels: { join: () => Promise.resolve(), leave: () => undefined },
    // Every connection joins the app's _all topic at open; it never answers here.
    topics: { join: () => new Promise(() => undefined), leave: () => undefined },
    metrics,
    log: { warn: () => undefined, error: () => undefined, debug: () => undefined },
    acks: new AckBatcher(store, metrics),
    highWaterBytes: 1 << 20,
  } as unknown as EdgeContext;
  const conn = new ClientConnection(ctx, 1, 'app', 'u', 'd', 0);
  const ws = {
    cork: (f: () => void) => f(),
    send: (frame: string) => {
      const f = JSON.parse(frame) as { t: string; seq?: number };
      if (f.t === 'msg' && f.seq !== undefined) sent.push(f.seq);
      return 1;
    },
    getBufferedAmount: () => 0,
    end: () => undefined,
  };
  conn.open(ws as unknown as Parameters<ClientConnection['open']>[0], 25, 1024);
  const nextRead = async (): Promise<Read> => {
    for (let i = 0; i < 100 && reads.length === 0; i++) await sleep(1);
    const r = reads.shift();
    if (r === undefined) throw new Error('no read was made');
    return r;
  };
  return { conn, sent, reads, nextRead };
}

describe('batched backlog reads and live messages (no gap, no duplicate)', () => {
  it('delivers in order, once each, when live messages arrive while a batch is out', async () => {
    const { conn, sent, nextRead } = harness();
    const first = await nextRead();
    expect(first.fromSeq).to.equal(1);
    expect(first.max).to.equal(100);
    // Stored while the read is out: 3 is also in the batch, 4 and 5 came after its snapshot.
    conn.onLive(message(3));
    conn.onLive(message(4));
    first.answer([1, 2, 3], true);
    const second = await nextRead();
    expect(second.fromSeq).to.equal(4);
    conn.onLive(message(5));
    second.answer([4], false);
    await sleep(5);
    expect(sent).to.deep.equal([1, 2, 3, 4, 5]);
    conn.onLive(message(6));
    expect(sent).to.deep.equal([1, 2, 3, 4, 5, 6]);
  });

  it('asks for no more than the free window, and stalls at a full one', async () => {
    const { conn, sent, reads, nextRead } = harness(3);
    const first = await nextRead();
    expect(first.max).to.equal(3);
    first.answer([10, 11, 12], true);
    await sleep(5);
    expect(sent).to.deep.equal([10, 11, 12]);
    expect(reads).to.have.length(0); // window full: no read until an ack
    conn.onFrame(JSON.stringify({ t: 'ack', seqs: [10] }));
    const second = await nextRead();
    expect(second).to.include({ fromSeq: 13, max: 1 });
    second.answer([13], false);
    await sleep(5);
    expect(sent).to.deep.equal([10, 11, 12, 13]);
  });
});
