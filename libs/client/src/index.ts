export * from './push-client.js';
export * from './subscription.js';
export type { PresenceMember } from './presence-roster.js';
export * from './protocol-constants.js';
export type { Listener } from './emitter.js';
export {
  HeartbeatPolicy,
  HEARTBEAT_STORAGE_KEY,
  type HeartbeatOptions,
  type HeartbeatStorage,
} from './heartbeat-policy.js';
export * from './app-session.js';
