import { runService } from '@push/config';
import { createCenter } from './app.js';

void runService('center', (config, logger) => createCenter(config, { logger }));
