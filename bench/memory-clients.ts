/**
 * Bench child for bench/memory.ts: opens idle WebSocket connections (one per user, each with its
 * own token) from one loopback source address and holds them. Kept under the per-process file
 * descriptor limit by its parent (each child holds at most ~9,500 sockets).
 *
 * IPC: open {url, app?, secret?, users, localAddress, hello} -> opened {open, failed}; close.
 */
import WebSocket from 'ws';
import { signClientToken } from '@push/apps';
import type { AppSecret } from '@push/protocol';
import { serveParent, type ChildMessage } from './lib/procs.js';

const sockets: WebSocket[] = [];
let unexpectedCloses = 0;
let closing = false;
const failures: Record<string, number> = {};

function open(url: string, localAddress: string, waitHello: boolean): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, localAddress });
    let done = false;
    const timer = setTimeout(() => finish(new Error('timeout')), 30_000);
    const finish = (err?: Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err === undefined) {
        ws.removeAllListeners('message');
        resolve(ws);
      } else {
        ws.terminate();
        reject(err);
      }
    };
    if (waitHello) {
      ws.on('message', (data: Buffer) => {
        if ((JSON.parse(data.toString('utf8')) as { t?: string }).t === 'hello') finish();
      });
    } else {
      ws.once('open', () => finish());
    }
    ws.on('unexpected-response', (_req, res) => finish(new Error(`refused ${res.statusCode ?? 0}`)));
    ws.on('error', (err) => finish(err));
    ws.on('close', () => {
      if (done && !closing) unexpectedCloses++;
    });
  });
}

async function openAll(m: ChildMessage): Promise<{ open: number; failed: number }> {
  const users = m['users'] as string[];
  const url = m['url'] as string;
  const app = m['app'] as string | undefined;
  const secret = m['secret'] as AppSecret | undefined;
  const localAddress = m['localAddress'] as string;
  const waitHello = m['hello'] === true;
  let next = 0;
  let failed = 0;
  const worker = async (): Promise<void> => {
    while (next < users.length) {
      const user = users[next++] as string;
      let target = url;
      if (secret !== undefined && app !== undefined) {
        const token = await signClientToken(secret, { app, user, device: 'idle', ttlSeconds: 3 * 3600 });
        target = `${url}?token=${encodeURIComponent(token)}`;
      }
      for (let attempt = 0; ; attempt++) {
        try {
          sockets.push(await open(target, localAddress, waitHello));
          break;
        } catch (err) {
          const key = err instanceof Error ? err.message : String(err);
          if (attempt >= 5) {
            failed++;
            failures[key] = (failures[key] ?? 0) + 1;
            break;
          }
          await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Number(m['concurrency'] ?? 100) }, worker));
  return { open: sockets.filter((s) => s.readyState === WebSocket.OPEN).length, failed };
}

serveParent(async (m: ChildMessage) => {
  switch (m.type) {
    case 'open':
      return { type: 'opened', ...(await openAll(m)), failures };
    case 'count':
      return { type: 'count', open: sockets.filter((s) => s.readyState === WebSocket.OPEN).length, unexpectedCloses };
    case 'close':
      closing = true;
      for (const s of sockets) s.terminate();
      setTimeout(() => process.exit(0), 50);
      return { type: 'closed' };
    default:
      throw new Error(`unknown command ${m.type}`);
  }
});
