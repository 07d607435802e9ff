import { expect } from 'chai';
import {
  DEFAULT_UP_KIND,
  EVENT_TYPES,
  EventSchemas,
  FrameError,
  ServerFrameSchemas,
  ServerFrames,
  Subjects,
  compile,
  parseClientFrame,
  type UpFrame,
  type RpcFrame,
} from '@push/protocol';

/** The FrameError `parseClientFrame` throws for a frame (fails the test when it parses). */
function refusal(frame: unknown): FrameError {
  try {
    parseClientFrame(JSON.stringify(frame));
  } catch (err) {
    expect(err).to.be.instanceOf(FrameError);
    return err as FrameError;
  }
  throw new Error(`parsed: ${JSON.stringify(frame)}`);
}

describe('frames: up and rpc (issue 10)', () => {
  it('reads an up frame with data, b64 and the default kind', () => {
    const up = parseClientFrame('{"t":"up","id":"u1","kind":"chat","data":{"a":1}}') as UpFrame;
    expect(up).to.include({ t: 'up', id: 'u1', kind: 'chat' });
    expect(Buffer.from(up.payload.bytes).toString()).to.equal('{"a":1}');
    expect(up.payload.binary).to.equal(false);
    const bin = parseClientFrame('{"t":"up","id":"u2","b64":"AQID"}') as UpFrame;
    expect(bin.kind).to.equal(DEFAULT_UP_KIND);
    expect([...bin.payload.bytes]).to.deep.equal([1, 2, 3]);
  });

  it('refuses bad up frames with the code and the frame id', () => {
    expect(refusal({ t: 'up', id: 'k', kind: 'a.b', data: 1 })).to.include({ code: 'invalid_kind', id: 'k' });
    expect(refusal({ t: 'up', id: 'k', kind: '>', data: 1 })).to.include({ code: 'invalid_kind', id: 'k' });
    expect(refusal({ t: 'up', id: 'k', kind: 'x'.repeat(65), data: 1 })).to.include({ code: 'invalid_kind' });
    expect(refusal({ t: 'up', id: 'k', kind: '', data: 1 })).to.include({ code: 'invalid_kind' });
    expect(refusal({ t: 'up', id: 'd' })).to.include({ code: 'invalid_data', id: 'd' });
    expect(refusal({ t: 'up', id: 'd', data: 1, b64: 'AQ==' })).to.include({ code: 'invalid_data', id: 'd' });
    expect(refusal({ t: 'up', id: '', data: 1 })).to.include({ code: 'invalid_id', id: '' });
    expect(refusal({ t: 'up', data: 1 })).to.include({ code: 'invalid_id', id: undefined });
  });

  it('reads an rpc frame (data defaults to null) and refuses one without a method', () => {
    const rpc = parseClientFrame('{"t":"rpc","id":"r1","method":"profile.get"}') as RpcFrame;
    expect(rpc).to.deep.equal({ t: 'rpc', id: 'r1', method: 'profile.get', data: null });
    expect(refusal({ t: 'rpc', id: 'r2' })).to.include({ code: 'invalid_id', id: 'r2' });
    expect(refusal({ t: 'rpc', id: 'r3', method: 'a\u0000b' })).to.include({ code: 'invalid_id', id: 'r3' });
  });

  it('builds upsent and rpc answers that match their schemas', () => {
    const upsent: unknown = JSON.parse(ServerFrames.upsent('u"1', 5, true));
    expect(upsent).to.deep.equal({ t: 'upsent', id: 'u"1', seq: 5, dup: true });
    expect(compile(ServerFrameSchemas.upsent).problem(upsent)).to.equal(undefined);
    const rpc: unknown = JSON.parse(ServerFrames.rpc('r"1', '{"x":[1]}'));
    expect(rpc).to.deep.equal({ t: 'rpc', id: 'r"1', data: { x: [1] } });
    expect(compile(ServerFrameSchemas.rpc).problem(rpc)).to.equal(undefined);
  });
});

describe('subjects: upstream, events, rpc (issue 10 contract)', () => {
  const s = new Subjects('push');

  it('names the streams and subjects as the contract does, encoding ids', () => {
    expect(s.upstreamStream('demo')).to.equal('PUSH_UP-demo');
    expect(s.eventsStream('demo')).to.equal('PUSH_EVENTS-demo');
    expect(s.upstream('demo', 'chat')).to.equal('push.up.demo.chat');
    expect(s.upstreamOfApp('a.b')).to.equal('push.up.~YS5i.*');
    expect(s.event('demo', 'user_online')).to.equal('push.evt.demo.user_online');
    expect(s.eventsOfApp('demo')).to.equal('push.evt.demo.*');
    expect(s.rpc('demo')).to.equal('push.rpc.demo');
    expect(s.rpcQueue).to.equal('push-rpc');
  });

  it('derives the upstream id from app, user and client id only: a retry gets the same id', () => {
    const id = s.upstreamMessageId('demo', 'alice', 'u1');
    expect(id).to.match(/^up_[A-Za-z0-9_-]{24}$/);
    expect(s.upstreamMessageId('demo', 'alice', 'u1')).to.equal(id);
    expect(s.upstreamMessageId('demo', 'bob', 'u1')).to.not.equal(id);
    expect(s.upstreamMessageId('demo', 'alice', 'u2')).to.not.equal(id);
    // No separator confusion: ("a\nb", "c") and ("a", "b\nc") are different senders.
    expect(s.upstreamMessageId('demo', 'a\nb', 'c')).to.not.equal(s.upstreamMessageId('demo', 'a', 'b\nc'));
  });

  it('reads a presence key back into app and user, and nothing else', () => {
    expect(s.parsePresenceKey(s.presenceKey('a.b', 'ü'))).to.deep.equal({ app: 'a.b', user: 'ü' });
    expect(s.parsePresenceKey('other:presence:a:b')).to.equal(undefined);
    expect(s.parsePresenceKey('push:presence:a')).to.equal(undefined);
  });

  it('every event type is a single subject token', () => {
    expect(EVENT_TYPES).to.have.length(18);
    for (const t of EVENT_TYPES) {
      expect(t).to.match(/^[a-z_]+$/);
      expect(EventSchemas[t].properties.type.const).to.equal(t);
    }
  });
});
