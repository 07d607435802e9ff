export * from './database.js';
export * from './apps-repository.js';
export * from './webhooks-repository.js';
