/**
 * One bad item of a batch for every kind of per-message error, with the code and HTTP status it
 * answers. docs/api.md: the error names the item, its message the single message's prefixed by
 * its index (`messages[1]: ...`). Put each at index 1 after a good item.
 */
export interface BadItem {
  item: unknown;
  code: string;
  status: number;
  /** The whole error message, where the docs spell it out. */
  message?: string;
}

/** Bad items of a push batch (`{ messages: [{ user, data|b64, ttl?, id? }] }`); the app allows 1024-byte messages. */
export const badPushItems: BadItem[] = [
  { item: 5, code: 'bad_request', status: 400 },
  { item: { data: 1 }, code: 'invalid_id', status: 400 },
  {
    item: { user: '', data: 1 },
    code: 'invalid_id',
    status: 400,
    message: 'messages[1]: user: user id must not be empty',
  },
  { item: { user: 'u\u0001', data: 1 }, code: 'invalid_id', status: 400 },
  { item: { user: 'u', data: 1, id: '' }, code: 'invalid_id', status: 400 },
  { item: { user: 'u' }, code: 'invalid_data', status: 400 },
  { item: { user: 'u', data: 1, b64: 'AA==' }, code: 'invalid_data', status: 400 },
  { item: { user: 'u', b64: '!!' }, code: 'invalid_data', status: 400 },
  { item: { user: 'u', data: 2, ttl: -1 }, code: 'invalid_ttl', status: 400 },
  { item: { user: 'u', data: 2, ttl: 'soon' }, code: 'invalid_ttl', status: 400 },
  { item: { user: 'u', data: 2, ttl: 1e9 }, code: 'invalid_ttl', status: 400 },
  { item: { user: 'u', data: 'z'.repeat(2000) }, code: 'payload_too_large', status: 413 },
];

/** Bad items of a topic batch (`{ messages: [{ topic, data|b64, ttl?, id? }] }`). */
export const badTopicItems: BadItem[] = [
  { item: 5, code: 'bad_request', status: 400 },
  { item: { data: 1 }, code: 'invalid_topic', status: 400 },
  { item: { topic: '', data: 1 }, code: 'invalid_topic', status: 400 },
  { item: { topic: '_x', data: 1 }, code: 'invalid_topic', status: 400 },
  { item: { topic: 't', data: 1, id: '' }, code: 'invalid_id', status: 400 },
  { item: { topic: 't' }, code: 'invalid_data', status: 400 },
  { item: { topic: 't', data: 1, b64: 'AA==' }, code: 'invalid_data', status: 400 },
  { item: { topic: 't', data: 2, ttl: -1 }, code: 'invalid_ttl', status: 400 },
  { item: { topic: 't', data: 2, ttl: 1e9 }, code: 'invalid_ttl', status: 400 },
  { item: { topic: 't', data: 'z'.repeat(2000) }, code: 'payload_too_large', status: 413 },
];
