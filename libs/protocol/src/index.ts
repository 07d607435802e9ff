export * from './ids.js';
export * from './subjects.js';
export * from './errors.js';
export * from './close-codes.js';
export * from './frames.js';
export * from './envelope.js';
export * from './app-settings.js';
export * from './control.js';
