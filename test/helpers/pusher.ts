import PusherJsModule from 'pusher-js';
import type { ChannelAuthorizationHandler, Options } from 'pusher-js';
import PusherServer from 'pusher';
import { pusherBodyMd5, pusherCredentials, pusherSign } from '@push/apps';
import type { Edge } from '@push/edge';
import type { Stack, TestApp } from './stack.js';

/**
 * pusher-js's Node build sets `module.exports` to the class while its types declare an ES default
 * export (which NodeNext reads as the module object): the default import is the class at runtime.
 */
type PusherJsClass = typeof PusherJsModule.default;
export const PusherJs = PusherJsModule as unknown as PusherJsClass;
export type PusherJs = InstanceType<PusherJsClass>;

/** The official `pusher` server SDK, pointed at the stack's center with the app's derived credentials. */
export function pusherServer(
  stack: Stack,
  app: TestApp,
  opts: { secret?: string; encryptionMasterKeyBase64?: string } = {},
): PusherServer {
  const creds = pusherCredentials(app.record);
  return new PusherServer({
    appId: creds.appId,
    key: creds.key,
    secret: opts.secret ?? creds.secrets[0] ?? '',
    host: '127.0.0.1',
    port: String(stack.center.port),
    useTLS: false,
    ...(opts.encryptionMasterKeyBase64 !== undefined
      ? { encryptionMasterKeyBase64: opts.encryptionMasterKeyBase64 }
      : {}),
  });
}

/** Presence data a test's auth endpoint signs for a presence channel. */
export interface TestMember {
  user_id: string;
  user_info?: Record<string, unknown>;
}

/**
 * pusher-js clients (Node build) on the stack's edge, each authorized by the `pusher` server SDK
 * as a business's auth endpoint would: `member` is the presence data it signs. Tracks every client
 * so `disconnectAll()` leaves nothing open.
 */
export class PusherClients {
  private readonly open: PusherJs[] = [];

  constructor(
    private readonly stack: Stack,
    private readonly app: TestApp,
  ) {}

  connect(
    opts: { member?: TestMember; edge?: Edge; extra?: Partial<Options>; key?: string; server?: PusherServer } = {},
  ): PusherJs {
    const server = opts.server ?? pusherServer(this.stack, this.app);
    const edge = opts.edge ?? this.stack.edge;
    const client = new PusherJs(opts.key ?? this.app.id, {
      cluster: 'local',
      wsHost: '127.0.0.1',
      wsPort: edge.port,
      forceTLS: false,
      enabledTransports: ['ws'],
      disableStats: true,
      channelAuthorization: {
        endpoint: 'unused',
        transport: 'ajax',
        customHandler: (...[params, callback]: Parameters<ChannelAuthorizationHandler>) => {
          try {
            const auth = params.channelName.startsWith('presence-')
              ? server.authorizeChannel(params.socketId, params.channelName, opts.member ?? { user_id: 'anon' })
              : server.authorizeChannel(params.socketId, params.channelName);
            callback(null, auth);
          } catch (err) {
            callback(err instanceof Error ? err : new Error(String(err)), null);
          }
        },
      },
      ...opts.extra,
    });
    this.open.push(client);
    return client;
  }

  disconnectAll(): void {
    for (const c of this.open.splice(0)) c.disconnect();
  }
}

/** Resolves once the client is connected (with its socket id), rejects after `timeoutMs`. */
export function connected(client: PusherJs, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    if (client.connection.state === 'connected') {
      resolve(client.connection.socket_id);
      return;
    }
    const timer = setTimeout(() => reject(new Error(`not connected: ${client.connection.state}`)), timeoutMs);
    client.connection.bind('connected', () => {
      clearTimeout(timer);
      resolve(client.connection.socket_id);
    });
  });
}

/** Waits until `check` holds, polling; fails with `what` after `timeoutMs`. */
export async function until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * A request to the center's Pusher door signed by hand (as Pusher documents it), so a test can
 * sign it wrong: another secret, an old timestamp, a body that is not the one signed.
 */
export async function pusherRequest(
  stack: Stack,
  app: TestApp,
  method: 'GET' | 'POST',
  path: string,
  opts: {
    body?: unknown;
    params?: Record<string, string>;
    timestamp?: number;
    secret?: string;
    key?: string;
    /** Sent instead of the body that was signed. */
    sentBody?: string;
  } = {},
): Promise<{ status: number; body: { error?: { code: string; message: string } } & Record<string, unknown> }> {
  const creds = pusherCredentials(app.record);
  const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  const params: Record<string, string> = {
    auth_key: opts.key ?? creds.key,
    auth_timestamp: String(opts.timestamp ?? Math.floor(Date.now() / 1000)),
    auth_version: '1.0',
    ...opts.params,
  };
  if (body !== undefined) params['body_md5'] = pusherBodyMd5(body);
  const sorted = Object.keys(params)
    .sort()
    .map((k) => `${k}=${params[k] ?? ''}`)
    .join('&');
  const signature = pusherSign(opts.secret ?? creds.secrets[0] ?? '', `${method}\n${path}\n${sorted}`);
  const res = await fetch(`${stack.httpUrl}${path}?${sorted}&auth_signature=${signature}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: opts.sentBody ?? body,
  });
  const text = await res.text();
  return { status: res.status, body: (text === '' ? {} : JSON.parse(text)) as Record<string, unknown> };
}
