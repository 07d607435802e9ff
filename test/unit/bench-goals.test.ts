import { expect } from 'chai';
import { atLeast, atMost, below } from '../../bench/lib/goals.js';
import { sameRoundPercent } from '../../bench/lib/stats.js';

describe('bench goals and same-round shares', () => {
  it('gives no share for rounds where the peer was not measured, instead of NaN', () => {
    // BENCH_TARGETS=ours: no bare uWS round, so nothing to divide by (the fanout JSON said "NaN %").
    expect(sameRoundPercent([533_250], [])).to.deep.equal([]);
    expect(sameRoundPercent([100, 200, 300], [200, 400])).to.deep.equal([50, 50]);
    expect(sameRoundPercent([100], [0])).to.deep.equal([]);
  });

  it('computes met from the measured value, and a value not measured has not met its goal', () => {
    expect(atLeast(96, 70, '%')).to.deep.equal({ target: '>= 70%', met: 'yes' });
    expect(atLeast(Number.NaN, 70, '%').met).to.equal('no');
    expect(atMost(29.4, 30, ' s')).to.deep.equal({ target: '<= 30 s', met: 'yes' });
    expect(atMost(64, 30, ' s').met).to.equal('no');
    expect(atMost(Number.POSITIVE_INFINITY, 30, ' s').met).to.equal('no');
    expect(below(150, 150, ' B')).to.deep.equal({ target: '< 150 B', met: 'no' });
    expect(atLeast(20_000, 20_000, '/s').target).to.equal('>= 20,000/s');
  });
});
