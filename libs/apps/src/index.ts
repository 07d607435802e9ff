export * from './app-directory.js';
export * from './client-token.js';
export * from './api-key.js';
export * from './rate-limiter.js';
export * from './webhook-signature.js';
export * from './webhook-directory.js';
export * from './topic-token.js';
export * from './pusher-credentials.js';
