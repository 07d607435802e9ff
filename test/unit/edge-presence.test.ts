import { expect } from 'chai';
import type { Logger } from 'pino';
import type { ConnectOutcome, DisconnectOutcome, PresenceEntry } from '@push/presence';
import type { ClientConnection } from '../../apps/edge/src/client-connection.js';
import { EdgeConnections } from '../../apps/edge/src/edge-connections.js';
import { EdgePresence } from '../../apps/edge/src/edge-presence.js';
import type { EdgeMetrics } from '../../apps/edge/src/metrics.js';

const SETTLE_MS = 30;
const tick = () => new Promise((r) => setImmediate(r));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A connection as EdgePresence sees it: records the events it emits. */
function fakeConnection(id: string, user: string, events: string[]): ClientConnection & { isClosed: boolean } {
  const c = {
    id,
    app: 'app1',
    user,
    device: 'phone',
    isClosed: false,
    greeted: true,
    emit(type: string) {
      events.push(`${type} ${user} ${id}`);
    },
    recordTopics() {},
    // One session, its own (EdgeConnections.sessions).
    *sessions() {
      if (!c.isClosed) yield c;
    },
  };
  return c as unknown as ClientConnection & { isClosed: boolean };
}

/** Presence in memory with one epoch, and a switch that makes every call fail (Redis down). */
class FakeRegistry {
  entries = new Map<string, PresenceEntry & { user: string }>();
  down = false;
  lostEpoch = false;

  connected(_app: string, user: string, conn: string, device: string, since: number): Promise<ConnectOutcome> {
    if (this.down) return Promise.reject(new Error('redis down'));
    if (this.lostEpoch) return Promise.resolve('lost');
    const first = ![...this.entries.values()].some((e) => e.user === user);
    const known = this.entries.has(conn);
    this.entries.set(conn, { conn, edge: 'e1', device, since, user });
    return Promise.resolve(known ? 'more' : first ? 'first' : 'more');
  }

  disconnected(_app: string, user: string, conn: string): Promise<DisconnectOutcome> {
    if (this.down) return Promise.reject(new Error('redis down'));
    if (this.lostEpoch) return Promise.resolve('lost');
    if (!this.entries.delete(conn)) return Promise.resolve('gone');
    return Promise.resolve([...this.entries.values()].some((e) => e.user === user) ? 'more' : 'last');
  }

  lookup(_app: string, user: string): Promise<PresenceEntry[]> {
    return Promise.resolve([...this.entries.values()].filter((e) => e.user === user));
  }
}

describe('EdgePresence (Redis down, Redis lost its data)', () => {
  let events: string[];
  let registry: FakeRegistry;
  let connections: EdgeConnections;
  let presence: EdgePresence;

  beforeEach(() => {
    events = [];
    registry = new FakeRegistry();
    connections = new EdgeConnections();
    const metrics = { errors: { inc() {} } } as unknown as EdgeMetrics;
    const log = { warn() {} } as unknown as Logger;
    presence = new EdgePresence(registry, connections, SETTLE_MS, metrics, log);
  });

  function open(id: string, user: string): ClientConnection & { isClosed: boolean } {
    const c = fakeConnection(id, user, events);
    connections.add(c);
    void presence.opened(c);
    return c;
  }

  function close(c: ClientConnection & { isClosed: boolean }): void {
    c.isClosed = true;
    connections.delete(c);
    presence.closed(c, 1000, 'client');
  }

  it('retries a removal that failed while Redis was down, with its offline, once Redis answers', async () => {
    const a = open('c1', 'ann');
    await tick();
    registry.down = true;
    close(a);
    await tick();
    // The close is reported at once; the offline waits for Redis.
    expect(events).to.deep.equal(['user_online ann c1', 'conn_close ann c1']);
    registry.down = false;
    presence.renewed();
    await tick();
    expect(events).to.deep.equal(['user_online ann c1', 'conn_close ann c1', 'user_offline ann c1']);
    expect(registry.entries.size).to.equal(0);
  });

  it('after a loss: records silently who stayed, settles the offline of who left, the online of who came', async () => {
    open('c1', 'ann');
    const b = open('c2', 'bob');
    await tick();
    registry.down = true;
    close(b); // removal fails: Redis down
    open('c3', 'cid'); // record fails: Redis down
    await tick();
    registry.down = false;
    registry.entries.clear(); // Redis came back empty
    presence.dataLost();
    await tick();
    expect([...registry.entries.keys()].sort()).to.deep.equal(['c1', 'c3']);
    // The rest is decided after the recovery.
    expect(events).to.deep.equal(['user_online ann c1', 'user_online bob c2', 'conn_close bob c2']);
    await sleep(SETTLE_MS + 20);
    expect(events.slice(3).sort()).to.deep.equal(['user_offline bob c2', 'user_online cid c3']);
  });

  it('during the recovery, of the new connections of a user only the oldest announces, and not when one was announced before', async () => {
    const old = open('c1', 'ann');
    await tick();
    registry.entries.clear();
    presence.dataLost();
    await tick();
    open('c2', 'ann'); // the user was online already: no online
    await sleep(2);
    open('c3', 'dan');
    await sleep(2);
    open('c4', 'dan'); // only the older of dan's announces
    await sleep(SETTLE_MS + 20);
    presence.renewed(); // the settle timer may have run before c4's record came back
    await tick();
    expect(events).to.deep.equal(['user_online ann c1', 'user_online dan c3']);
    expect(old.isClosed).to.equal(false);
  });

  it('a connection whose entry a sweep removed (and reported) closes without a second conn_close', async () => {
    const a = open('c1', 'ann');
    const b = open('c2', 'bob');
    await tick();
    registry.entries.delete('c1'); // swept while the edge stalled: conn_close and user_offline reported
    close(a);
    await tick();
    expect(events).to.deep.equal(['user_online ann c1', 'user_online bob c2']);
    // Recorded again after the sweep, then closed before the record came back: both pairs, in order.
    registry.entries.delete('c2');
    presence.leaseLost();
    b.isClosed = true;
    connections.delete(b);
    presence.closed(b, 1000, 'client');
    await tick();
    expect(events.slice(2)).to.deep.equal([
      'conn_open bob c2',
      'user_online bob c2',
      'conn_close bob c2',
      'user_offline bob c2',
    ]);
  });
});
