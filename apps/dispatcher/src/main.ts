import { ConfigError, loadConfig, type Config } from '@push/config';
import { createLogger } from '@push/logger';
import { createDispatcher } from './app.js';

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    process.stderr.write(`${err instanceof ConfigError ? err.message : String(err)}\n`);
    process.exit(2);
  }
  const logger = createLogger({ level: config.log.level, pretty: config.log.pretty, name: 'dispatcher' });
  const app = createDispatcher(config, { logger });
  const shutdown = (): void => {
    setTimeout(() => process.exit(1), 10_000).unref();
    app.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'dispatcher stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  try {
    await app.start();
  } catch (err) {
    logger.fatal({ err }, 'dispatcher failed to start');
    process.exit(1);
  }
}

void main();
