import type { NatsConnection } from '@nats-io/nats-core';
import type { BindingsRepository } from '@push/db';
import { ALL_TOPIC, PushError, type AppRecord, type BindCommand, type Subjects } from '@push/protocol';
import type { Redis } from 'ioredis';
import { topicNameError } from './topic-service.js';

/** What a bind answers. */
export interface BindReply {
  topic: string;
  /** False when the user was bound to the topic already (the control message went out again). */
  created: boolean;
  /** The user's bindings after this one. */
  bindings: number;
}

/**
 * Topic bindings (docs/api.md "Topic bindings"): the business binds a user to a topic, and
 * every connection of the user, now and later, is subscribed to it without a grant.
 *
 * Where they live: Postgres `topic_bindings` is the record (survives every restart, `GET` reads
 * it); a Redis set per user (`push:bind:<app>:<user>`) mirrors it for the edges, which read it
 * when a connection opens (one SMEMBERS, no Postgres on the connect path); a control message on
 * `push.ctl.<app>.<user>` tells the connections open now.
 *
 * Write order: Postgres, then Redis, then the control message, every step on every call (even
 * when Postgres had no change), so a request that failed midway (503 `store_unavailable`) is
 * made whole by retrying it. An edge registers a connection for control messages before it reads
 * the Redis set, so a bind is seen by the read or by the message (or both: subscribing twice is
 * one subscription), never by neither.
 */
export class BindingService {
  constructor(
    private readonly repo: BindingsRepository,
    private readonly redis: Pick<Redis, 'sadd' | 'srem'>,
    private readonly nc: Pick<NatsConnection, 'publish'>,
    private readonly subjects: Subjects,
  ) {}

  /** PushError `invalid_topic` for a name a business may not bind (reserved `_` names, `_all` included). */
  static topic(topic: unknown): string {
    const bad = topicNameError(topic);
    if (bad !== undefined) throw bad;
    if (topic === ALL_TOPIC)
      throw new PushError('invalid_topic', `every connection receives ${ALL_TOPIC}: it is not bound`);
    return topic as string;
  }

  /**
   * Binds; PushError `too_many_bindings` past the app's `maxTopicsPerConnection` (bound topics
   * count toward what a connection holds, so every binding fits a fresh connection).
   */
  async bind(app: AppRecord, user: string, topic: string): Promise<BindReply> {
    BindingService.topic(topic);
    const max = app.settings.maxTopicsPerConnection;
    const r = await this.repo.add(app.id, user, topic, max);
    if (r === undefined) {
      throw new PushError('too_many_bindings', `a user may be bound to at most ${max} topics (maxTopicsPerConnection)`);
    }
    await this.mirror(() => this.redis.sadd(this.subjects.bindingsKey(app.id, user), topic));
    this.tell(app.id, user, { op: 'bind', topic });
    return { topic, created: r.created, bindings: r.count };
  }

  /** Unbinds: the user's connections leave the topic (even one a client had subscribed to itself). */
  async unbind(app: AppRecord, user: string, topic: string): Promise<{ topic: string; removed: boolean }> {
    BindingService.topic(topic);
    const removed = await this.repo.remove(app.id, user, topic);
    await this.mirror(() => this.redis.srem(this.subjects.bindingsKey(app.id, user), topic));
    this.tell(app.id, user, { op: 'unbind', topic });
    return { topic, removed };
  }

  /** The user's bound topics (from Postgres, the record). */
  list(app: AppRecord, user: string): Promise<string[]> {
    return this.repo.list(app.id, user);
  }

  private async mirror(write: () => Promise<number>): Promise<void> {
    try {
      await write();
    } catch (cause) {
      throw new PushError('store_unavailable', 'the bindings mirror (Redis) is unavailable; retry the request', {
        cause,
      });
    }
  }

  private tell(app: string, user: string, command: BindCommand): void {
    this.nc.publish(this.subjects.control(app, user), JSON.stringify(command));
  }
}
