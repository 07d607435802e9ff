import { expect } from 'chai';
import { signTopicToken, verifyTopicToken, signClientToken, verifyClientToken } from '@push/apps';
import {
  DEFAULT_APP_SETTINGS,
  ServerFrames,
  ServerFrameSchemas,
  Subjects,
  compile,
  decodeEnvelope,
  encodeTopicMessage,
  isPushError,
  parseClientFrame,
  topicGranted,
  topicMatches,
  topicProblem,
  type AppRecord,
} from '@push/protocol';

const app: AppRecord = {
  id: 'a1',
  name: 'a1',
  disabled: false,
  secrets: [{ kid: 'k1', secret: 's'.repeat(32), createdAt: '' }],
  settings: { ...DEFAULT_APP_SETTINGS },
  apiKeys: [],
  updatedAt: '',
};

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isPushError(err) ? err.code : 'not a PushError';
  }
  return undefined;
}

describe('topics: names, patterns, tokens, frames', () => {
  it('matches patterns with * as any run of characters', () => {
    expect(topicMatches('news', 'news')).to.equal(true);
    expect(topicMatches('news', 'news2')).to.equal(false);
    expect(topicMatches('room-*', 'room-1')).to.equal(true);
    expect(topicMatches('room-*', 'room-')).to.equal(true);
    expect(topicMatches('room-*', 'roomx')).to.equal(false);
    expect(topicMatches('*', 'anything at all')).to.equal(true);
    expect(topicMatches('a*b*c', 'a-b-c')).to.equal(true);
    expect(topicMatches('a*b*c', 'acb')).to.equal(false);
    expect(topicMatches('*-end', 'x-end')).to.equal(true);
    expect(topicMatches('ab*ba', 'aba')).to.equal(false);
    expect(topicGranted(undefined, 'news')).to.equal(false);
    expect(topicGranted(['x', 'n*'], 'news')).to.equal(true);
  });

  it('validates topic names like user ids and reserves the _ prefix but _all', () => {
    expect(topicProblem('a.b *>')).to.equal(undefined);
    expect(topicProblem('_all')).to.equal(undefined);
    expect(topicProblem('_x')).to.match(/reserved/);
    expect(topicProblem('')).to.be.a('string');
    expect(topicProblem('x'.repeat(257))).to.be.a('string');
    expect(topicProblem('a\nb')).to.be.a('string');
    const s = new Subjects('p');
    for (const t of ['a.b', '*', '>', 'a b']) expect(s.topic('app', t).split('.')).to.have.length(4);
    expect(s.topic('app', 'a.b')).to.not.equal(s.topic('app', 'a_b'));
  });

  it('parses sub and unsub; refusals carry the topic', () => {
    expect(parseClientFrame('{"t":"sub","topic":"x","since":3,"token":"t"}')).to.deep.equal({
      t: 'sub',
      topic: 'x',
      since: 3,
      token: 't',
    });
    expect(parseClientFrame('{"t":"unsub","topic":"x"}')).to.deep.equal({ t: 'unsub', topic: 'x' });
    // A sub of _all resumes it; it cannot be left.
    expect(parseClientFrame('{"t":"sub","topic":"_all","since":4}')).to.deep.equal({
      t: 'sub',
      topic: '_all',
      since: 4,
    });
    for (const [frame, code] of [
      ['{"t":"unsub","topic":"_all"}', 'invalid_topic'],
      ['{"t":"sub","topic":"_x"}', 'invalid_topic'],
      ['{"t":"sub"}', 'invalid_topic'],
      [`{"t":"sub","topic":"${'y'.repeat(10_000)}"}`, 'invalid_topic'],
      ['{"t":"sub","topic":"x","since":1.5}', 'bad_frame'],
      ['{"t":"sub","topic":"x","token":5}', 'topic_token_invalid'],
    ] as const) {
      let err: unknown;
      try {
        parseClientFrame(frame);
      } catch (e) {
        err = e;
      }
      expect(isPushError(err) && err.code, frame.slice(0, 60)).to.equal(code);
    }
  });

  it('builds topic frames that match their schemas', () => {
    const msg = JSON.parse(ServerFrames.topicMessage('"n"', 5, 3, 1000, Buffer.from('{"a":1}'), false)) as unknown;
    expect(compile(ServerFrameSchemas.msg).check(msg)).to.equal(true);
    expect(msg).to.deep.equal({ t: 'msg', topic: 'n', seq: 5, prev: 3, ts: 1000, data: { a: 1 } });
    for (const [kind, text] of [
      ['subscribed', ServerFrames.subscribed('n', 4)],
      ['unsubscribed', ServerFrames.unsubscribed('n')],
      ['lost', ServerFrames.lost('"n"', 9)],
    ] as const) {
      expect(compile(ServerFrameSchemas[kind]).check(JSON.parse(text)), kind).to.equal(true);
    }
  });

  it('encodes a message for a trusted service as the center stores it', () => {
    const e = encodeTopicMessage({ data: { x: 1 } }, { ttlSeconds: 1.5, id: 'i1', now: 1000 });
    expect(e.headers).to.deep.equal({ 'Nats-TTL': '2', 'Nats-Msg-Id': 'i1' });
    const env = decodeEnvelope(e.payload);
    expect(env?.meta).to.deep.equal({ ts: 1000, expires: 2500, binary: false, from: undefined });
    expect(Buffer.from(env!.payload).toString()).to.equal('{"x":1}');
    expect(encodeTopicMessage({ b64: 'AAE=' }).headers).to.deep.equal({});
    expect(codeOf(() => encodeTopicMessage({}))).to.equal('invalid_data');
    expect(codeOf(() => encodeTopicMessage({ data: 1 }, { ttlSeconds: 0 }))).to.equal('invalid_ttl');
  });

  it('verifies topic tokens for one app, user and topic, until they expire', async () => {
    const secret = app.secrets[0]!;
    const now = Math.floor(Date.now() / 1000);
    const t = await signTopicToken(secret, { app: 'a1', user: 'u', topic: 'p', ttlSeconds: 60 }, now);
    expect(() => verifyTopicToken(t, app, 'u', 'p', now)).to.not.throw();
    expect(codeOf(() => verifyTopicToken(t, app, 'v', 'p', now))).to.equal('topic_token_invalid');
    expect(codeOf(() => verifyTopicToken(t, app, 'u', 'q', now))).to.equal('topic_token_invalid');
    expect(codeOf(() => verifyTopicToken(t, app, 'u', 'p', now + 61))).to.equal('topic_token_expired');
    expect(codeOf(() => verifyTopicToken('garbage', app, 'u', 'p', now))).to.equal('topic_token_invalid');
    const other = { ...app, secrets: [{ kid: 'k1', secret: 'o'.repeat(32), createdAt: '' }] };
    expect(codeOf(() => verifyTopicToken(t, other, 'u', 'p', now))).to.equal('topic_token_invalid');
    // A topic token is not a client token.
    expect(codeOf(() => verifyClientToken(t, app, now))).to.equal('token_invalid');
  });

  it('reads the topics claim of a client token', async () => {
    const secret = app.secrets[0]!;
    const t = await signClientToken(secret, { app: 'a1', user: 'u', ttlSeconds: 60, topics: ['news', 'room-*'] });
    expect(verifyClientToken(t, app).topics).to.deep.equal(['news', 'room-*']);
    const none = await signClientToken(secret, { app: 'a1', user: 'u', ttlSeconds: 60 });
    expect(verifyClientToken(none, app).topics).to.equal(undefined);
  });
});
