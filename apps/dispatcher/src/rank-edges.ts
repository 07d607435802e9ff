import { createHash } from 'node:crypto';

/**
 * Ranks edges for a user by rendezvous (highest random weight) hashing: every dispatcher gives a
 * user the same order, and removing an edge moves only the users that were on it.
 */
export function rankEdges(edges: readonly string[], app: string, user: string): string[] {
  const score = (edge: string): bigint =>
    createHash('sha256').update(`${app}\u0000${user}\u0000${edge}`).digest().readBigUInt64BE(0);
  return edges
    .map((e) => ({ e, s: score(e) }))
    .sort((a, b) => (a.s < b.s ? 1 : a.s > b.s ? -1 : 0))
    .map((x) => x.e);
}
