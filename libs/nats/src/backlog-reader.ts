import { encodeToken } from '@push/protocol';
import { LAST_SEQS_MAX_USERS, type InboxMessage, type InboxStore } from './inbox-store.js';

/** One connection's backlog read: the user's messages from a sequence on, within bounds. */
export interface BacklogBatch {
  messages: InboxMessage[];
  /** True when more of the user's messages may follow the last one returned. */
  more: boolean;
}

/** What a BacklogReader needs of the store (InboxStore implements it). */
export type BacklogStore = Pick<InboxStore, 'readBatch' | 'readRange' | 'lastSeqs'>;

export interface BacklogReaderOptions {
  /**
   * Reads of one app waiting together from which one shared pass over the stream replaces the
   * per-user reads (default 64). See BacklogReader for why.
   */
  sweepMinReaders?: number;
  /**
   * Per-user reads in flight at once, over all apps (default 8). The server serves them one
   * after another; the rest wait here, where a crowd of them becomes one shared pass.
   */
  maxReadsInFlight?: number;
  /** Messages per request of a shared pass (default 5,000). */
  sweepBatch?: number;
  /** Bytes per request of a shared pass (default 8 MiB). */
  sweepMaxBytes?: number;
  /** Counts shared passes and the per-user reads they replaced (metrics). */
  onSweep?: (readers: number) => void;
  /**
   * Counts probes (`lastSeqs` requests), the reads they asked about and how many of those they
   * answered at once with "nothing stored" (metrics).
   */
  onProbe?: (readers: number, answered: number) => void;
}

/** Probes of one app in flight at once; probes asked for meanwhile wait and go out together. */
const PROBES_IN_FLIGHT = 2;

/**
 * Full probes (LAST_SEQS_MAX_USERS users) of one app in flight at once: a full one has nothing
 * left to gather, so it goes out as soon as it is full instead of at the end of the event-loop
 * turn. Under a connect storm a turn of the edge's loop lasts hundreds of milliseconds (every
 * upgrade of the turn runs in it), and two probes per turn held 19,000 reconnecting users'
 * first reads, and the live messages they buffered meanwhile, for up to 4.8 s.
 */
const FULL_PROBES_IN_FLIGHT = 16;

interface Waiter {
  /** The reading connection (its identity lets it rejoin a pass it has kept up with). */
  key: object | undefined;
  user: string;
  userToken: string;
  fromSeq: number;
  max: number;
  maxBytes: number;
  messages: InboxMessage[];
  bytes: number;
  done: boolean;
  resolve: (batch: BacklogBatch) => void;
  reject: (err: unknown) => void;
}

/** A shared pass under way over one app's stream. */
interface Pass {
  /** Next sequence the pass reads. */
  position: number;
  byUser: Map<string, Waiter[]>;
  open: number;
  /**
   * Readers handed every message of their user below the pass position, by key, with the last
   * sequence handed and their user: such a reader may come back into the pass (nothing of its
   * user lies between what it was handed and the position). One whose user has a message in a
   * later answer of the pass, read while it was away, loses that right: it reads on by itself.
   */
  handed: Map<object, { seq: number; userToken: string }>;
}

interface AppState {
  waiting: Waiter[];
  scheduled: boolean;
  pass: Pass | undefined;
  /** Reads that first ask whether their user has anything stored (see `read`'s `probe`). */
  probing: Waiter[];
  probeScheduled: boolean;
  probesInFlight: number;
}

/**
 * Reads connections' backlogs, one batched Direct Get per user per window, except when many
 * connections of one app wait at once (a reconnect storm, an edge restart): then ONE pass over
 * the app's stream from the lowest sequence they wait for serves them all.
 *
 * Why: nats-server finds a user's next message by scanning the stream's blocks from the cursor
 * past every other user's messages (its per-block index knows where a subject starts and ends,
 * not where each of its messages is). With 10,000 users' messages interleaved, each message read
 * costs the server about a millisecond of scanning (measured on nats-server 2.15.1: 100-message
 * batches of one user took 84-191 ms), so 10,000 users reading 100 messages each would take many
 * minutes, while reading the same million messages in stream order costs microseconds each. A
 * pass hands each waiting reader its own user's messages (in order, within its bounds) and drops
 * the rest, so it pays off only when many readers wait; below `sweepMinReaders` each reader gets
 * its own per-user read.
 *
 * Same contract either way: a reader gets its user's messages with sequence >= fromSeq, in
 * sequence order, at most `max` and about `maxBytes`, and `more` when others may follow.
 *
 * Most connecting users have nothing stored, and a read that finds nothing still costs the server
 * a scan. So a read marked `probe` (a connection's first read, when nothing says a backlog waits)
 * first joins a probe: ONE `multi_last` Direct Get over the subjects of up to 512 waiting users
 * (`InboxStore.lastSeqs`), which the server answers from its per-subject index without reading
 * the stream. A user whose last sequence is below `fromSeq` (or who has none) is answered "nothing"
 * at once; the others, and all of them when the probe fails or its answer was cut, go on to the
 * reads above. A probe goes out as soon as it is full (up to FULL_PROBES_IN_FLIGHT at once);
 * one not full waits for the end of the event-loop turn, and while PROBES_IN_FLIGHT of the app
 * are out, so that under a connect storm each gathers every read that came meanwhile.
 */
export class BacklogReader {
  private readonly apps = new Map<string, AppState>();
  private readonly sweepMinReaders: number;
  private readonly maxReadsInFlight: number;
  private inFlight = 0;
  private readonly sweepBatch: number;
  private readonly sweepMaxBytes: number;

  constructor(
    private readonly store: BacklogStore,
    private readonly opts: BacklogReaderOptions = {},
  ) {
    this.sweepMinReaders = opts.sweepMinReaders ?? 64;
    this.maxReadsInFlight = opts.maxReadsInFlight ?? 8;
    this.sweepBatch = opts.sweepBatch ?? 5000;
    this.sweepMaxBytes = opts.sweepMaxBytes ?? 8 * 1024 * 1024;
  }

  /** The user's messages from `fromSeq` on; rejects with PushError `store_unavailable`. */
  read(
    app: string,
    user: string,
    fromSeq: number,
    bounds: { max: number; maxBytes: number },
    key?: object,
    probe = false,
  ): Promise<BacklogBatch> {
    return new Promise((resolve, reject) => {
      const st = this.state(app);
      const w: Waiter = {
        key,
        user,
        userToken: encodeToken(user),
        fromSeq,
        max: Math.max(1, Math.floor(bounds.max)),
        maxBytes: Math.max(1, Math.floor(bounds.maxBytes)),
        messages: [],
        bytes: 0,
        done: false,
        resolve,
        reject,
      };
      if (probe) {
        st.probing.push(w);
        this.probeNow(app, st);
        return;
      }
      // A reader that consumed all a running pass handed it rides on with the pass.
      const pass = st.pass;
      const handed = key === undefined ? undefined : pass?.handed.get(key);
      if (pass !== undefined && handed !== undefined && fromSeq > handed.seq) {
        pass.handed.delete(key as object);
        addTo(pass, w);
        return;
      }
      st.waiting.push(w);
      this.schedule(app, st);
    });
  }

  private state(app: string): AppState {
    let st = this.apps.get(app);
    if (st === undefined) {
      st = { waiting: [], scheduled: false, pass: undefined, probing: [], probeScheduled: false, probesInFlight: 0 };
      this.apps.set(app, st);
    }
    return st;
  }

  /** Sends what waits to be probed when it fills a probe; the rest waits for `scheduleProbe`. */
  private probeNow(app: string, st: AppState): void {
    while (st.probing.length >= LAST_SEQS_MAX_USERS && st.probesInFlight < FULL_PROBES_IN_FLIGHT) this.probe(app, st);
    if (st.probing.length > 0) this.scheduleProbe(app, st);
  }

  /** Probes asked for in one event-loop turn (or while PROBES_IN_FLIGHT are out) go out together. */
  private scheduleProbe(app: string, st: AppState): void {
    if (st.probeScheduled || st.probesInFlight >= PROBES_IN_FLIGHT) return;
    st.probeScheduled = true;
    setImmediate(() => {
      st.probeScheduled = false;
      while (st.probing.length > 0 && st.probesInFlight < PROBES_IN_FLIGHT) this.probe(app, st);
    });
  }

  /** Sends one probe for up to LAST_SEQS_MAX_USERS users' waiting reads. */
  private probe(app: string, st: AppState): void {
    const byUser = new Map<string, Waiter[]>();
    const users: string[] = [];
    let taken = 0;
    for (const w of st.probing) {
      const list = byUser.get(w.userToken);
      if (list !== undefined) list.push(w);
      else if (users.length < LAST_SEQS_MAX_USERS) {
        byUser.set(w.userToken, [w]);
        users.push(w.user);
      } else break;
      taken++;
    }
    const batch = st.probing.splice(0, taken);
    st.probesInFlight++;
    this.store
      .lastSeqs(app, users)
      .then(
        ({ last, complete }) => {
          let answered = 0;
          for (const [token, list] of byUser) {
            const seq = last.get(token);
            for (const w of list) {
              if (seq === undefined ? complete : seq < w.fromSeq) {
                answered++;
                w.resolve({ messages: [], more: false });
              } else st.waiting.push(w);
            }
          }
          this.opts.onProbe?.(batch.length, answered);
        },
        () => {
          // The probe is only a shortcut: the reads themselves say whether the store answers.
          st.waiting.push(...batch);
          this.opts.onProbe?.(batch.length, 0);
        },
      )
      .finally(() => {
        st.probesInFlight--;
        if (st.waiting.length > 0) this.schedule(app, st);
        if (st.probing.length > 0) this.probeNow(app, st);
        this.forget(app, st);
      });
  }

  /** Drops an app's state once nothing of it waits or runs. */
  private forget(app: string, st: AppState): void {
    if (
      st.waiting.length === 0 &&
      st.pass === undefined &&
      !st.scheduled &&
      st.probing.length === 0 &&
      st.probesInFlight === 0 &&
      !st.probeScheduled
    ) {
      this.apps.delete(app);
    }
  }

  /** Reads gathered in one event-loop turn are dispatched together (a pass needs them all). */
  private schedule(app: string, st: AppState): void {
    if (st.scheduled || st.pass !== undefined) return;
    st.scheduled = true;
    setImmediate(() => this.dispatch(app, st));
  }

  private dispatch(app: string, st: AppState): void {
    st.scheduled = false;
    if (st.pass !== undefined) return; // dispatched again when the pass ends
    if (st.waiting.length >= this.sweepMinReaders) {
      const pass: Pass = { position: Number.POSITIVE_INFINITY, byUser: new Map(), open: 0, handed: new Map() };
      for (const w of st.waiting) {
        addTo(pass, w);
        pass.position = Math.min(pass.position, w.fromSeq);
      }
      this.opts.onSweep?.(st.waiting.length);
      st.waiting = [];
      st.pass = pass;
      this.sweep(app, pass)
        .catch((err: unknown) => {
          for (const list of pass.byUser.values()) for (const w of list) if (!w.done) w.reject(err);
        })
        .finally(() => {
          st.pass = undefined;
          // Reads that came during the pass start after it (they may wait for earlier messages).
          this.dispatch(app, st);
        });
      return;
    }
    while (st.waiting.length > 0 && this.inFlight < this.maxReadsInFlight) {
      const w = st.waiting.shift() as Waiter;
      this.inFlight++;
      this.store
        .readBatch(app, w.user, w.fromSeq, w)
        .then(w.resolve, w.reject)
        .finally(() => {
          this.inFlight--;
          this.pump();
        });
    }
    this.forget(app, st);
  }

  /** A per-user read ended: give its slot to whichever app has readers waiting. */
  private pump(): void {
    for (const [app, st] of this.apps) {
      if (this.inFlight >= this.maxReadsInFlight) return;
      if (!st.scheduled && st.pass === undefined && st.waiting.length > 0) this.dispatch(app, st);
    }
  }

  /**
   * Reads the stream from the pass position to its end, handing each open reader its user's
   * messages. A reader is answered when full (with `more`), at the end of each request of the
   * pass when it has messages (with `more`: it may come back into the pass, see `read`), and at
   * the end of the stream (without `more`).
   */
  private async sweep(app: string, pass: Pass): Promise<void> {
    for (;;) {
      // Only the messages of users with a reader in the pass are decoded and returned. A reader
      // that rejoined between that choice and now had its messages of this answer skipped: it
      // is answered with what it has, and reads on from its own cursor.
      const skipped = new Set<string>();
      const { messages, userTokens, last, more } = await this.store.readRange(
        app,
        pass.position,
        { max: this.sweepBatch, maxBytes: this.sweepMaxBytes },
        (token) => {
          if (pass.byUser.has(token)) return true;
          skipped.add(token);
          return false;
        },
      );
      for (const token of skipped) {
        const readers = pass.byUser.get(token);
        if (readers !== undefined) for (const w of readers) if (!w.done) settle(pass, w, true);
      }
      // Readers away while this answer passed messages of their user by may not come back in.
      if (skipped.size > 0) for (const [key, h] of pass.handed) if (skipped.has(h.userToken)) pass.handed.delete(key);
      if (last > 0) pass.position = last + 1;
      for (let i = 0; i < messages.length; i++) {
        const m = messages[i] as InboxMessage;
        const readers = pass.byUser.get(userTokens[i] ?? '');
        if (readers === undefined) continue;
        for (const w of readers) {
          if (w.done || m.seq < w.fromSeq) continue;
          if (w.messages.length > 0 && w.bytes + m.bytes.length > w.maxBytes) {
            settle(pass, w, true); // the rest of its messages come on its next read
            continue;
          }
          w.messages.push(m);
          w.bytes += m.bytes.length;
          if (w.messages.length >= w.max) settle(pass, w, true);
        }
      }
      if (!more || last === 0) break;
      // Progress: readers with messages get them now and may come back for the rest.
      for (const [token, readers] of pass.byUser) {
        const open = readers.filter((w) => !w.done);
        for (const w of open) {
          if (w.messages.length === 0) continue;
          const last = (w.messages.at(-1) as InboxMessage).seq;
          settle(pass, w, true);
          if (w.key !== undefined) pass.handed.set(w.key, { seq: last, userToken: token });
        }
        if (open.every((w) => w.done)) pass.byUser.delete(token);
      }
      if (pass.open === 0 && pass.handed.size === 0) return;
    }
    // The end of the stream: every reader still open has all there is.
    for (const readers of pass.byUser.values()) for (const w of readers) if (!w.done) settle(pass, w, false);
  }
}

function addTo(pass: Pass, w: Waiter): void {
  const list = pass.byUser.get(w.userToken);
  if (list === undefined) pass.byUser.set(w.userToken, [w]);
  else list.push(w);
  pass.open++;
}

function settle(pass: Pass, w: Waiter, more: boolean): void {
  w.done = true;
  pass.open--;
  w.resolve({ messages: w.messages, more });
}
