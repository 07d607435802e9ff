import { expect } from 'chai';
import { Registry } from 'prom-client';
import { readLiveMessage, type LiveHandler, type LiveSubscriber } from '@push/nats';
import { Subjects, encodeEnvelope } from '@push/protocol';
import { createEdgeMetrics } from '../../apps/edge/src/metrics.js';
import { sendTransient } from '../../apps/edge/src/transient-delivery.js';
import { UserChannels, type LiveReceiver } from '../../apps/edge/src/user-channels.js';

/**
 * Transient messages on the edge, without NATS or uWS: how a live message without headers is
 * read, routed to the user's receivers as one frame, and sent or dropped per socket.
 */
const envelope = (text: string): Buffer =>
  encodeEnvelope({ ts: 7, expires: 7, binary: false, from: undefined }, Buffer.from(text));

/** A session's socket whose buffered bytes and send answer the test sets; records what was sent. */
function socket(buffered = 0, answer = 1) {
  const sent: string[] = [];
  return {
    sent,
    send: (m: string) => {
      sent.push(m);
      return answer;
    },
    buffered,
  };
}

describe('transient delivery on the edge', () => {
  it('reads a live message without headers as transient (seq 0), and one with Nats-Sequence as stored', () => {
    const t = readLiveMessage(Buffer.alloc(0), envelope('{"typing":1}'));
    expect(t?.seq).to.equal(0);
    expect(Buffer.from(t?.bytes ?? []).toString()).to.equal('{"typing":1}');
    const stored = readLiveMessage(
      Buffer.from('NATS/1.0\r\nNats-Sequence: 12\r\nNats-Last-Sequence: 9\r\n\r\n'),
      envelope('1'),
    );
    expect(stored).to.include({ seq: 12, prev: 9 });
    // Not an envelope: ignored, transient or not.
    expect(readLiveMessage(Buffer.alloc(0), Buffer.from('junk'))).to.equal(undefined);
  });

  it('sends below the high-water mark; drops and counts at or above it, or when uWS drops it', async () => {
    const metrics = createEdgeMetrics(new Registry());
    const ok = socket(0);
    sendTransient(ok.buffered, () => ok.send('F'), 100, metrics);
    expect(ok.sent).to.deep.equal(['F']);
    const slow = socket(100);
    sendTransient(slow.buffered, () => slow.send('F'), 100, metrics);
    expect(slow.sent).to.deep.equal([]);
    const full = socket(0, 2);
    sendTransient(full.buffered, () => full.send('F'), 100, metrics);
    expect((await metrics.transientOut.get()).values[0]?.value).to.equal(1);
    expect((await metrics.transientDropped.get()).values[0]?.value).to.equal(2);
  });

  it('hands a transient message to every receiver of the user as one frame, never to onLive', () => {
    let handler: ((headers: Buffer, payload: Buffer, subject: string) => void) | undefined;
    const live = {
      subscribe: (_subject: string, h: LiveHandler<unknown>, owner: unknown) => {
        handler = (headers, payload, subject) => h(headers, payload, subject, owner);
        return 1;
      },
      unsubscribe: () => undefined,
      flush: () => Promise.resolve(),
    } as unknown as LiveSubscriber;
    const channels = new UserChannels(live, new Subjects('t1'));
    const got: Array<{ who: string; frame?: string; seq?: number }> = [];
    const receiver = (who: string): LiveReceiver => ({
      device: who,
      onLive: (m) => got.push({ who, seq: m.seq }),
      onTransient: (frame) => got.push({ who, frame }),
      kick: () => undefined,
      bindTopic: () => undefined,
      unbindTopic: () => undefined,
    });
    void channels.join('app', 'bob', receiver('phone'));
    void channels.join('app', 'bob', receiver('tablet'));
    handler?.(Buffer.alloc(0), envelope('{"typing":1}'), 't1.live.u.app.bob');
    expect(got.map((g) => g.who)).to.deep.equal(['phone', 'tablet']);
    expect(got[0]?.frame).to.equal(got[1]?.frame);
    expect(JSON.parse(got[0]?.frame ?? '')).to.deep.equal({ t: 'msg', transient: true, ts: 7, data: { typing: 1 } });
    expect(got.some((g) => g.seq !== undefined)).to.equal(false);
  });
});
