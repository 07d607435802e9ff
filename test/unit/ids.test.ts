import { expect } from 'chai';
import { inspect } from 'node:util';
import { PushError, decodeToken, encodeToken, idProblem, parseClientFrame, type IdKind } from '@push/protocol';
import { prng } from '../helpers/prng.js';

/** True when `value` is a valid id of the kind (idProblem finds nothing wrong). */
const validId = (kind: IdKind, value: unknown): boolean => idProblem(kind, value) === undefined;

/** Pieces that stress the encoding: the safe alphabet, subject syntax, `~`, whitespace, non-ASCII. */
const PIECES = [
  'a',
  'Z',
  '0',
  '9',
  '_',
  '-',
  '~',
  '.',
  '*',
  '>',
  ' ',
  '\u00a0',
  '\u3000',
  '\u2028',
  '=',
  '+',
  '/',
  '"',
  '\\',
  'é',
  'ß',
  '中',
  'ñ',
  '\u0301',
  '😀',
  '👩‍👩‍👧',
  '𝄞',
  '~YWJj',
  '..',
  '.>',
  '*.*',
];

function randomId(next: () => number): string {
  const len = 1 + Math.floor(next() * 24);
  let s = '';
  for (let i = 0; i < len; i++) s += PIECES[Math.floor(next() * PIECES.length)] ?? 'a';
  return s;
}

/** A subject token the NATS server treats as one literal token. */
const LITERAL_TOKEN = /^[A-Za-z0-9_~-]+$/;

function expectSafeToken(token: string, id: string): void {
  expect(token, `token of ${JSON.stringify(id)}`).to.match(LITERAL_TOKEN);
  expect(token).not.to.match(/[.*>\s]/);
  // `~` only ever marks an encoded token; it never appears inside one.
  expect(token.indexOf('~', 1), `token of ${JSON.stringify(id)}`).to.equal(-1);
}

describe('ids: validation', () => {
  it('accepts ordinary ids of every kind', () => {
    for (const kind of ['app', 'user', 'device', 'clientMessageId', 'idempotencyId'] as const) {
      expect(idProblem(kind, 'alice-1_B'), kind).to.equal(undefined);
      expect(validId(kind, 'alice-1_B'), kind).to.equal(true);
    }
  });

  it('accepts ids with subject syntax, spaces and unicode (they are encoded, not refused)', () => {
    for (const id of ['a.b', '*', '>', 'a b', 'jürgen', '用户', '😀', '~', '~abc', 'user@example.com']) {
      expect(idProblem('user', id), id).to.equal(undefined);
    }
  });

  it('refuses non-strings and the empty string', () => {
    for (const v of [undefined, null, 42, {}, [], true, Buffer.from('a')]) {
      expect(validId('user', v), inspect(v)).to.equal(false);
      expect(idProblem('user', v)).to.equal('user id must be a string');
    }
    expect(idProblem('app', '')).to.equal('app id must not be empty');
  });

  it('limits length in UTF-8 bytes: app 64, user 256, device 128', () => {
    const cases = [
      ['app', 64],
      ['user', 256],
      ['device', 128],
      ['clientMessageId', 128],
      ['idempotencyId', 256],
    ] as const;
    for (const [kind, limit] of cases) {
      expect(validId(kind, 'a'.repeat(limit)), `${kind} at limit`).to.equal(true);
      expect(idProblem(kind, 'a'.repeat(limit + 1))).to.equal(`${kind} id is longer than ${limit} bytes`);
    }
  });

  it('counts bytes, not characters, for multi-byte ids', () => {
    // é is 2 bytes, 中 is 3, 😀 is 4 (two UTF-16 units).
    expect(validId('app', 'é'.repeat(32))).to.equal(true);
    expect(validId('app', 'é'.repeat(33))).to.equal(false);
    expect(validId('app', '中'.repeat(21) + 'a')).to.equal(true);
    expect(validId('app', '中'.repeat(22))).to.equal(false);
    expect(validId('app', '😀'.repeat(16))).to.equal(true);
    expect(validId('app', '😀'.repeat(16) + 'a')).to.equal(false);
  });

  it('refuses control characters (C0 and DEL), wherever they are', () => {
    for (const c of ['\u0000', '\t', '\n', '\r', '\u001b', '\u001f', '\u007f']) {
      for (const id of [c, `a${c}`, `${c}a`, `a.b${c}`, `é${c}`]) {
        expect(idProblem('user', id), JSON.stringify(id)).to.equal('user id must not contain control characters');
      }
    }
  });

  it('refuses lone surrogates (they would collide once encoded as UTF-8)', () => {
    for (const id of ['\ud800', 'a\udc00', '\ude00x']) {
      expect(idProblem('user', id), JSON.stringify(id)).to.equal('user id is not well-formed unicode');
    }
  });

  it('a bad id reaching a client frame is answered with invalid_id naming the field', () => {
    const bad: Array<[unknown, RegExp]> = [
      ['', /^to: user id must not be empty$/],
      ['a\nb', /^to: .*control characters/],
      ['x'.repeat(257), /^to: .*longer than 256 bytes/],
      [7, /^to: .*must be a string/],
    ];
    for (const [to, message] of bad) {
      const text = JSON.stringify({ t: 'send', to, id: 'm1', data: 1 });
      let caught: unknown;
      try {
        parseClientFrame(text);
      } catch (err) {
        caught = err;
      }
      expect(caught, text).to.be.instanceOf(PushError);
      expect((caught as PushError).code).to.equal('invalid_id');
      expect((caught as PushError).status).to.equal(400);
      expect((caught as PushError).message).to.match(message);
    }
  });
});

describe('ids: subject-token encoding', () => {
  it('passes ids of the safe alphabet through unchanged', () => {
    for (const id of ['alice', 'A_b-9', '-', '_', '0']) expect(encodeToken(id)).to.equal(id);
  });

  it('encodes subject syntax and whitespace into one literal token', () => {
    for (const id of ['.', '*', '>', 'a.b', 'a.*', 'a.>', 'a b', ' ', '\u00a0', 'foo.bar.>', '..']) {
      const token = encodeToken(id);
      expect(token.startsWith('~'), id).to.equal(true);
      expectSafeToken(token, id);
      expect(decodeToken(token)).to.equal(id);
    }
  });

  it('round-trips unicode and emoji', () => {
    for (const id of ['jürgen', '用户', '😀', '👩‍👩‍👧', 'e\u0301', '𝄞 music', 'مرحبا']) {
      expect(decodeToken(encodeToken(id)), id).to.equal(id);
      expectSafeToken(encodeToken(id), id);
    }
  });

  it('keeps an id that starts with ~ apart from the encoded form of another id', () => {
    const encodedAbc = encodeToken('a.c');
    expect(encodedAbc.startsWith('~')).to.equal(true);
    // A user who picks the literal encoded form of someone else's id as their own id.
    const impostor = encodedAbc;
    expect(encodeToken(impostor)).not.to.equal(encodedAbc);
    expect(decodeToken(encodeToken(impostor))).to.equal(impostor);
    for (const id of ['~', '~abc', '~~', 'abc~']) {
      expect(encodeToken(id)).not.to.equal(id);
      expect(decodeToken(encodeToken(id))).to.equal(id);
    }
    // `abc` and `~YWJj` (base64url of "abc" behind the marker) are different ids.
    expect(encodeToken('abc')).not.to.equal(encodeToken('~YWJj'));
  });

  it('decodeToken refuses what encodeToken cannot produce', () => {
    for (const token of ['', 'a.b', '*', '>', '~', '~a.b', '~ab~', 'a b', 'x~']) {
      expect(() => decodeToken(token), JSON.stringify(token)).to.throw(/not a subject token/);
    }
  });

  it('property: any string encodes to one literal token (seeded random)', () => {
    const next = prng(0x5eed);
    for (let i = 0; i < 3000; i++) {
      const id = randomId(next);
      expectSafeToken(encodeToken(id), id);
    }
    // Even input the validator refuses cannot break out of its token.
    for (const id of ['a\nb', '\u0000', '\ud800', 'a\t.b', '\u007f>']) expectSafeToken(encodeToken(id), id);
  });

  it('property: valid ids round-trip and distinct ids never share a token (seeded random)', () => {
    const next = prng(20240611);
    const byToken = new Map<string, string>();
    let checked = 0;
    const ids = [...PIECES, 'abc', '~YWJj', 'YWJj', '~fmFiYw', '-', '~LQ'];
    for (let i = 0; i < 5000; i++) ids.push(randomId(next));
    for (const id of ids) {
      if (!validId('user', id)) continue;
      const token = encodeToken(id);
      expect(decodeToken(token), JSON.stringify(id)).to.equal(id);
      const other = byToken.get(token);
      if (other !== undefined) expect(other, `collision on ${token}`).to.equal(id);
      byToken.set(token, id);
      checked++;
    }
    expect(checked).to.be.greaterThan(4000);
  });
});
