import { expect } from 'chai';
import { ServerFrames, decodeEnvelope, encodeEnvelope, type EnvelopeMeta } from '@push/protocol';

const TS = 1_700_000_000_123;
const EXPIRES = TS + 7 * 24 * 3600 * 1000;

function roundTrip(meta: EnvelopeMeta, payload: Uint8Array): { meta: EnvelopeMeta; payload: Uint8Array } {
  const decoded = decodeEnvelope(encodeEnvelope(meta, payload));
  expect(decoded, 'envelope should decode').not.to.equal(undefined);
  return decoded as { meta: EnvelopeMeta; payload: Uint8Array };
}

/** What the recipient's client gets for a stored envelope. */
function delivered(stored: Uint8Array): Record<string, unknown> {
  const env = decodeEnvelope(stored);
  if (env === undefined) throw new Error('not an envelope');
  return JSON.parse(ServerFrames.message(5, env.meta.ts, env.payload, env.meta.binary, env.meta.from)) as Record<
    string,
    unknown
  >;
}

describe('envelope', () => {
  it('round-trips a JSON payload pushed by the business (no sender)', () => {
    const payload = Buffer.from('{"title":"hi","body":"línea 1\\nlínea 2"}', 'utf8');
    const { meta, payload: out } = roundTrip({ ts: TS, expires: EXPIRES, binary: false, from: undefined }, payload);
    expect(meta).to.deep.equal({ ts: TS, expires: EXPIRES, binary: false, from: undefined });
    expect(Buffer.from(out).equals(payload)).to.equal(true);
  });

  it('round-trips a binary payload containing newlines and every byte value', () => {
    const payload = Buffer.from(Array.from({ length: 512 }, (_, i) => i % 256));
    const { meta, payload: out } = roundTrip({ ts: TS, expires: EXPIRES, binary: true, from: 'alice' }, payload);
    expect(meta).to.deep.equal({ ts: TS, expires: EXPIRES, binary: true, from: 'alice' });
    expect(Buffer.from(out).equals(payload)).to.equal(true);
  });

  it('round-trips an empty payload', () => {
    const { payload } = roundTrip({ ts: 1, expires: 2, binary: true, from: undefined }, new Uint8Array(0));
    expect(payload.length).to.equal(0);
  });

  it('round-trips senders whose ids need encoding', () => {
    for (const from of [
      'bob.smith',
      'a b',
      '*',
      '>',
      '😀',
      'jürgen',
      '~x',
      '~',
      '_',
      '-',
      '--',
      'u'.repeat(256),
      '中'.repeat(85),
    ]) {
      const { meta } = roundTrip({ ts: TS, expires: EXPIRES, binary: false, from }, Buffer.from('1'));
      expect(meta.from, from).to.equal(from);
    }
  });

  it('a user whose id is "-" still shows as the sender (not as a business push)', () => {
    const stored = encodeEnvelope({ ts: TS, expires: EXPIRES, binary: false, from: '-' }, Buffer.from('{"x":1}'));
    expect(delivered(stored)).to.deep.equal({ t: 'msg', seq: 5, ts: TS, from: '-', data: { x: 1 } });
    const business = encodeEnvelope(
      { ts: TS, expires: EXPIRES, binary: false, from: undefined },
      Buffer.from('{"x":1}'),
    );
    expect(delivered(business)).to.deep.equal({ t: 'msg', seq: 5, ts: TS, data: { x: 1 } });
  });

  it('the recipient gets the stored message as sent', () => {
    const stored = encodeEnvelope(
      { ts: TS, expires: EXPIRES, binary: true, from: 'bob smith' },
      Buffer.from([1, 2, 3]),
    );
    expect(delivered(stored)).to.deep.equal({ t: 'msg', seq: 5, ts: TS, from: 'bob smith', b64: 'AQID' });
  });

  it('writes one ASCII metadata line in the documented layout', () => {
    const stored = encodeEnvelope({ ts: 10, expires: 20, binary: false, from: undefined }, Buffer.from('{}'));
    expect(stored.toString('latin1')).to.equal('1 10 20 j !\n{}');
    const fromBob = encodeEnvelope({ ts: 10, expires: 20, binary: true, from: 'bob' }, Buffer.from('x'));
    expect(fromBob.toString('latin1')).to.equal('1 10 20 b bob\nx');
    const encoded = encodeEnvelope({ ts: 10, expires: 20, binary: true, from: 'b.b' }, Buffer.from('x'));
    const line = encoded.toString('latin1').split('\n')[0] ?? '';
    expect(line).to.match(/^1 10 20 b ~[A-Za-z0-9_-]+$/);
  });

  it('decodes an envelope that is a view into a larger buffer (as NATS hands it over)', () => {
    const stored = encodeEnvelope({ ts: TS, expires: EXPIRES, binary: false, from: 'alice' }, Buffer.from('[1,2]'));
    const big = Buffer.concat([Buffer.from('garbage\n'), stored, Buffer.from('trailer')]);
    const view = big.subarray(8, 8 + stored.length);
    const env = decodeEnvelope(view);
    expect(env?.meta).to.deep.equal({ ts: TS, expires: EXPIRES, binary: false, from: 'alice' });
    expect(Buffer.from(env?.payload ?? []).toString()).to.equal('[1,2]');
  });

  it('rejects bytes that are not an envelope, without throwing', () => {
    const bad = [
      '',
      'hello',
      '{"data":1}',
      '\n{}',
      '1 10 20 j\n{}',
      '1 10 20 j - extra\n{}',
      '2 10 20 j -\n{}',
      'x 10 20 j -\n{}',
      '1 abc 20 j -\n{}',
      '1 10 NaN j -\n{}',
      '1 10 Infinity j -\n{}',
      '1 10 20 j a.b\n{}',
      '1 10 20 j ~\n{}',
      '1 10 20 j *\n{}',
      '1 10 20 x -\n{}',
      '1 10 20 J -\n{}',
      '1 10 20  -\n{}',
      `1 10 20 j ${'a'.repeat(700)}\n{}`,
    ];
    for (const text of bad) {
      expect(decodeEnvelope(Buffer.from(text, 'latin1')), JSON.stringify(text.slice(0, 40))).to.equal(undefined);
    }
  });
});
