import { Counter, type Registry } from 'prom-client';

/** What one app's sessions exchanged on connections opened by one first app (plain numbers). */
export interface TrafficCell {
  framesIn: number;
  bytesIn: number;
  framesOut: number;
  bytesOut: number;
}

/**
 * Client traffic per app, as the system we model accounts it: each frame that passes a
 * connection (a session's frames and answers, its inbox messages and topic replays) is counted
 * to the app it is about, with the connection's first app (`first_app`, the app that opened it,
 * which the traffic is accounted to). Topic frames fanned out by uWS pub/sub never pass a
 * connection and are counted by push_edge_topic_messages_out_total.
 *
 * The hot path adds to plain numbers in a cell the session looked up once; the counters read
 * the cells at scrape. One series per (app, first_app) pair that shared a connection on this
 * edge: an app alone on its connections is one pair (app = first_app), so series grow with the
 * pairs actually used together, never with connections or users.
 */
export class TrafficMeter {
  private readonly cells = new Map<string, { app: string; firstApp: string; cell: TrafficCell }>();

  constructor(registry: Registry) {
    const cells = this.cells;
    const labelNames = ['app', 'first_app', 'direction'] as const;
    const counter = (name: string, help: string, inKey: keyof TrafficCell, outKey: keyof TrafficCell) =>
      new Counter({
        name,
        help,
        labelNames,
        registers: [registry],
        collect() {
          this.reset();
          for (const { app, firstApp, cell } of cells.values()) {
            this.inc({ app, first_app: firstApp, direction: 'in' }, cell[inKey]);
            this.inc({ app, first_app: firstApp, direction: 'out' }, cell[outKey]);
          }
        },
      });
    counter(
      'push_edge_traffic_frames_total',
      'WebSocket frames through client connections, by app, the connection first app, and direction (in, out)',
      'framesIn',
      'framesOut',
    );
    counter(
      'push_edge_traffic_bytes_total',
      'WebSocket payload bytes through client connections, by app, the connection first app, and direction',
      'bytesIn',
      'bytesOut',
    );
  }

  /** The cell a session of `app` on a connection first opened by `firstApp` counts into. */
  cell(app: string, firstApp: string): TrafficCell {
    const key = `${app}\n${firstApp}`;
    let c = this.cells.get(key);
    if (c === undefined) {
      c = { app, firstApp, cell: { framesIn: 0, bytesIn: 0, framesOut: 0, bytesOut: 0 } };
      this.cells.set(key, c);
    }
    return c.cell;
  }
}
