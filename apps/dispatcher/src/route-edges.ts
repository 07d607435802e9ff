import { rankEdges } from './rank-edges.js';

/** What a client tells the dispatcher beyond its app and user. */
export interface RouteQuery {
  /** Edge URLs the client could not reach (`exclude=`); ones not configured are ignored. */
  exclude: readonly string[];
  /** The region the client prefers (`region=`); '' = that of its best-ranked edge. */
  region: string;
}

/** `ws://h:8081/ws` -> `h` (the host without the port), or '' for a URL that does not parse. */
function hostOf(url: string): string {
  try {
    return new URL(url).hostname;
  } catch {
    return '';
  }
}

/**
 * The edges a client should try, best first (docs/api.md "Dispatcher"):
 * - ranked per user by rendezvous hashing (`rankEdges`), so the answer is sticky;
 * - the excluded edges left out; of the others, first those on the host of an excluded edge
 *   with another port (a network that blocks one port may let another through, and the user
 *   stays on the machine that holds its state warm), then those of the preferred region (the
 *   `region` asked for, else the region of the user's best-ranked edge), then the other regions;
 * - when every edge is excluded, the whole ranked list again (what failed may have recovered).
 */
export function routeEdges(
  edges: readonly string[],
  regions: Readonly<Record<string, string>>,
  app: string,
  user: string,
  query: RouteQuery,
): string[] {
  const ranked = rankEdges(edges, app, user);
  const excluded = new Set(query.exclude);
  const left = ranked.filter((e) => !excluded.has(e));
  if (left.length === 0) return ranked;
  const excludedHosts = new Set(ranked.filter((e) => excluded.has(e)).map(hostOf));
  const region = query.region !== '' ? query.region : (regions[ranked[0] ?? ''] ?? '');
  const tier = (e: string): number => {
    if (excludedHosts.has(hostOf(e))) return 0;
    return (regions[e] ?? '') === region ? 1 : 2;
  };
  // A stable sort keeps the rendezvous order within a tier.
  return left
    .map((e) => ({ e, t: tier(e) }))
    .sort((a, b) => a.t - b.t)
    .map((x) => x.e);
}
