export * from './presence-registry.js';
export * from './redis-batch.js';
