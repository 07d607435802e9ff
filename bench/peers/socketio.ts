/**
 * Benchmark peer "socketio": Socket.IO 4 with the Redis adapter, run the way a Node user would, to
 * compare the push edge with. One room per user; clients connect over raw WebSocket to
 * `/socket.io/?EIO=4&transport=websocket&user=<id>`. The same node:http server answers the bench
 * control routes /healthz, /stats, POST /gc, /send, /broadcast.
 * Run: `PORT=9002 REDIS_URL=redis://127.0.0.1:6379 node --expose-gc --import tsx bench/peers/socketio.ts`;
 * prints `listening <port>`.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createAdapter } from '@socket.io/redis-adapter';
import { Redis } from 'ioredis';
import { Server } from 'socket.io';

const port = Number(process.env['PORT']);
if (!Number.isInteger(port) || port <= 0) {
  process.stderr.write('PORT is required\n');
  process.exit(1);
}

const pub = new Redis(process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379');
const sub = pub.duplicate();
// Fail fast (rejects on the first 'error') rather than listening without Redis.
await Promise.all([once(pub, 'ready'), once(sub, 'ready')]);

const httpServer = createServer((req, res) => {
  control(req, res).catch((err: unknown) => reply(res, 500, String(err), 'text/plain'));
});
const io = new Server(httpServer, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  // A channel prefix of its own, so two runs sharing a Redis never hear each other.
  adapter: createAdapter(pub, sub, { key: `socket.io-bench-${process.pid}` }),
});

let connections = 0;
io.on('connection', (socket) => {
  const user = socket.handshake.query['user'];
  if (typeof user !== 'string' || user === '') {
    socket.disconnect(true);
    return;
  }
  void socket.join(user);
  connections++;
  socket.on('disconnect', () => connections--);
  // Client events (the load generator's acks) have no listener: Socket.IO drops them.
});

function reply(res: ServerResponse, status: number, body: string, type = 'application/json'): void {
  res.writeHead(status, { 'content-type': type }).end(body);
}

const stats = (): string => {
  const mem = process.memoryUsage();
  return JSON.stringify({ connections, rss: mem.rss, heapUsed: mem.heapUsed });
};

/** The bench control routes (Socket.IO handles /socket.io/ before this sees it). */
async function control(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const route = `${req.method} ${req.url}`;
  if (route === 'GET /healthz') return reply(res, 200, 'ok', 'text/plain');
  if (route === 'GET /stats') return reply(res, 200, stats());
  if (route === 'POST /gc') {
    const gc = (globalThis as { gc?: () => void }).gc;
    for (let i = 0; i < 3; i++) gc?.();
    return reply(res, 200, stats());
  }
  if (route !== 'POST /send' && route !== 'POST /broadcast') return reply(res, 404, 'not found', 'text/plain');

  let body: unknown;
  try {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    return reply(res, 400, 'bad json', 'text/plain');
  }
  if (typeof body !== 'object' || body === null) return reply(res, 400, 'bad request', 'text/plain');

  if (route === 'POST /broadcast') {
    io.emit('msg', (body as { data?: unknown }).data);
    return reply(res, 200, '{"sent":true}');
  }
  const messages = (body as { messages?: unknown }).messages;
  if (!Array.isArray(messages) || !messages.every((m: { user?: unknown } | null) => typeof m?.user === 'string')) {
    return reply(res, 400, 'bad request', 'text/plain');
  }
  for (const m of messages as { user: string; data: unknown }[]) io.to(m.user).emit('msg', m.data);
  reply(res, 200, JSON.stringify({ sent: messages.length }));
}

httpServer.listen(port, '127.0.0.1', () => process.stdout.write(`listening ${port}\n`));

async function stop(): Promise<void> {
  await io.close(); // disconnects every client and closes the HTTP server
  await Promise.all([pub.quit(), sub.quit()]);
}
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());
