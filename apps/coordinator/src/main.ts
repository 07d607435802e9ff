import { runService } from '@push/config';
import { createCoordinator } from './app.js';

void runService('coordinator', (config, logger) => createCoordinator(config, { logger }), {
  stopTimeoutMs: 10_000, // docs/operations.md: 10 s for the dispatcher and the coordinator
});
