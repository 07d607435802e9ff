import type { EdgeMetrics } from './metrics.js';

/**
 * Sends a transient message's frame to one session, outside its delivery state: no sequence, no
 * window slot, no ack, nothing kept. Whatever the session is doing (reading its backlog, stalled
 * on a full window) it goes out now, ahead of stored messages not yet sent: a transient message is
 * not ordered with stored ones. A socket holding `highWaterBytes` or more (`buffered`) does not
 * get it: it is dropped (and counted), since there is no store to read it again from. `send`
 * writes the session's frame (tagged with its app on a multi-app connection) and answers as uWS
 * `send` does.
 */
export function sendTransient(
  buffered: number,
  send: () => number,
  highWaterBytes: number,
  metrics: Pick<EdgeMetrics, 'transientOut' | 'transientDropped'>,
): void {
  if (buffered >= highWaterBytes) {
    metrics.transientDropped.inc();
    return;
  }
  // 2: dropped by uWS (its backpressure limit).
  if (send() === 2) metrics.transientDropped.inc();
  else metrics.transientOut.inc();
}
