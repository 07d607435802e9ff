import { ConfigError, loadConfig, type Config } from '@push/config';
import { createLogger } from '@push/logger';
import { createCenter } from './app.js';

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    process.stderr.write(`${err instanceof ConfigError ? err.message : String(err)}\n`);
    process.exit(2);
  }
  const logger = createLogger({ level: config.log.level, pretty: config.log.pretty, name: 'center' });
  const center = createCenter(config, { logger });
  const shutdown = (signal: string): void => {
    logger.info({ signal }, 'center stopping');
    setTimeout(() => process.exit(1), 15_000).unref();
    center.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'center stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  try {
    await center.start();
  } catch (err) {
    logger.fatal({ err }, 'center failed to start');
    process.exit(1);
  }
}

void main();
