import { runService } from '@push/config';
import { createDispatcher } from './app.js';

void runService('dispatcher', (config, logger) => createDispatcher(config, { logger }));
