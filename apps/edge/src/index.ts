export { createEdge, type Edge } from './app.js';
