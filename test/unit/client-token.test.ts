import { expect } from 'chai';
import { SignJWT, UnsecuredJWT } from 'jose';
import { createHmac } from 'node:crypto';
import { peekTokenApp, signClientToken, verifyClientToken } from '@push/apps';
import { DEFAULT_APP_SETTINGS, PushError, type AppRecord, type AppSecret, type ErrorCode } from '@push/protocol';

const NOW = 1_700_000_000;

function secret(kid: string, fill: string): AppSecret {
  return { kid, secret: fill.repeat(40), createdAt: '2024-01-01T00:00:00Z' };
}

function app(id: string, secrets: AppSecret[]): AppRecord {
  return {
    id,
    name: id,
    disabled: false,
    secrets,
    settings: { ...DEFAULT_APP_SETTINGS },
    apiKeys: [],
    updatedAt: '2024-01-01T00:00:00Z',
  };
}

function verifyFails(verify: () => unknown, code: ErrorCode): PushError {
  let caught: unknown;
  try {
    verify();
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ${code}`).to.be.instanceOf(PushError);
  expect((caught as PushError).code).to.equal(code);
  return caught as PushError;
}

function peekFails(token: string): PushError {
  let caught: unknown;
  try {
    peekTokenApp(token);
  } catch (err) {
    caught = err;
  }
  expect(caught, token).to.be.instanceOf(PushError);
  expect((caught as PushError).code).to.equal('token_malformed');
  return caught as PushError;
}

/** Signs arbitrary claims with `s`, for tokens signClientToken would never make. */
async function rawToken(
  s: AppSecret,
  claims: Record<string, unknown>,
  header: Record<string, unknown> = {},
): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', kid: s.kid, ...header })
    .sign(Buffer.from(s.secret, 'utf8'));
}

describe('client tokens', () => {
  const s1 = secret('k1', 'a');
  const s2 = secret('k2', 'b');
  const chat = app('chat', [s1]);

  it('round-trips: the verified identity is what was signed', async () => {
    const token = await signClientToken(s1, { app: 'chat', user: 'alice', device: 'phone', ttlSeconds: 3600 }, NOW);
    expect(verifyClientToken(token, chat, NOW)).to.deep.equal({
      app: 'chat',
      user: 'alice',
      device: 'phone',
      exp: NOW + 3600,
    });
  });

  it('defaults the device to "default"', async () => {
    const token = await signClientToken(s1, { app: 'chat', user: 'alice', ttlSeconds: 60 }, NOW);
    expect(verifyClientToken(token, chat, NOW).device).to.equal('default');
  });

  it('carries ids with dots, spaces and unicode intact', async () => {
    const token = await signClientToken(
      s1,
      { app: 'chat', user: 'bob.smith 😀', device: 'tab 2', ttlSeconds: 60 },
      NOW,
    );
    const id = verifyClientToken(token, chat, NOW);
    expect(id.user).to.equal('bob.smith 😀');
    expect(id.device).to.equal('tab 2');
  });

  it('accepts a token until its expiry and refuses it from then on with token_expired', async () => {
    const token = await signClientToken(s1, { app: 'chat', user: 'alice', ttlSeconds: 60 }, NOW);
    expect(verifyClientToken(token, chat, NOW + 59.5).user).to.equal('alice');
    verifyFails(() => verifyClientToken(token, chat, NOW + 60), 'token_expired');
    verifyFails(() => verifyClientToken(token, chat, NOW + 86_400), 'token_expired');
  });

  it('refuses an exp further ahead than the horizon (an exp in milliseconds) with token_exp_too_far', async () => {
    const ms = await rawToken(s1, { app: 'chat', sub: 'alice', exp: NOW * 1000 });
    verifyFails(() => verifyClientToken(ms, chat, NOW, 30 * 86_400), 'token_exp_too_far');
    const month = await signClientToken(s1, { app: 'chat', user: 'alice', ttlSeconds: 30 * 86_400 }, NOW);
    expect(verifyClientToken(month, chat, NOW, 30 * 86_400).user).to.equal('alice');
  });

  it('refuses a token signed with another secret with token_invalid', async () => {
    const forged = await signClientToken(secret('k1', 'z'), { app: 'chat', user: 'alice', ttlSeconds: 60 }, NOW);
    verifyFails(() => verifyClientToken(forged, chat, NOW), 'token_invalid');
    // Without a kid the app's secrets are all tried; none verifies.
    const noKid = await new SignJWT({ app: 'chat' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('alice')
      .setExpirationTime(NOW + 60)
      .sign(Buffer.from('z'.repeat(40)));
    verifyFails(() => verifyClientToken(noKid, chat, NOW), 'token_invalid');
  });

  it('refuses a token naming a secret the app does not have with token_invalid', async () => {
    const token = await signClientToken(secret('gone', 'a'), { app: 'chat', user: 'alice', ttlSeconds: 60 }, NOW);
    verifyFails(() => verifyClientToken(token, chat, NOW), 'token_invalid');
  });

  it('refuses a token whose claims were edited after signing', async () => {
    const token = await signClientToken(s1, { app: 'chat', user: 'alice', ttlSeconds: 60 }, NOW);
    const [h, p, sig] = token.split('.');
    const claims = JSON.parse(Buffer.from(p ?? '', 'base64url').toString()) as Record<string, unknown>;
    claims['sub'] = 'admin';
    const edited = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${sig}`;
    verifyFails(() => verifyClientToken(edited, chat, NOW), 'token_invalid');
  });

  it('refuses an expired token signed with the wrong secret as token_invalid, not token_expired', async () => {
    const forged = await signClientToken(secret('k1', 'z'), { app: 'chat', user: 'alice', ttlSeconds: 60 }, NOW - 3600);
    verifyFails(() => verifyClientToken(forged, chat, NOW), 'token_invalid');
  });

  it('refuses an unsigned (alg none) token', () => {
    const token = new UnsecuredJWT({ app: 'chat', sub: 'alice', exp: NOW + 60 }).encode();
    verifyFails(() => verifyClientToken(token, chat, NOW), 'token_invalid');
  });

  it('refuses another algorithm, unknown critical headers and a token not yet valid', async () => {
    const hs512 = await new SignJWT({ app: 'chat', sub: 'alice', exp: NOW + 60 })
      .setProtectedHeader({ alg: 'HS512', kid: 'k1' })
      .sign(Buffer.from(s1.secret, 'utf8'));
    verifyFails(() => verifyClientToken(hs512, chat, NOW), 'token_invalid');
    // Signed by hand: jose will not sign a header with an extension it does not know.
    const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const signed = `${part({ alg: 'HS256', kid: 'k1', crit: ['x'], x: 1 })}.${part({ app: 'chat', sub: 'alice', exp: NOW + 60 })}`;
    const crit = `${signed}.${createHmac('sha256', s1.secret).update(signed).digest('base64url')}`;
    // Twice: the second time its header is the one decoded before (decoded headers are reused).
    verifyFails(() => verifyClientToken(crit, chat, NOW), 'token_malformed');
    verifyFails(() => verifyClientToken(crit, chat, NOW), 'token_malformed');
    const later = await rawToken(s1, { app: 'chat', sub: 'alice', exp: NOW + 600, nbf: NOW + 60 });
    // Well formed, just early: its own code, so a client knows to wait (or fix its clock), not to rebuild it.
    verifyFails(() => verifyClientToken(later, chat, NOW), 'token_not_yet_valid');
    expect(verifyClientToken(later, chat, NOW + 60).user).to.equal('alice');
  });

  it('refuses a token whose parts were cut, padded or re-encoded', async () => {
    const token = await signClientToken(s1, { app: 'chat', user: 'alice', ttlSeconds: 60 }, NOW);
    const [h, c, sig] = token.split('.') as [string, string, string];
    verifyFails(() => verifyClientToken(`${h}.${c}.${sig.slice(0, -2)}`, chat, NOW), 'token_invalid');
    verifyFails(() => verifyClientToken(`${h}.${c}.${sig}AA`, chat, NOW), 'token_invalid');
    verifyFails(() => verifyClientToken(`${h}.${c}.${sig}=`, chat, NOW), 'token_malformed');
    verifyFails(() => verifyClientToken(`${token}.x`, chat, NOW), 'token_malformed');
    const array = Buffer.from('[1]').toString('base64url');
    verifyFails(() => verifyClientToken(`${h}.${array}.${sig}`, chat, NOW), 'token_malformed');
  });

  it('refuses garbage with token_malformed', () => {
    for (const token of ['', 'garbage', 'a.b.c', 'a.b', '...', 'eyJhbGciOiJIUzI1NiJ9', '{"alg":"HS256"}']) {
      verifyFails(() => verifyClientToken(token, chat, NOW), 'token_malformed');
    }
  });

  it('refuses a well-signed token without the required claims or with bad ids as token_malformed', async () => {
    const noExp = await rawToken(s1, { app: 'chat', sub: 'alice' });
    expect(verifyFails(() => verifyClientToken(noExp, chat, NOW), 'token_malformed').message).to.match(/exp/);
    const noSub = await rawToken(s1, { app: 'chat', exp: NOW + 60 });
    expect(verifyFails(() => verifyClientToken(noSub, chat, NOW), 'token_malformed').message).to.match(/sub/);
    const textExp = await rawToken(s1, { app: 'chat', sub: 'alice', exp: String(NOW + 60) });
    verifyFails(() => verifyClientToken(textExp, chat, NOW), 'token_malformed');
    const badUser = await rawToken(s1, { app: 'chat', sub: 'a\nb', exp: NOW + 60 });
    verifyFails(() => verifyClientToken(badUser, chat, NOW), 'token_malformed');
    const longDevice = await rawToken(s1, { app: 'chat', sub: 'alice', dev: 'd'.repeat(129), exp: NOW + 60 });
    verifyFails(() => verifyClientToken(longDevice, chat, NOW), 'token_malformed');
  });

  describe('secret rotation', () => {
    it('accepts tokens signed with the new and the previous secret', async () => {
      const rotated = app('chat', [s2, s1]);
      const old = await signClientToken(s1, { app: 'chat', user: 'alice', ttlSeconds: 60 }, NOW);
      const fresh = await signClientToken(s2, { app: 'chat', user: 'bob', ttlSeconds: 60 }, NOW);
      expect(verifyClientToken(old, rotated, NOW).user).to.equal('alice');
      expect(verifyClientToken(fresh, rotated, NOW).user).to.equal('bob');
    });

    it('tries every current secret for a token without a kid', async () => {
      const rotated = app('chat', [s2, s1]);
      const noKid = await new SignJWT({ app: 'chat' })
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('carol')
        .setExpirationTime(NOW + 60)
        .sign(Buffer.from(s1.secret));
      expect(verifyClientToken(noKid, rotated, NOW).user).to.equal('carol');
    });

    it('refuses tokens of a secret once it is dropped', async () => {
      const old = await signClientToken(s1, { app: 'chat', user: 'alice', ttlSeconds: 60 }, NOW);
      verifyFails(() => verifyClientToken(old, app('chat', [s2]), NOW), 'token_invalid');
    });

    it('still reports an expired token under the previous secret as token_expired', async () => {
      const old = await signClientToken(s1, { app: 'chat', user: 'alice', ttlSeconds: 60 }, NOW - 120);
      verifyFails(() => verifyClientToken(old, app('chat', [s2, s1]), NOW), 'token_expired');
    });
  });

  describe('apps are kept apart', () => {
    it('a token for app A does not open app B', async () => {
      const a = app('app-a', [secret('ka', 'a')]);
      const b = app('app-b', [secret('kb', 'b')]);
      const token = await signClientToken(secret('ka', 'a'), { app: 'app-a', user: 'alice', ttlSeconds: 60 }, NOW);
      expect(verifyClientToken(token, a, NOW).app).to.equal('app-a');
      verifyFails(() => verifyClientToken(token, b, NOW), 'token_invalid');
    });

    it('not even when both apps share a secret and kid', async () => {
      const shared = secret('k', 's');
      const token = await signClientToken(shared, { app: 'app-a', user: 'alice', ttlSeconds: 60 }, NOW);
      const err = verifyFails(() => verifyClientToken(token, app('app-b', [shared]), NOW), 'token_invalid');
      expect(err.message).to.match(/app claim/);
    });

    it('a token without an app claim opens no app', async () => {
      const token = await rawToken(s1, { sub: 'alice', exp: NOW + 60 });
      verifyFails(() => verifyClientToken(token, chat, NOW), 'token_invalid');
    });
  });

  describe('peekTokenApp', () => {
    it('reads the app claim without verifying', async () => {
      const token = await signClientToken(secret('x', 'q'), { app: 'my app.1', user: 'alice', ttlSeconds: 60 }, NOW);
      expect(peekTokenApp(token)).to.equal('my app.1');
    });

    it('reads it even from an expired token (the verify step refuses it)', async () => {
      const token = await signClientToken(s1, { app: 'chat', user: 'alice', ttlSeconds: 1 }, 1000);
      expect(peekTokenApp(token)).to.equal('chat');
    });

    it('refuses garbage and tokens without a valid app claim with token_malformed', async () => {
      for (const token of ['', 'garbage', 'a.b.c', '...']) peekFails(token);
      expect(peekFails(await rawToken(s1, { sub: 'alice' })).message).to.match(/app claim/);
      peekFails(await rawToken(s1, { app: 42 }));
      peekFails(await rawToken(s1, { app: '' }));
      peekFails(await rawToken(s1, { app: 'a'.repeat(65) }));
      peekFails(await rawToken(s1, { app: 'a\u0000' }));
    });
  });
});
