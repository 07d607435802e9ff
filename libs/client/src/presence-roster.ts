/** A user subscribed to a presence topic (docs/sdk.md#presence). */
export interface PresenceMember {
  user: string;
  /** The device (token `dev`) of the user's first connection on the topic, when known. */
  device?: string;
  /** When that connection subscribed, epoch ms, when known. */
  since?: number;
}

/** A `join` (a member) or a `leave` (a user id), in the order the edge sent them. */
type Change = { join: PresenceMember } | { leave: string };

/**
 * The member list of one presence topic, kept from a fetched snapshot plus the `join`/`leave`
 * frames. The frames carry no sequence, so the snapshot cannot say which of them it already
 * holds; but each frame states a user's latest presence, so the list is right whatever the
 * overlap: frames that arrive while the snapshot is fetched wait, and are applied over it in
 * order (a user's last frame wins, a user with none keeps the snapshot's answer). Applying a
 * frame the snapshot already reflects changes nothing: a join of a member, a leave of a non-member.
 */
export class PresenceRoster {
  private readonly list = new Map<string, PresenceMember>();
  /** Frames received since the fetch began; undefined once the list is ready. */
  private waiting: Change[] | undefined = [];

  /** Whether a snapshot was applied since the last `reset` (the list is worth showing). */
  get ready(): boolean {
    return this.waiting === undefined;
  }

  members(): PresenceMember[] {
    return [...this.list.values()];
  }

  /** A new subscription (first, or after a reconnect): frames wait for the next snapshot. */
  reset(): void {
    this.waiting = [];
  }

  /**
   * The snapshot arrived: the list is it, with the frames received meanwhile applied in order.
   * `self` (this client's user) is a member however the snapshot and frames raced: it is subscribed.
   */
  fetched(snapshot: PresenceMember[], self: string | undefined): void {
    const waiting = this.waiting ?? [];
    this.waiting = undefined;
    this.list.clear();
    for (const m of snapshot) if (!this.list.has(m.user)) this.list.set(m.user, m);
    for (const change of waiting) this.apply(change);
    if (self !== undefined && !this.list.has(self)) this.list.set(self, { user: self });
  }

  /** A `join` frame: true when it added a member (the list is ready and the user was not in it). */
  join(member: PresenceMember): boolean {
    return this.change({ join: member });
  }

  /** A `leave` frame: true when it removed a member. The own user (`self`) never leaves while subscribed. */
  leave(user: string, self: string | undefined): boolean {
    return user !== self && this.change({ leave: user });
  }

  private change(c: Change): boolean {
    if (this.waiting !== undefined) {
      this.waiting.push(c);
      return false;
    }
    return this.apply(c);
  }

  private apply(c: Change): boolean {
    if ('join' in c) {
      if (this.list.has(c.join.user)) return false;
      this.list.set(c.join.user, c.join);
      return true;
    }
    return this.list.delete(c.leave);
  }
}

/**
 * Reads what a `fetchMembers` callback gave: the center's occupancy answer as is
 * (`{ members: [{ user, device, conn, since }, ...] }`, one entry per connection) or an array of
 * members; one entry per user (the earliest connection's), in the order given.
 * Throws a TypeError for anything else (the subscription reports it as `bad_members`).
 */
export function parseMembers(value: unknown): PresenceMember[] {
  const list: unknown = Array.isArray(value) ? value : (value as { members?: unknown } | null)?.members;
  if (!Array.isArray(list)) throw new TypeError('expected an array of members or { members: [...] }');
  const byUser = new Map<string, PresenceMember>();
  for (const e of list as unknown[]) {
    const m = (typeof e === 'string' ? { user: e } : e) as { user?: unknown; device?: unknown; since?: unknown };
    if (typeof m !== 'object' || m === null || typeof m.user !== 'string') {
      throw new TypeError('a member has no string `user`');
    }
    const member: PresenceMember = {
      user: m.user,
      ...(typeof m.device === 'string' ? { device: m.device } : {}),
      ...(typeof m.since === 'number' ? { since: m.since } : {}),
    };
    const had = byUser.get(m.user);
    if (had === undefined || (member.since !== undefined && (had.since === undefined || member.since < had.since))) {
      byUser.set(m.user, member);
    }
  }
  return [...byUser.values()];
}
