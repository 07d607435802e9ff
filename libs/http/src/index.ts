export * from './uws.js';
export * from './http-exchange.js';
export * from './health.js';
export * from './listen.js';
export * from './cors.js';
