import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { SignJWT } from 'jose';
import { signClientToken } from '@push/apps';
import { badPushItems, badTopicItems } from '../helpers/batch-errors.js';
import { Stack, type TestApp } from '../helpers/stack.js';
import { TestClient } from '../helpers/ws-client.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('bad input', function () {
  let stack: Stack;
  let app: TestApp;
  let other: TestApp;
  const clients: TestClient[] = [];
  /** A bystander connected for the whole file: it must keep being served whatever others send. */
  let bystander: TestClient;

  before(async function () {
    stack = await Stack.start({ PUSH_EDGE_MAX_FRAME: '4096' });
    app = await stack.createApp({ clientMessaging: true, maxMessageBytes: 1024 });
    other = await stack.createApp({ clientMessaging: true });
    bystander = await connect(app, 'bystander');
  });
  afterEach(async function () {
    // The edge keeps serving everyone else, whatever the test sent.
    const seq = await app.pushOk('bystander', { check: this.currentTest?.title });
    const got = await bystander.waitFor((f) => f.t === 'msg' && f['seq'] === seq);
    bystander.ack([got['seq'] as number]);
  });
  after(async function () {
    for (const c of clients) c.terminate();
    await stack?.close();
  });

  async function connect(a: TestApp, user: string, device = 'default'): Promise<TestClient> {
    const c = await a.connect(user, device);
    clients.push(c);
    return c;
  }

  describe('tokens at the upgrade', function () {
    it('refuses a missing token with 401 token_missing', async function () {
      const r = await TestClient.refused(stack.wsUrl(), undefined);
      expect(r.status).to.equal(401);
      expect(r.body.error?.code).to.equal('token_missing');
    });

    it('refuses garbage with 400 token_malformed', async function () {
      for (const t of ['x', 'a.b.c', 'not a token at all', '...']) {
        const r = await TestClient.refused(stack.wsUrl(), t);
        expect(r.status, t).to.equal(400);
        expect(r.body.error?.code, t).to.equal('token_malformed');
      }
    });

    it('refuses a token signed with another secret (forged) with 401 token_invalid', async function () {
      const forged = await signClientToken(
        { ...app.record.secrets[0]!, secret: 'c2VjcmV0LXRoYXQtaXMtbm90LXRoZS1hcHBzLXNlY3JldA' },
        { app: app.id, user: 'mallory', ttlSeconds: 600 },
      );
      const r = await TestClient.refused(stack.wsUrl(), forged);
      expect(r.status).to.equal(401);
      expect(r.body.error?.code).to.equal('token_invalid');
    });

    it('refuses an unsigned (alg none) token', async function () {
      const header = Buffer.from(JSON.stringify({ alg: 'none', kid: app.record.secrets[0]!.kid })).toString(
        'base64url',
      );
      const body = Buffer.from(
        JSON.stringify({ app: app.id, sub: 'mallory', dev: 'd', exp: Date.now() / 1000 + 600 }),
      ).toString('base64url');
      const r = await TestClient.refused(stack.wsUrl(), `${header}.${body}.`);
      expect(r.status).to.be.oneOf([400, 401]);
      expect(r.body.error?.code).to.be.oneOf(['token_invalid', 'token_malformed']);
    });

    it('refuses a token whose exp is in milliseconds with 401 token_exp_too_far (issue 7)', async function () {
      const s = app.record.secrets[0]!;
      const ms = await new SignJWT({ app: app.id, sub: 'u', exp: Date.now() + 3_600_000 })
        .setProtectedHeader({ alg: 'HS256', kid: s.kid })
        .sign(Buffer.from(s.secret, 'utf8'));
      const r = await TestClient.refused(stack.wsUrl(), ms);
      expect(r.status).to.equal(401);
      expect(r.body.error?.code).to.equal('token_exp_too_far');
    });

    it('refuses an expired token with 401 token_expired', async function () {
      const expired = await signClientToken(
        app.record.secrets[0]!,
        { app: app.id, user: 'u', ttlSeconds: 60 },
        Math.floor(Date.now() / 1000) - 3600,
      );
      const r = await TestClient.refused(stack.wsUrl(), expired);
      expect(r.status).to.equal(401);
      expect(r.body.error?.code).to.equal('token_expired');
    });

    it("refuses one app's token presented for another app with 403 wrong_app", async function () {
      const r = await TestClient.refused(stack.wsUrl(), await app.token('u'), `&app=${encodeURIComponent(other.id)}`);
      expect(r.status).to.equal(403);
      expect(r.body.error?.code).to.equal('wrong_app');
    });

    it("refuses a token claiming another app but signed with this app's secret", async function () {
      const t = await new SignJWT({ app: other.id, dev: 'd' })
        .setProtectedHeader({ alg: 'HS256', kid: app.record.secrets[0]!.kid })
        .setSubject('mallory')
        .setExpirationTime(Math.floor(Date.now() / 1000) + 600)
        .sign(Buffer.from(app.record.secrets[0]!.secret, 'base64url'));
      const r = await TestClient.refused(stack.wsUrl(), t);
      expect(r.status).to.equal(401);
      expect(r.body.error?.code).to.equal('token_invalid');
    });

    it('closes a connection whose token expires with 4005', async function () {
      this.timeout(15_000);
      const short = await signClientToken(app.record.secrets[0]!, { app: app.id, user: 'brief', ttlSeconds: 2 });
      const c = await TestClient.connect(stack.wsUrl(), short);
      clients.push(c);
      expect(await c.waitClosed(10_000)).to.equal(4005);
    });

    it('refuses a token for an unknown app with 404 app_not_found', async function () {
      const t = await signClientToken(app.record.secrets[0]!, { app: 'no-such-app', user: 'u', ttlSeconds: 600 });
      const r = await TestClient.refused(stack.wsUrl(), t);
      expect(r.status).to.equal(404);
      expect(r.body.error?.code).to.equal('app_not_found');
    });
  });

  describe('frames', function () {
    it('answers malformed JSON, non-objects and unknown frames with an error frame and keeps the socket', async function () {
      const c = await connect(app, 'frames');
      const cases: Array<[string, string]> = [
        ['{not json', 'bad_frame'],
        ['[]', 'bad_frame'],
        ['42', 'bad_frame'],
        ['{"t":"dance"}', 'unknown_frame'],
        ['{"no":"type"}', 'bad_frame'],
        ['{"t":"ack","seqs":"1"}', 'bad_frame'],
        ['{"t":"ack","seqs":[-1]}', 'bad_frame'],
        ['{"t":"ack","seqs":[1.5]}', 'bad_frame'],
      ];
      for (const [text, code] of cases) {
        const before = c.frames.length;
        c.sendRaw(text);
        const f = await c.waitFor((x) => c.frames.indexOf(x) >= before && x.t === 'error');
        expect(f['code'], text).to.equal(code);
      }
      await c.ping();
      expect(c.closeCode).to.equal(undefined);
    });

    it('refuses binary frames with bad_frame', async function () {
      const c = await connect(app, 'binary');
      c.sendRaw(Buffer.from([1, 2, 3]), true);
      const f = await c.waitFor((x) => x.t === 'error');
      expect(f['code']).to.equal('bad_frame');
      await c.ping();
    });

    it('drops a connection that sends a frame over the size limit', async function () {
      const c = await connect(app, 'huge');
      c.sendRaw(JSON.stringify({ t: 'ping', pad: 'x'.repeat(8192) }));
      // uWebSockets.js closes the TCP connection at once: the client sees 1006 (no close frame).
      expect(await c.waitClosed()).to.be.oneOf([1006, 1009]);
    });
  });

  describe('acks', function () {
    it('answers an ack for a sequence never delivered to this connection with ack_unknown', async function () {
      const c = await connect(app, 'acker');
      c.ack([999_999]);
      const f = await c.waitFor((x) => x.t === 'error');
      expect(f['code']).to.equal('ack_unknown');
      expect(f['seqs']).to.deep.equal([999_999]);
    });

    it("cannot remove another user's message by acking its sequence", async function () {
      const victim = 'victim';
      const seq = await app.pushOk(victim, 'private');
      const attacker = await connect(app, 'attacker');
      const attackerOther = await connect(other, victim);
      attacker.ack([seq]);
      attackerOther.ack([seq]);
      expect((await attacker.waitFor((x) => x.t === 'error'))['code']).to.equal('ack_unknown');
      expect((await attackerOther.waitFor((x) => x.t === 'error'))['code']).to.equal('ack_unknown');
      expect((await app.user(victim)).body['pending']).to.equal(1);
      const v = await connect(app, victim);
      const [m] = await v.waitForMessages(1);
      expect(m?.seq).to.equal(seq);
      expect(attacker.messages).to.have.length(0);
      expect(attackerOther.messages).to.have.length(0);
    });

    it('answers a second ack of the same sequence with ack_unknown', async function () {
      const c = await connect(app, 'twice');
      const seq = await app.pushOk('twice', 1);
      await c.waitForMessages(1);
      c.ack([seq]);
      c.ack([seq]);
      const f = await c.waitFor((x) => x.t === 'error');
      expect(f['code']).to.equal('ack_unknown');
    });
  });

  describe('ids with dots, wildcards, spaces and unicode', function () {
    // Pairs chosen so that a naive subject would collide or match by wildcard.
    const users = [
      'a.b',
      'a',
      'a.*',
      '*',
      '>',
      'a.>',
      'with space',
      ' ',
      'tab\u00a0nbsp',
      'ünï©ødé',
      '用户',
      '🙂',
      '~',
      '~YQ',
      'YQ',
      '-',
      '_',
    ];

    it('delivers to each such user only their own messages', async function () {
      this.timeout(30_000);
      const conns = new Map<string, TestClient>();
      for (const u of users) conns.set(u, await connect(app, u));
      const seqs = new Map<string, number>();
      for (const u of users) seqs.set(u, await app.pushOk(u, { for: u }));
      for (const u of users) {
        const c = conns.get(u)!;
        const [m] = await c.waitForMessages(1).catch((err: Error) => {
          throw new Error(`user ${JSON.stringify(u)}: ${err.message} ${c.closeReason}`);
        });
        expect(m?.data, u).to.deep.equal({ for: u });
      }
      await sleep(200);
      for (const u of users) {
        const c = conns.get(u)!;
        expect(
          c.messages.map((m) => m.data),
          u,
        ).to.deep.equal([{ for: u }]);
        expect(c.hello['user']).to.equal(u);
        c.ack([seqs.get(u)!]);
      }
      for (const u of users) {
        await app.waitPending(u, 0);
        expect((await app.user(u)).body['user']).to.equal(u);
      }
    });

    it('works for an app whose id needs encoding, and keeps it apart from a look-alike app', async function () {
      const dotted = await stack.createApp({}, 'my.app *');
      const plain = await stack.createApp({}, 'my');
      const a = await connect(dotted, 'u');
      const b = await connect(plain, 'u');
      const seq = await dotted.pushOk('u', 'for the dotted app');
      const [m] = await a.waitForMessages(1);
      expect(m?.seq).to.equal(seq);
      await plain.pushOk('u', 'for the plain app');
      expect((await b.waitForMessages(1)).map((x) => x.data)).to.deep.equal(['for the plain app']);
      await a.ping();
      expect(a.messages.map((x) => x.data)).to.deep.equal(['for the dotted app']);
    });

    it('lets such users message each other', async function () {
      const from = await connect(app, 'sender.*');
      const to = await connect(app, 'rcpt >');
      from.send({ t: 'send', to: 'rcpt >', id: 'm.1 *', data: 'hi' });
      const sent = await from.waitFor((f) => f.t === 'sent');
      expect(sent['id']).to.equal('m.1 *');
      const [m] = await to.waitForMessages(1);
      expect(m?.from).to.equal('sender.*');
      expect(m?.data).to.equal('hi');
    });

    it('refuses ids that are empty, too long or contain control characters', async function () {
      for (const user of ['', 'x'.repeat(257), 'a\nb', 'nul\u0000']) {
        const r = await app.push({ user, data: 1 });
        expect(r.status, JSON.stringify(user)).to.equal(400);
        expect((r.body['error'] as { code: string }).code).to.equal('invalid_id');
      }
      const r = await TestClient.refused(stack.wsUrl(), await app.token('a\u0001b'));
      expect(r.status).to.equal(400);
    });
  });

  describe('client-to-client sends', function () {
    it('rejects a send without to or id, with both data and b64, or with a bad ttl', async function () {
      const c = await connect(app, 'sender');
      const cases: Array<[unknown, string]> = [
        [{ t: 'send', id: '1', data: 1 }, 'invalid_id'],
        [{ t: 'send', to: 'x', data: 1 }, 'invalid_id'],
        [{ t: 'send', to: 'x', id: '1', data: 1, b64: 'AA==' }, 'invalid_data'],
        [{ t: 'send', to: 'x', id: '1' }, 'invalid_data'],
        [{ t: 'send', to: 'x', id: '1', b64: 'not base64!' }, 'invalid_data'],
        [{ t: 'send', to: 'x', id: '1', data: 1, ttl: -5 }, 'invalid_ttl'],
      ];
      for (const [frame, code] of cases) {
        const before = c.frames.length;
        c.send(frame);
        const f = await c.waitFor((x) => c.frames.indexOf(x) >= before && x.t === 'error');
        expect(f['code'], JSON.stringify(frame)).to.be.oneOf([code, 'bad_frame']);
        expect(f['code'], JSON.stringify(frame)).to.equal(code);
      }
    });

    it('answers a refused send with its id, also when the id itself is refused (if it is a string)', async function () {
      const c = await connect(app, 'id-sender');
      const tooLong = 'i'.repeat(129);
      const cases: Array<[Record<string, unknown>, string, string | undefined]> = [
        [{ t: 'send', to: 'x', id: 's-data' }, 'invalid_data', 's-data'],
        [{ t: 'send', to: 'x', id: 's-b64', b64: 'not base64!' }, 'invalid_data', 's-b64'],
        [{ t: 'send', to: 'x', id: 's-ttl', data: 1, ttl: -5 }, 'invalid_ttl', 's-ttl'],
        [{ t: 'send', to: '', id: 's-to', data: 1 }, 'invalid_id', 's-to'],
        [{ t: 'send', to: 'x', id: tooLong, data: 1 }, 'invalid_id', tooLong],
        [{ t: 'send', to: 'x', id: 42, data: 1 }, 'invalid_id', undefined],
      ];
      for (const [frame, code, id] of cases) {
        const before = c.frames.length;
        c.send(frame);
        const f = await c.waitFor((x) => c.frames.indexOf(x) >= before && x.t === 'error');
        expect(f['code'], JSON.stringify(frame).slice(0, 80)).to.equal(code);
        expect(f['id'], JSON.stringify(frame).slice(0, 80)).to.equal(id);
      }
      const last = c.frames[c.frames.length - 1];
      expect(String(last?.['message'])).to.match(/^id: /); // says that the id is what is wrong
    });

    it('rejects a message larger than the app allows with payload_too_large', async function () {
      const c = await connect(app, 'big-sender');
      c.send({ t: 'send', to: 'x', id: 'big', data: 'y'.repeat(2000) });
      const f = await c.waitFor((x) => x.t === 'error');
      expect(f).to.include({ code: 'payload_too_large', id: 'big' });
    });
  });

  describe('center HTTP API', function () {
    const MiB = 1024 * 1024;
    const pushUrl = () => `${stack.httpUrl}/v1/apps/${encodeURIComponent(app.id)}/push`;

    /**
     * Streams a push body of `total` bytes on a raw socket (declaring `declared` bytes, or
     * chunked), as fast as the server reads it, reading the answer meanwhile or only after, until it is sent or the server closes. What it read
     * and whether the server closed the connection before the whole body was sent.
     */
    async function oversized(
      declared: number | undefined,
      total: number,
      readWhileSending: boolean,
    ): Promise<{ head: string; cutShort: boolean }> {
      const socket = net.connect(stack.center.port, '127.0.0.1');
      await new Promise((r) => socket.once('connect', r));
      let head = '';
      socket.on('data', (c: Buffer) => (head += c.toString('latin1')));
      socket.on('error', () => undefined); // a reset once the server closed is expected
      let open = true;
      const closed = new Promise<void>((resolve) =>
        socket.once('close', () => {
          open = false;
          resolve();
        }),
      );
      socket.write(
        `POST /v1/apps/${encodeURIComponent(app.id)}/push HTTP/1.1\r\nHost: x\r\n` +
          `Authorization: Bearer ${app.apiKey}\r\nContent-Type: application/json\r\n` +
          (declared !== undefined ? `Content-Length: ${declared}\r\n` : 'Transfer-Encoding: chunked\r\n') +
          '\r\n',
      );
      // Else it reads nothing until the body is sent (or the server closed), as a client that
      // writes its request before reading the answer does: the answer waits in the socket.
      if (!readWhileSending) socket.pause();
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      const frame = declared !== undefined ? chunk : `${chunk.length.toString(16)}\r\n${chunk.toString('latin1')}\r\n`;
      let sent = 0;
      while (open && sent < total) {
        sent += chunk.length;
        if (!socket.write(frame)) await Promise.race([new Promise((r) => socket.once('drain', r)), closed]);
      }
      const cutShort = open ? false : sent < total;
      socket.resume();
      if (open) socket.end();
      await closed;
      return { head, cutShort };
    }

    it('a raw client streaming 64 MiB before it reads anything reads the 413 JSON (issue 14)', async function () {
      for (const declared of [64 * MiB, undefined]) {
        const r = await oversized(declared, 64 * MiB, false);
        const what = `declared ${declared}`;
        expect(r.head, what).to.match(/^HTTP\/1\.1 413/);
        expect(r.head, what).to.include('"code":"body_too_large"');
        expect(r.cutShort, what).to.equal(false);
      }
    });

    it('a client sending far more than the linger bound reads the 413 JSON and is cut off (issue 14)', async function () {
      for (const declared of [500_000_000, undefined]) {
        const r = await oversized(declared, 200 * MiB, true);
        const what = `declared ${declared}`;
        expect(r.head, what).to.match(/^HTTP\/1\.1 413/);
        expect(r.head, what).to.include('"code":"body_too_large"');
        // The center stopped reading at its bound, long before 200 MiB.
        expect(r.cutShort, `${what}: the server read the whole 200 MiB`).to.equal(true);
      }
    });

    it('a fetch of a body 29 bytes over the limit reads the 413 JSON, not EPIPE (issue 14)', async function () {
      for (const size of [4 * MiB + 29, 12 * MiB]) {
        const r = await fetch(pushUrl(), {
          method: 'POST',
          headers: { authorization: `Bearer ${app.apiKey}`, 'content-type': 'application/json' },
          body: Buffer.alloc(size, 0x61),
        });
        expect(r.status, `${size} bytes`).to.equal(413);
        expect(((await r.json()) as { error: { code: string } }).error.code).to.equal('body_too_large');
      }
    });

    it('curl sending a body over the limit reads the 413 JSON (issue 14)', async function () {
      const file = path.join(os.tmpdir(), `push-big-${process.pid}.json`);
      writeFileSync(file, Buffer.alloc(5 * MiB, 0x61));
      try {
        const { stdout } = await run('curl', [
          '-sS',
          '-w',
          '\n%{http_code}',
          '-H',
          `Authorization: Bearer ${app.apiKey}`,
          '-H',
          'Content-Type: application/json',
          '--data-binary',
          `@${file}`,
          pushUrl(),
        ]);
        const [body, code] = stdout.split('\n');
        expect(code).to.equal('413');
        expect((JSON.parse(body ?? '') as { error: { code: string } }).error.code).to.equal('body_too_large');
      } finally {
        rmSync(file, { force: true });
      }
    });

    it('answers bad requests with a status and a stable code', async function () {
      const path = `/v1/apps/${encodeURIComponent(app.id)}/push`;
      const cases: Array<[string, string | undefined, unknown, string | undefined, number, string]> = [
        ['POST', undefined, { user: 'u', data: 1 }, undefined, 401, 'api_key_missing'],
        ['POST', 'pk_wrong', { user: 'u', data: 1 }, undefined, 401, 'api_key_invalid'],
        ['POST', app.apiKey, undefined, '{nope', 400, 'bad_json'],
        ['POST', app.apiKey, { user: 'u' }, undefined, 400, 'invalid_data'],
        ['POST', app.apiKey, { user: 'u', data: 1, ttl: 'soon' }, undefined, 400, 'invalid_ttl'],
        ['POST', app.apiKey, { user: 'u', data: 'z'.repeat(2000) }, undefined, 413, 'payload_too_large'],
        ['POST', app.apiKey, { messages: [] }, undefined, 400, 'bad_request'],
      ];
      for (const [method, key, body, raw, status, code] of cases) {
        const r = await stack.http(method, path, key, body, raw);
        expect(r.status, `${code}`).to.equal(status);
        expect((r.body['error'] as { code: string }).code).to.equal(code);
      }
    });

    it('names the bad message of a push or topic batch by its index, for every kind of per-message error (issue 14)', async function () {
      const routes = [
        { path: `/v1/apps/${encodeURIComponent(app.id)}/push`, good: { user: 'u', data: 1 }, bad: badPushItems },
        {
          path: `/v1/apps/${encodeURIComponent(app.id)}/topics/messages`,
          good: { topic: 't', data: 1 },
          bad: badTopicItems,
        },
      ];
      for (const { path, good, bad } of routes) {
        for (const { item, code, status, message } of bad) {
          const r = await stack.http<{ error: { code: string; message: string } }>('POST', path, app.apiKey, {
            messages: [good, item],
          });
          const what = `${path} ${JSON.stringify(item)}`;
          expect(r.status, what).to.equal(status);
          expect(r.body.error.code, what).to.equal(code);
          expect(r.body.error.message, what).to.match(/^messages\[1\]: /);
          if (message !== undefined) expect(r.body.error.message, what).to.equal(message);
        }
      }
      // All or nothing: not even the good first message was stored.
      expect((await app.user('u')).body['pending']).to.equal(0);
    });

    it("refuses one app's key on another app with 403 wrong_app, and an unknown app with 404", async function () {
      const r = await stack.http('POST', `/v1/apps/${encodeURIComponent(other.id)}/push`, app.apiKey, {
        user: 'u',
        data: 1,
      });
      expect(r.status).to.equal(403);
      expect((r.body['error'] as { code: string }).code).to.equal('wrong_app');
      const n = await stack.http('POST', '/v1/apps/nope/push', app.apiKey, { user: 'u', data: 1 });
      expect(n.status).to.be.oneOf([403, 404]);
      const route = await stack.http('GET', '/v1/nothing', app.apiKey);
      expect(route.status).to.equal(404);
      expect((route.body['error'] as { code: string }).code).to.equal('not_found');
    });

    it('answers 405 method_not_allowed on every known path with another method, 404 not_found elsewhere', async function () {
      const a = encodeURIComponent(app.id);
      const cases: Array<[string, string, number, string]> = [
        ['GET', `/v1/apps/${a}/push`, 405, 'method_not_allowed'],
        ['PUT', `/v1/apps/${a}/users/u`, 405, 'method_not_allowed'],
        ['GET', `/v1/apps/${a}/users/u/kick`, 405, 'method_not_allowed'],
        ['PUT', '/v1/admin/apps', 405, 'method_not_allowed'],
        ['POST', '/v1/admin/apps/x', 405, 'method_not_allowed'],
        ['GET', '/v1/admin/apps/x/secrets', 405, 'method_not_allowed'],
        ['GET', '/v1/admin/apps/x/keys', 405, 'method_not_allowed'],
        ['POST', '/v1/admin/apps/x/keys/k', 405, 'method_not_allowed'],
        ['GET', `/v1/apps/${a}`, 404, 'not_found'],
        ['POST', `/v1/apps/${a}/push/more`, 404, 'not_found'],
        ['GET', '/v1/admin/apps/x/keys/k/more', 404, 'not_found'],
        ['GET', '/v2/admin/apps', 404, 'not_found'],
        ['POST', '/healthz', 405, 'method_not_allowed'],
        ['DELETE', '/readyz', 405, 'method_not_allowed'],
        ['POST', '/metrics', 405, 'method_not_allowed'],
      ];
      for (const [method, path, status, code] of cases) {
        const r = await stack.http(method, path, stack.adminKey);
        expect(r.status, `${method} ${path}`).to.equal(status);
        expect((r.body['error'] as { code: string }).code, `${method} ${path}`).to.equal(code);
      }
      // The health routes themselves, on the center and on an edge.
      for (const base of [stack.httpUrl, `http://127.0.0.1:${stack.edge.port}`]) {
        for (const path of ['/healthz', '/readyz', '/metrics']) {
          expect((await fetch(`${base}${path}`)).status, `GET ${base}${path}`).to.equal(200);
          const other = await fetch(`${base}${path}`, { method: 'PUT' });
          expect(other.status, `PUT ${base}${path}`).to.equal(405);
          expect(((await other.json()) as { error: { code: string } }).error.code).to.equal('method_not_allowed');
        }
      }
      // A CORS preflight is the preflight's, on these paths too (docs: "to any path").
      for (const path of ['/healthz', '/readyz', '/metrics'])
        expect((await fetch(`${stack.httpUrl}${path}`, { method: 'OPTIONS' })).status, `OPTIONS ${path}`).to.equal(204);
    });

    it('answers rate-limited pushes with 429', async function () {
      const limited = await stack.createApp({ pushRateLimit: 5 });
      const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => limited.push({ user: 'u', data: i })));
      const codes = answers.map((a) => a.status);
      expect(codes).to.include(200);
      expect(codes).to.include(429);
      const limitedOne = answers.find((a) => a.status === 429)!;
      expect((limitedOne.body['error'] as { code: string }).code).to.equal('rate_limited');
      expect(Number(limitedOne.headers.get('retry-after'))).to.be.greaterThan(0); // when to come back
    });
  });
});
