import { expect } from 'chai';
import { ttlHeaderSeconds } from '@push/nats';

describe('Nats-TTL of a stored message', () => {
  it('is the TTL in whole seconds, rounded up, never under the server minimum of 1 s', () => {
    expect(ttlHeaderSeconds(3_600_000)).to.equal(3600);
    expect(ttlHeaderSeconds(1500)).to.equal(2);
    expect(ttlHeaderSeconds(1)).to.equal(1);
    expect(ttlHeaderSeconds(0)).to.equal(1);
  });

  it('refuses a TTL that is not a number', () => {
    expect(() => ttlHeaderSeconds(Number.NaN)).to.throw(/finite/);
    expect(() => ttlHeaderSeconds(Number.POSITIVE_INFINITY)).to.throw(/finite/);
  });
});
