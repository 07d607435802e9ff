/** Shapes of the API answers the console reads (docs/api.md). */

export interface Health {
  ok: boolean;
  ms?: number;
  detail?: string;
}

export interface EdgeFigures {
  edge: string;
  connections: number;
  /** The rest is in the admin's view only (edges' totals cover every app). */
  at?: number;
  startedAt?: number;
  users?: number;
  apps?: Record<string, number>;
  messagesOut?: number;
  messagesIn?: number;
  acks?: number;
  topicFramesOut?: number;
  topicMessagesIn?: number;
  eventLoopDelayMs?: { mean: number; p99: number };
}

export interface AppFigures {
  id: string;
  name: string;
  disabled: boolean;
  connections: number;
  /** Null when JetStream did not answer (`unavailable` says why). */
  pending: number | null;
  inboxStored: number | null;
  topicStored: number | null;
  webhooks: Array<{ id: string; url: string; disabled: boolean; waiting: number | null; deadLetters: number | null }>;
  unavailable?: string;
}

export interface Summary {
  at: number;
  scope: 'all' | 'app';
  edges: EdgeFigures[];
  edgesSilent: number;
  apps: AppFigures[];
  appsOmitted: number;
  health: { nats: Health; redis: Health; postgres: Health };
}

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
