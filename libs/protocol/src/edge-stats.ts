/**
 * What an edge answers on `Subjects.edgeStats` (the center's console summary gathers them).
 * Counters are totals since the edge started: a reader turns two answers into rates.
 */
export interface EdgeStats {
  edge: string;
  /** Epoch ms when the edge answered. */
  at: number;
  /** Epoch ms when the edge process started (a counter going down means it restarted). */
  startedAt: number;
  connections: number;
  users: number;
  /** Open connections per app id. */
  apps: Record<string, number>;
  /** Messages delivered to clients (inbox, backlog and live). */
  messagesOut: number;
  /** Messages clients sent to other users. */
  messagesIn: number;
  acks: number;
  /** Topic frames fanned out to sockets (`_all` included). */
  topicFramesOut: number;
  /** Topic messages received live from NATS, one per message per edge. */
  topicMessagesIn: number;
  /** Event-loop delay since the previous answer, ms: mean and 99th percentile. */
  eventLoopDelayMs: { mean: number; p99: number };
}

/** Whether a decoded answer has the shape of `EdgeStats` (answers from other versions are skipped). */
export function isEdgeStats(v: unknown): v is EdgeStats {
  if (typeof v !== 'object' || v === null) return false;
  const s = v as Record<string, unknown>;
  return (
    typeof s['edge'] === 'string' &&
    typeof s['connections'] === 'number' &&
    typeof s['apps'] === 'object' &&
    s['apps'] !== null &&
    typeof s['messagesOut'] === 'number' &&
    typeof s['eventLoopDelayMs'] === 'object'
  );
}
