/**
 * Shapes of the console summary answers (docs/api.md "Console summary"): the center builds them,
 * the web console reads them (a type-only import, so nothing of this package reaches the bundle).
 */
import type { EdgeStats } from './edge-stats.js';

/** A topic message as the tail shows it: JSON `data`, or `b64` for bytes. */
export interface TailedMessage {
  seq: number;
  ts: number;
  data?: unknown;
  b64?: string;
}

/** One service's health: whether it answered, and how long it took or why not. */
export interface Health {
  ok: boolean;
  ms?: number;
  detail?: string;
}

/** One app's figures in a summary. */
export interface AppFigures {
  id: string;
  name: string;
  disabled: boolean;
  /** Open connections over every edge that answered. */
  connections: number;
  /**
   * Messages stored in the app's inboxes now (not acked, not expired), both kinds. This and the
   * other stream figures are null when JetStream did not answer (`unavailable` says why).
   */
  pending: number | null;
  /** Last sequence of the inbox stream: every message ever stored in the app's inboxes (a counter). */
  inboxStored: number | null;
  /** Last sequence of the topic stream: every topic message ever stored, `_all` included (a counter). */
  topicStored: number | null;
  webhooks: Array<{ id: string; url: string; disabled: boolean; waiting: number | null; deadLetters: number | null }>;
  unavailable?: string;
}

/** An edge as an app's view shows it: its id and that app's connections there, nothing of other apps. */
export interface AppEdgeFigures {
  edge: string;
  connections: number;
}

/** The answer of the summary routes (docs/api.md "Console summary"). */
export interface Summary {
  at: number;
  scope: 'all' | 'app';
  edges: Array<EdgeStats | AppEdgeFigures>;
  /** Edges that hold a presence lease but did not answer in time. */
  edgesSilent: number;
  apps: AppFigures[];
  /** Apps left out past SUMMARY_MAX_APPS (admin view only). */
  appsOmitted: number;
  health: { nats: Health; redis: Health; postgres: Health };
}
