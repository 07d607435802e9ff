export { createCoordinator, type Coordinator } from './app.js';
export { pusherWebhook, pusherWebhookEvent } from './pusher-webhook.js';
