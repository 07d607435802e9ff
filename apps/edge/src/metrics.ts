import { Counter, Gauge, type Registry } from 'prom-client';
import { TrafficMeter } from './traffic-meter.js';

/** The edge's Prometheus metrics. Hot-path counters carry no labels. */
export function createEdgeMetrics(registry: Registry) {
  // prom-client counts open descriptors by reading /proc/self/fd synchronously at each scrape:
  // with 18,000 sockets that blocked every client of the edge for tens of milliseconds per scrape
  // (seen in a CPU profile of the million bench). push_edge_connections says the same for free.
  registry.removeSingleMetric('process_open_fds');
  const r = [registry];
  return {
    connections: new Gauge({ name: 'push_edge_connections', help: 'Open client connections', registers: r }),
    users: new Gauge({ name: 'push_edge_users', help: 'Users with at least one connection here', registers: r }),
    upgradesRefused: new Counter({
      name: 'push_edge_upgrades_refused_total',
      help: 'WebSocket upgrades refused, by error code',
      labelNames: ['code'],
      registers: r,
    }),
    heartbeatDrops: new Counter({
      name: 'push_edge_heartbeat_drops_total',
      help: 'Connections dropped for being silent for twice their agreed ping interval',
      registers: r,
    }),
    messagesOut: new Counter({
      name: 'push_edge_messages_out_total',
      help: 'Messages delivered to clients',
      registers: r,
    }),
    transientOut: new Counter({
      name: 'push_edge_transient_out_total',
      help: 'Transient messages (never stored, no ack) sent to clients',
      registers: r,
    }),
    transientDropped: new Counter({
      name: 'push_edge_transient_dropped_total',
      help: 'Transient messages not sent because the socket was past its high-water mark (they are not kept)',
      registers: r,
    }),
    messagesIn: new Counter({
      name: 'push_edge_messages_in_total',
      help: 'Messages clients sent to other users (stored)',
      registers: r,
    }),
    acks: new Counter({ name: 'push_edge_acks_total', help: 'Acks received for delivered messages', registers: r }),
    removed: new Counter({
      name: 'push_edge_inbox_removed_total',
      help: 'Inbox messages removed after an ack',
      registers: r,
    }),
    removeFailed: new Counter({
      name: 'push_edge_inbox_remove_failed_total',
      help: 'Ack-path deletes that failed; each is retried',
      registers: r,
    }),
    ackRequests: new Counter({
      name: 'push_edge_ack_requests_total',
      help: 'Store requests made by the ack path (one delete per message acked)',
      registers: r,
    }),
    ackRetries: new Counter({
      name: 'push_edge_ack_retries_total',
      help: 'Ack-path store requests scheduled again after a failure (full-jitter backoff)',
      registers: r,
    }),
    acksDropped: new Counter({
      name: 'push_edge_acks_dropped_total',
      help: 'Acks not applied because the ack path held its bound (the messages stay stored and come again)',
      registers: r,
    }),
    kicked: new Counter({ name: 'push_edge_kicked_total', help: 'Connections closed by a kick (4004)', registers: r }),
    replaced: new Counter({
      name: 'push_edge_replaced_total',
      help: 'Connections closed by a newer one of the same user or device under the app devicePolicy (4006)',
      registers: r,
    }),
    expired: new Counter({
      name: 'push_edge_expired_total',
      help: 'Messages past their TTL, dropped instead of delivered',
      registers: r,
    }),
    backlogLoads: new Counter({
      name: 'push_edge_backlog_loads_total',
      help: 'Backlog reads from the store (connect, resume)',
      registers: r,
    }),
    backlogRequests: new Counter({
      name: 'push_edge_backlog_requests_total',
      help: 'Backlog reads asked for (one per free window, or per byte bound); a probe or a shared pass may answer several with one request',
      registers: r,
    }),
    backlogProbes: new Counter({
      name: 'push_edge_backlog_probes_total',
      help: 'Probes: one multi_last Direct Get asking whether up to 512 connecting users have anything stored',
      registers: r,
    }),
    backlogProbeSkips: new Counter({
      name: 'push_edge_backlog_probe_skips_total',
      help: 'Backlog reads a probe answered with nothing stored, so no read was made',
      registers: r,
    }),
    backlogSweeps: new Counter({
      name: 'push_edge_backlog_sweeps_total',
      help: 'Shared passes over an app stream that served many waiting backlog reads at once',
      registers: r,
    }),
    backlogSweepReaders: new Counter({
      name: 'push_edge_backlog_sweep_readers_total',
      help: 'Backlog reads served by shared passes instead of one request each',
      registers: r,
    }),
    backlogReads: new Counter({
      name: 'push_edge_backlog_messages_total',
      help: 'Messages read from the store by batched Direct Get',
      registers: r,
    }),
    stalls: new Counter({
      name: 'push_edge_stalls_total',
      help: 'Times a connection stopped live delivery (window full or slow socket)',
      registers: r,
    }),
    liveGaps: new Counter({
      name: 'push_edge_live_gaps_total',
      help: 'Live inbox messages whose previous message of the same user and kind the connection never got (lost in transit, as when a stream leader dies): it reads the store again from there',
      registers: r,
    }),
    upstreamStored: new Counter({
      name: 'push_edge_upstream_stored_total',
      help: 'Client up frames stored in the upstream stream (retries deduped by the store not counted)',
      registers: r,
    }),
    events: new Counter({
      name: 'push_edge_events_total',
      help: 'Events emitted into the event stream, by outcome (stored, failed after retries, dropped at the queue bound)',
      labelNames: ['outcome'],
      registers: r,
    }),
    rpc: new Counter({
      name: 'push_edge_rpc_total',
      help: 'Client rpc requests by outcome (ok or the error code the client got)',
      labelNames: ['outcome'],
      registers: r,
    }),
    topicChannels: new Gauge({
      name: 'push_edge_topic_channels',
      help: 'Topics with a NATS live subscription on this edge (one per topic with local subscribers)',
      registers: r,
    }),
    topicSubscriptions: new Gauge({
      name: 'push_edge_topic_subscriptions',
      help: 'Topic subscriptions of connections on this edge (_all not counted)',
      registers: r,
    }),
    topicMessagesIn: new Counter({
      name: 'push_edge_topic_messages_in_total',
      help: 'Topic messages received live from NATS (one per topic message per edge)',
      registers: r,
    }),
    topicMessagesOut: new Counter({
      name: 'push_edge_topic_messages_out_total',
      help: 'Topic message frames fanned out to sockets (live, gap fills and resumes)',
      registers: r,
    }),
    topicGapFills: new Counter({
      name: 'push_edge_topic_gap_fills_total',
      help: 'Live topic messages whose previous sequence this edge had not seen (filled from history)',
      registers: r,
    }),
    presenceFrames: new Counter({
      name: 'push_edge_presence_frames_total',
      help: 'join/leave frames of presence topics sent to sockets, by kind',
      labelNames: ['kind'] as const,
      registers: r,
    }),
    presenceStale: new Counter({
      name: 'push_edge_presence_stale_total',
      help: 'join/leave announcements dropped: older than one already fanned out for that user and topic (two edges announced out of order)',
      registers: r,
    }),
    topicLost: new Counter({
      name: 'push_edge_topic_lost_total',
      help: 'lost frames sent to sockets (history did not reach back)',
      registers: r,
    }),
    undeliverable: new Counter({
      name: 'push_edge_undeliverable_total',
      help: 'Messages moved to the undeliverable list after maxDeliveries deliveries without an ack',
      registers: r,
    }),
    deliveryCountWrites: new Counter({
      name: 'push_edge_delivery_count_writes_total',
      help: 'Redis writes of the never-ack guard: one per connection that closed with unacked messages',
      registers: r,
    }),
    errors: new Counter({
      name: 'push_edge_errors_total',
      help: 'Errors by code (sent to clients or internal)',
      labelNames: ['code'],
      registers: r,
    }),
    /** Frames and bytes per app, with the connection's first app (TrafficMeter). */
    traffic: new TrafficMeter(registry),
  };
}

export type EdgeMetrics = ReturnType<typeof createEdgeMetrics>;
