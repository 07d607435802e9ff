import { expect } from 'chai';
import { CLOSE } from '@push/protocol';
import type { ClientConnection } from '../../apps/edge/src/client-connection.js';
import { EdgeConnections } from '../../apps/edge/src/edge-connections.js';

/** A connection as EdgeConnections sees it: records how it was closed. */
function fakeConnection(app: string, exp: number): ClientConnection & { closedWith?: [number, string] } {
  const c = {
    app,
    exp,
    closedWith: undefined as [number, string] | undefined,
    end(code: number, reason: string) {
      c.closedWith = [code, reason];
    },
    // One session, its own: ending it closes the connection (as ClientConnection.endSession does).
    *sessions() {
      yield c;
    },
    endSession(_s: unknown, _reason: string, code: number, text: string) {
      c.closedWith = [code, text];
    },
  };
  return c as unknown as ClientConnection & { closedWith?: [number, string] };
}

describe('EdgeConnections', () => {
  it('whenEmpty resolves when the last connection closes, not before', async () => {
    const set = new EdgeConnections();
    expect(await set.whenEmpty(10)).to.equal(true);
    const a = fakeConnection('app1', Infinity);
    const b = fakeConnection('app1', Infinity);
    set.add(a);
    set.add(b);
    let settled: boolean | undefined;
    const empty = set.whenEmpty(5000).then((v) => (settled = v));
    set.delete(a);
    await new Promise((r) => setImmediate(r));
    expect(settled).to.equal(undefined);
    set.delete(b);
    expect(await empty).to.equal(true);
  });

  it('whenEmpty resolves false at its deadline while a connection stays open', async () => {
    const set = new EdgeConnections();
    set.add(fakeConnection('app1', Infinity));
    const t0 = Date.now();
    expect(await set.whenEmpty(50)).to.equal(false);
    expect(Date.now() - t0).to.be.at.least(45);
  });

  it('endAll tells every client to reconnect after its own delay within the drain window', () => {
    const set = new EdgeConnections();
    const conns = Array.from({ length: 50 }, () => fakeConnection('app1', Infinity));
    for (const c of conns) set.add(c);
    set.endAll(3000);
    const delays = conns.map((c) => {
      expect(c.closedWith?.[0]).to.equal(CLOSE.SHUTDOWN);
      const m = /^reconnect:(\d+)$/.exec(c.closedWith?.[1] ?? '');
      expect(m, c.closedWith?.[1]).to.not.equal(null);
      return Number(m?.[1]);
    });
    for (const d of delays) expect(d).to.be.within(0, 2999);
    expect(new Set(delays).size).to.be.greaterThan(1); // spread, not one instant
  });

  it('sweepTokens closes only the connections whose token expired', () => {
    const set = new EdgeConnections();
    const expired = fakeConnection('app1', 100);
    const valid = fakeConnection('app1', 200);
    set.add(expired);
    set.add(valid);
    set.sweepTokens(150_000);
    expect(expired.closedWith).to.deep.equal([CLOSE.TOKEN_EXPIRED, 'token expired']);
    expect(valid.closedWith).to.equal(undefined);
  });

  it('endApp closes the connections of that app only', () => {
    const set = new EdgeConnections();
    const gone = fakeConnection('app1', Infinity);
    const other = fakeConnection('app2', Infinity);
    set.add(gone);
    set.add(other);
    set.endApp('app1');
    expect(gone.closedWith?.[0]).to.equal(CLOSE.APP_GONE);
    expect(other.closedWith).to.equal(undefined);
  });
});
