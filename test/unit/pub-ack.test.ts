import { expect } from 'chai';
import { readPubAck } from '@push/nats';

const bytes = (s: string) => new TextEncoder().encode(s);

describe('reading JetStream publish acks from bytes', function () {
  it('reads the sequence of the plain acks the server sends', function () {
    expect(readPubAck(bytes('{"stream":"PUSH_INBOX-demo","seq":42}'))).to.deep.equal({ seq: 42, duplicate: false });
    expect(readPubAck(bytes('{"stream":"S","seq":9007199254740991}'))).to.deep.equal({
      seq: 9007199254740991,
      duplicate: false,
    });
    expect(readPubAck(bytes('{"stream":"S","domain":"d","seq":7}'))).to.deep.equal({ seq: 7, duplicate: false });
  });

  it('leaves errors and anything unexpected to the full JSON parse', function () {
    for (const s of [
      '{"stream":"S", "seq":5, "duplicate": true}',
      '{"stream":"S","seq":5,"duplicate":true}',
      '{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"S","seq":0}',
      '{"stream":"S"}',
      '{"stream":"S","seq":}',
      '{"stream":"S","seq":0}',
      '{"stream":"S","seq":12x}',
      '{"stream":"S","seq":99999999999999999999}',
      'not json',
      '',
    ]) {
      expect(readPubAck(bytes(s)), s).to.equal(undefined);
    }
  });

  it('agrees with JSON.parse on many acks', function () {
    for (let seq = 1; seq < 2_000_000; seq = seq * 3 + 1) {
      const text = JSON.stringify({ stream: 'X', seq });
      expect(readPubAck(bytes(text))).to.deep.equal({
        seq: (JSON.parse(text) as { seq: number }).seq,
        duplicate: false,
      });
    }
  });
});
