import { PushError } from './errors.js';
import { idProblem } from './ids.js';
import { isObject } from './frames.js';

/** A control message to one user's connections, on `push.ctl.<app>.<user>`. */
export interface KickCommand {
  op: 'kick';
  /** Only this device's connections; all of the user's when absent. */
  device?: string;
  /** Close reason the clients see (at most 100 bytes). */
  reason: string;
}

/** Longest kick reason, in UTF-8 bytes (a WebSocket close reason holds at most 123). */
export const MAX_KICK_REASON_BYTES = 100;

/** Reads a kick request body (`{}`, `{ device?, reason? }`); PushError on bad input. */
export function readKick(body: unknown): KickCommand {
  if (body === undefined || body === null) return { op: 'kick', reason: 'kicked' };
  if (!isObject(body)) throw new PushError('bad_request', 'the body must be a JSON object');
  const device = body['device'];
  if (device !== undefined) {
    const problem = idProblem('device', device);
    if (problem !== undefined) throw new PushError('invalid_id', `device: ${problem}`);
  }
  const reason = body['reason'] ?? 'kicked';
  if (typeof reason !== 'string' || Buffer.byteLength(reason) > MAX_KICK_REASON_BYTES) {
    throw new PushError('bad_request', `reason must be a string of at most ${MAX_KICK_REASON_BYTES} bytes`);
  }
  return { op: 'kick', reason, ...(device !== undefined ? { device: device as string } : {}) };
}
