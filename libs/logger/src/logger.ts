import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/** Paths whose values never reach a log line. */
const REDACT = [
  'token',
  'secret',
  'secrets',
  'apiKey',
  'adminKey',
  'key',
  'authorization',
  'req.headers.authorization',
  '*.token',
  '*.secret',
  '*.apiKey',
];

/**
 * The root logger of a process: JSON to stdout, secrets redacted; pretty when asked (dev).
 * Parts take `logger.child({ component })`.
 */
export function createLogger(opts: { level: string; pretty?: boolean; name: string }): Logger {
  const options: LoggerOptions = {
    level: opts.level,
    name: opts.name,
    redact: { paths: REDACT, censor: '[redacted]' },
    serializers: { err: pino.stdSerializers.err },
  };
  if (opts.pretty === true) {
    return pino({ ...options, transport: { target: 'pino-pretty', options: { colorize: true } } });
  }
  return pino(options);
}
