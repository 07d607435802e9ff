import { expect } from 'chai';
import { BacklogReader, type BacklogStore, type InboxMessage } from '@push/nats';
import { encodeToken } from '@push/protocol';

function message(seq: number, bytes = 10): InboxMessage {
  return { seq, ts: 1, expires: Date.now() + 60_000, bytes: Buffer.alloc(bytes), binary: false, from: undefined };
}

/**
 * An app stream in memory: `log[i]` is the user of sequence i + 1. Counts the requests of each
 * kind, and answers them like nats-server's batched Direct Get.
 */
function fakeStore(log: string[], bytes = 10) {
  const calls = { batch: 0, range: 0 };
  const store: BacklogStore = {
    readBatch(_app, user, fromSeq, bounds) {
      calls.batch++;
      const seqs: number[] = [];
      for (let s = fromSeq; s <= log.length; s++) if (log[s - 1] === user) seqs.push(s);
      const taken = seqs.slice(0, bounds.max);
      return Promise.resolve({ messages: taken.map((s) => message(s, bytes)), more: seqs.length > taken.length });
    },
    readRange(_app, fromSeq, bounds) {
      calls.range++;
      const messages: InboxMessage[] = [];
      const userTokens: string[] = [];
      let s = Math.max(1, fromSeq);
      for (; s <= log.length && messages.length < bounds.max; s++) {
        messages.push(message(s, bytes));
        userTokens.push(encodeToken(log[s - 1] as string));
      }
      return Promise.resolve({ messages, userTokens, more: s <= log.length });
    },
  };
  return { store, calls };
}

/** `users` users with `per` messages each, interleaved in the stream as a reconnect storm finds them. */
function interleaved(users: number, per: number): string[] {
  const log: string[] = [];
  for (let i = 0; i < per; i++) for (let u = 0; u < users; u++) log.push(`user.${u}`); // ids with a dot, encoded
  return log;
}

const seqsOf = (log: string[], user: string, from = 1): number[] =>
  log.flatMap((u, i) => (u === user && i + 1 >= from ? [i + 1] : []));

describe('BacklogReader', () => {
  it('reads one user at a time with its own batched read when few wait', async () => {
    const log = interleaved(10, 5);
    const { store, calls } = fakeStore(log);
    const reader = new BacklogReader(store, { sweepMinReaders: 64 });
    const got = await Promise.all(
      Array.from({ length: 10 }, (_, u) => reader.read('app', `user.${u}`, 1, { max: 100, maxBytes: 1 << 20 })),
    );
    expect(calls).to.deep.equal({ batch: 10, range: 0 });
    got.forEach((b, u) => {
      expect(b.messages.map((m) => m.seq)).to.deep.equal(seqsOf(log, `user.${u}`));
      expect(b.more).to.equal(false);
    });
  });

  it('serves many waiting readers from one pass over the stream, each its own messages in order', async () => {
    const log = interleaved(200, 30);
    const { store, calls } = fakeStore(log);
    const reader = new BacklogReader(store, { sweepMinReaders: 64, sweepBatch: 500 });
    // Different cursors, two connections of one user, and a user with nothing stored.
    const asks = Array.from({ length: 200 }, (_, u) => ({ user: `user.${u}`, from: 1 + (u % 7) * 300 }));
    asks.push({ user: 'user.3', from: 2000 }, { user: 'nobody', from: 1 });
    // Each reader reads as a connection does: again from after its last message while `more`.
    const readAll = async (a: { user: string; from: number }): Promise<number[]> => {
      const key = {};
      const seqs: number[] = [];
      for (let from = a.from; ;) {
        const b = await reader.read('app', a.user, from, { max: 100, maxBytes: 1 << 20 }, key);
        seqs.push(...b.messages.map((m) => m.seq));
        if (!b.more) return seqs;
        from = (seqs.at(-1) ?? from - 1) + 1;
      }
    };
    const got = await Promise.all(asks.map(readAll));
    expect(calls.batch).to.equal(0);
    // One pass: readers answered with what each request of it brought came back into it.
    expect(calls.range).to.equal(Math.ceil(log.length / 500));
    got.forEach((seqs, i) => {
      const a = asks[i] as { user: string; from: number };
      expect(seqs, `${a.user} from ${a.from}`).to.deep.equal(seqsOf(log, a.user, a.from));
    });
  });

  it('stops a reader at its bounds and says more follow; its next read goes on from there', async () => {
    const log = interleaved(100, 30);
    const { store } = fakeStore(log, 100);
    const reader = new BacklogReader(store, { sweepMinReaders: 10 });
    const bounds = (u: number) => (u % 2 === 0 ? { max: 10, maxBytes: 1 << 20 } : { max: 100, maxBytes: 550 });
    const first = await Promise.all(
      Array.from({ length: 100 }, (_, u) => reader.read('app', `user.${u}`, 1, bounds(u))),
    );
    first.forEach((b, u) => {
      const want = seqsOf(log, `user.${u}`).slice(0, u % 2 === 0 ? 10 : 5); // 550 bytes hold five of 100
      expect(b.messages.map((m) => m.seq)).to.deep.equal(want);
      expect(b.more).to.equal(true);
    });
    const next = await reader.read('app', 'user.0', (first[0]?.messages.at(-1)?.seq ?? 0) + 1, bounds(0));
    expect(next.messages.map((m) => m.seq)).to.deep.equal(seqsOf(log, 'user.0').slice(10, 20));
  });

  it('fails every reader of a pass when the store fails, so each retries', async () => {
    const log = interleaved(100, 2);
    const { store } = fakeStore(log);
    store.readRange = () => Promise.reject(new Error('store down'));
    const reader = new BacklogReader(store, { sweepMinReaders: 10 });
    const results = await Promise.allSettled(
      Array.from({ length: 100 }, (_, u) => reader.read('app', `user.${u}`, 1, { max: 100, maxBytes: 1 << 20 })),
    );
    expect(results.every((r) => r.status === 'rejected')).to.equal(true);
  });
});
