import type { FetchLike } from './push-client.js';
import { PushClientError } from './subscription.js';

/** How long an edge the client could not reach is reported to the dispatcher (`exclude`), ms. */
export const UNREACHABLE_FOR_MS = 10 * 60_000;

/** Most edges reported at once (the dispatcher takes up to 100). */
const MAX_EXCLUDE = 100;

/** The edges of one network: the list, the one in use, and those that could not be reached. */
interface NetworkRoute {
  list: string[];
  index: number;
  /** Edge URL -> when it was last found unreachable (epoch ms). */
  unreachable: Map<string, number>;
  /** An edge was found unreachable since the list came: ask the dispatcher again before the next try. */
  stale: boolean;
}

/**
 * The network the device is on, as the platform tells it: a browser's
 * `navigator.connection.type` (`wifi`, `cellular`, `ethernet`... where the browser gives it),
 * else `default` (Node, and browsers that say nothing: one network).
 */
export function currentNetwork(): string {
  const nav = (globalThis as { navigator?: { connection?: { type?: unknown } } }).navigator;
  const type = nav?.connection?.type;
  return typeof type === 'string' && type !== '' && type !== 'unknown' ? type : 'default';
}

export interface EdgeRoutesOptions {
  /** Edge URLs to use as given (no dispatcher). */
  edges?: readonly string[] | undefined;
  /** The dispatcher's base URL. */
  dispatcher?: string | undefined;
  fetch?: FetchLike | undefined;
  /** The network the device is on now (default `currentNetwork`). */
  network?: (() => string) | undefined;
  /** The region to ask the dispatcher for (`region=`); none by default. */
  region?: string | undefined;
}

/**
 * Which edge the client connects to (docs/sdk.md "Edges and networks"), kept per network: a
 * device that moves from Wi-Fi to mobile and back finds its Wi-Fi edge list again, with the edge
 * that worked there. The edge that works is kept; one that fails is left for the next of the
 * list; when the list is used up, the dispatcher is asked again and told (`exclude=`) which edges
 * the client could not reach on this network, so that it answers others (the same host on another
 * port, another region).
 */
export class EdgeRoutes {
  private readonly networks = new Map<string, NetworkRoute>();

  constructor(private readonly opts: EdgeRoutesOptions) {}

  private route(): NetworkRoute {
    const key = (this.opts.network ?? currentNetwork)();
    let r = this.networks.get(key);
    if (r === undefined) this.networks.set(key, (r = { list: [], index: 0, unreachable: new Map(), stale: false }));
    return r;
  }

  /** The edge to try for this app and user: sticky while it works, else the next; a new list when all failed. */
  async pick(app: string, user: string, now = Date.now()): Promise<string> {
    const r = this.route();
    const given = this.opts.edges;
    if (given !== undefined && given.length > 0) {
      r.list = [...given];
      r.index %= given.length;
    } else if (r.stale || r.list.length === 0 || r.index >= r.list.length) {
      for (const [edge, at] of r.unreachable) if (now - at >= UNREACHABLE_FOR_MS) r.unreachable.delete(edge);
      const exclude = [...r.unreachable.keys()].slice(-MAX_EXCLUDE);
      try {
        r.list = await this.askDispatcher(app, user, exclude);
        r.index = 0;
      } catch (err) {
        // Asked only to report an unreachable edge: the rest of the list will do meanwhile.
        if (!r.stale || r.index >= r.list.length) throw err;
      }
      r.stale = false;
      // The dispatcher answers every edge again when all were excluded: start afresh.
      if (r.list.every((e) => r.unreachable.has(e))) r.unreachable.clear();
    }
    const edge = r.list[r.index];
    if (edge === undefined) throw new PushClientError('dispatcher', 'the dispatcher gave no edges');
    return edge;
  }

  /**
   * The edge failed: the next attempt takes the next one. An `unreachable` edge (no answer at all
   * before a `hello`: a lost TCP or TLS connection, a connect timeout) is also reported: with a
   * dispatcher, the next attempt first asks it again with the edges this network could not reach
   * (`exclude`), whose answer knows better than the old list (the same host on another port,
   * another region). A refusal (full, shutting down) is not reported.
   */
  failed(edge: string, unreachable: boolean, now = Date.now()): void {
    const r = this.route();
    if (r.list[r.index] === edge) r.index++;
    if (!unreachable) return;
    r.unreachable.delete(edge); // re-inserted last: the newest are kept when trimming
    r.unreachable.set(edge, now);
    r.stale = true;
  }

  /** A `hello` from the edge: it is reachable on this network. */
  connected(edge: string): void {
    this.route().unreachable.delete(edge);
  }

  private async askDispatcher(app: string, user: string, exclude: readonly string[]): Promise<string[]> {
    const base = (this.opts.dispatcher ?? '').replace(/\/+$/, '');
    const url =
      `${base}/v1/edges?app=${encodeURIComponent(app)}&user=${encodeURIComponent(user)}` +
      (this.opts.region !== undefined ? `&region=${encodeURIComponent(this.opts.region)}` : '') +
      exclude.map((e) => `&exclude=${encodeURIComponent(e)}`).join('');
    const fetchFn = this.opts.fetch ?? (globalThis as { fetch?: FetchLike }).fetch;
    if (fetchFn === undefined) throw new PushClientError('dispatcher', 'no fetch: pass one as the fetch option');
    let body: unknown;
    try {
      const res = await fetchFn(url);
      if (!res.ok) throw new Error(`status ${res.status}`);
      body = await res.json();
    } catch (err) {
      throw new PushClientError('dispatcher', `dispatcher ${url} failed: ${String(err)}`, { cause: err });
    }
    const edges = (body as { edges?: unknown } | null)?.edges;
    if (!Array.isArray(edges) || !edges.every((e) => typeof e === 'string') || edges.length === 0) {
      throw new PushClientError('dispatcher', 'the dispatcher gave no edge list');
    }
    return edges;
  }
}
