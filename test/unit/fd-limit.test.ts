import { expect } from 'chai';
import { connectionBudget, FD_RESERVE, openFileLimit } from '../../apps/edge/src/fd-limit.js';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            20000                20000                files
`;

describe('edge connection budget from the open-file limit', function () {
  it('reads the soft open-file limit', function () {
    expect(openFileLimit(LIMITS)).to.equal(20000);
    expect(openFileLimit(LIMITS.replace('20000                20000', 'unlimited            unlimited'))).to.equal(
      undefined,
    );
    expect(openFileLimit('')).to.equal(undefined);
  });

  it('keeps the configured limit when descriptors allow it, lowers it when they do not', function () {
    expect(connectionBudget(19_000, 20_000)).to.equal(19_000);
    expect(connectionBudget(50_000, 20_000)).to.equal(20_000 - FD_RESERVE);
    expect(connectionBudget(50_000, undefined)).to.equal(50_000);
    expect(connectionBudget(10, 100)).to.equal(1);
  });

  it('this process has a readable limit on Linux', function () {
    expect(openFileLimit()).to.be.a('number');
  });
});
