import type { PresenceRegistry } from '@push/presence';
import type { Logger } from 'pino';
import type { ClientSession } from './client-session.js';
import type { EdgeConnections } from './edge-connections.js';
import type { EdgeMetrics } from './metrics.js';

/** A closed connection whose removal from presence is not settled yet, and why it closed. */
interface Unsettled {
  conn: ClientSession;
  /** Its close code and reason, for `conn_close`. */
  code: number;
  reason: string;
  /** Its `conn_close` is still to be emitted. */
  close: boolean;
  /** Epoch ms from which an orphan is settled (see `orphans`). */
  due: number;
}

/**
 * The presence of one edge's connections in Redis (libs/presence) and the `user_online` /
 * `user_offline` events it decides, kept right through Redis failures:
 *
 * - a write that failed (Redis unreachable) is tried again after the next lease renewal that
 *   reached Redis, so a connection opened or closed during an outage is neither missing from
 *   presence nor left in it as a ghost, and its event is emitted then;
 * - after the lease lapsed (a sweeper may have removed and reported this edge's entries), every
 *   connection is recorded again, with `user_online` for users it makes online again;
 * - after Redis lost its data (restarted empty), every connection is recorded again with no
 *   event (nobody reported them offline), and what needs every edge's connections is decided
 *   once every edge had time to record them again (`settleAfterMs`, the recovery): a connection
 *   that closed since the loss, whose entry went with the data, gets its user's `user_offline`
 *   when presence then lists no connection of theirs; a connection whose user's online was not
 *   announced yet (opened during the outage or the recovery) gets `user_online` when it is then
 *   the user's oldest connection (one whose online was announced before the loss is older), so
 *   of several edges exactly one announces, and only for users who were not online already.
 */
export class EdgePresence {
  /** Open connections whose record failed, and whether to announce them: tried again after the next renewal. */
  private readonly unrecorded = new Map<ClientSession, boolean>();
  /** Closed connections whose removal failed: tried again after the next renewal. */
  private failed: Unsettled[] = [];
  /** Closed connections whose entry Redis lost: settled from `due` on (at a renewal). */
  private orphans: Unsettled[] = [];
  /** Until when (epoch ms) the edges record their connections again after Redis lost its data. */
  private recoveringUntil = 0;
  /** Connections recorded during the recovery whose user's online is decided after it. */
  private undecided: ClientSession[] = [];

  constructor(
    private readonly presence: Pick<PresenceRegistry, 'connected' | 'disconnected' | 'lookup'>,
    private readonly connections: EdgeConnections,
    /** How long after Redis lost its data a closed connection is settled, ms (2/3 of the lease). */
    private readonly settleAfterMs: number,
    private readonly metrics: EdgeMetrics,
    private readonly log: Logger,
  ) {}

  /**
   * A connection opened (or is recorded again): `user_online` when it is the user's first.
   * `swept`: recorded again after the lease lapsed, when a sweep may have reported it closed:
   * `conn_open` again if the record was gone. Resolves once Redis answered (or the write failed:
   * it is retried later).
   */
  opened(conn: ClientSession, announce = true, swept = false): Promise<void> {
    this.unrecorded.delete(conn);
    // When it opened, recorded as `since` every time (a field of the session, not a WeakMap entry).
    if (conn.presenceSince === 0) conn.presenceSince = Date.now();
    return this.presence.connected(conn.app, conn.user, conn.id, conn.device, conn.presenceSince).then(
      (outcome) => {
        if (outcome === 'lost') return; // dataLost() records it again
        conn.presenceWritten = true;
        // Also when it closed meanwhile: its `conn_close` comes with its removal, after this.
        if (swept && outcome !== 'again') conn.emit('conn_open', {});
        // Closed before Redis answered, it still announces the online it made: its removal comes
        // after this write, and reports the user's `user_offline` when it was their last.
        if (!conn.isClosed) conn.presenceRecorded = true; // under the current epoch: its user's online was decided
        if (!announce) return;
        // Other edges may not have recorded the user's older connections yet: decided after.
        if (Date.now() < this.recoveringUntil) {
          if (!conn.isClosed) this.undecided.push(conn);
        } else if (outcome === 'first') conn.emit('user_online', {});
      },
      (err: unknown) => {
        if (!conn.isClosed) this.unrecorded.set(conn, announce);
        this.failure(err, 'presence write failed; retried after the next lease renewal');
      },
    );
  }

  /**
   * A connection closed: its `conn_close` once Redis answered the removal (none when a sweep had
   * removed its entry: the sweep reported it), then `user_offline` when it was the user's last
   * (now, or once settled). When Redis fails, `conn_close` goes at once and the removal is retried.
   */
  closed(conn: ClientSession, code: number, reason: string): void {
    conn.presenceRecorded = false;
    this.unrecorded.delete(conn);
    this.remove({ conn, code, reason, close: true, due: 0 });
  }

  private remove(u: Unsettled): void {
    this.presence.disconnected(u.conn.app, u.conn.user, u.conn.id).then(
      (outcome) => {
        if (!(outcome === 'gone' && u.conn.presenceWritten)) this.closeOnce(u);
        u.close = false;
        if (outcome === 'last') u.conn.emit('user_offline', { reason: u.reason });
        else if (outcome === 'lost') {
          this.orphan(u);
          this.settleLater();
        }
      },
      (err: unknown) => {
        this.closeOnce(u);
        this.failed.push(u);
        this.failure(err, 'presence delete failed; retried after the next lease renewal');
      },
    );
  }

  private closeOnce(u: Unsettled): void {
    if (u.close) u.conn.emit('conn_close', { code: u.code, reason: u.reason });
    u.close = false;
  }

  private orphan(u: Unsettled): void {
    this.orphans.push({ ...u, due: Date.now() + this.settleAfterMs });
  }

  /** Settles what is due once the recovery is over (and again at each renewal, for what failed). */
  private settleLater(): void {
    setTimeout(() => this.settleDue(), this.settleAfterMs + 1).unref();
  }

  /** The lease had lapsed (entries may have been swept and reported): record everything again. */
  leaseLost(): void {
    this.log.warn(
      { connections: this.connections.size },
      'presence lease had lapsed; recording every connection again',
    );
    for (const c of this.connections.sessions()) c.presenceRecorded = false;
    for (const c of this.connections.sessions()) {
      if (!c.greeted) continue; // recorded with its greeting, still to come
      void this.opened(c, true, true);
      c.recordTopics('lease');
    }
  }

  /**
   * Redis lost its data: record every connection again, silently for those whose user's online
   * was decided already; removals that failed meanwhile lost their entry with the data.
   */
  dataLost(): void {
    this.log.warn(
      { connections: this.connections.size, closed: this.failed.length },
      'redis lost the presence data; recording every connection again',
    );
    for (const u of this.failed.splice(0)) this.orphan(u);
    this.recoveringUntil = Date.now() + this.settleAfterMs;
    this.settleLater();
    for (const c of this.connections.sessions()) {
      if (!c.greeted) continue; // recorded with its greeting, still to come
      void this.opened(c, !c.presenceRecorded);
      c.recordTopics('data');
    }
  }

  /** A renewal reached Redis: retry what failed, settle what is due. */
  renewed(): void {
    for (const [c, announce] of [...this.unrecorded]) void this.opened(c, announce);
    for (const u of this.failed.splice(0)) this.remove(u);
    this.settleDue();
  }

  private settleDue(): void {
    const now = Date.now();
    if (now >= this.recoveringUntil) for (const c of this.undecided.splice(0)) this.decide(c);
    const due = this.orphans.filter((u) => u.due <= now);
    if (due.length === 0) return;
    this.orphans = this.orphans.filter((u) => u.due > now);
    // One offline per user however many of their connections closed meanwhile: the last one.
    const byUser = new Map(due.map((u) => [`${u.conn.app}\n${u.conn.user}`, u]));
    for (const u of byUser.values()) this.settle(u);
  }

  /** `user_online` when the connection is the user's oldest (by `since`, then id) once recovered. */
  private decide(conn: ClientSession): void {
    if (conn.isClosed) return;
    this.presence.lookup(conn.app, conn.user).then(
      (entries) => {
        const oldest = entries.reduce<(typeof entries)[number] | undefined>(
          (a, e) => (a === undefined || e.since < a.since || (e.since === a.since && e.conn < a.conn) ? e : a),
          undefined,
        );
        if (oldest?.conn === conn.id) conn.emit('user_online', {});
      },
      (err: unknown) => {
        this.undecided.push(conn);
        this.failure(err, 'presence read failed; retried after the next lease renewal');
      },
    );
  }

  private settle(u: Unsettled): void {
    this.presence.lookup(u.conn.app, u.conn.user).then(
      (entries) => {
        if (entries.length === 0) u.conn.emit('user_offline', { reason: u.reason });
      },
      (err: unknown) => {
        this.orphans.push(u);
        this.failure(err, 'presence read failed; retried after the next lease renewal');
      },
    );
  }

  private failure(err: unknown, msg: string): void {
    this.metrics.errors.inc({ code: 'presence' });
    this.log.warn({ err }, msg);
  }
}
