import { loadUws, type TemplatedApp, type us_listen_socket } from './uws.js';

/** A listening uWS socket and the port it got (useful with port 0). */
export interface Listening {
  socket: us_listen_socket;
  port: number;
  close(): void;
}

/** One listen socket on host:port; rejects when the port cannot be bound. */
function listenOnce(app: TemplatedApp, host: string, port: number): Promise<us_listen_socket> {
  return new Promise((resolve, reject) => {
    app.listen(host, port, (socket) => {
      if (socket === false) reject(new Error(`cannot listen on ${host}:${port}`));
      else resolve(socket);
    });
  });
}

/**
 * Listens on host:port. On Linux uWS sets SO_REUSEPORT, so several processes may listen on one
 * port and the kernel spreads connections among them. Rejects when the port cannot be bound.
 *
 * `sockets` > 1 opens that many listen sockets on the port in this process (the first picks the
 * port when it is 0): uWS asks the kernel for an accept backlog of 512 connections per socket,
 * and a reconnect storm that comes faster than the event loop accepts overflows it, each
 * connection past it waiting a SYN retransmission (1 s, then 3 s, ...). The kernel spreads new
 * connections over the sockets, so the backlog is `sockets` x 512 (each capped by
 * `net.core.somaxconn`). Port 0 gets one socket: uWS binds an ephemeral port without
 * SO_REUSEPORT, so no second socket can join it.
 */
export async function listen(app: TemplatedApp, host: string, port: number, sockets = 1): Promise<Listening> {
  const uws = loadUws();
  const first = await listenOnce(app, host, port);
  const bound = uws.us_socket_local_port(first);
  const all = [first];
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    for (const s of all) uws.us_listen_socket_close(s);
  };
  try {
    for (let i = 1; i < sockets && port !== 0; i++) all.push(await listenOnce(app, host, bound));
  } catch (err) {
    close();
    throw err;
  }
  return { socket: first, port: bound, close };
}
