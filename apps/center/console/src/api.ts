/**
 * Calls to the center's HTTP API from the console (same origin). The key lives in this module
 * and in sessionStorage (so a reload keeps the session, a closed tab ends it), never in a URL.
 */

/** An answer other than 2xx: the API's stable error code and message (docs/api.md "Error codes"). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Who is logged in: the admin key (every app), or an app's API key (that app only). */
export interface Session {
  key: string;
  /** Set for an app's API key: the one app it opens. */
  app?: string;
}

const STORE = 'push-console-session';
let session: Session | undefined;

export function currentSession(): Session | undefined {
  if (session !== undefined) return session;
  const raw = sessionStorage.getItem(STORE);
  if (raw === null) return undefined;
  try {
    session = JSON.parse(raw) as Session;
  } catch {
    sessionStorage.removeItem(STORE);
  }
  return session;
}

export function saveSession(s: Session): void {
  session = s;
  sessionStorage.setItem(STORE, JSON.stringify(s));
}

export function endSession(): void {
  session = undefined;
  sessionStorage.removeItem(STORE);
}

/** Whether the session is the admin's. */
export const isAdmin = (): boolean => currentSession() !== undefined && currentSession()?.app === undefined;

/** `/v1/apps/<app>` with the id encoded. */
export const appPath = (app: string): string => `/v1/apps/${encodeURIComponent(app)}`;

/** Calls the API with the session's key; resolves with the JSON answer (undefined for 204), rejects with ApiError. */
export async function api<T = unknown>(method: string, path: string, body?: unknown, key?: string): Promise<T> {
  const bearer = key ?? currentSession()?.key;
  const headers: Record<string, string> = {};
  if (bearer !== undefined) headers['authorization'] = `Bearer ${bearer}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, 'network', `the center did not answer (${err instanceof Error ? err.message : String(err)})`);
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (!res.ok) {
    const e = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new ApiError(res.status, e?.code ?? 'http_' + res.status, e?.message ?? (text || res.statusText));
  }
  return parsed as T;
}
