import { ApiError, api, appPath } from './api.js';
import { message } from './apps.js';
import { announce, fill, h, num, since, table } from './dom.js';
import { go, type View } from './main.js';
import type { UserStatus } from './types.js';

const POLL_MS = 2000;
/** How often a pushed message is checked for its ack, and for how long at most, ms. */
const ACK_POLL_MS = 300;
const ACK_WAIT_MS = 120_000;

/** Parses the test message: JSON when it parses, else the text as a JSON string. */
function testData(raw: string): unknown {
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return raw;
  }
}

/** Look a user up: connections, pending, recent events; push a test message and watch its ack; kick. */
export function userView(main: HTMLElement, app: string, user: string | undefined): View {
  const userIn = h('input', { id: 'user-id', autocomplete: 'off', value: user ?? '', required: true });
  const lookup = h(
    'form',
    { class: 'row', role: 'search' },
    h('label', {}, 'User id', userIn),
    h('button', { type: 'submit', class: 'primary' }, 'Look up'),
  );
  lookup.addEventListener('submit', (ev) => {
    ev.preventDefault();
    // As typed: spaces around an id are part of it (docs/api.md, Ids).
    if (userIn.value.trim() !== '') go(`#/app/${encodeURIComponent(app)}/users/${encodeURIComponent(userIn.value)}`);
  });
  if (user === undefined) {
    fill(main, h('h1', {}, 'Users of ', h('code', {}, app)), lookup);
    userIn.focus();
    return { stop: () => undefined };
  }
  if (user === '.' || user === '..') {
    // A browser resolves these as steps of the URL's path, encoded or not (docs/api.md, Ids).
    fill(
      main,
      h('h1', {}, 'Users of ', h('code', {}, app)),
      lookup,
      h(
        'p',
        { class: 'error', role: 'alert' },
        `A browser cannot name the user "${user}" in a URL path: use the NATS API (push.api.user, push.api.kick) or an HTTP client that sends the path as it is (curl --path-as-is).`,
      ),
    );
    return { stop: () => undefined };
  }
  const base = `${appPath(app)}/users/${encodeURIComponent(user)}`;
  const status = h('div', {}, 'loading…');
  const events = h('div', {}, 'loading…');
  const pushLog = h('ol', { id: 'push-log', 'aria-live': 'polite' });
  const dataIn = h('textarea', { id: 'push-data', rows: 3 }, '{"hello":"from the console"}');
  const pushError = h('p', { class: 'error', role: 'alert' });
  const pushForm = h(
    'form',
    { class: 'stack', 'aria-labelledby': 'h-push' },
    h('label', {}, 'Data (JSON, or text)', dataIn),
    pushError,
    h('div', {}, h('button', { type: 'submit', class: 'primary' }, 'Push test message')),
  );
  const kickOut = h('p', { role: 'status' });
  let stopped = false;
  const timers = new Set<number>();
  const later = (fn: () => void, ms: number): void => {
    const t = window.setTimeout(() => {
      timers.delete(t);
      if (!stopped) fn();
    }, ms);
    timers.add(t);
  };

  const watchAck = (seq: number, state: HTMLElement, started: number): void => {
    api<{ stored: boolean }>('GET', `${base}/inbox/${seq}`).then(
      (r) => {
        if (!r.stored) {
          fill(
            state,
            h('span', { class: 'badge ok', 'data-acked': String(seq) }, `acked after ${Date.now() - started} ms`),
          );
          announce(`Message ${seq} acked`);
          return;
        }
        if (Date.now() - started > ACK_WAIT_MS) {
          fill(
            state,
            h('span', { class: 'badge warn' }, 'still pending: no device acked it yet; it waits in the inbox'),
          );
          return;
        }
        later(() => watchAck(seq, state, started), ACK_POLL_MS);
      },
      (err: unknown) => fill(state, h('span', { class: 'error' }, message(err))),
    );
  };
  pushForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    pushError.textContent = '';
    api<{ seq: number; duplicate: boolean }>('POST', `${appPath(app)}/push`, {
      user,
      data: testData(dataIn.value),
    }).then(
      (r) => {
        const state = h('span', { class: 'badge' }, 'waiting for an ack…');
        pushLog.prepend(
          h('li', { 'data-seq': String(r.seq) }, `seq ${r.seq} stored at ${new Date().toLocaleTimeString()} `, state),
        );
        announce(`Message ${r.seq} stored`);
        watchAck(r.seq, state, Date.now());
      },
      (err: unknown) => {
        pushError.textContent = message(err);
        dataIn.setAttribute('aria-invalid', 'true');
      },
    );
  });

  const loadStatus = async (): Promise<void> => {
    try {
      const s = await api<UserStatus>('GET', base);
      fill(
        status,
        h(
          'p',
          {},
          s.online
            ? h('span', { class: 'badge ok', id: 'user-online' }, 'online')
            : h('span', { class: 'badge', id: 'user-online' }, 'offline'),
          ' · pending: ',
          h('strong', { id: 'user-pending' }, num(s.pending)),
        ),
        h(
          'div',
          { id: 'user-connections' },
          table(
            'Connections',
            ['edge', 'device', 'since', 'connection'],
            s.connections.map((c) => [c.edge, c.device || '–', since(c.since), h('code', {}, c.conn)]),
          ),
        ),
      );
    } catch (err) {
      fill(status, h('p', { class: 'error', role: 'alert' }, message(err)));
    }
    later(() => void loadStatus(), POLL_MS);
  };
  const loadEvents = async (): Promise<void> => {
    try {
      const r = await api<{ events: Array<Record<string, unknown>> }>('GET', `${base}/events?limit=20`);
      fill(
        events,
        table(
          'Recent events',
          ['time', 'type', 'device', 'detail'],
          r.events.map((e) => {
            const { type, time, device, id: _id, app: _app, user: _user, conn: _conn, edge: _edge, ...rest } = e;
            return [
              typeof time === 'string' || typeof time === 'number' ? new Date(time).toLocaleTimeString() : '–',
              String(type),
              typeof device === 'string' ? device : '–',
              h('code', {}, JSON.stringify(rest)),
            ];
          }),
        ),
      );
    } catch (err) {
      fill(events, h('p', { class: 'error' }, err instanceof ApiError ? message(err) : String(err)));
    }
    later(() => void loadEvents(), 5000);
  };

  fill(
    main,
    h('h1', {}, 'User ', h('code', {}, user), ' of ', h('code', {}, app)),
    lookup,
    h('section', { 'aria-labelledby': 'h-status' }, h('h2', { id: 'h-status' }, 'Connections'), status),
    h('section', { 'aria-labelledby': 'h-push' }, h('h2', { id: 'h-push' }, 'Push a test message'), pushForm, pushLog),
    h(
      'section',
      { 'aria-labelledby': 'h-kick' },
      h('h2', { id: 'h-kick' }, 'Kick'),
      h(
        'button',
        {
          type: 'button',
          class: 'danger',
          onclick: () => {
            api<{ sent: boolean; connections?: number }>('POST', `${base}/kick`).then(
              (r) => {
                kickOut.textContent = `Kick sent${r.connections !== undefined ? ` to ${r.connections} connection(s)` : ''}.`;
                announce(kickOut.textContent);
              },
              (err: unknown) => (kickOut.textContent = message(err)),
            );
          },
        },
        'Kick every connection of this user',
      ),
      kickOut,
    ),
    h(
      'section',
      { 'aria-labelledby': 'h-events' },
      h('h2', { id: 'h-events' }, 'Recent events'),
      h(
        'p',
        { class: 'note' },
        "From the app's last 500 events. Delivered and acked events appear only when the app's deliveryEvents setting is on.",
      ),
      events,
    ),
  );
  void loadStatus();
  void loadEvents();
  return {
    stop: () => {
      stopped = true;
      for (const t of timers) window.clearTimeout(t);
    },
  };
}
