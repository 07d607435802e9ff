import { loadUws, type TemplatedApp, type us_listen_socket } from './uws.js';

/** A listening uWS socket and the port it got (useful with port 0). */
export interface Listening {
  socket: us_listen_socket;
  port: number;
  close(): void;
}

/**
 * Listens on host:port. On Linux uWS sets SO_REUSEPORT, so several processes may listen on one
 * port and the kernel spreads connections among them. Rejects when the port cannot be bound.
 */
export function listen(app: TemplatedApp, host: string, port: number): Promise<Listening> {
  const uws = loadUws();
  return new Promise((resolve, reject) => {
    app.listen(host, port, (socket) => {
      if (socket === false) {
        reject(new Error(`cannot listen on ${host}:${port}`));
        return;
      }
      let closed = false;
      resolve({
        socket,
        port: uws.us_socket_local_port(socket),
        close() {
          if (closed) return;
          closed = true;
          uws.us_listen_socket_close(socket);
        },
      });
    });
  });
}
