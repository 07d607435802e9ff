import { runService } from '@push/config';
import { createCoordinator } from './app.js';

void runService('coordinator', (config, logger) => createCoordinator(config, { logger }));
