import type { ChildProcess } from 'node:child_process';

/**
 * Child processes the tests started (nats-servers, apps), SIGKILLed when this process ends: after
 * the run, after an uncaught failure, and on SIGINT, SIGTERM or SIGHUP, which end mocha without
 * an `exit` event (the after hooks do not run then either). The signal is raised again once the
 * children are gone, so the run still ends the way the signal says.
 */
const tracked = new Set<ChildProcess>();

function killAll(): void {
  for (const p of tracked) p.kill('SIGKILL');
  tracked.clear();
}

process.once('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    killAll();
    process.kill(process.pid, signal);
  });
}

/** Kills `proc` when this process ends, unless it exited before. */
export function trackChild(proc: ChildProcess): void {
  tracked.add(proc);
  proc.once('exit', () => tracked.delete(proc));
}
