import { PushError, isObject, isPushError } from '@push/protocol';

/**
 * Reads the `messages` of a batch (a push or a topic batch): a non-empty array of at most
 * `maxBatch` items (counted before any is read, so a huge batch is refused without reading it),
 * each an object that `read` checks as a single message (schema, then the app's limits). Any item's error fails the whole
 * batch and is the error that item would get alone, its message prefixed by the item's index
 * (`messages[1]: user: user id must not be empty`, docs/api.md). Each item is checked on its own
 * rather than with a schema of the whole batch, whose errors would name the field inside the
 * item but lose what the item's own checks say (a bad ttl's message names no field at all).
 */
export function readBatch<R>(messages: unknown, maxBatch: number, read: (m: Record<string, unknown>) => R): R[] {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new PushError('bad_request', 'messages must be a non-empty array');
  }
  if (messages.length > maxBatch) throw new PushError('batch_too_large', `a batch holds at most ${maxBatch} messages`);
  return messages.map((m: unknown, i) => {
    try {
      if (!isObject(m)) throw new PushError('bad_request', 'a message must be a JSON object');
      return read(m);
    } catch (err) {
      if (isPushError(err)) throw new PushError(err.code, `messages[${i}]: ${err.message}`, { cause: err });
      throw err;
    }
  });
}
