import type { InFlight } from '../in-flight.js';
import type { AppDirectory } from '@push/apps';
import { pusherChannelProblem } from '@push/apps';
import { HttpExchange, type HttpRequest, type HttpResponse, type TemplatedApp } from '@push/http';
import type { PresenceRegistry } from '@push/presence';
import {
  PushError,
  decodeToken,
  idProblem,
  isObject,
  isPresenceTopic,
  type AppRecord,
  type Subjects,
} from '@push/protocol';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { DatabaseWatch } from '../database-watch.js';
import type { Kicker } from '../kick.js';
import type { CenterMetrics } from '../metrics.js';
import type { TopicService } from '../topic-service.js';
import { verifyPusherRequest } from './pusher-auth.js';

export interface PusherHttpDeps {
  apps: Pick<AppDirectory, 'get'>;
  topics: Pick<TopicService, 'publish'>;
  presence: Pick<PresenceRegistry, 'topicOccupancy' | 'topicMembers'>;
  /** terminate_connections is a kick of the user. */
  kicker: Pick<Kicker, 'kick'>;
  redis: Redis;
  subjects: Subjects;
  database: Pick<DatabaseWatch, 'answer'>;
  metrics: CenterMetrics;
  log: Logger;
  maxBodyBytes: number;
  /** Requests being answered; refuses new ones once the center stops. */
  inFlight: InFlight;
}

/** A channel from the path; PushError `invalid_topic` when it is past Pusher's rules. */
function channelParam(channel: string | undefined): string {
  const bad = pusherChannelProblem(channel);
  if (bad !== undefined) throw new PushError('invalid_topic', `channel ${JSON.stringify(channel)}: ${bad}`);
  return channel as string;
}

/** Pusher's limits: channels per trigger, events per batch, event name length. */
const MAX_TRIGGER_CHANNELS = 100;
const MAX_BATCH_EVENTS = 10;
const MAX_EVENT_NAME = 200;
const SOCKET_ID = /^\d+\.\d+$/;

interface Answer {
  status: number;
  body: unknown;
}

type PusherHandler = (app: AppRecord, params: URLSearchParams, body: unknown, path: string[]) => Promise<Answer>;

interface PusherRoute {
  method: 'get' | 'post';
  pattern: string;
  op: string;
  handler: PusherHandler;
}

/** One event of a trigger or batch, checked. */
interface PusherEventInput {
  channel: string;
  name: string;
  data: string;
  socketId: string | undefined;
}

function readEvent(
  raw: Record<string, unknown>,
  channel: unknown,
): Omit<PusherEventInput, 'channel'> & { channel: string } {
  const name = raw['name'];
  if (typeof name !== 'string' || name === '' || name.length > MAX_EVENT_NAME) {
    throw new PushError('bad_request', `name must be a string of 1 to ${MAX_EVENT_NAME} characters`);
  }
  const data = raw['data'];
  if (typeof data !== 'string') throw new PushError('bad_request', 'data must be a string (JSON-encode objects)');
  const socketId = raw['socket_id'];
  if (socketId !== undefined && (typeof socketId !== 'string' || !SOCKET_ID.test(socketId))) {
    throw new PushError('bad_request', 'socket_id must look like 123.456');
  }
  const bad = pusherChannelProblem(channel);
  if (bad !== undefined) throw new PushError('invalid_topic', `channel ${JSON.stringify(channel)}: ${bad}`);
  return { channel: channel as string, name, data, socketId };
}

/**
 * Stores Pusher events in their channels' topics, all or nothing on bad input (TopicService
 * validates the whole batch before storing), each as the object docs/pusher.md describes.
 */
async function storeEvents(deps: PusherHttpDeps, app: AppRecord, events: PusherEventInput[]): Promise<void> {
  const messages = events.map((e) => ({
    topic: e.channel,
    data: { event: e.name, data: e.data, ...(e.socketId !== undefined ? { socket_id: e.socketId } : {}) },
  }));
  const outcome = await deps.topics.publish(app, { messages }, undefined);
  if (outcome.batch && outcome.failed > 0) {
    throw new PushError('store_unavailable', `${outcome.failed} of ${events.length} events were not stored; retry`);
  }
}

/**
 * The `info` of a trigger (or of one batch event): `subscription_count` and, on presence
 * channels, `user_count`; PushError `bad_request` otherwise (checked before anything is stored).
 */
function triggerInfo(raw: unknown, channel: string, app: AppRecord): Set<string> {
  if (raw === undefined) return new Set();
  if (typeof raw !== 'string') throw new PushError('bad_request', 'info must be a comma-separated string');
  return infoFields(new URLSearchParams({ info: raw }), isPresenceTopic(app.settings.presenceTopics, channel));
}

/** The attributes `info` asks for of a channel, after the trigger. */
async function channelAttributes(
  deps: PusherHttpDeps,
  app: AppRecord,
  channel: string,
  info: Set<string> | undefined,
): Promise<Record<string, number>> {
  if (info === undefined || info.size === 0) return {};
  const o = await deps.presence.topicOccupancy(app.id, channel);
  const out: Record<string, number> = {};
  if (info.has('subscription_count')) out['subscription_count'] = o.connections;
  if (info.has('user_count')) out['user_count'] = o.users;
  return out;
}

/**
 * `info` of a trigger or a channel route, a comma-separated list of `subscription_count` and
 * `user_count`; PushError `bad_request` for another name, or user_count of a non-presence channel.
 */
function infoFields(params: URLSearchParams, presence: boolean): Set<string> {
  const info = new Set((params.get('info') ?? '').split(',').filter((s) => s !== ''));
  for (const f of info) {
    if (f !== 'subscription_count' && f !== 'user_count') {
      throw new PushError('bad_request', `info ${JSON.stringify(f)} is not subscription_count or user_count`);
    }
  }
  if (info.has('user_count') && !presence) {
    throw new PushError('bad_request', 'user_count is only available for presence channels');
  }
  return info;
}

/** The occupied topics of an app whose names start with `prefix` (a SCAN over topic presence keys). */
async function occupiedChannels(deps: PusherHttpDeps, app: string, prefix: string): Promise<string[]> {
  const pattern = deps.subjects.topicConnsPattern(app);
  const stem = pattern.slice(0, -1);
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await deps.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    for (const k of keys) {
      let topic: string;
      try {
        topic = decodeToken(k.slice(stem.length));
      } catch {
        continue; // not a key topic presence wrote
      }
      if (topic.startsWith(prefix) && pusherChannelProblem(topic) === undefined) out.push(topic);
    }
  } while (cursor !== '0');
  return [...new Set(out)].sort();
}

/**
 * Mounts the Pusher HTTP door (docs/pusher.md): Pusher's REST API at `/apps/<app id>/...`, signed
 * with the app's Pusher key and secret, so the official `pusher` server SDKs work unchanged.
 * Events are topic messages (a publish reaches native and Pusher subscribers alike); channel
 * information is topic presence. Errors answer `{ error: { code, message } }` with Pusher's status.
 */
export function mountPusherHttp(app: TemplatedApp, deps: PusherHttpDeps): void {
  const routes: PusherRoute[] = [
    {
      method: 'post',
      pattern: '/apps/:app/events',
      op: 'pusher.events',
      handler: async (record, _params, body) => {
        if (!isObject(body)) throw new PushError('bad_request', 'the body must be a JSON object');
        const channels = body['channels'] ?? (body['channel'] !== undefined ? [body['channel']] : undefined);
        if (!Array.isArray(channels) || channels.length === 0 || channels.length > MAX_TRIGGER_CHANNELS) {
          throw new PushError('bad_request', `channels must be an array of 1 to ${MAX_TRIGGER_CHANNELS} channel names`);
        }
        const events = channels.map((c) => readEvent(body, c));
        const info = events.map((e) => triggerInfo(body['info'], e.channel, record));
        await storeEvents(deps, record, events);
        if (info.every((i) => i.size === 0)) return { status: 200, body: {} };
        const out: Record<string, Record<string, number>> = {};
        await Promise.all(
          events.map(async (e, i) => (out[e.channel] = await channelAttributes(deps, record, e.channel, info[i]))),
        );
        return { status: 200, body: { channels: out } };
      },
    },
    {
      method: 'post',
      pattern: '/apps/:app/batch_events',
      op: 'pusher.batch_events',
      handler: async (record, _params, body) => {
        const batch = isObject(body) ? body['batch'] : undefined;
        if (!Array.isArray(batch) || batch.length === 0 || batch.length > MAX_BATCH_EVENTS) {
          throw new PushError('bad_request', `batch must be an array of 1 to ${MAX_BATCH_EVENTS} events`);
        }
        const events = batch.map((e) => {
          if (!isObject(e)) throw new PushError('bad_request', 'each batch event is an object');
          return readEvent(e, e['channel']);
        });
        const info = events.map((e, i) =>
          triggerInfo((batch[i] as Record<string, unknown>)['info'], e.channel, record),
        );
        await storeEvents(deps, record, events);
        const answers = await Promise.all(events.map((e, i) => channelAttributes(deps, record, e.channel, info[i])));
        return { status: 200, body: { batch: answers } };
      },
    },
    {
      method: 'get',
      pattern: '/apps/:app/channels',
      op: 'pusher.channels',
      handler: async (record, params) => {
        const prefix = params.get('filter_by_prefix') ?? '';
        const info = infoFields(params, prefix.startsWith('presence-'));
        const names = await occupiedChannels(deps, record.id, prefix);
        const channels: Record<string, { user_count?: number }> = {};
        await Promise.all(
          names.map(async (name) => {
            if (!info.has('user_count')) {
              channels[name] = {};
              return;
            }
            const o = await deps.presence.topicOccupancy(record.id, name);
            channels[name] = { user_count: o.users };
          }),
        );
        return { status: 200, body: { channels } };
      },
    },
    {
      method: 'get',
      pattern: '/apps/:app/channels/:channel',
      op: 'pusher.channel',
      handler: async (record, params, _body, [raw]) => {
        const channel = channelParam(raw);
        const presence = isPresenceTopic(record.settings.presenceTopics, channel);
        const info = infoFields(params, presence);
        const o = await deps.presence.topicOccupancy(record.id, channel);
        const out: Record<string, unknown> = { occupied: o.connections > 0 };
        if (info.has('user_count')) out['user_count'] = o.users;
        if (info.has('subscription_count')) out['subscription_count'] = o.connections;
        return { status: 200, body: out };
      },
    },
    {
      method: 'get',
      pattern: '/apps/:app/channels/:channel/users',
      op: 'pusher.users',
      handler: async (record, _params, _body, [raw]) => {
        const channel = channelParam(raw);
        // As user_count: `presence-` channels, and the topics `presenceTopics` makes presence ones.
        if (!isPresenceTopic(record.settings.presenceTopics, channel)) {
          throw new PushError('bad_request', 'users are only listed for presence channels');
        }
        const members = await deps.presence.topicMembers(record.id, channel);
        return { status: 200, body: { users: [...new Set(members.map((m) => m.user))].map((id) => ({ id })) } };
      },
    },
    {
      method: 'post',
      pattern: '/apps/:app/users/:user/terminate_connections',
      op: 'pusher.terminate',
      handler: async (record, _params, _body, [user = '']) => {
        const bad = idProblem('user', user);
        if (bad !== undefined) throw new PushError('invalid_id', bad);
        // A kick: closes the user's native connections (4004) and the Pusher sockets signed in as them (4009).
        await deps.kicker.kick(record, user, { reason: 'terminated' });
        return { status: 200, body: {} };
      },
    },
  ];

  for (const r of routes) {
    const params = r.pattern.split('/').filter((p) => p.startsWith(':')).length;
    app[r.method](r.pattern, (res: HttpResponse, req: HttpRequest) => {
      const ex = new HttpExchange(res, req);
      if (!deps.inFlight.admit(ex)) return;
      const ps: string[] = [];
      for (let i = 0; i < params; i++) ps.push(req.getParameter(i) ?? '');
      // uWS streams the body right away: start reading before any await.
      const body = r.method === 'post' ? ex.readBody(deps.maxBodyBytes) : undefined;
      body?.catch((err: unknown) => deps.log.debug({ err, op: r.op }, 'request body not read'));
      const run = async (): Promise<Answer> => {
        const [appId = '', ...rest] = ps.map((p) => {
          try {
            return decodeURIComponent(p);
          } catch {
            throw new PushError('bad_request', 'a path segment is not valid percent-encoding');
          }
        });
        const record = deps.apps.get(appId);
        if (record === undefined) throw new PushError('app_not_found');
        if (record.disabled) throw new PushError('app_disabled');
        const bytes = body === undefined ? undefined : await body;
        const query = verifyPusherRequest(record, { method: ex.method, path: ex.url, query: ex.query, body: bytes });
        let parsed: unknown;
        if (bytes !== undefined) {
          try {
            parsed = JSON.parse(bytes.toString('utf8'));
          } catch {
            throw new PushError('bad_json');
          }
        }
        return r.handler(record, query, parsed, rest);
      };
      run().then(
        (answer) => {
          deps.inFlight.answered(ex);
          deps.metrics.requests.inc({ op: r.op, transport: 'http', status: answer.status });
          ex.json(answer.status, answer.body);
        },
        (err: unknown) => {
          deps.inFlight.answered(ex);
          const e = deps.database.answer(err, r.op);
          deps.metrics.requests.inc({ op: r.op, transport: 'http', status: e.status });
          deps.metrics.errors.inc({ code: e.code });
          if (e.code === 'internal') deps.log.error({ err, op: r.op }, 'pusher request failed');
          const headers = e.retryAfter !== undefined ? { 'retry-after': String(e.retryAfter) } : undefined;
          ex.json(e.status, { error: e.toJSON() }, headers);
        },
      );
    });
  }
}
