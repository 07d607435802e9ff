import { expect } from 'chai';
import {
  ERRORS,
  FrameError,
  MAX_ACKS_PER_FRAME,
  PushError,
  ServerFrameSchemas,
  ServerFrames,
  compile,
  parseClientFrame,
  type ErrorCode,
} from '@push/protocol';

/** Parses `text` expecting a PushError with `code`; returns it for further checks. */
function rejects(text: string, code: ErrorCode): PushError {
  let caught: unknown;
  try {
    parseClientFrame(text);
  } catch (err) {
    caught = err;
  }
  expect(caught, `${text.slice(0, 80)} should be refused`).to.be.instanceOf(PushError);
  const err = caught as PushError;
  expect(err.code, text.slice(0, 80)).to.equal(code);
  expect(err.status).to.equal(ERRORS[code].status);
  expect(err.toJSON()).to.deep.equal({ code, message: err.message });
  return err;
}

const send = (fields: Record<string, unknown>): string => JSON.stringify({ t: 'send', to: 'bob', id: 'm1', ...fields });

describe('frames: parsing client frames', () => {
  it('parses ping', () => {
    expect(parseClientFrame('{"t":"ping"}')).to.deep.equal({ t: 'ping' });
    // A ping may propose the interval from now on (issue 17); a bad one is a bad frame, with why.
    expect(parseClientFrame('{"t":"ping","ping":120}')).to.deep.equal({ t: 'ping', ping: 120 });
    for (const bad of ['0', '1.5', '"60"', '901', 'null']) {
      expect(() => parseClientFrame(`{"t":"ping","ping":${bad}}`))
        .to.throw(PushError)
        .with.property('message')
        .match(/^ping.ping must be an integer number of seconds from 1 to 900/);
    }
  });

  it('parses ack with its sequences', () => {
    expect(parseClientFrame('{"t":"ack","seqs":[3,1,2]}')).to.deep.equal({ t: 'ack', seqs: [3, 1, 2] });
    const max = Array.from({ length: MAX_ACKS_PER_FRAME }, (_, i) => i + 1);
    expect(parseClientFrame(JSON.stringify({ t: 'ack', seqs: max }))).to.deep.equal({ t: 'ack', seqs: max });
    expect(MAX_ACKS_PER_FRAME).to.equal(1000);
  });

  it('parses send with JSON data: the stored bytes are the JSON text', () => {
    const f = parseClientFrame(send({ data: { hello: 'wörld', n: [1, 2] } }));
    expect(f.t).to.equal('send');
    if (f.t !== 'send') return;
    expect(f.to).to.equal('bob');
    expect(f.id).to.equal('m1');
    expect(f.payload.binary).to.equal(false);
    expect(Buffer.from(f.payload.bytes).toString('utf8')).to.equal('{"hello":"wörld","n":[1,2]}');
    expect(f).not.to.have.property('ttl');
  });

  it('parses send with any JSON value as data, including null, false and 0', () => {
    for (const data of [null, false, 0, '', 'text', []]) {
      const f = parseClientFrame(send({ data }));
      if (f.t !== 'send') throw new Error('expected send');
      expect(JSON.parse(Buffer.from(f.payload.bytes).toString('utf8'))).to.deep.equal(data);
    }
  });

  it('parses send with b64: the stored bytes are the decoded bytes', () => {
    const bytes = Buffer.from([0, 1, 2, 0xfb, 0xff, 0x0a]);
    for (const b64 of [bytes.toString('base64'), bytes.toString('base64url')]) {
      const f = parseClientFrame(send({ b64, ttl: 30 }));
      if (f.t !== 'send') throw new Error('expected send');
      expect(f.payload.binary).to.equal(true);
      expect(Buffer.from(f.payload.bytes).equals(bytes), b64).to.equal(true);
      expect(f.ttl).to.equal(30);
    }
  });

  it('accepts ids with spaces, dots and unicode as recipients', () => {
    const f = parseClientFrame(send({ to: 'bob.smith 😀', id: 'a.b', data: 1 }));
    if (f.t !== 'send') throw new Error('expected send');
    expect(f.to).to.equal('bob.smith 😀');
    expect(f.id).to.equal('a.b');
  });

  it('refuses text that is not JSON with bad_frame', () => {
    for (const text of ['', 'ping', '{', '{"t":"ping"', "{'t':'ping'}", '\u0000']) rejects(text, 'bad_frame');
  });

  it('refuses JSON that is not an object with bad_frame', () => {
    for (const text of ['null', '1', '"ping"', 'true', '[]', '[{"t":"ping"}]']) {
      expect(rejects(text, 'bad_frame').message).to.equal('frame must be a JSON object');
    }
  });

  it('refuses a missing or non-string type with bad_frame', () => {
    for (const text of ['{}', '{"t":null}', '{"t":1}', '{"t":["ping"]}', '{"type":"ping"}']) {
      expect(rejects(text, 'bad_frame').message).to.equal('frame needs a string field t');
    }
  });

  it('refuses an unknown type with unknown_frame, quoting it (truncated)', () => {
    expect(rejects('{"t":"subscribe"}', 'unknown_frame').message).to.equal('unknown frame type "subscribe"');
    expect(rejects('{"t":"PING"}', 'unknown_frame').message).to.contain('"PING"');
    const long = rejects(JSON.stringify({ t: 'x'.repeat(10_000) }), 'unknown_frame');
    expect(long.message.length).to.be.lessThan(80);
  });

  it('refuses acks without a proper list of sequences', () => {
    const bad: unknown[] = [
      undefined,
      null,
      5,
      '1,2',
      {},
      [],
      Array.from({ length: MAX_ACKS_PER_FRAME + 1 }, (_, i) => i + 1),
    ];
    for (const seqs of bad) {
      expect(rejects(JSON.stringify({ t: 'ack', seqs }), 'bad_frame').message).to.match(/ack\.seqs must be an array/);
    }
  });

  it('refuses acks holding anything but positive safe integers', () => {
    for (const seq of [0, -1, 1.5, '1', null, true, [1], 2 ** 53, 1e300]) {
      const text = JSON.stringify({ t: 'ack', seqs: [1, seq] });
      expect(rejects(text, 'bad_frame').message, text).to.equal('ack.seqs must hold positive integers');
    }
  });

  it('refuses send without a valid to or id with invalid_id', () => {
    expect(rejects(JSON.stringify({ t: 'send', id: 'm1', data: 1 }), 'invalid_id').message).to.match(/^to: /);
    expect(rejects(JSON.stringify({ t: 'send', to: 'bob', data: 1 }), 'invalid_id').message).to.match(/^id: /);
    expect(rejects(send({ to: '', data: 1 }), 'invalid_id').message).to.match(/^to: /);
    expect(rejects(send({ id: 'x'.repeat(129), data: 1 }), 'invalid_id').message).to.match(/^id: .*128 bytes/);
    expect(rejects(send({ id: 42, data: 1 }), 'invalid_id').message).to.match(/^id: /);
  });

  it('refuses send with neither or both of data and b64 with invalid_data', () => {
    rejects(send({}), 'invalid_data');
    rejects(send({ data: 1, b64: 'AQ==' }), 'invalid_data');
    rejects(send({ data: null, b64: '' }), 'invalid_data');
  });

  it('refuses b64 that is not a base64 string with invalid_data', () => {
    for (const b64 of [
      'not base64!',
      'QUJDR',
      'QU+_',
      'AQ==AQ==',
      'A Q==',
      'AQ\n==',
      'AQ===',
      'é',
      42,
      null,
      ['AQ=='],
      { b: 1 },
    ]) {
      rejects(send({ b64 }), 'invalid_data');
    }
  });

  it('refuses a ttl that is not a positive number with invalid_ttl', () => {
    for (const ttl of [0, -5, '60', null, true, [60], {}]) rejects(send({ data: 1, ttl }), 'invalid_ttl');
    // JSON cannot carry Infinity or NaN: 1e999 parses as Infinity.
    rejects('{"t":"send","to":"bob","id":"m1","data":1,"ttl":1e999}', 'invalid_ttl');
  });

  it('checks the fields of send in a stable order: to, id, payload, ttl', () => {
    rejects(JSON.stringify({ t: 'send', to: '', id: '', ttl: -1 }), 'invalid_id');
    rejects(JSON.stringify({ t: 'send', to: 'bob', id: 'm1', ttl: -1 }), 'invalid_data');
  });

  it('carries the id of a refused send, and only a string id', () => {
    expect((rejects(send({}), 'invalid_data') as FrameError).id).to.equal('m1');
    expect((rejects(send({ data: 1, ttl: 0 }), 'invalid_ttl') as FrameError).id).to.equal('m1');
    expect((rejects(send({ to: '', data: 1 }), 'invalid_id') as FrameError).id).to.equal('m1');
    const bad = rejects(send({ id: 'a\u0001b', data: 1 }), 'invalid_id') as FrameError;
    expect(bad.id).to.equal('a\u0001b');
    expect(bad.message).to.match(/^id: /);
    expect((rejects(send({ id: 7, data: 1 }), 'invalid_id') as FrameError).id).to.equal(undefined);
    const text = ServerFrames.error(bad.code, bad.message, { id: 'm1' });
    expect(JSON.parse(text)).to.deep.include({ t: 'error', code: 'invalid_id', id: 'm1' });
  });

  it('refuses deeply nested data with a PushError, not a crash', () => {
    const depth = 100_000;
    const text = `{"t":"send","to":"bob","id":"m1","data":${'['.repeat(depth)}${']'.repeat(depth)}}`;
    rejects(text, 'invalid_data');
  });

  it('throws only PushErrors, whatever the input (seeded fuzz)', () => {
    let a = 12345;
    const next = (): number => {
      a = (Math.imul(a, 1103515245) + 12345) >>> 0;
      return a / 4294967296;
    };
    const parts = [
      '{',
      '}',
      '[',
      ']',
      '"t"',
      ':',
      ',',
      '"ack"',
      '"send"',
      '"ping"',
      '"seqs"',
      '"to"',
      '"id"',
      '"data"',
      '"b64"',
      '"ttl"',
      '1',
      '-1',
      '0.5',
      'null',
      'true',
      '"AQ=="',
      '"x"',
      ' ',
    ];
    for (let i = 0; i < 5000; i++) {
      let text = '';
      const n = 1 + Math.floor(next() * 20);
      for (let j = 0; j < n; j++) text += parts[Math.floor(next() * parts.length)] ?? '';
      try {
        parseClientFrame(text);
      } catch (err) {
        expect(err, text).to.be.instanceOf(PushError);
      }
    }
  });
});

describe('frames: server frames', () => {
  it('hello carries the connection parameters', () => {
    const text = ServerFrames.hello({
      conn: 'c1',
      app: 'a',
      user: 'u',
      device: 'd',
      ping: 25,
      window: 100,
      maxMessageBytes: 65536,
    });
    expect(JSON.parse(text)).to.deep.equal({
      t: 'hello',
      conn: 'c1',
      app: 'a',
      user: 'u',
      device: 'd',
      ping: 25,
      window: 100,
      maxMessageBytes: 65536,
    });
  });

  it('pong', () => {
    expect(JSON.parse(ServerFrames.pong())).to.deep.equal({ t: 'pong' });
    expect(JSON.parse(ServerFrames.pong(120))).to.deep.equal({ t: 'pong', ping: 120 });
  });

  it('sent echoes the client id with the sequence and whether it was a duplicate', () => {
    expect(JSON.parse(ServerFrames.sent('m1', 42, false))).to.deep.equal({ t: 'sent', id: 'm1', seq: 42, dup: false });
    expect(JSON.parse(ServerFrames.sent('a"b', 7, true))).to.deep.equal({ t: 'sent', id: 'a"b', seq: 7, dup: true });
  });

  it('error carries code and message, plus id or seqs when given', () => {
    expect(JSON.parse(ServerFrames.error('bad_frame', 'nope'))).to.deep.equal({
      t: 'error',
      code: 'bad_frame',
      message: 'nope',
    });
    expect(JSON.parse(ServerFrames.error('invalid_id', 'x', { id: 'm1' }))).to.deep.equal({
      t: 'error',
      code: 'invalid_id',
      message: 'x',
      id: 'm1',
    });
    expect(JSON.parse(ServerFrames.error('ack_unknown', 'y', { seqs: [4, 5] }))).to.deep.equal({
      t: 'error',
      code: 'ack_unknown',
      message: 'y',
      seqs: [4, 5],
    });
  });

  it('error from a refused frame gives the client its code', () => {
    let err: unknown;
    try {
      parseClientFrame('{"t":"nope"}');
    } catch (e) {
      err = e;
    }
    const e = err as PushError;
    expect(JSON.parse(ServerFrames.error(e.code, e.message))).to.include({ t: 'error', code: 'unknown_frame' });
  });

  it('msg with JSON data splices the stored JSON in as data', () => {
    const bytes = Buffer.from('{"hello":"wörld","n":[1,2]}', 'utf8');
    expect(JSON.parse(ServerFrames.message(9, 1700000000000, bytes, false, undefined))).to.deep.equal({
      t: 'msg',
      seq: 9,
      ts: 1700000000000,
      data: { hello: 'wörld', n: [1, 2] },
    });
  });

  it('msg with binary data sends base64 in b64', () => {
    const bytes = new Uint8Array([0, 1, 2, 0xff, 0x0a]);
    const frame = JSON.parse(ServerFrames.message(1, 2, bytes, true, 'alice')) as Record<string, unknown>;
    expect(frame).to.deep.equal({ t: 'msg', seq: 1, ts: 2, from: 'alice', b64: 'AAEC/wo=' });
  });

  it('msg reads only its own bytes from a view into a larger buffer', () => {
    const big = Buffer.from('xxxx{"a":1}yyyy', 'utf8');
    const view = big.subarray(4, 11);
    expect(JSON.parse(ServerFrames.message(1, 2, view, false, undefined))).to.deep.equal({
      t: 'msg',
      seq: 1,
      ts: 2,
      data: { a: 1 },
    });
    const bin = new Uint8Array([9, 9, 1, 2, 3, 9]).subarray(2, 5);
    expect(JSON.parse(ServerFrames.message(1, 2, bin, true, undefined))).to.include({ b64: 'AQID' });
  });

  it('msg escapes a sender id that contains quotes or backslashes', () => {
    const from = 'a"b\\c</script>😀';
    const frame = JSON.parse(ServerFrames.message(1, 2, Buffer.from('1'), false, from)) as Record<string, unknown>;
    expect(frame['from']).to.equal(from);
    expect(frame['data']).to.equal(1);
  });
});

describe('frames: transient msg', () => {
  it('carries transient and no seq: nothing to ack', () => {
    const frame = JSON.parse(
      ServerFrames.transientMessage(5, Buffer.from('{"typing":true}'), false, undefined),
    ) as unknown;
    expect(frame).to.deep.equal({ t: 'msg', transient: true, ts: 5, data: { typing: true } });
    expect(JSON.parse(ServerFrames.transientMessage(5, new Uint8Array([1, 2, 3]), true, 'bob'))).to.deep.equal({
      t: 'msg',
      transient: true,
      ts: 5,
      from: 'bob',
      b64: 'AQID',
    });
  });
});

describe('frames: server frames match their schemas', () => {
  const cases: Array<[keyof typeof ServerFrameSchemas, string]> = [
    [
      'hello',
      ServerFrames.hello({
        conn: 'e1-1',
        app: 'a',
        user: 'u',
        device: 'd',
        ping: 25,
        window: 100,
        maxMessageBytes: 65536,
      }),
    ],
    ['pong', ServerFrames.pong()],
    ['pong', ServerFrames.pong(300)],
    ['sent', ServerFrames.sent('m1', 7, false)],
    ['error', ServerFrames.error('ack_unknown', 'x', { seqs: [3] })],
    ['error', ServerFrames.error('invalid_id', 'id: bad', { id: 'm1' })],
    ['msg', ServerFrames.message(9, 1700000000000, Buffer.from('{"a":1}'), false, undefined)],
    ['msg', ServerFrames.message(9, 1700000000000, Buffer.from([1, 2]), true, 'bob')],
    ['msg', ServerFrames.transientMessage(1700000000000, Buffer.from('{"typing":true}'), false, undefined)],
  ];
  for (const [kind, text] of cases) {
    it(`${kind}: ${text.slice(0, 60)}`, () => {
      const value: unknown = JSON.parse(text);
      expect(compile(ServerFrameSchemas[kind]).problem(value)).to.equal(undefined);
      expect((value as { t: string }).t).to.equal(kind);
    });
  }

  it('a frame that breaks its schema is caught (the check can fail)', () => {
    expect(compile(ServerFrameSchemas.sent).problem({ t: 'sent', id: 'm1', seq: 0, dup: false })).to.be.instanceOf(
      PushError,
    );
  });
});
