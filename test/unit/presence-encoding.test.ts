import { expect } from 'chai';
import { decodePresence, encodePresence } from '@push/presence';

describe('presence encoding', function () {
  it('keeps every field whole whatever characters the device id holds', function () {
    for (const device of ['tablet|1700000000000|x', '"],["x', '[', '']) {
      expect(decodePresence('c1', encodePresence('edge-1', device, 42))).to.deep.equal({
        conn: 'c1',
        edge: 'edge-1',
        device,
        since: 42,
      });
    }
  });

  it('reads entries of the old `edge|device|since` form, a device with `|` whole', function () {
    expect(decodePresence('c1', 'edge-1|phone|42')).to.deep.equal({
      conn: 'c1',
      edge: 'edge-1',
      device: 'phone',
      since: 42,
    });
    expect(decodePresence('c1', 'edge-1|a|b|42')).to.deep.equal({
      conn: 'c1',
      edge: 'edge-1',
      device: 'a|b',
      since: 42,
    });
  });
});
