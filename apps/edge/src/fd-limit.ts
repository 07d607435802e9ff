import { readFileSync } from 'node:fs';

/** Descriptors kept back for NATS, Redis, the listen socket, logs and the runtime. */
export const FD_RESERVE = 200;

/**
 * The process's open-file limit (soft; Node raises it to the hard limit at startup), read from
 * /proc/self/limits. Undefined when unknown (not Linux) or unlimited.
 */
export function openFileLimit(limitsText?: string): number | undefined {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return undefined;
    }
  }
  const line = text.split('\n').find((l) => l.startsWith('Max open files'));
  const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0];
  const n = Number(soft);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/**
 * Connections this process can hold: the configured limit, lowered to what the descriptor limit
 * allows, so that the edge refuses upgrades cleanly (503 edge_full) instead of failing accepts.
 */
export function connectionBudget(configured: number, fdLimit: number | undefined): number {
  if (fdLimit === undefined) return configured;
  return Math.max(1, Math.min(configured, fdLimit - FD_RESERVE));
}
