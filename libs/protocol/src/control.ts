import { PushError } from './errors.js';
import { isObject } from './frames.js';
import {
  BindCommandSchema,
  DeviceClaimSchema,
  KickBodySchema,
  KickCommandSchema,
  MAX_KICK_REASON_BYTES,
  type BindCommand,
  type ControlCommand,
  type DeviceClaim,
  type KickCommand,
} from './schemas.js';
import { compile } from './validate.js';

export { MAX_KICK_REASON_BYTES, type BindCommand, type ControlCommand, type DeviceClaim, type KickCommand };

const kickBody = compile(KickBodySchema);
const kickCommand = compile(KickCommandSchema);
const bindCommand = compile(BindCommandSchema);
const deviceClaim = compile(DeviceClaimSchema);

/**
 * Reads a kick request body (absent, `{}` or `{ device?, reason? }`) into the control message
 * sent on `push.ctl.<app>.<user>`; PushError `bad_request` / `invalid_id` on bad input.
 */
export function readKick(body: unknown): KickCommand {
  if (body === undefined) return { op: 'kick', reason: 'kicked' };
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
  const value = parseJson(payload, 'control message');
  // By `op`, one schema each: the error names what is wrong with that command.
  if (isObject(value) && (value['op'] === 'bind' || value['op'] === 'unbind')) return bindCommand.parse(value);
  return kickCommand.parse(value);
}

/**
 * Reads a device claim as an edge receives it on `push.claim.<app>.<user>` (another edge wrote
 * it). PushError `bad_request` when it is not JSON or not a claim: the edge logs and ignores it.
 */
export function readDeviceClaim(payload: Uint8Array): DeviceClaim {
  return deviceClaim.parse(parseJson(payload, 'device claim'));
}

function parseJson(payload: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'));
  } catch (cause) {
    throw new PushError('bad_request', `${what} is not JSON`, { cause });
  }
}
