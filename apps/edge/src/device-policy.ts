import type { AppDirectory } from '@push/apps';
import type { Logger } from '@push/logger';
import {
  readDeviceClaim,
  type AppRecord,
  type DeviceClaim,
  type DevicePolicyName,
  type Subjects,
} from '@push/protocol';
import type { EdgeMetrics } from './metrics.js';

/**
 * What the policy needs of an app session: every ClientSession fits, a connection's first app's
 * (ClientConnection) and those it attached (AttachedSession). Replacing an attached session, or a
 * first one whose connection holds others, detaches it; the socket closes with its last session.
 */
export interface PolicyHolder {
  /** Unique across edges (edge id, start, counter): breaks ties of the stamp. */
  readonly id: string;
  readonly app: string;
  readonly user: string;
  readonly device: string;
  readonly isClosed: boolean;
  emit(type: 'replaced', fields: { by: string }): void;
  /**
   * Ends this session for a newer one: close code 4006 `replaced`, or a `detached` (reason
   * `replaced`) when its connection holds other apps' sessions, which stay.
   */
  replace(): void;
}

/** A connection of a user under a `single` policy on this edge, with its stamp. */
interface Entry {
  holder: PolicyHolder;
  /** The edge's stamp of the connection (see `DevicePolicy.stamp`); 0: opened before the app took the policy. */
  at: number;
}

/** One user's registered connections on this edge. */
interface UserEntries {
  app: string;
  user: string;
  entries: Entry[];
}

/** The close reason of a replaced connection (docs/protocol.md, close code 4006). */
export const REPLACED_REASON = 'replaced';

/**
 * A stamp heard from another edge raises this edge's clock only up to this far past its own
 * (ms): an edge with a clock an hour fast must not drag every other edge's stamps along.
 */
const MAX_AHEAD_MS = 60_000;

/** Whether connection `a` (stamp, id) is ordered before claim `b`: the total order "older than". */
function before(at: number, id: string, claim: DeviceClaim): boolean {
  return at < claim.at || (at === claim.at && id < claim.conn);
}

export interface DevicePolicyDeps {
  subjects: Pick<Subjects, 'claim' | 'parseClaim'>;
  apps: Pick<AppDirectory, 'get'>;
  /** Sends a core NATS message (the edge's nats.js connection). Throws when it cannot. */
  publish(subject: string, payload: string): void;
  metrics: Pick<EdgeMetrics, 'replaced' | 'errors'>;
  log: Pick<Logger, 'warn' | 'debug'>;
  /** Epoch ms (tests pass a fake clock). */
  now?: () => number;
}

/**
 * The app setting `devicePolicy` on one edge (docs/architecture.md "One device at a time").
 *
 * Under `single` (or `single-per-device`), a connection gets a stamp when it opens, after its
 * `hello`: the edge's clock in ms, raised past every stamp the edge has issued or heard. Connections
 * are totally ordered by (stamp, connection id). The edge closes its own older connections of the
 * user (of the device) at once and announces the new one on `push.claim.<app>.<user>`; every edge
 * that hears a claim closes the user's connections ordered before it (close code 4006, reason
 * `replaced`) and, when it holds one ordered after it, announces that one again, so that the
 * older of two racing connections is closed whichever claim was missed: exactly one survives.
 * After a NATS reconnect (claims may have been missed) every registered user's newest connection
 * is announced again.
 *
 * Memory: nothing for `multi` apps (the default); one small entry per connection otherwise.
 */
export class DevicePolicy {
  /** By claim subject (the canonical encoding of app and user). */
  private readonly users = new Map<string, UserEntries>();
  /** The highest stamp issued or heard (within MAX_AHEAD_MS of the clock): stamps only grow. */
  private clock = 0;
  private reclaimQueued = false;
  private readonly now: () => number;

  constructor(private readonly deps: DevicePolicyDeps) {
    this.now = deps.now ?? Date.now;
  }

  /** Users with a registered connection here (for tests and metrics). */
  get size(): number {
    return this.users.size;
  }

  /**
   * A connection said `hello` (and is recorded in presence): under a `single` policy, it replaces
   * the user's older ones everywhere. `at`: its stamp, taken at its `hello` (`stamp()`), so that
   * the order is the hellos' however long its presence write took.
   */
  opened(holder: PolicyHolder, at = this.stamp()): void {
    const policy = this.policyOf(this.deps.apps.get(holder.app));
    if (policy === 'multi' || holder.isClosed) return;
    this.entriesOf(holder.app, holder.user).entries.push({ holder, at });
    const claim: DeviceClaim = {
      conn: holder.id,
      at,
      ...(policy === 'single-per-device' ? { device: holder.device } : {}),
    };
    this.apply(holder.app, holder.user, claim);
    this.announce(holder.app, holder.user, claim);
  }

  /** A connection closed (any reason). */
  closed(holder: PolicyHolder): void {
    if (this.users.size === 0) return; // no app of this edge's connections has a single policy
    const key = this.deps.subjects.claim(holder.app, holder.user);
    const u = this.users.get(key);
    if (u === undefined) return;
    u.entries = u.entries.filter((e) => e.holder !== holder);
    if (u.entries.length === 0) this.users.delete(key);
  }

  /** A claim from the live subscription on `push.claim.>` (this edge's own claims come back too). */
  onClaim(subject: string, payload: Buffer): void {
    const target = this.deps.subjects.parseClaim(subject);
    if (target === undefined) {
      this.deps.log.warn({ subject }, 'device claim on an unreadable subject ignored');
      return;
    }
    let claim: DeviceClaim;
    try {
      claim = readDeviceClaim(payload);
    } catch (err) {
      this.deps.log.warn({ err, subject }, 'unreadable device claim ignored');
      return;
    }
    if (claim.at > this.clock && claim.at <= this.now() + MAX_AHEAD_MS) this.clock = claim.at;
    this.apply(target.app, target.user, claim);
  }

  /**
   * The app changed: under `multi` (or gone) its connections are forgotten; under a `single`
   * policy, its open connections not registered yet (opened under `multi`) are registered as
   * older than any claim, so the next connection of their user replaces them.
   */
  appChanged(id: string, record: AppRecord | undefined, open: Iterable<PolicyHolder>): void {
    if (this.policyOf(record) === 'multi') {
      for (const [key, u] of this.users) if (u.app === id) this.users.delete(key);
      return;
    }
    const known = new Set<PolicyHolder>();
    for (const u of this.users.values()) if (u.app === id) for (const e of u.entries) known.add(e.holder);
    for (const h of open) {
      if (h.app === id && !h.isClosed && !known.has(h))
        this.entriesOf(h.app, h.user).entries.push({ holder: h, at: 0 });
    }
  }

  /**
   * Claims may have been missed (the live subscription reconnected) or not sent (the publishing
   * connection was down): every registered user's newest connection (per device under
   * `single-per-device`) is announced again. Calls in one event-loop turn run once.
   */
  reclaimAll(): void {
    if (this.reclaimQueued) return;
    this.reclaimQueued = true;
    setImmediate(() => {
      this.reclaimQueued = false;
      for (const [key, u] of this.users) {
        const policy = this.policyOf(this.deps.apps.get(u.app));
        if (policy === 'multi') {
          this.users.delete(key);
          continue;
        }
        const newest = new Map<string, Entry>();
        for (const e of u.entries) {
          if (e.at === 0 || e.holder.isClosed) continue;
          const scope = policy === 'single-per-device' ? e.holder.device : '';
          const n = newest.get(scope);
          if (n === undefined || !before(e.at, e.holder.id, { conn: n.holder.id, at: n.at })) newest.set(scope, e);
        }
        for (const [scope, e] of newest) {
          this.announce(u.app, u.user, { conn: e.holder.id, at: e.at, ...(scope !== '' ? { device: scope } : {}) });
        }
      }
    });
  }

  /**
   * Closes this edge's connections of the user (of the claim's device) ordered before the claim;
   * announces again the newest one ordered after it, if any (the claimer missed its claim).
   */
  private apply(app: string, user: string, claim: DeviceClaim): void {
    const u = this.users.get(this.deps.subjects.claim(app, user));
    if (u === undefined) return;
    let newer: Entry | undefined;
    for (const e of [...u.entries]) {
      const h = e.holder;
      if (h.id === claim.conn || h.isClosed) continue;
      if (claim.device !== undefined && h.device !== claim.device) continue;
      if (before(e.at, h.id, claim)) this.replace(u, e, claim.conn);
      else if (newer === undefined || before(newer.at, newer.holder.id, { conn: h.id, at: e.at })) newer = e;
    }
    if (newer !== undefined) {
      this.announce(app, user, {
        conn: newer.holder.id,
        at: newer.at,
        ...(claim.device !== undefined ? { device: claim.device } : {}),
      });
    }
  }

  private replace(u: UserEntries, e: Entry, by: string): void {
    u.entries = u.entries.filter((x) => x !== e);
    if (u.entries.length === 0) this.users.delete(this.deps.subjects.claim(u.app, u.user));
    this.deps.metrics.replaced.inc();
    e.holder.emit('replaced', { by });
    e.holder.replace();
  }

  private announce(app: string, user: string, claim: DeviceClaim): void {
    try {
      this.deps.publish(this.deps.subjects.claim(app, user), JSON.stringify(claim));
    } catch (err) {
      // The next NATS reconnect announces the user's newest connection again (reclaimAll).
      this.deps.metrics.errors.inc({ code: 'device_claim' });
      this.deps.log.warn({ err, app, conn: claim.conn }, 'device claim not sent');
    }
  }

  /** A new stamp: the clock in ms, and always above every stamp issued or heard before. */
  /** A stamp for a connection saying `hello` now: the clock, raised past every stamp issued or heard. */
  stamp(): number {
    this.clock = Math.max(this.now(), this.clock + 1);
    return this.clock;
  }

  private policyOf(record: AppRecord | undefined): DevicePolicyName {
    return record === undefined || record.disabled ? 'multi' : (record.settings.devicePolicy ?? 'multi');
  }

  /** The user's entries, made when there are none. */
  private entriesOf(app: string, user: string): UserEntries {
    const key = this.deps.subjects.claim(app, user);
    let u = this.users.get(key);
    if (u === undefined) this.users.set(key, (u = { app, user, entries: [] }));
    return u;
  }
}
