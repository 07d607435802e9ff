import { expect } from 'chai';
import { HEARTBEAT_STORAGE_KEY, HeartbeatPolicy, type HeartbeatOptions, type HeartbeatStorage } from '@push/client';

/** localStorage as a map. */
class MemoryStorage implements HeartbeatStorage {
  readonly items = new Map<string, string>();
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.items.set(key, value);
  }
}

const HOUR = 3600_000;

describe('HeartbeatPolicy (issue 17): adaptive heartbeat with a fake clock', function () {
  let now: number;
  let network: string;
  let storage: MemoryStorage;
  const make = (opts: HeartbeatOptions = {}) =>
    new HeartbeatPolicy({ storage, network: () => network, ...opts }, () => now);
  /** `n` on-time pongs; returns the first proposal made, after the edge agreed it (as asked, or `cap`). */
  const pongs = (p: HeartbeatPolicy, n: number, cap = Infinity): number | undefined => {
    for (let i = 0; i < n; i++) {
      now += p.seconds * 1000;
      const next = p.onTime();
      if (next !== undefined) {
        p.agreed(Math.min(next, cap));
        return next;
      }
    }
    return undefined;
  };

  beforeEach(() => {
    now = 1_000_000;
    network = 'wifi/4g';
    storage = new MemoryStorage();
  });

  it('starts safe and steps up by 1.5 after 3 on-time pongs at each interval, up to its max', () => {
    const p = make();
    expect(p.connecting()).to.equal(25);
    expect(pongs(p, 2)).to.equal(undefined);
    expect(pongs(p, 1)).to.equal(38);
    expect(p.seconds).to.equal(38);
    const ladder: number[] = [];
    for (let i = 0; i < 20; i++) {
      const next = pongs(p, 3);
      if (next === undefined) break;
      ladder.push(next);
    }
    expect(ladder).to.deep.equal([57, 86, 129, 194, 291, 437, 600]);
    expect(pongs(p, 10)).to.equal(undefined);
  });

  it('proposes nothing more while a proposal awaits the edge, nor above what the edge clamped to', () => {
    const p = make({ startSeconds: 100 });
    p.connecting();
    now += 100_000;
    p.onTime();
    now += 100_000;
    p.onTime();
    now += 100_000;
    expect(p.onTime()).to.equal(150);
    expect(p.onTime()).to.equal(undefined); // still awaiting the pong that answers 150
    p.agreed(120); // the app's pingMaxSeconds
    expect(p.seconds).to.equal(120);
    expect(pongs(p, 10)).to.equal(undefined);
  });

  it('after a missed pong above the confirmed interval: back to it, and sticks below the failed one for stickMs', () => {
    const p = make();
    p.connecting();
    pongs(p, 3); // 38
    pongs(p, 3); // 57, confirmed by the pongs below
    pongs(p, 3); // 86, a probe
    expect(p.seconds).to.equal(86);
    p.failed();
    expect(p.seconds).to.equal(57);
    expect(p.connecting()).to.equal(57);
    // Stuck: at most 85 until a day has passed.
    expect(pongs(p, 3)).to.equal(85);
    expect(pongs(p, 30)).to.equal(undefined);
    now += 25 * HOUR;
    expect(pongs(p, 3)).to.equal(128);
  });

  it('after a failure at the confirmed interval: one step down, never below the start', () => {
    const p = make();
    p.connecting();
    pongs(p, 3);
    pongs(p, 3);
    pongs(p, 3); // 86 proposed and agreed
    pongs(p, 1); // 86 confirmed
    p.failed(); // 86 fails anyway
    expect(p.seconds).to.equal(57);
    p.failed();
    expect(p.seconds).to.equal(38);
    p.failed();
    expect(p.seconds).to.equal(25);
    p.failed();
    expect(p.seconds).to.equal(25);
  });

  it('counts a silent loss as a failure only above the confirmed interval and past its silence', () => {
    const p = make();
    p.connecting();
    pongs(p, 3); // 38 agreed, 25 confirmed
    p.lost(20_000); // silent less than the confirmed 25 s: a network drop, not the interval
    expect(p.seconds).to.equal(38);
    p.lost(30_000);
    expect(p.seconds).to.equal(25);
    const q = make();
    q.connecting();
    q.lost(120_000); // at the confirmed interval: no fault of it
    expect(q.seconds).to.equal(25);
  });

  it('remembers per network in storage: a new client starts where the last one got; another network starts safe', () => {
    const p = make();
    p.connecting();
    pongs(p, 3);
    pongs(p, 3);
    pongs(p, 1); // 57 confirmed on wifi/4g
    expect(JSON.parse(storage.getItem(HEARTBEAT_STORAGE_KEY) ?? '{}')).to.deep.equal({ 'wifi/4g': { good: 57 } });
    expect(make().connecting()).to.equal(57);
    network = 'cellular/3g';
    const q = make();
    expect(q.connecting()).to.equal(25);
    // On the open connection, a network change proposes what the new network keeps.
    network = 'wifi/4g';
    expect(q.networkChanged()).to.equal(57);
    expect(q.networkChanged()).to.equal(undefined);
  });

  it('fixed mode pings at the start interval always and learns nothing', () => {
    const p = make({ mode: 'fixed', startSeconds: 40 });
    expect(p.connecting()).to.equal(40);
    expect(pongs(p, 20)).to.equal(undefined);
    p.failed();
    expect(p.seconds).to.equal(40);
  });

  it('starts afresh from unreadable storage, and keeps working in memory when storage throws', () => {
    storage.setItem(HEARTBEAT_STORAGE_KEY, '{not json');
    expect(make().connecting()).to.equal(25);
    storage.setItem(HEARTBEAT_STORAGE_KEY, JSON.stringify({ 'wifi/4g': { good: 'long' } }));
    expect(make().connecting()).to.equal(25);
    const throwing: HeartbeatStorage = {
      getItem: () => {
        throw new Error('denied');
      },
      setItem: () => {
        throw new Error('full');
      },
    };
    const p = new HeartbeatPolicy({ storage: throwing, network: () => 'x' }, () => now);
    p.connecting();
    pongs(p, 3);
    pongs(p, 1);
    expect(p.connecting()).to.equal(38);
  });
});
