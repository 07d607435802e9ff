/**
 * Bench child for bench/memory.ts: the bare uWebSockets.js server the edge is compared with,
 * `App().ws('/*', {}).listen(...)`, nothing per connection. Answers `mem` over IPC with its
 * memory after a full GC (run with --expose-gc).
 */
import { createRequire } from 'node:module';
import type * as Uws from 'uWebSockets.js';
import { serveParent } from './lib/procs.js';

const uws = createRequire(import.meta.url)('uWebSockets.js') as typeof Uws;
const port = Number(process.argv[2]);
let connections = 0;

uws
  .App()
  .ws('/*', {
    open: () => {
      connections++;
    },
    close: () => {
      connections--;
    },
  })
  .listen('127.0.0.1', port, (socket) => {
    if (socket === false) {
      process.stderr.write(`cannot listen on ${port}\n`);
      process.exit(1);
    }
    process.send?.({ type: 'listening', port });
  });

serveParent(async (m) => {
  if (m.type !== 'mem') throw new Error(`unknown command ${m.type}`);
  const gc = (globalThis as { gc?: () => void }).gc;
  if (m['gc'] === true && gc !== undefined) {
    gc();
    gc();
  }
  const mu = process.memoryUsage();
  return { type: 'mem', rss: mu.rss, heapUsed: mu.heapUsed, external: mu.external, connections };
});
