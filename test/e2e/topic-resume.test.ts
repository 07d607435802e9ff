import { expect } from 'chai';
import { Stack, type TestApp } from '../helpers/stack.js';
import { TestClient, type Frame } from '../helpers/ws-client.js';
import { prng } from '../helpers/prng.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The topic frames (msg, lost, subscribed, unsubscribed, error) a client got for one topic, in order. */
function ofTopic(c: TestClient, topic: string, from = 0): Frame[] {
  return c.frames.slice(from).filter((f) => f['topic'] === topic);
}

/**
 * Resuming a topic while publishing goes on (issue 14, defect 1): what history holds, what the
 * edge has fanned out and what arrives live must meet exactly once. And every `sub` gets exactly
 * one answer, whatever frame for the same topic follows it (issue 20).
 */
describe('topic resume under load, and sub/unsub answers', function () {
  this.timeout(120_000);
  let stack: Stack;
  let app: TestApp;
  const clients: TestClient[] = [];
  const keep = (c: TestClient) => {
    clients.push(c);
    return c;
  };

  before(async function () {
    stack = await Stack.start();
    await stack.startEdge(); // two edges: each fans out at its own pace
    app = await stack.createApp({ topicHistory: 10_000 });
  });
  after(async function () {
    for (const c of clients) c.terminate();
    await stack?.close();
  });

  /** Publishes `n` messages to one topic in one batch call; resolves with their sequences. */
  async function publishBatch(topic: string, n: number, base: number): Promise<number[]> {
    const messages = Array.from({ length: n }, (_, i) => ({ topic, data: { n: base + i } }));
    const r = await stack.http('POST', `/v1/apps/${app.id}/topics/messages`, app.apiKey, { messages });
    if (r.status !== 200) throw new Error(`batch publish: ${r.status} ${JSON.stringify(r.body)}`);
    return (r.body['results'] as Array<{ seq: number }>).map((x) => x.seq);
  }

  it('resumes sent mid-batch get every message after since exactly once, in order, prev chained', async function () {
    const topic = 'race';
    const BATCHES = 30;
    const PER_BATCH = 100;
    // One subscriber per edge, there all along: it keeps the topic's channel open and tells what
    // each edge has fanned out (the newest seq a client on that edge could know).
    const holders = [
      keep(await app.connectWithTopics('holder-0', [topic], stack.edges[0])),
      keep(await app.connectWithTopics('holder-1', [topic], stack.edges[1])),
    ];
    for (const h of holders) {
      h.send({ t: 'sub', topic });
      await h.waitFor((f) => f.t === 'subscribed');
    }
    const newest = (h: TestClient) => {
      const msgs = ofTopic(h, topic).filter((f) => f.t === 'msg');
      return (msgs[msgs.length - 1]?.['seq'] as number | undefined) ?? 0;
    };
    // Connected before publishing starts, so that each `sub` goes out at once, mid-batch.
    const resumers: Array<{ c: TestClient; since: number }> = [];
    for (let i = 0; i < BATCHES * 3; i++) {
      const edge = stack.edges[i % 2];
      resumers.push({ c: keep(await app.connectWithTopics(`r${i}`, [topic], edge)), since: -1 });
    }
    const rand = prng(14);
    const all: number[] = [];
    let lastAnswered = 0;
    let next = 0;
    for (let b = 0; b < BATCHES; b++) {
      const stored = publishBatch(topic, PER_BATCH, b * PER_BATCH);
      // While the batch is being stored: two resumes from a seq the client's edge fanned out a
      // while ago, then (once stored) one from the newest seq the API answered, usually ahead of
      // what the edges have fanned out yet.
      for (let k = 0; k < 2; k++) {
        await sleep(Math.floor(rand() * 8));
        const r = resumers[next++]!;
        const known = newest(holders[(next - 1) % 2]!);
        r.since = Math.max(0, known - Math.floor(rand() * 250));
        r.c.send({ t: 'sub', topic, since: r.since });
      }
      const seqs = await stored;
      all.push(...seqs);
      lastAnswered = seqs[seqs.length - 1]!;
      const r = resumers[next++]!;
      r.since = lastAnswered;
      r.c.send({ t: 'sub', topic, since: r.since });
    }
    const last = all[all.length - 1]!;
    for (const { c, since } of resumers) {
      if (since >= last) await c.waitFor((f) => f.t === 'subscribed', 30_000);
      else await c.waitFor((f) => f.t === 'msg' && f['topic'] === topic && f['seq'] === last, 30_000);
    }
    await sleep(200); // anything extra (a duplicate) would have come by now
    const problems: string[] = [];
    for (const [i, { c, since }] of resumers.entries()) {
      const frames = ofTopic(c, topic);
      const msgs = frames.filter((f) => f.t === 'msg');
      const got = msgs.map((m) => m['seq'] as number);
      const want = all.filter((s) => s > since);
      const answers = frames.filter((f) => f.t === 'subscribed' || f.t === 'error' || f.t === 'lost');
      if (answers.length !== 1 || answers[0]!.t !== 'subscribed') {
        problems.push(`r${i} since ${since}: answers ${JSON.stringify(answers)}`);
      }
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        const missing = want.filter((s) => !got.includes(s));
        const extra = got.filter((s, j) => s <= since || got.indexOf(s) !== j || !want.includes(s));
        problems.push(
          `r${i} since ${since}: ${got.length} of ${want.length}, missing ${missing.length} (${missing.slice(0, 5).join(',')}...), extra ${extra.slice(0, 5).join(',')}`,
        );
        continue;
      }
      let prev = since;
      for (const m of msgs) {
        if (m['prev'] !== prev) {
          problems.push(`r${i} since ${since}: seq ${String(m['seq'])} has prev ${String(m['prev'])}, wanted ${prev}`);
          break;
        }
        prev = m['seq'] as number;
      }
    }
    expect(problems, problems.slice(0, 10).join('\n')).to.deep.equal([]);
  });

  /** Sends frames back to back and waits until `answers` topic answers came (or the timeout). */
  async function exchange(c: TestClient, topic: string, frames: Array<Record<string, unknown>>, answers: number) {
    const from = c.frames.length;
    for (const f of frames) c.send({ topic, ...f });
    const isAnswer = (f: Frame) =>
      f['topic'] === topic && (f.t === 'subscribed' || f.t === 'unsubscribed' || f.t === 'error');
    await c.waitFor(() => c.frames.slice(from).filter(isAnswer).length >= answers, 5000).catch(() => undefined);
    await c.ping(); // everything the edge sent before the pong has arrived
    await sleep(50);
    return c.frames.slice(from).filter(isAnswer);
  }

  it('a resume whose unsent history is dropped while it waits for a slow client says lost, never skips silently', async function () {
    // History keeps 200 messages of a topic; 200 of 60 KB fill far more than a loopback
    // connection's kernel buffers, so the replay waits for the client while more are published.
    const small = await stack.createApp({ topicHistory: 200 });
    const topic = 'evicted';
    const pad = 'x'.repeat(60_000);
    const publish = async (n: number): Promise<number[]> => {
      const seqs: number[] = [];
      for (let i = 0; i < n; i += 50) {
        const messages = Array.from({ length: Math.min(50, n - i) }, () => ({ topic, data: pad }));
        const r = await stack.http('POST', `/v1/apps/${small.id}/topics/messages`, small.apiKey, { messages });
        if (r.status !== 200) throw new Error(`batch publish: ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
        seqs.push(...(r.body['results'] as Array<{ seq: number }>).map((x) => x.seq));
      }
      return seqs;
    };
    const before = await publish(200);
    const c = keep(await small.connectWithTopics('slow', [topic]));
    c.pauseReading();
    const since = before[0] as number; // still held: no lost at the start
    c.send({ t: 'sub', topic, since });
    await sleep(1000);
    const after = await publish(250); // drops every message of `before`, sent or not
    c.resumeReading();
    const all = [...before, ...after];
    await c.waitFor((f) => f.t === 'subscribed' && f['topic'] === topic, 60_000);
    await c.waitFor((f) => f.t === 'msg' && f['seq'] === all[all.length - 1], 30_000);
    // Every message after `since` arrived, or a `lost` before the next one that did arrive said
    // history no longer held it (its `first` past it).
    let last = since;
    let lostFirst = 0;
    const silent: number[] = [];
    for (const f of ofTopic(c, topic)) {
      if (f.t === 'lost') lostFirst = f['first'] as number;
      if (f.t !== 'msg') continue;
      const seq = f['seq'] as number;
      silent.push(...all.filter((x) => x > last && x < seq && x >= lostFirst));
      last = seq;
    }
    expect(silent, `${silent.length} messages skipped without a lost`).to.deep.equal([]);
    expect(ofTopic(c, topic).filter((f) => f.t === 'lost')).to.have.length.greaterThan(0);
  });

  it('answers sub then unsub, sub then sub, and sub then sub since 0, each frame once', async function () {
    const c = keep(await app.connectWithTopics('sequences', ['*']));
    const q1 = await exchange(c, 'q1', [{ t: 'sub' }, { t: 'unsub' }], 2);
    // Back to back, the unsub overtakes the sub (answered `unsubscribed`), unless the sub was
    // answered before the unsub arrived.
    expect(q1.map((f) => f.t).join()).to.be.oneOf(['unsubscribed,unsubscribed', 'subscribed,unsubscribed']);
    const q2 = await exchange(c, 'q2', [{ t: 'sub' }, { t: 'sub' }], 2);
    expect(q2.map((f) => f.t)).to.deep.equal(['subscribed', 'subscribed']);
    await app.publishTopicOk('q3', 'before');
    const q3 = await exchange(c, 'q3', [{ t: 'sub' }, { t: 'sub', since: 0 }], 2);
    expect(q3.map((f) => f.t)).to.deep.equal(['subscribed', 'subscribed']);
    // The `since: 0` resume sent the message history holds, once.
    expect(ofTopic(c, 'q3').filter((f) => f.t === 'msg')).to.have.length(1);
    // Each ended as its last frame says: q1 takes nothing, q2 and q3 deliver.
    const s1 = await app.publishTopicOk('q1', 'one');
    const s2 = await app.publishTopicOk('q2', 'two');
    const s3 = await app.publishTopicOk('q3', 'three');
    await c.waitFor((f) => f.t === 'msg' && f['seq'] === s2);
    await c.waitFor((f) => f.t === 'msg' && f['seq'] === s3);
    await c.ping();
    expect(c.frames.some((f) => f.t === 'msg' && f['seq'] === s1)).to.equal(false);
  });

  it('random interleavings of sub, unsub and sub since: one answer per frame, and the last frame decides', async function () {
    const c = keep(await app.connectWithTopics('fuzz', ['*']));
    const rand = prng(20);
    for (let round = 0; round < 40; round++) {
      const topic = `fz${round}`;
      if (round % 3 === 0) await app.publishTopicOk(topic, 'old');
      const frames: Array<Record<string, unknown>> = [];
      const length = 1 + Math.floor(rand() * 5);
      for (let i = 0; i < length; i++) {
        const pick = rand();
        frames.push(pick < 0.35 ? { t: 'unsub' } : pick < 0.7 ? { t: 'sub' } : { t: 'sub', since: 0 });
      }
      const answers = await exchange(c, topic, frames, frames.length);
      const subs = frames.filter((f) => f.t === 'sub').length;
      const unsubs = frames.length - subs;
      const what = `round ${round}: ${JSON.stringify(frames)} -> ${JSON.stringify(answers)}`;
      expect(answers, what).to.have.length(frames.length);
      expect(
        answers.filter((f) => f.t === 'error'),
        what,
      ).to.deep.equal([]);
      // Every unsub is answered unsubscribed; every sub subscribed, or unsubscribed when an unsub overtook it.
      expect(answers.filter((f) => f.t === 'unsubscribed').length, what).to.be.at.least(unsubs);
      const lastIsSub = frames[frames.length - 1]!['t'] === 'sub';
      expect(answers[answers.length - 1]!.t, what).to.equal(lastIsSub ? 'subscribed' : 'unsubscribed');
      const seq = await app.publishTopicOk(topic, 'probe');
      if (lastIsSub) {
        await c.waitFor((f) => f.t === 'msg' && f['seq'] === seq && f['topic'] === topic);
      } else {
        await c.ping();
        await sleep(20);
        expect(
          c.frames.some((f) => f.t === 'msg' && f['seq'] === seq && f['topic'] === topic),
          what,
        ).to.equal(false);
      }
      if (lastIsSub) await exchange(c, topic, [{ t: 'unsub' }], 1); // stay under the topic limit
    }
  });
});
