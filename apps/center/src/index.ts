export { createCenter, type Center } from './app.js';
export { AppAdmin, adminView } from './app-admin.js';
