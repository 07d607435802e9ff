export * from './database.js';
export * from './apps-repository.js';
