import { expect } from 'chai';
import { DEFAULT_APP_SETTINGS } from '@push/protocol';
import { HeartbeatWheel, agreePing, pingBounds, type BeatActions } from '../../apps/edge/src/heartbeat.js';

const server = { defaultSeconds: 25, minSeconds: 10, maxSeconds: 600 };
const app = (pingMinSeconds: number, pingMaxSeconds: number) => ({ pingMinSeconds, pingMaxSeconds });

/** A socket as the wheel's actions see it: records its pings and whether it was dropped. */
interface FakeSocket {
  pings: number;
  dropped: boolean;
}
const socket = (): FakeSocket => ({ pings: 0, dropped: false });
const actions: BeatActions<FakeSocket> = {
  ping: (s) => {
    s.pings++;
  },
  drop: (s) => {
    s.dropped = true;
  },
};

describe('heartbeat: agreeing an interval (issue 17)', () => {
  it('clamps what the client asks to the app bounds within the server bounds', () => {
    expect(agreePing(300, server, DEFAULT_APP_SETTINGS)).to.equal(300);
    expect(agreePing(5000, server, DEFAULT_APP_SETTINGS)).to.equal(600);
    expect(agreePing(1, server, DEFAULT_APP_SETTINGS)).to.equal(10);
    expect(agreePing(299.6, server, DEFAULT_APP_SETTINGS)).to.equal(300);
    expect(agreePing(300, server, app(30, 120))).to.equal(120);
    expect(agreePing(20, server, app(30, 120))).to.equal(30);
  });

  it('uses the server default, clamped to the app, when the client asks nothing or not a number', () => {
    expect(agreePing(undefined, server, DEFAULT_APP_SETTINGS)).to.equal(25);
    expect(agreePing(NaN, server, DEFAULT_APP_SETTINGS)).to.equal(25);
    expect(agreePing(undefined, server, app(60, 300))).to.equal(60);
  });

  it('lets the server bounds win where the app bounds lie outside them', () => {
    expect(pingBounds(server, app(700, 900))).to.deep.equal({ min: 600, max: 600 });
    expect(pingBounds(server, app(1, 5))).to.deep.equal({ min: 10, max: 10 });
    expect(pingBounds(server, app(1, 900))).to.deep.equal({ min: 10, max: 600 });
  });
});

describe('HeartbeatWheel (issue 17)', () => {
  // Ticks are driven by hand: one tick is one second.
  const run = (wheel: HeartbeatWheel<FakeSocket>, ticks: number, each?: () => void) => {
    for (let i = 0; i < ticks; i++) {
      wheel.tick();
      each?.();
    }
  };

  it('pings a silent connection after 1.5 intervals and drops it after 2', () => {
    const wheel = new HeartbeatWheel(600, actions);
    const s = socket();
    wheel.add(s, 10);
    // Heard at tick 0: the wheel knows silence to a tick, so it acts one tick past each bound.
    run(wheel, 15);
    expect(s.pings).to.equal(0);
    run(wheel, 1);
    expect(s.pings).to.equal(1);
    run(wheel, 4);
    expect(s.dropped).to.equal(false);
    run(wheel, 1);
    expect(s.dropped).to.equal(true);
    expect(s.pings).to.equal(1);
    expect(wheel.size).to.equal(0);
  });

  it('keeps a connection heard at its interval, with no ping from the edge', () => {
    const wheel = new HeartbeatWheel(600, actions);
    const s = socket();
    const hb = wheel.add(s, 10);
    for (let i = 1; i <= 100; i++) {
      wheel.tick();
      if (i % 10 === 0) hb.heard = wheel.now;
    }
    expect(s).to.include({ pings: 0, dropped: false });
  });

  it('keeps a connection that answers the edge ping (a late pinger), and drops it once it stops', () => {
    const wheel = new HeartbeatWheel(600, actions);
    const s = socket();
    const hb = wheel.add(s, 10);
    let answered = 0;
    run(wheel, 100, () => {
      if (s.pings > answered) {
        answered = s.pings;
        hb.heard = wheel.now; // the WebSocket pong
      }
    });
    expect(s.pings).to.be.greaterThan(5);
    expect(s.dropped).to.equal(false);
    run(wheel, 22);
    expect(s.dropped).to.equal(true);
  });

  it('follows a changed interval at once, shorter or longer', () => {
    const wheel = new HeartbeatWheel(600, actions);
    const s = socket();
    const hb = wheel.add(s, 600);
    run(wheel, 5);
    wheel.change(hb, 10);
    run(wheel, 20);
    expect(s.dropped).to.equal(false);
    run(wheel, 1);
    expect(s.dropped).to.equal(true);
    const t = socket();
    const hb2 = wheel.add(t, 10);
    wheel.change(hb2, 600);
    run(wheel, 1200);
    expect(t.dropped).to.equal(false);
    run(wheel, 1);
    expect(t.dropped).to.equal(true);
  });

  it('forgets removed connections; removal keeps the others in place', () => {
    const wheel = new HeartbeatWheel(600, actions);
    const socks = Array.from({ length: 50 }, () => socket());
    const beats = socks.map((s) => wheel.add(s, 10));
    for (let i = 0; i < 50; i += 2) wheel.remove(beats[i]!);
    wheel.remove(beats[0]!);
    expect(wheel.size).to.equal(25);
    run(wheel, 21);
    expect(socks.filter((s) => s.dropped)).to.have.length(25);
    expect(socks.every((s, i) => s.dropped === (i % 2 === 1))).to.equal(true);
    expect(wheel.size).to.equal(0);
  });
});
