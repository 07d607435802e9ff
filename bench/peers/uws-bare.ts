/**
 * Benchmark peer "uws-bare": the raw ceiling the push edge is compared with. A plain uWebSockets.js
 * server used the documented way (no auth, no NATS, no persistence): WebSocket `/ws?user=<id>`,
 * plus the bench control routes /healthz, /stats, POST /gc, /send, /broadcast.
 * Run: `PORT=9001 node --expose-gc --import tsx bench/peers/uws-bare.ts` (`LISTEN_SOCKETS=4` for as many
 * listen sockets as the edge); prints `listening <port>`.
 */
import uWS from 'uWebSockets.js';

type UserData = { user: string };
type Socket = uWS.WebSocket<UserData>;

// uWebSockets.js silently falls back to a slow pure-JS implementation when its binary does not
// fit this Node: refuse to measure that (same check as libs/http/src/uws.ts).
if (
  typeof uWS.us_socket_local_port !== 'function' ||
  !Function.prototype.toString.call(uWS.App).includes('[native code]')
) {
  process.stderr.write('uWebSockets.js native binary did not load (pure-JS fallback); refusing to run\n');
  process.exit(1);
}

const port = Number(process.env['PORT']);
if (!Number.isInteger(port) || port <= 0) {
  process.stderr.write('PORT is required\n');
  process.exit(1);
}

const users = new Map<string, Set<Socket>>();
let connections = 0;

const stats = (): string => {
  const mem = process.memoryUsage();
  return JSON.stringify({ connections, rss: mem.rss, heapUsed: mem.heapUsed });
};

/** Reads a whole JSON body (uWS's documented onData/onAborted pattern) and answers inside res.cork. */
function jsonPost(res: uWS.HttpResponse, handle: (body: unknown) => string | undefined): void {
  const chunks: Buffer[] = [];
  // The answer is written in the same callback as the last chunk, so nothing is sent after an abort.
  res.onAborted(() => {});
  res.onData((chunk, isLast) => {
    chunks.push(Buffer.from(chunk.slice(0))); // uWS neuters the ArrayBuffer after the callback: copy
    if (!isLast) return;
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      body = undefined;
    }
    res.cork(() => {
      const answer = body === undefined ? undefined : handle(body);
      if (answer === undefined) res.writeStatus('400 Bad Request').end('bad request');
      else res.writeHeader('content-type', 'application/json').end(answer);
    });
  });
}

const frame = (data: unknown): string => JSON.stringify({ t: 'msg', data });

/** Sequence of the `all` topic's messages, as our edge numbers a topic's. */
let allSeq = 0;

/**
 * A broadcast frame with the same bytes as our edge's topic message (ServerFrames.topicMessage in
 * libs/protocol: topic, seq, prev, ts, data), so both servers write frames of one size.
 */
const topicFrame = (data: unknown): string => {
  const seq = ++allSeq;
  return `{"t":"msg","topic":"_all","seq":${seq},"prev":${seq - 1},"ts":${Date.now()},"data":${JSON.stringify(data)}}`;
};

const app = uWS
  .App()
  .ws<UserData>('/ws', {
    idleTimeout: 120,
    sendPingsAutomatically: true,
    compression: uWS.DISABLED,
    maxBackpressure: 1024 * 1024,
    upgrade: (res, req, context) => {
      const user = req.getQuery('user');
      if (!user) {
        res.writeStatus('400 Bad Request').end('missing user');
        return;
      }
      res.upgrade<UserData>(
        { user },
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },
    open: (ws: Socket) => {
      ws.subscribe('all');
      const { user } = ws.getUserData();
      let set = users.get(user);
      if (set === undefined) users.set(user, (set = new Set()));
      set.add(ws);
      connections++;
      ws.send('{"t":"hello"}');
    },
    message: () => {}, // acks from the load generator: ignored
    close: (ws: Socket) => {
      const { user } = ws.getUserData();
      const set = users.get(user);
      set?.delete(ws);
      if (set?.size === 0) users.delete(user);
      connections--;
    },
  })
  .get('/healthz', (res) => {
    res.end('ok');
  })
  .get('/stats', (res) => {
    res.writeHeader('content-type', 'application/json').end(stats());
  })
  .post('/gc', (res) => {
    const gc = (globalThis as { gc?: () => void }).gc;
    for (let i = 0; i < 3; i++) gc?.();
    res.writeHeader('content-type', 'application/json').end(stats());
  })
  .post('/send', (res) => {
    jsonPost(res, (body) => {
      const messages = (body as { messages?: unknown } | null)?.messages;
      if (!Array.isArray(messages) || !messages.every((m: { user?: unknown } | null) => typeof m?.user === 'string'))
        return undefined;
      for (const m of messages as { user: string; data: unknown }[]) {
        const sockets = users.get(m.user);
        if (sockets === undefined) continue;
        const text = frame(m.data);
        for (const ws of sockets) ws.send(text);
      }
      return JSON.stringify({ sent: messages.length });
    });
  })
  .post('/broadcast', (res) => {
    jsonPost(res, (body) => {
      if (typeof body !== 'object' || body === null) return undefined;
      app.publish('all', topicFrame((body as { data?: unknown }).data));
      return '{"sent":true}';
    });
  })
  .any('/*', (res) => {
    res.writeStatus('404 Not Found').end('not found');
  });

// LISTEN_SOCKETS (default 1) listen sockets on the port (SO_REUSEPORT), as the edge opens
// PUSH_EDGE_LISTEN_SOCKETS: uWS's accept backlog is 512 per socket.
const listenSockets = Math.max(1, Number(process.env['LISTEN_SOCKETS'] ?? 1) || 1);
let listening = 0;
for (let i = 0; i < listenSockets; i++) {
  app.listen('127.0.0.1', port, (socket) => {
    if (socket === false) {
      process.stderr.write(`cannot listen on 127.0.0.1:${port}\n`);
      process.exit(1);
    }
    if (++listening === listenSockets) process.stdout.write(`listening ${port}\n`);
  });
}

// app.close() closes the listen socket and every connection (WebSocket and HTTP keep-alive alike);
// it is in this binary but missing from the package's index.d.ts. With nothing left open, the
// process exits by itself.
const stop = (): void => (app as uWS.TemplatedApp & { close(): void }).close();
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
