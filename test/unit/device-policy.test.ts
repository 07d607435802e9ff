import { expect } from 'chai';
import { pino } from 'pino';
import { Counter, Registry } from 'prom-client';
import { CLOSE, DEFAULT_APP_SETTINGS, Subjects, type AppRecord, type DevicePolicyName } from '@push/protocol';
import { DevicePolicy, type PolicyHolder } from '../../apps/edge/src/device-policy.js';
import { prng } from '../helpers/prng.js';

/**
 * The claim protocol of apps/edge/src/device-policy.ts, run over a simulated NATS: several edges,
 * each with its own (skewed) clock, claims delivered to every edge in a random order, some lost.
 * What must hold whatever the interleaving: of a user's connections (of one device under
 * `single-per-device`) exactly one stays open, and never zero. test/e2e/device-policy.test.ts
 * runs the real edges.
 */

const subjects = new Subjects('t1');

interface Conn extends PolicyHolder {
  closes: Array<{ code: number; reason: string }>;
  replacedBy: string[];
  isClosed: boolean;
}

function record(policy: DevicePolicyName, id = 'app'): AppRecord {
  return {
    id,
    name: id,
    disabled: false,
    secrets: [],
    settings: { ...DEFAULT_APP_SETTINGS, devicePolicy: policy },
    apiKeys: [],
    updatedAt: '',
  };
}

/** A simulated deployment: edges sharing one app directory and one bus. */
class World {
  readonly edges: Array<{ id: string; policy: DevicePolicy; skew: number; conns: number; deaf: boolean }> = [];
  /** Claims in flight: to which edge, what. */
  readonly inFlight: Array<{ edge: number; subject: string; payload: Buffer }> = [];
  readonly apps = new Map<string, AppRecord>();
  readonly all: Conn[] = [];
  now = 1_700_000_000_000;
  /** Share of deliveries dropped (a deaf edge drops all of its own). */
  loss = 0;

  constructor(
    readonly random: () => number,
    policy: DevicePolicyName,
  ) {
    this.apps.set('app', record(policy));
  }

  addEdge(skew = 0): number {
    const i = this.edges.length;
    const registry = new Registry();
    const policy = new DevicePolicy({
      subjects,
      apps: { get: (id: string) => this.apps.get(id) },
      publish: (subject, payload) => {
        for (let e = 0; e < this.edges.length; e++)
          this.inFlight.push({ edge: e, subject, payload: Buffer.from(payload) });
      },
      metrics: {
        replaced: new Counter({ name: 'r', help: 'r', registers: [registry] }),
        errors: new Counter({ name: 'e', help: 'e', labelNames: ['code'], registers: [registry] }),
      },
      log: pino({ level: 'silent' }),
      now: () => this.now + skew,
    });
    this.edges.push({ id: `edge${i}`, policy, skew, conns: 0, deaf: false });
    return i;
  }

  /** A connection said hello on an edge. */
  open(edge: number, user: string, device = 'd'): Conn {
    const conn = this.make(edge, user, device);
    this.edges[edge]!.policy.opened(conn);
    return conn;
  }

  /** A connection of an edge, not registered with its policy yet (`opened` is the caller's). */
  make(edge: number, user: string, device = 'd'): Conn {
    const e = this.edges[edge]!;
    const conn: Conn = {
      id: `${e.id}-${++e.conns}`,
      app: 'app',
      user,
      device,
      isClosed: false,
      closes: [],
      replacedBy: [],
      emit(_type, { by }) {
        conn.replacedBy.push(by);
      },
      replace() {
        if (conn.isClosed) return;
        conn.isClosed = true;
        conn.closes.push({ code: 4006, reason: 'replaced' });
        e.policy.closed(conn);
      },
    };
    this.all.push(conn);
    return conn;
  }

  /** Delivers one claim in flight, picked at random (NATS orders per publisher; edges race). */
  step(): boolean {
    if (this.inFlight.length === 0) return false;
    const [m] = this.inFlight.splice(Math.floor(this.random() * this.inFlight.length), 1);
    const e = this.edges[m!.edge]!;
    if (!e.deaf && this.random() >= this.loss) e.policy.onClaim(m!.subject, m!.payload);
    return true;
  }

  /** Delivers everything in flight (also what the deliveries cause), the reclaims of a reconnect too. */
  async settle(): Promise<void> {
    for (;;) {
      while (this.step());
      await new Promise((r) => setImmediate(r));
      if (this.inFlight.length === 0) return;
    }
  }

  open_(user: string, device?: string): Conn[] {
    return this.all.filter((c) => !c.isClosed && c.user === user && (device === undefined || c.device === device));
  }
}

describe('DevicePolicy (simulated edges and NATS)', () => {
  it('single: a new connection closes the older one on another edge with 4006 replaced, naming itself', async () => {
    const w = new World(prng(1), 'single');
    w.addEdge();
    w.addEdge();
    const old = w.open(0, 'alice', 'phone');
    await w.settle();
    w.now += 1000;
    const fresh = w.open(1, 'alice', 'laptop');
    await w.settle();
    expect(old.closes).to.deep.equal([{ code: CLOSE.REPLACED, reason: 'replaced' }]);
    expect(old.replacedBy).to.deep.equal([fresh.id]);
    expect(fresh.isClosed).to.equal(false);
  });

  it('a connection whose presence record came back after a newer hello on another edge is still the older one (stamped at its hello)', async () => {
    const w = new World(prng(7), 'single');
    w.addEdge();
    w.addEdge();
    // The phone says hello first; its record in presence is slow to come back.
    const phone = w.make(0, 'fred', 'phone');
    const at = w.edges[0]!.policy.stamp();
    w.now += 500;
    // The laptop says hello later on the other edge and is recorded at once; its claim arrives first.
    const laptop = w.open(1, 'fred', 'laptop');
    await w.settle();
    w.edges[0]!.policy.opened(phone, at);
    await w.settle();
    expect(phone.closes).to.deep.equal([{ code: CLOSE.REPLACED, reason: 'replaced' }]);
    expect(laptop.isClosed).to.equal(false);
  });

  it('single on the same edge: the older connection closes at once, before any claim comes back', () => {
    const w = new World(prng(2), 'single');
    w.addEdge();
    const old = w.open(0, 'alice');
    const fresh = w.open(0, 'alice');
    expect(old.isClosed).to.equal(true);
    expect(fresh.isClosed).to.equal(false);
  });

  it('single-per-device keeps other devices; multi closes nothing and sends no claim', async () => {
    const w = new World(prng(3), 'single-per-device');
    w.addEdge();
    w.addEdge();
    const phone = w.open(0, 'alice', 'phone');
    const laptop = w.open(0, 'alice', 'laptop');
    await w.settle();
    w.now += 10;
    const phone2 = w.open(1, 'alice', 'phone');
    const bob = w.open(1, 'bob', 'phone');
    await w.settle();
    expect([phone.isClosed, laptop.isClosed, phone2.isClosed, bob.isClosed]).to.deep.equal([true, false, false, false]);

    const m = new World(prng(4), 'multi');
    m.addEdge();
    m.addEdge();
    m.open(0, 'alice');
    m.open(1, 'alice');
    expect(m.inFlight).to.deep.equal([]);
    expect(m.open_('alice')).to.have.length(2);
    expect(m.edges[0]!.policy.size).to.equal(0);
  });

  it('a connection opened after its edge heard a claim is the newer one, even when that edge clock is behind', async () => {
    const w = new World(prng(5), 'single');
    w.addEdge(5_000); // five seconds fast
    w.addEdge(0);
    const first = w.open(0, 'alice');
    await w.settle();
    w.now += 100; // edge 1's clock still reads 4.9 s before edge 0's stamp of `first`
    const second = w.open(1, 'alice');
    await w.settle();
    expect(first.isClosed).to.equal(true);
    expect(second.isClosed).to.equal(false);
  });

  for (const policy of ['single', 'single-per-device'] as const) {
    it(`${policy}: connections racing on 3 edges with skewed clocks always leave exactly one (per device), 300 interleavings`, async () => {
      for (let seed = 1; seed <= 300; seed++) {
        const random = prng(seed);
        const w = new World(random, policy);
        for (let e = 0; e < 3; e++) w.addEdge(Math.floor(random() * 40) - 20);
        const devices = policy === 'single' ? ['d'] : ['phone', 'laptop'];
        // Opens interleaved with random deliveries: claims cross each other in flight.
        for (let i = 0; i < 6; i++) {
          w.open(Math.floor(random() * 3), 'alice', devices[i % devices.length]);
          w.now += Math.floor(random() * 3);
          for (let k = Math.floor(random() * 4); k > 0; k--) w.step();
        }
        await w.settle();
        for (const d of devices) {
          const left = w.open_('alice', policy === 'single' ? undefined : d);
          expect(left.length, `seed ${seed}, device ${d}: ${left.map((c) => c.id).join(' ')}`).to.equal(1);
        }
      }
    });
  }

  it('an edge whose clock is two minutes fast (past the bound a heard stamp may raise a clock): still exactly one, 200 interleavings', async () => {
    for (let seed = 1; seed <= 200; seed++) {
      const random = prng(seed);
      const w = new World(random, 'single');
      w.addEdge(120_000);
      w.addEdge(0);
      w.addEdge(-5);
      for (let i = 0; i < 6; i++) {
        w.open(Math.floor(random() * 3), 'alice');
        w.now += Math.floor(random() * 3);
        for (let k = Math.floor(random() * 4); k > 0; k--) w.step();
      }
      await w.settle();
      expect(w.open_('alice').length, `seed ${seed}`).to.equal(1);
    }
  });

  it('a claim lost on the way (a NATS reconnect) is made up for by the reclaim after the reconnect', async () => {
    const w = new World(prng(6), 'single');
    w.addEdge();
    w.addEdge();
    const old = w.open(0, 'alice');
    await w.settle();
    w.now += 50;
    w.edges[0]!.deaf = true; // edge 0's live subscription is down: it misses the new claim
    const fresh = w.open(1, 'alice');
    await w.settle();
    expect(old.isClosed).to.equal(false);
    w.edges[0]!.deaf = false;
    w.edges[0]!.policy.reclaimAll(); // its onReconnect: it announces `old`, which edge 1 finds older
    await w.settle();
    expect(old.isClosed).to.equal(true);
    expect(fresh.isClosed).to.equal(false);
  });

  it('never leaves zero, also with a third of all claims lost, and converges once reclaims run', async () => {
    for (let seed = 1; seed <= 100; seed++) {
      const random = prng(seed);
      const w = new World(random, 'single');
      w.loss = 0.33;
      for (let e = 0; e < 3; e++) w.addEdge(Math.floor(random() * 40) - 20);
      for (let i = 0; i < 5; i++) {
        w.open(Math.floor(random() * 3), 'alice');
        for (let k = Math.floor(random() * 3); k > 0; k--) w.step();
      }
      await w.settle();
      expect(w.open_('alice').length, `seed ${seed}`).to.be.greaterThan(0);
      w.loss = 0;
      for (const e of w.edges) e.policy.reclaimAll();
      await w.settle();
      expect(w.open_('alice').length, `seed ${seed}`).to.equal(1);
    }
  });

  it('switching an app to single registers its open connections as older than any claim; back to multi forgets them', async () => {
    const w = new World(prng(7), 'multi');
    w.addEdge();
    w.addEdge();
    const a = w.open(0, 'alice');
    const b = w.open(1, 'alice');
    w.apps.set('app', record('single'));
    const open = (e: number) => w.all.filter((c) => c.id.startsWith(`edge${e}-`));
    w.edges[0]!.policy.appChanged('app', w.apps.get('app'), open(0));
    w.edges[1]!.policy.appChanged('app', w.apps.get('app'), open(1));
    const c = w.open(1, 'alice');
    await w.settle();
    expect([a.isClosed, b.isClosed, c.isClosed]).to.deep.equal([true, true, false]);
    w.apps.set('app', record('multi'));
    for (const e of [0, 1]) w.edges[e]!.policy.appChanged('app', w.apps.get('app'), open(e));
    expect(w.edges[1]!.policy.size).to.equal(0);
    w.open(0, 'alice');
    expect(c.isClosed).to.equal(false);
  });

  it('ignores unreadable claims and subjects (logged), and a stamp far ahead does not drag the clock', () => {
    const warnings: string[] = [];
    const sent: string[] = [];
    const policy = new DevicePolicy({
      subjects,
      apps: { get: () => record('single') },
      publish: (_s, payload) => sent.push(payload),
      metrics: {
        replaced: new Counter({ name: 'r', help: 'r', registers: [] }),
        errors: new Counter({ name: 'e', help: 'e', labelNames: ['code'], registers: [] }),
      },
      log: pino({ level: 'warn' }, { write: (line: string) => warnings.push(line) }),
      now: () => 1000,
    });
    const claim = (body: unknown) => policy.onClaim(subjects.claim('app', 'alice'), Buffer.from(JSON.stringify(body)));
    policy.onClaim('t1.claim.app', Buffer.from('{}'));
    policy.onClaim(subjects.claim('app', 'alice'), Buffer.from('nope'));
    claim({ conn: 'x', at: -1 });
    claim({ conn: '', at: 1 });
    expect(warnings).to.have.length(4);
    // An hour ahead of this edge's clock: not taken; a stamp 4 s ahead is.
    claim({ conn: 'x', at: 3_600_000 });
    claim({ conn: 'y', at: 5000 });
    policy.opened({ id: 'e-1', app: 'app', user: 'bob', device: 'd', isClosed: false, emit() {}, replace() {} });
    expect(JSON.parse(sent[0] ?? '{}')).to.deep.equal({ conn: 'e-1', at: 5001 });
  });
});
