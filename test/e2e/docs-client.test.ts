import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { expect } from 'chai';
import { WebSocket } from 'ws';
import { Stack, type TestApp } from '../helpers/stack.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface DocsClient {
  send(to: string, id: string, data: unknown): boolean;
  close(): void;
}
type StartClient = (opts: {
  url: string;
  getToken: () => Promise<string>;
  onMessage: (m: { seq: number; data?: unknown; from?: string }) => void;
  onEvent?: (...args: unknown[]) => void;
}) => DocsClient;

/** The client of docs/protocol.md, taken from the page as it is written, run with the `ws` shim it names. */
async function loadDocsClient(): Promise<{ startClient: StartClient; cleanup: () => void }> {
  const page = readFileSync(path.join(ROOT, 'docs/protocol.md'), 'utf8');
  const block = /```js\n(\/\/ push-client\.mjs[\s\S]*?)```/.exec(page)?.[1];
  if (block === undefined) throw new Error('docs/protocol.md has no push-client.mjs block');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'push-docs-'));
  const file = path.join(dir, 'push-client.mjs');
  writeFileSync(file, block);
  (globalThis as { WebSocket?: unknown }).WebSocket = WebSocket;
  const mod = (await import(pathToFileURL(file).href)) as { startClient: StartClient };
  return { startClient: mod.startClient, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

describe('the plain JavaScript client in docs/protocol.md', function () {
  let stack: Stack;
  let app: TestApp;
  let docs: Awaited<ReturnType<typeof loadDocsClient>>;
  const clients: DocsClient[] = [];

  before(async function () {
    stack = await Stack.start();
    app = await stack.createApp({ clientMessaging: true });
    docs = await loadDocsClient();
  });
  after(async function () {
    for (const c of clients) c.close();
    await sleep(50);
    docs?.cleanup();
    delete (globalThis as { WebSocket?: unknown }).WebSocket;
    await stack?.close();
  });

  async function until(cond: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(20);
    }
  }

  it('receives the backlog and live messages past its window, acks them all, and sends to another user', async function () {
    const backlog = [];
    for (let i = 0; i < 150; i++) backlog.push(i);
    await app.push({ messages: backlog.map((n) => ({ user: 'doc-alice', data: { n } })) });

    const got: Array<{ seq: number; data?: unknown; from?: string }> = [];
    const events: unknown[][] = [];
    const alice = docs.startClient({
      url: stack.wsUrl(),
      getToken: () => app.token('doc-alice'),
      onMessage: (m) => got.push(m),
      onEvent: (...args) => events.push(args),
    });
    clients.push(alice);
    await until(() => got.length === 150, '150 backlog messages');
    await app.push({ messages: Array.from({ length: 150 }, (_, i) => ({ user: 'doc-alice', data: { n: 150 + i } })) });
    await until(() => got.length === 300, '150 live messages');
    expect(got.map((m) => (m.data as { n: number }).n)).to.deep.equal(Array.from({ length: 300 }, (_, i) => i));
    await app.waitPending('doc-alice', 0);

    const bobGot: Array<{ seq: number; data?: unknown; from?: string }> = [];
    const bob = docs.startClient({
      url: stack.wsUrl(),
      getToken: () => app.token('doc-bob'),
      onMessage: (m) => bobGot.push(m),
      onEvent: () => undefined,
    });
    clients.push(bob);
    await until(() => alice.send('doc-bob', 'hello-1', { text: 'hi bob' }), 'alice connected');
    await until(() => bobGot.length === 1, "bob's message");
    expect(bobGot[0]).to.include({ from: 'doc-alice' });
    expect(bobGot[0]?.data).to.deep.equal({ text: 'hi bob' });
    await until(() => events.some((e) => e[0] === 'sent' && e[1] === 'hello-1'), "alice's 'sent' event");
  });
});
