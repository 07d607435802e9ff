import type { EdgeMetrics } from './metrics.js';

/** What sending a transient frame needs of a connection's socket (uWS's WebSocket fits). */
interface TransientSocket {
  send(message: string): number;
  cork(cb: () => void): unknown;
  getBufferedAmount(): number;
}

/**
 * Sends a transient message's frame to one socket, outside the connection's delivery state: no
 * sequence, no window slot, no ack, nothing kept. Whatever the connection is doing (reading its
 * backlog, stalled on a full window) it goes out now, ahead of stored messages not yet sent: a
 * transient message is not ordered with stored ones. A socket past `highWaterBytes` does not
 * get it: it is dropped (and counted), since there is no store to read it again from.
 */
export function sendTransient(
  ws: TransientSocket,
  frame: string,
  highWaterBytes: number,
  metrics: Pick<EdgeMetrics, 'transientOut' | 'transientDropped'>,
): void {
  if (ws.getBufferedAmount() >= highWaterBytes) {
    metrics.transientDropped.inc();
    return;
  }
  let status = 1;
  ws.cork(() => {
    status = ws.send(frame);
  });
  // 2: dropped by uWS (its backpressure limit).
  if (status === 2) metrics.transientDropped.inc();
  else metrics.transientOut.inc();
}
