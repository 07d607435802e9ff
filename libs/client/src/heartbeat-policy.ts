/**
 * The SDK's adaptive heartbeat (docs/sdk.md#heartbeats): start at a safe interval, step it up
 * while pongs keep coming on time, step back and stick after a failure, and remember the result
 * per network. Pure logic: the clock, the storage and the network name are given, so it is tested
 * with a fake clock; PushClient does the pinging.
 */

/** Where the policy keeps what it learned (browsers: `localStorage`). */
export interface HeartbeatStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

export interface HeartbeatOptions {
  /** `adaptive` (default): learn the longest interval the network keeps; `fixed`: always `startSeconds`. */
  mode?: 'adaptive' | 'fixed';
  /** The safe interval a network without history starts at, seconds (the client's `pingSeconds`, 25). */
  startSeconds?: number;
  /** The longest interval ever proposed, seconds (600); the edge clamps further (hello, pong). */
  maxSeconds?: number;
  /** Each step up multiplies the interval by this (1.5), rounded. */
  stepFactor?: number;
  /** On-time pongs at an interval before the next step up (3). */
  confirmAfter?: number;
  /** A ping not answered within this long is a missed pong: the connection is given up, ms (10000). */
  pongTimeoutMs?: number;
  /** After a failure the interval sticks below the failed one for this long, then probes again, ms (one day). */
  stickMs?: number;
  /** Where to remember intervals per network; defaults to `localStorage` where there is one, else memory. */
  storage?: HeartbeatStorage | null;
  /** The current network's name; defaults to the browser's `navigator.connection` (type, effectiveType), else `default`. */
  network?: () => string;
}

/** What is remembered for one network. */
interface NetworkState {
  /** The longest interval confirmed by an on-time pong, seconds. */
  good: number;
  /** An interval that failed, seconds: not probed again (nor above) before `until`. */
  ceiling?: number;
  /** Epoch ms until which `ceiling` holds. */
  until?: number;
}

/** The storage key (one JSON object: network name -> NetworkState). */
export const HEARTBEAT_STORAGE_KEY = 'push-client.heartbeat';

const DEFAULTS = {
  mode: 'adaptive',
  startSeconds: 25,
  maxSeconds: 600,
  stepFactor: 1.5,
  confirmAfter: 3,
  pongTimeoutMs: 10_000,
  stickMs: 24 * 3600 * 1000,
} as const;

/** The browser's network name (`navigator.connection`: type and effectiveType), or `default`. */
export function platformNetwork(): string {
  const c = (globalThis as { navigator?: { connection?: { type?: unknown; effectiveType?: unknown } } }).navigator
    ?.connection;
  const type = typeof c?.type === 'string' ? c.type : '';
  const effective = typeof c?.effectiveType === 'string' ? c.effectiveType : '';
  return type === '' && effective === '' ? 'default' : `${type || 'unknown'}/${effective || 'unknown'}`;
}

function platformStorage(): HeartbeatStorage | null {
  try {
    const s = (globalThis as { localStorage?: HeartbeatStorage }).localStorage;
    return s ?? null;
  } catch {
    return null; // a browser that forbids storage (privacy settings) throws on access
  }
}

/**
 * One client's heartbeat policy. PushClient asks `seconds` at connect, tells it what the edge
 * agreed (`agreed`), each on-time pong (`onTime`, which may answer an interval to propose) and
 * each failure (`failed`: a missed pong, or a connection lost while idle at an interval above the
 * confirmed one).
 */
export class HeartbeatPolicy {
  private readonly o: Required<Omit<HeartbeatOptions, 'storage' | 'network'>>;
  private readonly storage: HeartbeatStorage | null;
  private readonly memory = new Map<string, NetworkState>();
  private net: string;
  /** The interval in use on the current connection, seconds. */
  private current: number;
  /** On-time pongs at `current`. */
  private streak = 0;
  /** The most the edge agreed when it was asked for more (it clamps); not asked beyond again. */
  private edgeCap = Infinity;
  private proposed: number | undefined;

  constructor(
    options: HeartbeatOptions = {},
    private readonly now: () => number = Date.now,
    private readonly networkName: () => string = options.network ?? platformNetwork,
  ) {
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as HeartbeatOptions;
    this.o = { ...DEFAULTS, ...given };
    this.storage = options.storage === undefined ? platformStorage() : options.storage;
    this.net = this.networkName();
    this.current = this.startFor(this.net);
  }

  /** The current network's name. */
  get network(): string {
    return this.net;
  }

  /** The interval in use (or to ask for at the next connect), seconds. */
  get seconds(): number {
    return this.current;
  }

  get pongTimeoutMs(): number {
    return this.o.pongTimeoutMs;
  }

  /** A new connection is about to be opened: the interval to ask for (what this network keeps). */
  connecting(): number {
    this.net = this.networkName();
    this.current = this.startFor(this.net);
    this.streak = 0;
    this.proposed = undefined;
    this.edgeCap = Infinity;
    return this.current;
  }

  /** The edge agreed an interval (`hello.ping`, or a `pong` answering a proposal). */
  agreed(seconds: number): void {
    if (this.proposed !== undefined && seconds < this.proposed) this.edgeCap = seconds;
    this.proposed = undefined;
    if (seconds !== this.current) this.streak = 0;
    this.current = seconds;
  }

  /**
   * A pong came on time after a ping sent at the current interval. Confirms the interval for this
   * network; answers a longer one to propose once `confirmAfter` came in a row, else undefined.
   */
  onTime(): number | undefined {
    const state = this.state(this.net);
    if (this.current > state.good) this.save(this.net, { ...state, good: this.current });
    // Fixed, or a proposal awaits the edge's answer (`agreed`).
    if (this.o.mode === 'fixed' || this.proposed !== undefined) return undefined;
    if (++this.streak < this.o.confirmAfter) return undefined;
    const s = this.state(this.net);
    const stuck = s.ceiling !== undefined && (s.until ?? 0) > this.now();
    let next = Math.min(this.o.maxSeconds, this.edgeCap, Math.round(this.current * this.o.stepFactor));
    if (stuck) next = Math.min(next, (s.ceiling as number) - 1);
    if (next <= this.current) return undefined;
    this.streak = 0;
    this.proposed = next;
    return next;
  }

  /**
   * The connection failed at the current interval (a missed pong, or lost while idle). Above the
   * confirmed interval: back to it. At it: one step down (not below the start). Either way the
   * failed interval is not probed again for `stickMs`.
   */
  failed(): void {
    if (this.o.mode === 'fixed') return;
    const s = this.state(this.net);
    const failedAt = this.current;
    let good = Math.min(s.good, failedAt);
    if (failedAt <= s.good) good = Math.max(this.o.startSeconds, Math.round(failedAt / this.o.stepFactor));
    if (good >= failedAt) good = Math.min(good, this.o.startSeconds);
    this.save(this.net, { good, ceiling: failedAt, until: this.now() + this.o.stickMs });
    this.current = good;
    this.streak = 0;
    this.proposed = undefined;
  }

  /**
   * The connection was lost (no close frame) after `silentMs` without a frame from the edge: a
   * failure of the interval when it was above the confirmed one and the silence outlasted that
   * one (a NAT or proxy that forgot the idle connection), else no fault of the interval.
   */
  lost(silentMs: number): void {
    const s = this.state(this.net);
    if (this.current > s.good && silentMs > s.good * 1000) this.failed();
  }

  /**
   * Looks whether the network changed; when it did, answers the interval that network keeps (to
   * propose on the open connection), else undefined.
   */
  networkChanged(): number | undefined {
    const net = this.networkName();
    if (net === this.net) return undefined;
    this.net = net;
    this.streak = 0;
    const s = this.startFor(net);
    if (s === this.current) return undefined;
    this.proposed = s;
    return s;
  }

  private startFor(net: string): number {
    if (this.o.mode === 'fixed') return this.o.startSeconds;
    return Math.min(this.o.maxSeconds, Math.max(this.o.startSeconds, this.state(net).good));
  }

  private state(net: string): NetworkState {
    const stored = this.memory.get(net) ?? this.load()[net];
    return stored ?? { good: this.o.startSeconds };
  }

  private load(): Record<string, NetworkState> {
    if (this.storage === null) return {};
    try {
      const raw = this.storage.getItem(HEARTBEAT_STORAGE_KEY);
      const parsed = raw === null ? {} : (JSON.parse(raw) as unknown);
      if (typeof parsed !== 'object' || parsed === null) return {};
      const out: Record<string, NetworkState> = {};
      for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
        const good = (v as { good?: unknown } | null)?.good;
        if (typeof good !== 'number' || !(good > 0)) continue;
        const { ceiling, until } = v as { ceiling?: unknown; until?: unknown };
        out[k] = {
          good,
          ...(typeof ceiling === 'number' ? { ceiling } : {}),
          ...(typeof until === 'number' ? { until } : {}),
        };
      }
      return out;
    } catch {
      return {}; // unreadable or not ours: start afresh
    }
  }

  private save(net: string, state: NetworkState): void {
    this.memory.set(net, state);
    if (this.storage === null) return;
    try {
      const all = this.load();
      all[net] = state;
      this.storage.setItem(HEARTBEAT_STORAGE_KEY, JSON.stringify(all));
    } catch {
      // Storage full or forbidden: the policy still holds it in memory for this client.
    }
  }
}
