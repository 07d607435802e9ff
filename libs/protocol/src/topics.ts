import { idProblem } from './ids.js';

/**
 * Topic names and the patterns a client token grants.
 *
 * A topic name follows the rules of a user id (1 to 256 UTF-8 bytes, no control characters) and
 * is encoded into one subject token the same way (`encodeToken`), so `.`, `*`, `>` or spaces in
 * a name can never form a wildcard or an extra token. Names starting with `_` are reserved for
 * the system: `_all` is the app-wide broadcast every connection receives; the others are kept
 * for later use and refused.
 */

/** The reserved broadcast topic: every connection of the app receives it without a `sub`. */
export const ALL_TOPIC = '_all';

/** Most patterns a client token's `topics` claim may hold. */
export const MAX_TOPIC_PATTERNS = 64;

/**
 * Why `value` is not a topic a business may publish to (`_all` allowed), or undefined when it is.
 */
export function topicProblem(value: unknown): string | undefined {
  const bad = idProblem('topic', value);
  if (bad !== undefined) return bad.replace('topic id', 'topic');
  if ((value as string).startsWith('_') && value !== ALL_TOPIC) {
    return `topic names starting with _ are reserved (only ${ALL_TOPIC} is in use)`;
  }
  return undefined;
}

/**
 * Whether a granted pattern covers a topic. `*` matches any run of characters, none included
 * (`room-*` covers `room-1` and `room-`; `*` alone covers every topic); every other character
 * matches itself. Case-sensitive.
 */
export function topicMatches(pattern: string, topic: string): boolean {
  const star = pattern.indexOf('*');
  if (star < 0) return pattern === topic;
  const parts = pattern.split('*');
  const first = parts[0] as string;
  const last = parts[parts.length - 1] as string;
  if (topic.length < first.length + last.length) return false;
  if (!topic.startsWith(first) || !topic.endsWith(last)) return false;
  let at = first.length;
  const end = topic.length - last.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const part = parts[i] as string;
    const found = topic.indexOf(part, at);
    if (found < 0 || found + part.length > end) return false;
    at = found + part.length;
  }
  return true;
}

/** Whether any of the granted patterns covers the topic. */
export function topicGranted(patterns: readonly string[] | undefined, topic: string): boolean {
  if (patterns === undefined) return false;
  for (const p of patterns) if (topicMatches(p, topic)) return true;
  return false;
}

/**
 * Prefix of the topics that are presence topics in every app, whatever its `presenceTopics`:
 * Pusher's presence channels (`presence-<name>`) are topics of that name (docs/pusher.md).
 */
export const PUSHER_PRESENCE_PREFIX = 'presence-';

/** Whether a topic is a presence topic of an app: its `presenceTopics` patterns, or a Pusher `presence-` channel. */
export function isPresenceTopic(patterns: readonly string[] | undefined, topic: string): boolean {
  return topic.startsWith(PUSHER_PRESENCE_PREFIX) || topicGranted(patterns, topic);
}
