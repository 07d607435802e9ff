import { expect } from 'chai';
import { backoffDelay } from '@push/protocol';

describe('backoffDelay (full jitter)', () => {
  const policy = { baseMs: 100, capMs: 1000 };

  it('draws from [0, base * 2^attempt): the whole window, low end to high end', () => {
    expect(backoffDelay(0, policy, () => 0)).to.equal(0);
    expect(backoffDelay(0, policy, () => 0.5)).to.equal(50);
    expect(backoffDelay(0, policy, () => 0.999)).to.be.closeTo(99.9, 1e-9);
    expect(backoffDelay(1, policy, () => 0.999)).to.be.closeTo(199.8, 1e-9);
    expect(backoffDelay(3, policy, () => 0.5)).to.equal(400);
  });

  it('never exceeds the cap, however many attempts, and survives absurd attempt numbers', () => {
    expect(backoffDelay(4, policy, () => 0.999)).to.be.closeTo(999, 1e-9); // 1600 capped to 1000
    for (const attempt of [10, 31, 32, 1000, Number.MAX_SAFE_INTEGER, Infinity]) {
      const d = backoffDelay(attempt, policy, () => 0.999);
      expect(d, String(attempt)).to.be.within(0, 1000);
    }
    expect(backoffDelay(-5, policy, () => 0.5)).to.equal(50); // a negative attempt counts as the first
    expect(backoffDelay(Number.NaN, policy, () => 0.5)).to.equal(50);
  });

  it('adds the floor before capping (centrifuge-js style: min + random window)', () => {
    const floored = { minMs: 1000, baseMs: 1000, capMs: 5000 };
    expect(backoffDelay(0, floored, () => 0)).to.equal(1000);
    expect(backoffDelay(0, floored, () => 0.5)).to.equal(1500);
    expect(backoffDelay(2, floored, () => 0.5)).to.equal(3000);
    expect(backoffDelay(2, floored, () => 0.999)).to.equal(4996);
    expect(backoffDelay(3, floored, () => 0.999)).to.equal(5000); // 1000 + 4995 capped
  });

  it('uses Math.random by default: delays spread over the window', () => {
    const delays = Array.from({ length: 200 }, () => backoffDelay(2, policy));
    for (const d of delays) expect(d).to.be.within(0, 400);
    expect(Math.min(...delays)).to.be.below(100);
    expect(Math.max(...delays)).to.be.above(300);
  });
});
