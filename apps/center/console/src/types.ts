/** Shapes of the API answers the console reads (docs/api.md). */

import type { AppEdgeFigures, EdgeStats, Summary as SummaryAnswer } from '@push/protocol';

export type { AppFigures, Health } from '@push/protocol';

/** An edge in a summary: the admin's view has every figure, an app's view its id and count. */
export type EdgeFigures = AppEdgeFigures & Partial<EdgeStats>;

/** The summary answer, with its edges read as one shape whichever view answered. */
export type Summary = Omit<SummaryAnswer, 'edges'> & { edges: EdgeFigures[] };

export type Settings = Record<string, unknown>;

export interface AppView {
  id: string;
  name: string;
  disabled: boolean;
  secrets: Array<{ kid: string; secret: string; createdAt: string }>;
  settings: Settings;
  apiKeys: Array<{ id: string }>;
  updatedAt: string;
}

export interface PresenceEntry {
  conn: string;
  edge: string;
  device: string;
  since: number;
}

export interface UserStatus {
  user: string;
  pending: number;
  online: boolean;
  connections: PresenceEntry[];
}

export interface Webhook {
  id: string;
  app: string;
  url: string;
  events: string[];
  kinds: string[];
  disabled: boolean;
  description: string;
}

export interface DeadLetter {
  seq: number;
  [k: string]: unknown;
}

export interface Job {
  id: string;
  state: string;
  total: number;
  written: number;
  skipped: number;
  failed: number;
  remaining: number;
  progress: number;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}
