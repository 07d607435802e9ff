export * from './presence-registry.js';
