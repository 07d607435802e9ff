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
  const calls = { batch: 0, range: 0, probe: 0, probedUsers: [] as number[] };
  const store: BacklogStore = {
    // Like nats-server's multi_last: the last sequence of each asked user that has one.
    lastSeqs(_app, users) {
      calls.probe++;
      calls.probedUsers.push(users.length);
      const last = new Map<string, number>();
      log.forEach((u, i) => {
        if (users.includes(u)) last.set(encodeToken(u), i + 1);
      });
      return Promise.resolve({ last, complete: true });
    },
    readBatch(_app, user, fromSeq, bounds) {
      calls.batch++;
      const seqs: number[] = [];
      for (let s = fromSeq; s <= log.length; s++) if (log[s - 1] === user) seqs.push(s);
      const taken = seqs.slice(0, bounds.max);
      return Promise.resolve({ messages: taken.map((s) => message(s, bytes)), more: seqs.length > taken.length });
    },
    // Like InboxStore.readRange: messages of users `want` refuses (asked when the answer comes)
    // are skipped; `last` covers them.
    async readRange(_app, fromSeq, bounds, want) {
      calls.range++;
      await new Promise((resolve) => setImmediate(resolve));
      const messages: InboxMessage[] = [];
      const userTokens: string[] = [];
      let s = Math.max(1, fromSeq);
      let last = 0;
      for (; s <= log.length && s - Math.max(1, fromSeq) < bounds.max; s++) {
        last = s;
        const token = encodeToken(log[s - 1] as string);
        if (want !== undefined && !want(token)) continue;
        messages.push(message(s, bytes));
        userTokens.push(token);
      }
      hooks.afterRange?.();
      return { messages, userTokens, last, more: s <= log.length };
    },
  };
  const hooks: { afterRange?: () => void } = {};
  return { store, calls, hooks };
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
    expect(calls).to.include({ batch: 10, range: 0, probe: 0 });
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

  /**
   * 100 users x 30 interleaved, read in one pass of 500 sequences a request (5 messages a user),
   * each reader reading on as a connection does. User 0 stops after its first handout (a full
   * window, a full ack path) and reads again when `comeBack` calls the function it is given,
   * from the store's hook after a request of the pass was answered. Every user must get all its
   * messages, in order.
   */
  async function oneReaderPauses(comeBack: (resume: () => void) => () => void): Promise<void> {
    const log = interleaved(100, 30);
    const { store, hooks } = fakeStore(log);
    const reader = new BacklogReader(store, { sweepMinReaders: 64, sweepBatch: 500 });
    const bounds = { max: 100, maxBytes: 1 << 20 };
    const seqs = new Map<number, number[]>();
    let paused = false;
    let late: Promise<void> | undefined;
    const readAll = async (u: number, key: object): Promise<void> => {
      const got = seqs.get(u) ?? [];
      seqs.set(u, got);
      for (let from = (got.at(-1) ?? 0) + 1; ;) {
        const b = await reader.read('app', `user.${u}`, from, bounds, key);
        got.push(...b.messages.map((m) => m.seq));
        if (!b.more) return;
        from = (got.at(-1) ?? from - 1) + 1;
        if (u === 0 && !paused) {
          paused = true;
          const hook = comeBack(() => {
            hooks.afterRange = undefined;
            late = readAll(0, key);
          });
          hooks.afterRange = hook;
          return;
        }
      }
    };
    await Promise.all(Array.from({ length: 100 }, (_, u) => readAll(u, { u })));
    while (late === undefined) await new Promise((r) => setImmediate(r));
    await late;
    for (let u = 0; u < 100; u++) expect(seqs.get(u), `user.${u}`).to.deep.equal(seqsOf(log, `user.${u}`));
  }

  it("gives a reader that comes back while the pass's answer is being read its messages of that answer", async () => {
    // Back just after the store answered the pass's next request, before the pass read it.
    await oneReaderPauses((resume) => resume);
  });

  it('gives a reader that pauses while the pass reads on every message it skipped meanwhile', async () => {
    // Back only after the pass has read two more requests past what it was handed.
    await oneReaderPauses((resume) => {
      let requests = 0;
      return () => {
        if (++requests === 3) setImmediate(resume);
      };
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

  describe("probes (a connection's first read)", () => {
    const bounds = { max: 100, maxBytes: 1 << 20 };

    it('answers users with nothing stored from one shared probe, with no read, and reads the others', async () => {
      // 10 of 300 connecting users have messages.
      const log = interleaved(10, 5).map((u) => u.replace('user.', 'busy.'));
      const { store, calls } = fakeStore(log);
      const reader = new BacklogReader(store);
      const users = [
        ...Array.from({ length: 290 }, (_, u) => `idle.${u}`),
        ...Array.from({ length: 10 }, (_, u) => `busy.${u}`),
      ];
      const got = await Promise.all(users.map((u) => reader.read('app', u, 1, bounds, {}, true)));
      expect(calls.probe).to.equal(1);
      expect(calls.batch, 'one read per user with messages').to.equal(10);
      users.forEach((u, i) => {
        expect(
          got[i]?.messages.map((m) => m.seq),
          u,
        ).to.deep.equal(seqsOf(log, u));
        expect(got[i]?.more).to.equal(false);
      });
    });

    it('answers "nothing" when every stored message of the user lies before the read position', async () => {
      const log = ['a', 'b', 'a'];
      const { store, calls } = fakeStore(log);
      const reader = new BacklogReader(store);
      const [a, b] = await Promise.all([
        reader.read('app', 'a', 4, bounds, {}, true),
        reader.read('app', 'b', 2, bounds, {}, true),
      ]);
      expect(a?.messages).to.deep.equal([]);
      expect(b?.messages.map((m) => m.seq)).to.deep.equal([2]);
      expect(calls.batch).to.equal(1);
    });

    it('asks about at most 512 users per probe, two connections of one user once', async () => {
      const { store, calls } = fakeStore([]);
      const reader = new BacklogReader(store);
      const users = Array.from({ length: 1200 }, (_, u) => `u${u}`);
      users.push('u1199', 'u1100'); // in the last probe, with their first connections
      const got = await Promise.all(users.map((u) => reader.read('app', u, 1, bounds, {}, true)));
      expect(got.every((b) => b.messages.length === 0 && !b.more)).to.equal(true);
      expect(calls.batch + calls.range).to.equal(0);
      expect(calls.probedUsers.reduce((a, b) => a + b, 0)).to.equal(1200);
      expect(Math.max(...calls.probedUsers)).to.be.at.most(512);
    });

    it('sends a full probe at once, not at the end of the turn, while a partial one waits for a free probe', async () => {
      // A connect storm: a turn of the edge's loop holds hundreds of upgrades; a probe that
      // waited for the turn's end (two per turn) held 19,000 users' first reads for seconds.
      const { store, calls } = fakeStore([]);
      const answers: Array<() => void> = [];
      const real = store.lastSeqs.bind(store);
      store.lastSeqs = (app, users) => {
        const answer = real(app, users);
        return new Promise((resolve) => answers.push(() => resolve(answer)));
      };
      const reader = new BacklogReader(store);
      const users = Array.from({ length: 3 * 512 + 100 }, (_, u) => `u${u}`);
      const reads = users.map((u) => reader.read('app', u, 1, bounds, {}, true));
      expect(calls.probedUsers, 'full probes sent during the turn').to.deep.equal([512, 512, 512]);
      await new Promise((r) => setImmediate(r));
      expect(calls.probe, 'the partial one waits while two probes are out').to.equal(3);
      answers.shift()?.();
      for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
      expect(calls.probe, 'still two out').to.equal(3);
      answers.shift()?.();
      for (let i = 0; i < 10 && calls.probe < 4; i++) await new Promise((r) => setImmediate(r));
      expect(calls.probedUsers).to.deep.equal([512, 512, 512, 100]);
      while (answers.length > 0) answers.shift()?.();
      const got = await Promise.all(reads);
      expect(got.every((b) => b.messages.length === 0 && !b.more)).to.equal(true);
      expect(calls.batch + calls.range).to.equal(0);
    });

    it('reads every user the probe could not vouch for: a cut answer, or a failed probe', async () => {
      const log = ['x', 'y'];
      const { store, calls } = fakeStore(log);
      // A cut answer names y only; x and z may have messages beyond it.
      store.lastSeqs = () => Promise.resolve({ last: new Map([[encodeToken('y'), 2]]), complete: false });
      const reader = new BacklogReader(store);
      const got = await Promise.all(['x', 'y', 'z'].map((u) => reader.read('app', u, 1, bounds, {}, true)));
      expect(got.map((b) => b.messages.map((m) => m.seq))).to.deep.equal([[1], [2], []]);
      expect(calls.batch).to.equal(3);
      store.lastSeqs = () => Promise.reject(new Error('store down'));
      const again = await Promise.all(['x', 'y'].map((u) => reader.read('app', u, 1, bounds, {}, true)));
      expect(again.map((b) => b.messages.map((m) => m.seq))).to.deep.equal([[1], [2]]);
      expect(calls.batch).to.equal(5);
    });
  });
});
