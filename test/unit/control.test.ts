import { expect } from 'chai';
import { MAX_KICK_REASON_BYTES, PushError, readControl, readKick } from '@push/protocol';

/** The code of the PushError `fn` throws. */
function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(PushError);
    return (err as PushError).code;
  }
  throw new Error('expected a PushError');
}

describe('control: kick bodies and control messages', () => {
  it('reads a kick body into the control message the edges get', () => {
    expect(readKick(undefined)).to.deep.equal({ op: 'kick', reason: 'kicked' });
    expect(readKick({})).to.deep.equal({ op: 'kick', reason: 'kicked' });
    expect(readKick({ device: 'tablet', reason: 'bye' })).to.deep.equal({
      op: 'kick',
      device: 'tablet',
      reason: 'bye',
    });
  });

  it('refuses a bad device with invalid_id and a bad reason with bad_request', () => {
    expect(codeOf(() => readKick({ device: '' }))).to.equal('invalid_id');
    expect(codeOf(() => readKick({ device: 'a\u0001' }))).to.equal('invalid_id');
    expect(codeOf(() => readKick({ device: 5 }))).to.equal('invalid_id');
    expect(codeOf(() => readKick({ reason: 5 }))).to.equal('bad_request');
    expect(codeOf(() => readKick([]))).to.equal('bad_request');
    // Bytes, not characters: 34 three-byte characters are 102 bytes.
    expect(codeOf(() => readKick({ reason: '€'.repeat(34) }))).to.equal('bad_request');
    expect(readKick({ reason: 'x'.repeat(MAX_KICK_REASON_BYTES) }).reason).to.have.length(MAX_KICK_REASON_BYTES);
  });

  it('round-trips a kick through the control message an edge reads', () => {
    const sent = readKick({ device: 'pc', reason: 'logged out' });
    expect(readControl(Buffer.from(JSON.stringify(sent)))).to.deep.equal(sent);
    expect(codeOf(() => readControl(Buffer.from('{')))).to.equal('bad_request');
    expect(codeOf(() => readControl(Buffer.from('{"op":"logout","reason":"x"}')))).to.equal('bad_request');
    expect(codeOf(() => readControl(Buffer.from('{"op":"kick"}')))).to.equal('bad_request');
  });
});
