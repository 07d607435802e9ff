export * from './config.js';
export * from './run-service.js';
