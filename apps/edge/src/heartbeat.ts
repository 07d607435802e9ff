import type { Config } from '@push/config';
import type { AppSettings } from '@push/protocol';

/**
 * A connection silent (no frame, no WebSocket pong) for this many agreed intervals gets a
 * WebSocket ping from the edge; every client answers those on its own (browsers too), so a live
 * client that pings late (a throttled background tab) is not dropped.
 */
export const PROBE_AFTER_INTERVALS = 1.5;
/** A connection silent for this many agreed intervals is dropped (docs/protocol.md#heartbeats). */
export const DROP_AFTER_INTERVALS = 2;
/**
 * The wheel's tick, ms. `heard` is counted in ticks, so a silence is known to a tick: the wheel
 * acts one tick past each bound, and the drop comes after 2 intervals and within 2 intervals and
 * one tick (never early).
 */
export const HEARTBEAT_TICK_MS = 1000;

/** The edge-wide bounds (`PUSH_EDGE_PING_*`). */
type ServerPing = Config['edge']['ping'];

/**
 * The bounds a connection of the app may agree: the app's `pingMinSeconds`..`pingMaxSeconds`
 * within the edge's `PUSH_EDGE_PING_MIN`..`PUSH_EDGE_PING_MAX`. Where they do not overlap the
 * edge wins: an app asking for more than the edge allows gets the edge's cap, one asking for less
 * than the edge's floor gets the floor.
 */
export function pingBounds(server: ServerPing, app: Pick<AppSettings, 'pingMinSeconds' | 'pingMaxSeconds'>) {
  const max = Math.min(server.maxSeconds, Math.max(server.minSeconds, app.pingMaxSeconds));
  const min = Math.min(max, Math.max(server.minSeconds, app.pingMinSeconds));
  return { min, max };
}

/**
 * The interval agreed for what a client asked (seconds, rounded), clamped to `pingBounds`; the
 * edge's `PUSH_EDGE_PING_DEFAULT` (clamped too) when it asked for nothing or not a number.
 */
export function agreePing(
  asked: number | undefined,
  server: ServerPing,
  app: Pick<AppSettings, 'pingMinSeconds' | 'pingMaxSeconds'>,
): number {
  const { min, max } = pingBounds(server, app);
  const n = asked === undefined || !Number.isFinite(asked) ? server.defaultSeconds : Math.round(asked);
  return Math.min(max, Math.max(min, n));
}

/**
 * What the wheel does to a connection's socket: a WebSocket ping, or a drop without a close
 * frame. Given once per wheel, not per connection: a closure or two per connection were about a
 * tenth of an idle connection's heap (and of the scavenges of a connect storm).
 */
export interface BeatActions<S> {
  ping(socket: S): void;
  drop(socket: S): void;
}

/**
 * One connection's heartbeat: when it was last heard (in wheel ticks) and its agreed interval.
 * A frame or pong costs one field write (`heard`); the wheel looks at the entry about once per
 * 1.5 intervals, never per frame.
 */
export class Heartbeat<S = unknown> {
  /** Wheel tick of the last frame or pong. */
  heard: number;
  /** `heard` when the wheel sent its WebSocket ping (-1: none since). */
  probedAt = -1;
  /** The wheel slot and the index in it (-1: not in the wheel). */
  slot = -1;
  index = -1;

  constructor(
    readonly socket: S,
    /** The agreed interval, seconds. */
    public seconds: number,
    heard: number,
  ) {
    this.heard = heard;
  }
}

/**
 * The edge's silence check for every connection of a door, driven by one coarse timer (a timing
 * wheel of one-second slots), not a timer per connection. Each connection sits in the slot of its
 * next deadline; when that slot comes round the wheel looks at when it was last heard and either
 * moves it to its real deadline (it was heard meanwhile), sends it a WebSocket ping (silent for
 * 1.5 intervals), or drops it (silent for 2). Removal is O(1) (swap with the slot's last).
 *
 * The timer runs only while the wheel holds connections, and is unref'd.
 */
export class HeartbeatWheel<S> {
  /** Ticks since the wheel was made; what `heard` is measured in. */
  now = 0;
  private readonly slots: Array<Array<Heartbeat<S>>>;
  private readonly mask: number;
  private count = 0;
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    /** The longest interval an entry may have, seconds: sizes the ring. */
    maxSeconds: number,
    /** Pings and drops a socket (a drop is also where it is counted). */
    private readonly actions: BeatActions<S>,
    private readonly tickMs = HEARTBEAT_TICK_MS,
  ) {
    const span = Math.ceil((maxSeconds * DROP_AFTER_INTERVALS * 1000) / tickMs) + 3;
    let size = 16;
    while (size < span) size *= 2;
    this.slots = Array.from({ length: size }, () => []);
    this.mask = size - 1;
  }

  get size(): number {
    return this.count;
  }

  /** A new connection, heard now. */
  add(socket: S, seconds: number): Heartbeat<S> {
    const hb = new Heartbeat(socket, seconds, this.now);
    this.place(hb, this.probeTick(hb));
    this.count++;
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.tick(), this.tickMs);
      this.timer.unref();
    }
    return hb;
  }

  /** A new agreed interval for a connection (a `ping` frame that proposed one); heard now. */
  change(hb: Heartbeat<S>, seconds: number): void {
    if (hb.slot < 0) return;
    this.unplace(hb);
    hb.seconds = seconds;
    hb.heard = this.now;
    this.place(hb, this.probeTick(hb));
  }

  /** A closed connection leaves the wheel (idempotent). */
  remove(hb: Heartbeat<S>): void {
    if (hb.slot < 0) return;
    this.unplace(hb);
    this.count--;
    if (this.count === 0) this.stopTimer();
  }

  /** Advances one tick: the connections whose deadline is now are looked at. */
  tick(): void {
    this.now++;
    const i = this.now & this.mask;
    const due = this.slots[i] as Array<Heartbeat<S>>;
    if (due.length === 0) return;
    this.slots[i] = [];
    for (const hb of due) hb.slot = -1;
    for (const hb of due) {
      const silent = this.now - hb.heard;
      if (silent > this.ticks(hb.seconds * DROP_AFTER_INTERVALS)) {
        this.count--;
        this.actions.drop(hb.socket);
        continue;
      }
      const probe = this.probeTick(hb);
      if (this.now < probe) {
        this.place(hb, probe);
        continue;
      }
      if (hb.probedAt !== hb.heard) {
        hb.probedAt = hb.heard;
        this.actions.ping(hb.socket);
      }
      this.place(hb, hb.heard + this.ticks(hb.seconds * DROP_AFTER_INTERVALS) + 1);
    }
    if (this.count === 0) this.stopTimer();
  }

  private stopTimer(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private ticks(seconds: number): number {
    return Math.ceil((seconds * 1000) / this.tickMs);
  }

  private probeTick(hb: Heartbeat<S>): number {
    return hb.heard + this.ticks(hb.seconds * PROBE_AFTER_INTERVALS) + 1;
  }

  /** Puts an entry in the slot of `at` (at least the next tick, at most a turn of the ring ahead). */
  private place(hb: Heartbeat<S>, at: number): void {
    const when = Math.min(Math.max(at, this.now + 1), this.now + this.mask);
    const slot = when & this.mask;
    const list = this.slots[slot] as Array<Heartbeat<S>>;
    hb.slot = slot;
    hb.index = list.length;
    list.push(hb);
  }

  private unplace(hb: Heartbeat<S>): void {
    const list = this.slots[hb.slot] as Array<Heartbeat<S>>;
    const last = list.pop() as Heartbeat<S>;
    if (last !== hb) {
      list[hb.index] = last;
      last.index = hb.index;
    }
    hb.slot = -1;
    hb.index = -1;
  }
}
