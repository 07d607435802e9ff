export * from './push-client.js';
export * from './subscription.js';
export type { PresenceMember } from './presence-roster.js';
export * from './protocol-constants.js';
export type { Listener } from './emitter.js';
export * from './app-session.js';
