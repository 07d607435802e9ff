import { runService } from '@push/config';
import { createDispatcher } from './app.js';

void runService('dispatcher', (config, logger) => createDispatcher(config, { logger }), {
  stopTimeoutMs: 10_000, // docs/operations.md: 10 s for the dispatcher and the coordinator
});
