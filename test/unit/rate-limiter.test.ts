import { expect } from 'chai';
import { RateLimiter, TokenBucket } from '@push/apps';
import { SendLimits } from '../../apps/edge/src/send-limits.js';
import { DEFAULT_APP_SETTINGS } from '@push/protocol';

const T0 = 1_700_000_000_000;

describe('rate limiter', () => {
  it('never limits an app with rate 0', () => {
    const rl = new RateLimiter();
    for (let i = 0; i < 1000; i++) expect(rl.take('a', 0, 1000, T0)).to.equal(0);
  });

  it('admits a burst of one second worth at once, then asks to wait', () => {
    const rl = new RateLimiter();
    for (let i = 0; i < 10; i++) expect(rl.take('a', 10, 1, T0), `message ${i}`).to.equal(0);
    expect(rl.take('a', 10, 1, T0)).to.equal(1);
  });

  it('refills continuously at the rate', () => {
    const rl = new RateLimiter();
    expect(rl.take('a', 10, 10, T0)).to.equal(0);
    expect(rl.take('a', 10, 1, T0 + 50)).to.be.greaterThan(0);
    expect(rl.take('a', 10, 1, T0 + 100)).to.equal(0);
    expect(rl.take('a', 10, 5, T0 + 550)).to.be.greaterThan(0);
    expect(rl.take('a', 10, 4, T0 + 550)).to.equal(0);
  });

  it('does not store more than one second worth while idle', () => {
    const rl = new RateLimiter();
    expect(rl.take('a', 10, 1, T0)).to.equal(0);
    expect(rl.take('a', 10, 10, T0 + 3_600_000)).to.equal(0);
    expect(rl.take('a', 10, 1, T0 + 3_600_000)).to.be.greaterThan(0);
  });

  it('a refused request takes nothing from the bucket', () => {
    const rl = new RateLimiter();
    expect(rl.take('a', 10, 8, T0)).to.equal(0);
    expect(rl.take('a', 10, 5, T0)).to.equal(1);
    expect(rl.take('a', 10, 5, T0)).to.equal(1);
    expect(rl.take('a', 10, 2, T0)).to.equal(0);
  });

  it('answers the whole seconds to wait, at least 1', () => {
    const rl = new RateLimiter();
    expect(rl.take('a', 2, 2, T0)).to.equal(0);
    expect(rl.take('a', 2, 1, T0)).to.equal(1);
    expect(rl.take('a', 2, 2, T0)).to.equal(1);
    const slow = new RateLimiter();
    expect(slow.take('a', 100, 100, T0)).to.equal(0);
    expect(slow.take('a', 100, 100, T0 + 10)).to.equal(1);
  });

  it('keeps one bucket per app', () => {
    const rl = new RateLimiter();
    expect(rl.take('a', 5, 5, T0)).to.equal(0);
    expect(rl.take('a', 5, 1, T0)).to.be.greaterThan(0);
    expect(rl.take('b', 5, 5, T0)).to.equal(0);
    expect(rl.take('a.b', 5, 5, T0)).to.equal(0);
  });

  it('admits a batch larger than one second worth after waiting as told', () => {
    const rl = new RateLimiter();
    expect(rl.take('a', 10, 5, T0)).to.equal(0);
    const wait = rl.take('a', 10, 30, T0);
    expect(wait).to.be.greaterThan(0);
    expect(rl.take('a', 10, 30, T0 + wait * 1000)).to.equal(0);
  });

  it('a batch larger than one second worth holds back what follows, keeping the average rate', () => {
    const rl = new RateLimiter();
    // 30 at rate 10 leaves the bucket 20 in debt: one more message fits after 2.1 s (told 3).
    expect(rl.take('a', 10, 30, T0)).to.equal(0);
    expect(rl.take('a', 10, 1, T0)).to.equal(3);
    expect(rl.take('a', 10, 1, T0 + 2000)).to.be.greaterThan(0);
    expect(rl.take('a', 10, 1, T0 + 2200)).to.equal(0);
    // ...and a full second's burst again only once the debt is paid (bucket full at 3.1 s).
    expect(rl.take('a', 10, 10, T0 + 3000)).to.be.greaterThan(0);
    expect(rl.take('a', 10, 10, T0 + 3200)).to.equal(0);
  });

  it('property: waiting the answered seconds always gets the same request in (seeded)', () => {
    let seed = 7;
    const next = (): number => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed / 4294967296;
    };
    for (let round = 0; round < 200; round++) {
      const rl = new RateLimiter();
      const rate = 1 + Math.floor(next() * 50);
      let now = T0;
      for (let i = 0; i < 30; i++) {
        const n = 1 + Math.floor(next() * rate * 3);
        now += Math.floor(next() * 500);
        const wait = rl.take('a', rate, n, now);
        if (wait > 0) {
          expect(Number.isInteger(wait), `wait ${wait}`).to.equal(true);
          now += wait * 1000;
          expect(rl.take('a', rate, n, now), `rate ${rate}, n ${n}, after ${wait}s`).to.equal(0);
        }
      }
    }
  });

  it('property: a greedy client gets about `rate` messages per second, never more', () => {
    let seed = 99;
    const next = (): number => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed / 4294967296;
    };
    for (const rate of [1, 7, 100, 1000]) {
      const rl = new RateLimiter();
      const seconds = 60;
      let admitted = 0;
      let largest = 0;
      for (let ms = 0; ms < seconds * 1000; ms += 10) {
        const n = 1 + Math.floor(next() * rate * 2);
        if (rl.take('a', rate, n, T0 + ms) === 0) {
          admitted += n;
          largest = Math.max(largest, n);
        }
      }
      // Tokens earned over the run plus the initial burst; one request may run into debt.
      expect(admitted, `rate ${rate}`).to.be.at.most(rate * seconds + rate + largest);
      expect(admitted, `rate ${rate}`).to.be.at.least(rate * (seconds - 2) * 0.8);
    }
  });

  it('waitMs answers the milliseconds until the tokens are there, taking nothing', () => {
    const b = new TokenBucket(10, T0);
    expect(b.waitMs(10, 10, T0)).to.equal(0);
    b.take(10);
    expect(b.waitMs(10, 1, T0)).to.equal(100);
    expect(b.waitMs(10, 1, T0 + 40)).to.equal(60);
    expect(b.waitMs(10, 1, T0 + 100)).to.equal(0);
  });

  it('prune forgets only buckets that are full again', () => {
    const rl = new RateLimiter();
    rl.take('busy', 10, 10, T0 + 900);
    rl.take('idle', 10, 10, T0);
    rl.prune(T0 + 1000);
    expect(rl.size).to.equal(1);
    expect(rl.take('busy', 10, 1, T0 + 1000)).to.equal(0); // kept: 1 token refilled, not 10
    expect(rl.take('busy', 10, 5, T0 + 1000)).to.be.greaterThan(0);
  });
});

describe('client send limits (edge)', () => {
  const settings = { ...DEFAULT_APP_SETTINGS, sendRatePerConnection: 3, sendRatePerUser: 4 };

  it('limits each connection and the user across connections; a refused send takes nothing', () => {
    const limits = new SendLimits();
    const a = new TokenBucket(3, T0);
    const b = new TokenBucket(3, T0);
    const admitted = (conn: TokenBucket, n: number) =>
      Array.from({ length: n }, () => limits.admit(settings, 'app', 'u', conn, T0)).filter((w) => w === 0).length;
    expect(admitted(a, 10)).to.equal(3); // per connection
    expect(admitted(b, 10)).to.equal(1); // the user's fourth
    expect(limits.admit(settings, 'app', 'other', b, T0)).to.equal(0); // another user: own budget
    // Both buckets must hold a token: a's refills in 334 ms, the user's in 250.
    expect(limits.admit(settings, 'app', 'u', a, T0)).to.equal(334);
    expect(limits.admit(settings, 'app', 'u', a, T0 + 334)).to.equal(0);
  });
});
