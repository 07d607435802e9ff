import { PushError } from './errors.js';
import { isObject } from './frames.js';
import {
  BindCommandSchema,
  KickBodySchema,
  KickCommandSchema,
  MAX_KICK_REASON_BYTES,
  type BindCommand,
  type ControlCommand,
  type KickCommand,
} from './schemas.js';
import { compile } from './validate.js';

export { MAX_KICK_REASON_BYTES, type BindCommand, type ControlCommand, type KickCommand };

const kickBody = compile(KickBodySchema);
const kickCommand = compile(KickCommandSchema);
const bindCommand = compile(BindCommandSchema);

/**
 * Reads a kick request body (absent, `{}` or `{ device?, reason? }`) into the control message
 * sent on `push.ctl.<app>.<user>`; PushError `bad_request` / `invalid_id` on bad input.
 */
export function readKick(body: unknown): KickCommand {
  if (body === undefined || body === null) return { op: 'kick', reason: 'kicked' };
  if (!isObject(body)) throw new PushError('bad_request', 'the body must be a JSON object');
  const { device, reason = 'kicked' } = kickBody.parse(body);
  // The schema bounds characters; the close frame bounds UTF-8 bytes.
  if (Buffer.byteLength(reason) > MAX_KICK_REASON_BYTES) {
    throw new PushError('bad_request', `reason must be a string of at most ${MAX_KICK_REASON_BYTES} bytes`);
  }
  return { op: 'kick', reason, ...(device !== undefined ? { device } : {}) };
}

/**
 * Reads a control message as an edge receives it on `push.ctl.<app>.<user>` (the center wrote it
 * with `readKick`'s result, or a topic bind/unbind). PushError `bad_request` when it is not JSON
 * or not a known command: the edge logs and ignores it.
 */
export function readControl(payload: Uint8Array): ControlCommand {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'));
  } catch (cause) {
    throw new PushError('bad_request', 'control message is not JSON', { cause });
  }
  // By `op`, one schema each: the error names what is wrong with that command.
  if (isObject(value) && (value['op'] === 'bind' || value['op'] === 'unbind')) return bindCommand.parse(value);
  return kickCommand.parse(value);
}
