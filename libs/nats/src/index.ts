export * from './connect.js';
export * from './server-version.js';
export * from './request-pipeline.js';
export * from './streams.js';
export * from './inbox-store.js';
export type { NatsConnection, Msg, Subscription } from '@nats-io/nats-core';
export * from './live-subscriber.js';
export * from './topic-store.js';
