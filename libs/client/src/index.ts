export * from './push-client.js';
export * from './protocol-constants.js';
export type { Listener } from './emitter.js';
