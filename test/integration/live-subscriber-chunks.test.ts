import { expect } from 'chai';
import net from 'node:net';
import { createLogger } from '@push/logger';
import { LiveSubscriber } from '@push/nats';

const log = createLogger({ level: 'silent', name: 'test' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One message as a handler saw it. */
interface Seen {
  sub: string;
  subject: string;
  headers: string;
  payload: string;
}

/** `MSG` or `HMSG` wire text for one message, with the byte counts computed. */
function msg(subject: string, sid: number, payload: string, hdrs?: string, reply?: string): string {
  const r = reply !== undefined ? `${reply} ` : '';
  if (hdrs === undefined) return `MSG ${subject} ${sid} ${r}${Buffer.byteLength(payload)}\r\n${payload}\r\n`;
  const h = Buffer.byteLength(hdrs);
  return `HMSG ${subject} ${sid} ${r}${h} ${h + Buffer.byteLength(payload)}\r\n${hdrs}${payload}\r\n`;
}

const HDRS = 'NATS/1.0\r\nNats-Sequence: 42\r\nX-Note: a\r\n\r\n';
const HDRS_ONLY = 'NATS/1.0\r\nNats-Sequence: 43\r\n\r\n';

/**
 * Every server-to-client operation the live subscriber meets, with payloads that contain CRLF,
 * spaces and operation names, a zero-length message, headers without payload and multi-byte UTF-8.
 */
const STREAM = [
  '+OK\r\n',
  msg('live.a', 1, 'hello'),
  'INFO {"server_id":"fake","max_payload":1048576,"connect_urls":["127.0.0.1:1"]}\r\n',
  msg('live.b', 2, 'body\r\nMSG live.a 1 3\r\nno!\r\n', HDRS, '_INBOX.reply'),
  'PING\r\n',
  msg('live.a', 1, ''),
  msg('live.b', 2, '', HDRS_ONLY),
  "-ERR 'Unknown Protocol Operation'\r\n",
  msg('live.a', 1, 'ünï 😀', undefined, 'r.1'),
  msg('live.x', 9, 'for a sid nobody holds'),
  msg('live.b', 2, 'PONG\r\n', HDRS),
  'PING\r\n',
  msg('live.a', 1, 'last'),
].join('');

const EXPECTED: Seen[] = [
  { sub: 'a', subject: 'live.a', headers: '', payload: 'hello' },
  { sub: 'b', subject: 'live.b', headers: HDRS, payload: 'body\r\nMSG live.a 1 3\r\nno!\r\n' },
  { sub: 'a', subject: 'live.a', headers: '', payload: '' },
  { sub: 'b', subject: 'live.b', headers: HDRS_ONLY, payload: '' },
  { sub: 'a', subject: 'live.a', headers: '', payload: 'ünï 😀' },
  { sub: 'b', subject: 'live.b', headers: HDRS, payload: 'PONG\r\n' },
  { sub: 'a', subject: 'live.a', headers: '', payload: 'last' },
];
const PINGS_IN_STREAM = 2;

/**
 * A fake NATS server (node:net) that greets, answers the client's PINGs during the handshake and
 * then lets the test write raw protocol bytes, counting the PONGs the client sends back.
 */
class FakeNats {
  private readonly server = net.createServer((s) => this.accept(s));
  private socket: net.Socket | undefined;
  /** While true, the client's PINGs are answered (handshake, flush); the test's bytes are not interleaved. */
  answerPings = true;
  pongs = 0;
  /** Written once, right before the next PONG (a message that beat the handshake's confirmation). */
  beforePong: string | undefined;

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const { port } = this.server.address() as net.AddressInfo;
    return `nats://127.0.0.1:${port}`;
  }

  private accept(s: net.Socket): void {
    this.socket = s;
    s.setNoDelay(true);
    s.write('INFO {"server_id":"fake","version":"2.15.1","headers":true,"max_payload":1048576}\r\n');
    let text = '';
    s.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      let nl: number;
      while ((nl = text.indexOf('\r\n')) >= 0) {
        const line = text.slice(0, nl);
        text = text.slice(nl + 2);
        if (line === 'PING' && this.answerPings) {
          s.write(`${this.beforePong ?? ''}PONG\r\n`);
          this.beforePong = undefined;
        }
        if (line === 'PONG') this.pongs++;
      }
    });
    s.on('error', () => undefined);
  }

  /** Writes `parts` one after the other, each in its own TCP segment (a short pause between). */
  async send(parts: Buffer[]): Promise<void> {
    const s = this.socket;
    if (s === undefined) throw new Error('no client connected');
    for (const part of parts) {
      if (part.length === 0) continue;
      await new Promise<void>((resolve, reject) => s.write(part, (err) => (err ? reject(err) : resolve())));
      // Long enough for the client to read this part before the next arrives (loopback, no Nagle).
      await sleep(1);
    }
  }

  /** Drops the client's connection (it reconnects). */
  dropClient(): void {
    this.socket?.destroy();
  }

  async close(): Promise<void> {
    this.socket?.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

describe('LiveSubscriber parser at every chunk boundary (fake NATS server)', function () {
  this.timeout(120_000);
  const fake = new FakeNats();
  const seen: Seen[] = [];
  let live: LiveSubscriber;

  before(async function () {
    const url = await fake.listen();
    live = await LiveSubscriber.connect({ servers: url, name: 't', logger: log, pingSeconds: 3600 });
    const record = (sub: string) => (headers: Buffer, payload: Buffer, subject: string) =>
      seen.push({ sub, subject, headers: headers.toString('utf8'), payload: payload.toString('utf8') });
    live.subscribe('live.a', record('a')); // sid 1
    live.subscribe('live.b', record('b')); // sid 2
    await live.flush();
    fake.answerPings = false;
  });
  after(async function () {
    live?.close();
    await fake.close();
  });

  /** Sends the stream in the given parts; resolves with what the handlers saw (or what they had at the deadline). */
  async function deliver(parts: Buffer[]): Promise<Seen[]> {
    seen.length = 0;
    await fake.send(parts);
    const deadline = Date.now() + 1000;
    while (seen.length < EXPECTED.length && Date.now() < deadline) await sleep(2);
    await sleep(seen.length === EXPECTED.length ? 0 : 50); // anything extra would show up here
    return seen.slice();
  }

  it('delivers every message, headers and payload, in order, whole', async function () {
    expect(await deliver([Buffer.from(STREAM)])).to.deep.equal(EXPECTED);
  });

  it('delivers the same for a stream split in two at every byte position', async function () {
    const bytes = Buffer.from(STREAM);
    const pongsBefore = fake.pongs;
    for (let at = 1; at < bytes.length; at++) {
      const got = await deliver([bytes.subarray(0, at), bytes.subarray(at)]);
      // One position at a time, so a failure names the boundary that broke.
      expect(
        got,
        `split after byte ${at}: ${JSON.stringify(bytes.subarray(Math.max(0, at - 12), at).toString())}|`,
      ).to.deep.equal(EXPECTED);
    }
    // The server's PINGs were answered every time, wherever they were cut.
    const deadline = Date.now() + 1000;
    const want = pongsBefore + PINGS_IN_STREAM * (bytes.length - 1);
    while (fake.pongs < want && Date.now() < deadline) await sleep(5);
    expect(fake.pongs).to.equal(want);
  });

  it('delivers the same for a stream sent one byte at a time', async function () {
    const bytes = Buffer.from(STREAM);
    const parts = Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1));
    expect(await deliver(parts)).to.deep.equal(EXPECTED);
  });

  it('still delivers after all that (the parser is left in a clean state)', async function () {
    expect(await deliver([Buffer.from(STREAM)])).to.deep.equal(EXPECTED);
  });
});

describe('LiveSubscriber reconnect: messages before onReconnect (issue 15)', function () {
  this.timeout(20_000);

  it('hands a message that came before the reconnect was confirmed over only after onReconnect', async function () {
    // An edge's connection still live on its old cursor would take such a message and move past
    // the ones missed while disconnected; after onReconnect it reads them from the store first.
    const fake = new FakeNats();
    const url = await fake.listen();
    const events: string[] = [];
    const live = await LiveSubscriber.connect({
      servers: url,
      name: 't',
      logger: log,
      pingSeconds: 3600,
      onReconnect: () => events.push('reconnect'),
    });
    try {
      live.subscribe('live.a', (_h, payload) => events.push(`msg:${payload.toString()}`)); // sid 1
      await live.flush();
      fake.beforePong = msg('live.a', 1, 'early');
      fake.dropClient();
      const deadline = Date.now() + 10_000;
      while (events.length < 2 && Date.now() < deadline) await sleep(20);
      expect(events).to.deep.equal(['reconnect', 'msg:early']);
    } finally {
      live.close();
      await fake.close();
    }
  });
});
