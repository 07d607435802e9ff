export { createCenter, type Center } from './app.js';
export { AppAdmin, adminView } from './app-admin.js';
export { verifyPusherRequest, PUSHER_TIMESTAMP_WINDOW_SECONDS } from './pusher/pusher-auth.js';
