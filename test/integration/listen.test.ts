import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { listen, loadUws } from '@push/http';
import { freePort } from '../helpers/nats-bin.js';

/** Listening TCP sockets on 127.0.0.1:`port`, from /proc/net/tcp (state 0A). */
function listenSockets(port: number): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .filter((line) => {
      const cols = line.trim().split(/\s+/);
      return cols[1] === `0100007F:${hexPort}` && cols[3] === '0A';
    }).length;
}

describe('listen (uWS, SO_REUSEPORT)', function () {
  it('opens that many listen sockets on one port (an accept backlog of 512 each), serves on it, and closes them all', async function () {
    const app = loadUws().App();
    app.get('/*', (res) => void res.end('ok'));
    const l = await listen(app, '127.0.0.1', await freePort(), 3);
    try {
      expect(l.port).to.be.greaterThan(0);
      expect(listenSockets(l.port)).to.equal(3);
      const answers = await Promise.all(
        Array.from({ length: 20 }, () => fetch(`http://127.0.0.1:${l.port}/x`).then((r) => r.text())),
      );
      expect(answers).to.deep.equal(Array(20).fill('ok'));
    } finally {
      l.close();
      l.close(); // idempotent
    }
    expect(listenSockets(l.port)).to.equal(0);
    let refused: unknown;
    await fetch(`http://127.0.0.1:${l.port}/x`).catch((err: unknown) => (refused = err));
    expect(refused).to.be.instanceOf(Error);
  });

  it('one socket by default, and on port 0 (an ephemeral port takes no second socket)', async function () {
    for (const [port, sockets] of [
      [await freePort(), 1],
      [0, 4],
    ] as const) {
      const l = await listen(loadUws().App(), '127.0.0.1', port, sockets);
      try {
        expect(listenSockets(l.port)).to.equal(1);
      } finally {
        l.close();
      }
    }
  });
});
