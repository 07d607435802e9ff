import { expect } from 'chai';
import { pino } from 'pino';
import { Subjects, readKick } from '@push/protocol';
import { ControlHandler } from '../../apps/edge/src/control-handler.js';
import type { LiveReceiver, UserChannels } from '../../apps/edge/src/user-channels.js';

/** A receiver that records the kick reasons and topic binds it got. */
function receiver(device: string): LiveReceiver & { kicks: string[]; binds: string[] } {
  const r = {
    device,
    kicks: [] as string[],
    binds: [] as string[],
    onLive() {},
    onTransient() {},
    kick(reason: string) {
      r.kicks.push(reason);
    },
    bindTopic(topic: string) {
      r.binds.push(`+${topic}`);
    },
    unbindTopic(topic: string) {
      r.binds.push(`-${topic}`);
    },
  };
  return r;
}

describe('ControlHandler', () => {
  const subjects = new Subjects('t1');
  const phone = receiver('phone');
  const tablet = receiver('tablet');
  const channels = {
    receivers: (app: string, user: string) => (app === 'app.1' && user === 'bob smith' ? [phone, tablet] : []),
  } as unknown as UserChannels;
  const warnings: string[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => warnings.push(line) });
  const handler = new ControlHandler(subjects, channels, log);
  const send = (subject: string, body: string) => handler.onMessage(subject, Buffer.from(body));

  beforeEach(() => {
    phone.kicks.length = 0;
    tablet.kicks.length = 0;
    phone.binds.length = 0;
    tablet.binds.length = 0;
    warnings.length = 0;
  });

  it('kicks every connection of the user named by the subject (encoded ids), or only one device', () => {
    send(subjects.control('app.1', 'bob smith'), JSON.stringify({ op: 'kick', reason: 'bye' }));
    expect([phone.kicks, tablet.kicks]).to.deep.equal([['bye'], ['bye']]);
    // What the center writes for a kick of one device with no reason given.
    send(subjects.control('app.1', 'bob smith'), JSON.stringify(readKick({ device: 'tablet' })));
    expect([phone.kicks, tablet.kicks]).to.deep.equal([['bye'], ['bye', 'kicked']]);
  });

  it('binds and unbinds a topic on every connection of the user, whatever the device', () => {
    send(subjects.control('app.1', 'bob smith'), JSON.stringify({ op: 'bind', topic: 'news' }));
    send(subjects.control('app.1', 'bob smith'), JSON.stringify({ op: 'unbind', topic: 'news' }));
    expect([phone.binds, tablet.binds]).to.deep.equal([
      ['+news', '-news'],
      ['+news', '-news'],
    ]);
    expect([phone.kicks, tablet.kicks]).to.deep.equal([[], []]);
  });

  it('ignores, with a warning, subjects and payloads it cannot read; never throws', () => {
    for (const [subject, body] of [
      ['t1.ctl.app1', '{"op":"kick"}'],
      ['t1.ctl.~.x', '{"op":"kick"}'],
      [subjects.control('app.1', 'bob smith'), 'not json'],
    ] as const) {
      expect(() => send(subject, body)).not.to.throw();
    }
    expect(warnings).to.have.length(3);
    // Read with the control schema: not a kick, a kick with no reason, a device that is no id.
    const bodies = [
      'null',
      '42',
      '"kick"',
      '{"op":"logout","reason":"x"}',
      '{"op":"kick"}',
      '{"op":"kick","reason":"x","device":5}',
      `{"op":"kick","reason":"${'x'.repeat(200)}"}`,
      '{"op":"bind"}',
      '{"op":"bind","topic":""}',
      '{"op":"unbind","topic":5}',
    ];
    for (const body of bodies) {
      expect(() => send(subjects.control('app.1', 'bob smith'), body), body).not.to.throw();
    }
    expect(warnings).to.have.length(3 + bodies.length);
    expect([phone.kicks, tablet.kicks]).to.deep.equal([[], []]);
    expect([phone.binds, tablet.binds]).to.deep.equal([[], []]);
  });
});
