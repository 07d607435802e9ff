export { createCoordinator, type Coordinator } from './app.js';
