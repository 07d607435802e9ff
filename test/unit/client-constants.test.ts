import { expect } from 'chai';
import * as sdk from '@push/client';
import { CLOSE, MAX_ACKS_PER_FRAME, REFUSAL_AS_CLOSE, REFUSED, refusalCloseCode } from '@push/protocol';

// The SDK mirrors the protocol's constants so that its browser bundle carries no server code.
describe('SDK protocol constants equal libs/protocol', function () {
  it('close codes', function () {
    const { REFUSED_BASE, ...sdkClose } = sdk.CLOSE;
    expect(sdkClose).to.deep.equal(CLOSE);
    expect(REFUSED_BASE).to.equal(refusalCloseCode(0));
  });

  it('refusal close codes, the query value that asks for them, the ack frame limit', function () {
    expect(sdk.REFUSED).to.deep.equal(REFUSED);
    expect(sdk.REFUSAL_AS_CLOSE).to.equal(REFUSAL_AS_CLOSE);
    expect(sdk.MAX_ACKS_PER_FRAME).to.equal(MAX_ACKS_PER_FRAME);
    for (const [status, code] of [
      [400, 4400],
      [401, 4401],
      [403, 4403],
      [404, 4404],
      [500, 4500],
      [503, 4503],
    ] as const) {
      expect(refusalCloseCode(status)).to.equal(code);
    }
  });

  it('the reconnect backoff of docs/protocol.md: 0.5 s doubling, capped at 30 s', function () {
    expect(sdk.RECONNECT_BACKOFF).to.deep.equal({ baseMs: 500, capMs: 30_000 });
  });
});
