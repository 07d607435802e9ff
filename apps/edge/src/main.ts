import cluster from 'node:cluster';
import { loadConfigOrExit, runService } from '@push/config';
import { createLogger, type Logger } from '@push/logger';
import { createEdge } from './app.js';

/**
 * Edge process entry. With PUSH_EDGE_WORKERS > 1 (default: one per core) the primary forks that
 * many workers; each listens on the same port (uWS sets SO_REUSEPORT, the kernel balances
 * connections) with its own NATS connection and its own file-descriptor budget.
 */
function main(): void {
  const config = loadConfigOrExit();
  if (config.edge.workers > 1 && cluster.isPrimary) {
    const logger = createLogger({ level: config.log.level, pretty: config.log.pretty, name: 'edge' });
    if (config.edge.port === 0) {
      logger.fatal('PUSH_EDGE_PORT=0 needs PUSH_EDGE_WORKERS=1 (workers must share one known port)');
      process.exit(2);
    }
    runPrimary(config.edge.workers, logger);
    return;
  }
  // Workers must not share an edge id (it names connections, presence and the alive key).
  const id = config.edge.id;
  const worker = cluster.worker;
  const own =
    id !== undefined && worker !== undefined
      ? { ...config, edge: { ...config.edge, id: `${id}-w${worker.id}` } }
      : config;
  void runService('edge', (c, logger) => createEdge(c, { logger }), { config: own });
}

function runPrimary(workers: number, logger: Logger): void {
  let stopping = false;
  const restarts: number[] = [];
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
      return;
    }
    logger.error({ pid: worker.process.pid, code, signal }, 'edge worker died; starting another');
    const now = Date.now();
    restarts.push(now);
    while (restarts.length > 0 && (restarts[0] ?? now) < now - 60_000) restarts.shift();
    if (restarts.length > workers * 5) {
      logger.fatal('edge workers keep dying; giving up');
      process.exit(1);
    }
    setTimeout(() => cluster.fork(), 500);
  });
  for (let i = 0; i < workers; i++) cluster.fork();
  logger.info({ workers }, 'edge primary started workers');
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    setTimeout(() => process.exit(1), 15_000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
