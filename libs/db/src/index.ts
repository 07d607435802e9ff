export * from './database.js';
export * from './apps-repository.js';
export * from './jobs-repository.js';
export * from './webhooks-repository.js';
export * from './bindings-repository.js';
export * from './database-errors.js';
