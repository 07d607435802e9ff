import { expect } from 'chai';
import { pusherBodyMd5, pusherChannelKind, pusherChannelProblem, pusherCredentials, pusherSign } from '@push/apps';
import { verifyPusherRequest } from '@push/center';
import { pusherWebhook, pusherWebhookEvent } from '@push/coordinator';
import { DEFAULT_APP_SETTINGS, PushError, pusherFrameOf, type AppRecord } from '@push/protocol';

const app: AppRecord = {
  id: 'demo',
  name: 'Demo',
  disabled: false,
  secrets: [
    { kid: 'k2', secret: 'new-secret', createdAt: '2026-12-01T00:00:00Z' },
    { kid: 'k1', secret: 'old-secret', createdAt: '2026-11-01T00:00:00Z' },
    { kid: 'k0', secret: 'retired', createdAt: '2026-10-01T00:00:00Z' },
  ],
  settings: { ...DEFAULT_APP_SETTINGS },
  apiKeys: [],
  updatedAt: '2026-12-01T00:00:00Z',
};
const enc = (v: unknown): Uint8Array => Buffer.from(JSON.stringify(v));
const codeOf = (fn: () => unknown): string => {
  try {
    fn();
    return 'ok';
  } catch (err) {
    return err instanceof PushError ? err.code : String(err);
  }
};

describe('Pusher door: credentials, channel names, frames, request signatures, webhooks (issue 18)', () => {
  it('credentials: key = app id; one secret per valid app secret, newest first, the retired one not', () => {
    const c = pusherCredentials(app);
    expect(c.appId).to.equal('demo');
    expect(c.key).to.equal('demo');
    expect(c.secrets).to.have.length(2);
    expect(c.secrets[0]).to.match(/^[0-9a-f]{64}$/);
    expect(pusherCredentials({ id: 'demo', secrets: [app.secrets[1]!] }).secrets[0]).to.equal(c.secrets[1]);
    expect(pusherCredentials({ id: 'other', secrets: app.secrets }).secrets[0]).to.not.equal(c.secrets[0]);
  });

  it("channel names: Pusher's characters and 164 characters; no leading _; #server-to-user-<id> only", () => {
    for (const ok of ['news', 'private-a', 'presence-r.1', 'a-b_c=d@e,f.g;h', 'x'.repeat(164), '#server-to-user-42']) {
      expect(pusherChannelProblem(ok), ok).to.equal(undefined);
    }
    for (const bad of ['', 'x'.repeat(165), 'a b', 'a*', 'a>b', 'é', '_all', '#other', '#server-to-user-', 7]) {
      expect(pusherChannelProblem(bad), String(bad)).to.be.a('string');
    }
    expect(
      ['news', 'private-a', 'private-encrypted-a', 'presence-a', '#server-to-user-1'].map(pusherChannelKind),
    ).to.deep.equal(['public', 'private', 'encrypted', 'presence', 'user']);
  });

  it('frames: a Pusher-shaped message keeps its event, data and exclusion; any other is the event "message"', () => {
    const named = pusherFrameOf('"c"', enc({ event: 'e', data: '{"a":1}', socket_id: '1.2', user_id: 'u' }), false);
    expect(JSON.parse(named.frame)).to.deep.equal({ event: 'e', channel: 'c', data: '{"a":1}', user_id: 'u' });
    expect(named.exclude).to.equal('1.2');
    const object = pusherFrameOf('"c"', enc({ event: 'e', data: { a: 1 } }), false);
    expect(JSON.parse(object.frame)).to.deep.equal({ event: 'e', channel: 'c', data: { a: 1 } });
    const native = pusherFrameOf('"c"', enc({ plain: true }), false);
    expect(JSON.parse(native.frame)).to.deep.equal({ event: 'message', channel: 'c', data: '{"plain":true}' });
    expect(native.exclude).to.equal(undefined);
    const bytes = pusherFrameOf('"c"', Uint8Array.from([0, 1, 255]), true);
    expect(JSON.parse(bytes.frame)).to.deep.equal({ event: 'message', channel: 'c', data: 'AAH/' });
    const parsed = (f: { frame: string }) => JSON.parse(f.frame) as { event: string; data: unknown };
    expect(parsed(pusherFrameOf('"c"', enc('text'), false)).data).to.equal('"text"');
    expect(parsed(pusherFrameOf('"c"', enc({ event: 5 }), false)).event).to.equal('message');
  });

  describe('request signatures', () => {
    const now = 1_800_000_000;
    const secret = pusherCredentials(app).secrets[0] ?? '';
    /** A signed query for a request, as the pusher SDK builds it (values not percent-encoded). */
    function signed(
      method: string,
      path: string,
      body: string | undefined,
      extra: Record<string, string> = {},
      key = secret,
    ) {
      const params: Record<string, string> = {
        auth_key: 'demo',
        auth_timestamp: String(now),
        auth_version: '1.0',
        ...extra,
      };
      if (body !== undefined) params['body_md5'] = pusherBodyMd5(body);
      const q = Object.keys(params)
        .sort()
        .map((k) => `${k}=${params[k]}`)
        .join('&');
      return `${q}&auth_signature=${pusherSign(key, `${method}\n${path}\n${q}`)}`;
    }
    const check = (query: string, body?: string, at = now, method = 'POST', path = '/apps/demo/events') =>
      codeOf(() =>
        verifyPusherRequest(app, { method, path, query, body: body === undefined ? undefined : Buffer.from(body) }, at),
      );

    it('a well-signed request passes; with either valid secret; query parameters such as info are signed too', () => {
      expect(check(signed('POST', '/apps/demo/events', '{"x":1}'), '{"x":1}')).to.equal('ok');
      const previous = pusherCredentials(app).secrets[1] ?? '';
      expect(check(signed('POST', '/apps/demo/events', '{}', {}, previous), '{}')).to.equal('ok');
      const retired = pusherCredentials({ id: 'demo', secrets: [app.secrets[2]!] }).secrets[0] ?? '';
      expect(check(signed('POST', '/apps/demo/events', '{}', {}, retired), '{}')).to.equal('signature_invalid');
      const q = signed('GET', '/apps/demo/channels/c', undefined, { info: 'user_count,subscription_count' });
      expect(check(q, undefined, now, 'GET', '/apps/demo/channels/c')).to.equal('ok');
      expect(check(q.replace('user_count,', ''), undefined, now, 'GET', '/apps/demo/channels/c')).to.equal(
        'signature_invalid',
      );
    });

    it('600 s either way is the window: 600 passes, 601 is timestamp_expired', () => {
      const q = signed('POST', '/apps/demo/events', '{}');
      expect(check(q, '{}', now + 600)).to.equal('ok');
      expect(check(q, '{}', now - 600)).to.equal('ok');
      expect(check(q, '{}', now + 601)).to.equal('timestamp_expired');
      expect(check(q, '{}', now - 601)).to.equal('timestamp_expired');
    });

    it('another body, path, method or key, or no signature: signature_invalid', () => {
      const q = signed('POST', '/apps/demo/events', '{"x":1}');
      expect(check(q, '{"x":2}')).to.equal('signature_invalid');
      expect(check(q, '{"x":1}', now, 'POST', '/apps/demo/batch_events')).to.equal('signature_invalid');
      expect(check(q, '{"x":1}', now, 'PUT')).to.equal('signature_invalid');
      expect(check(q.replace('auth_key=demo', 'auth_key=other'), '{"x":1}')).to.equal('signature_invalid');
      expect(check(q.replace(/&auth_signature=.*$/, ''), '{"x":1}')).to.equal('signature_invalid');
    });
  });

  it('webhooks: our events become Pusher webhook events, signed with the key and newest secret', () => {
    const raw = (o: Record<string, unknown>) => ({ raw: JSON.stringify({ id: 'evt_1', time: 1, app: 'demo', ...o }) });
    expect(pusherWebhookEvent(raw({ type: 'presence_join', topic: 'presence-a', user: 'u' }).raw)).to.deep.equal({
      name: 'member_added',
      channel: 'presence-a',
      user_id: 'u',
    });
    expect(
      pusherWebhookEvent(
        raw({ type: 'client_event', topic: 'private-a', event: 'client-x', data: { a: 1 }, socket_id: '1.2' }).raw,
      ),
    ).to.deep.equal({
      name: 'client_event',
      channel: 'private-a',
      event: 'client-x',
      data: '{"a":1}',
      socket_id: '1.2',
    });
    expect(pusherWebhookEvent(raw({ type: 'user_online', user: 'u' }).raw)).to.equal(undefined);
    expect(pusherWebhook(app, [raw({ type: 'conn_open' })], 5)).to.equal(undefined);
    const hook = pusherWebhook(app, [raw({ type: 'channel_occupied', topic: 'c' }), raw({ type: 'kicked' })], 5);
    expect(JSON.parse(hook?.body ?? '')).to.deep.equal({
      time_ms: 5,
      events: [{ name: 'channel_occupied', channel: 'c' }],
    });
    expect(hook?.headers).to.deep.equal({
      'x-pusher-key': 'demo',
      'x-pusher-signature': pusherSign(pusherCredentials(app).secrets[0] ?? '', hook?.body ?? ''),
    });
  });
});
