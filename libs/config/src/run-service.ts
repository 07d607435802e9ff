import { createLogger, type Logger } from '@push/logger';
import { ConfigError, loadConfig, unknownSettings, type Config } from './config.js';

/** What a service process runs: started once, stopped on SIGTERM or SIGINT. */
export interface Service {
  start(): Promise<void>;
  stop(): Promise<void>;
  /**
   * Settles, once started, with why the service can no longer run (an edge whose id another
   * process took over): the process stops it and exits 1. Never settles otherwise.
   */
  readonly fatal?: Promise<Error>;
}

/** The configuration from the environment; on a bad one, prints the problems and exits 2. */
export function loadConfigOrExit(): Config {
  try {
    return loadConfig();
  } catch (err) {
    process.stderr.write(`${err instanceof ConfigError ? err.message : String(err)}\n`);
    process.exit(2);
  }
}

/**
 * The life of a service process: reads the configuration (exit 2 with the problems when it is
 * bad), builds the service with a logger named after it, starts it (exit 1 when that fails) and
 * stops it on SIGTERM or SIGINT (exit 0; exit 1 when stopping fails or takes longer than
 * `stopTimeoutMs`), or when its `fatal` settles (exit 1).
 */
export async function runService(
  name: string,
  build: (config: Config, logger: Logger) => Service,
  opts: { stopTimeoutMs?: number; config?: Config } = {},
): Promise<void> {
  const config = opts.config ?? loadConfigOrExit();
  const logger = createLogger({ level: config.log.level, pretty: config.log.pretty, name });
  const unknown = unknownSettings();
  if (unknown.length > 0)
    logger.warn({ unknown }, 'ignoring environment variables that are not settings (misspelled?)');
  const service = build(config, logger);
  let stopping = false;
  const shutdown = (signal: string, code = 0): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, `${name} stopping`);
    setTimeout(() => process.exit(1), opts.stopTimeoutMs ?? 15_000).unref();
    service.stop().then(
      () => process.exit(code),
      (err: unknown) => {
        logger.error({ err }, `${name} stop failed`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  try {
    await service.start();
  } catch (err) {
    logger.fatal({ err }, `${name} failed to start`);
    process.exit(1);
  }
  void service.fatal?.then((err) => {
    logger.fatal({ err }, `${name} cannot go on`);
    shutdown('fatal', 1);
  });
}
