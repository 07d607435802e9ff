import net from 'node:net';

/**
 * A TCP proxy for fault injection between a client and a server (e.g. nats-server, Postgres): it
 * can cut every connection, refuse new ones for a while (the server is down, as its clients see
 * it, while others using it are not disturbed), and hold what a client sends for a while after it
 * connects (so a handshake stalls with the socket open and the server's greeting delivered).
 */
export class TcpProxy {
  port = 0;
  /** Client bytes on new connections are held this long before being forwarded (0 = none). */
  holdMs = 0;
  /** Connections accepted so far. */
  accepted = 0;
  /** While true, what clients send is dropped, not forwarded: requests vanish on the way, as in a partition. */
  blackhole = false;
  /** While true, every connection is closed as soon as it is accepted. */
  private refusing = false;
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private clientSpoke: Array<{ match: ((c: Buffer) => boolean) | undefined; resolve: () => void }> = [];

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {
    this.server = net.createServer((client) => this.onClient(client));
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const addr = this.server.address();
    this.port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /**
   * Resolves when a client next sends bytes (matching `match`, when given, in its first chunk)
   * on a connection accepted after this call.
   */
  nextClientBytes(match?: (firstChunk: Buffer) => boolean): Promise<void> {
    return new Promise((resolve) => this.clientSpoke.push({ match, resolve }));
  }

  /** Cuts every proxied connection (both sides), as a network fault would. */
  dropAll(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  /** The server is down (every connection cut, new ones closed at once) or back up. */
  setDown(down: boolean): void {
    this.refusing = down;
    if (down) this.dropAll();
  }

  async stop(): Promise<void> {
    this.dropAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onClient(client: net.Socket): void {
    if (this.refusing) {
      client.destroy();
      return;
    }
    this.accepted++;
    const upstream = net.connect(this.targetPort, this.targetHost);
    this.sockets.add(client).add(upstream);
    const hold = this.holdMs;
    let heard = false;
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    upstream.on('data', (c: Buffer) => client.write(c));
    client.on('data', (c: Buffer) => {
      if (!heard) {
        heard = true;
        const heardBy = this.clientSpoke.filter((w) => w.match === undefined || w.match(c));
        this.clientSpoke = this.clientSpoke.filter((w) => !heardBy.includes(w));
        for (const w of heardBy) w.resolve();
      }
      if (this.blackhole) return;
      if (held === undefined) upstream.write(c);
      else held.push(c);
    });
    // Held chunks go out together, in order, when the hold ends.
    let held: Buffer[] | undefined;
    if (hold > 0) {
      held = [];
      setTimeout(() => {
        for (const c of held ?? []) upstream.write(c);
        held = undefined;
      }, hold);
    }
  }
}
