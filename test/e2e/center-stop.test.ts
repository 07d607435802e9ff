import { expect } from 'chai';
import { CenterProcess } from '../helpers/center-process.js';
import { Stack, type TestApp } from '../helpers/stack.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A center stopped with SIGTERM while business servers push over keep-alive connections
 * (docs/operations.md, Graceful shutdown): requests it took are answered, later ones get
 * `503 shutting_down` on a connection it closes, and no request is cut on its way.
 */
describe('center: SIGTERM while pushes go on over keep-alive connections', function () {
  this.timeout(60_000);
  let stack: Stack;
  let app: TestApp;
  const center = new CenterProcess();

  before(async () => {
    stack = await Stack.start();
    app = await stack.createApp();
    await center.start(stack.env);
  });
  after(async () => {
    await center.kill();
    await stack?.close();
  });

  it('answers every request it took, refuses the rest 503 shutting_down, cuts none, exits 0', async () => {
    const url = center.url;
    const outcomes = new Map<string, number>();
    const stored = new Map<string, number>();
    let pushing = true;
    let n = 0;
    const worker = async (): Promise<void> => {
      while (pushing) {
        const id = `p${n++}`;
        const user = `u${n % 8}`; // apart: an app keeps at most 1,000 messages a user
        let outcome: string;
        try {
          const res = await fetch(`${url}/v1/apps/${app.id}/push`, {
            method: 'POST',
            headers: { authorization: `Bearer ${app.apiKey}`, 'content-type': 'application/json' },
            body: JSON.stringify({ user, id, data: id }),
          });
          const body = (await res.json()) as { seq?: number; error?: { code: string } };
          if (res.status === 200 && typeof body.seq === 'number') stored.set(user, (stored.get(user) ?? 0) + 1);
          outcome =
            res.status === 503
              ? `503 ${body.error?.code} connection: ${res.headers.get('connection')}`
              : `${res.status}`;
        } catch (err) {
          outcome = `fetch failed: ${(err as { cause?: { code?: string } }).cause?.code ?? String(err)}`;
          await sleep(20);
        }
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      }
    };
    const workers = Array.from({ length: 16 }, worker);
    await sleep(1000);
    await center.stop();
    await sleep(300); // the clients find the port closed
    pushing = false;
    await Promise.all(workers);
    const seen = JSON.stringify(Object.fromEntries(outcomes));
    expect(center.lastExitCode, seen).to.equal(0);
    expect(outcomes.get('200'), seen).to.be.above(0);
    expect(outcomes.get('503 shutting_down connection: close'), seen).to.be.above(0);
    // A refused connect sent nothing; anything else (a reset, a store error) is a request lost
    // on its way or failed by the stop.
    const others = [...outcomes.keys()].filter(
      (k) => k !== '200' && k !== '503 shutting_down connection: close' && k !== 'fetch failed: ECONNREFUSED',
    );
    expect(others, seen).to.deep.equal([]);
    // Each push answered 200 is stored, and none refused is.
    for (const [user, count] of stored) await app.waitPending(user, count);
  });
});
