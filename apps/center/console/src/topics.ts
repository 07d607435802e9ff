import { api, appPath } from './api.js';
import { message } from './apps.js';
import { announce, fill, h, num, since, table } from './dom.js';
import { go, type View } from './main.js';

interface TopicView {
  topic: string;
  presence: boolean;
  connections: number;
  users: number;
  members?: Array<{ user: string; device: string; conn: string; since: number }>;
}

/** A topic: occupancy, presence members, publish a test message. */
export function topicsView(main: HTMLElement, app: string, topic: string | undefined): View {
  const topicIn = h('input', { id: 'topic-name', autocomplete: 'off', value: topic ?? '', required: true });
  const lookup = h(
    'form',
    { class: 'row', role: 'search' },
    h('label', {}, 'Topic', topicIn),
    h('button', { type: 'submit', class: 'primary' }, 'Open'),
  );
  lookup.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (topicIn.value.trim() !== '') go(`#/app/${encodeURIComponent(app)}/topics/${encodeURIComponent(topicIn.value)}`);
  });
  const note = h(
    'p',
    { class: 'note' },
    'The broadcast topic, which every connection of the app receives, is _all; other names starting with _ are reserved.',
  );
  if (topic === undefined) {
    fill(main, h('h1', {}, 'Topics of ', h('code', {}, app)), lookup, note);
    topicIn.focus();
    return { stop: () => undefined };
  }
  const base = `${appPath(app)}/topics/${encodeURIComponent(topic)}`;
  const view = h('div', {}, 'loading…');
  const dataIn = h('textarea', { id: 'topic-data', rows: 3 }, '{"hello":"topic"}');
  const out = h('p', { role: 'status' });
  const form = h(
    'form',
    { class: 'stack', 'aria-labelledby': 'h-publish' },
    h('label', {}, 'Data (JSON, or text)', dataIn),
    h('div', {}, h('button', { type: 'submit', class: 'primary' }, 'Publish test message')),
    out,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    let data: unknown;
    try {
      data = JSON.parse(dataIn.value) as unknown;
    } catch {
      data = dataIn.value;
    }
    api<{ seq: number }>('POST', `${base}/messages`, { data }).then(
      (r) => {
        out.textContent = `Stored as seq ${r.seq} at ${new Date().toLocaleTimeString()}.`;
        announce(out.textContent);
      },
      (err: unknown) => (out.textContent = message(err)),
    );
  });
  let stopped = false;
  let timer: number | undefined;
  let tailTimer: number | undefined;
  // Live tail: the topic's last sequence first, then what is stored after it, every second.
  const tail = h('ol', { id: 'topic-tail', reversed: true, 'aria-live': 'polite' });
  const tailState = h('p', { class: 'note' }, 'starting…');
  let last: number | undefined;
  let paused = false;
  const pause = h(
    'button',
    {
      type: 'button',
      'aria-pressed': 'false',
      onclick: () => {
        paused = !paused;
        pause.setAttribute('aria-pressed', String(paused));
        pause.textContent = paused ? 'Resume tail' : 'Pause tail';
      },
    },
    'Pause tail',
  );
  const follow = async (): Promise<void> => {
    if (!paused) {
      try {
        const q = last === undefined ? '' : `?after=${last}`;
        const r = await api<{
          last: number;
          messages: Array<{ seq: number; ts: number; data?: unknown; b64?: string }>;
        }>('GET', `${base}/messages${q}`);
        for (const m of r.messages) {
          tail.prepend(
            h(
              'li',
              { 'data-topic-seq': String(m.seq) },
              `seq ${m.seq} · ${new Date(m.ts).toLocaleTimeString()} · `,
              h('code', {}, m.b64 !== undefined ? `(bytes, base64) ${m.b64}` : JSON.stringify(m.data)),
            ),
          );
        }
        while (tail.children.length > 100) tail.lastElementChild?.remove();
        last = r.last;
        tailState.textContent = `Following from stream sequence ${r.last}: new messages appear at the top.`;
      } catch (err) {
        tailState.textContent = `Tail stopped: ${message(err)}`;
      }
    }
    if (!stopped) tailTimer = window.setTimeout(() => void follow(), 1000);
  };
  const load = async (): Promise<void> => {
    try {
      const t = await api<TopicView>('GET', `${base}/presence`);
      fill(
        view,
        h(
          'p',
          {},
          'Subscribed connections: ',
          h('strong', { id: 'topic-connections' }, num(t.connections)),
          ' · users: ',
          num(t.users),
        ),
        t.presence
          ? table(
              'Presence members',
              ['user', 'device', 'since'],
              (t.members ?? []).map((m) => [m.user, m.device || '–', since(m.since)]),
            )
          : h(
              'p',
              { class: 'note' },
              'Not a presence topic (see the app’s presenceTopics setting): members are not listed.',
            ),
      );
    } catch (err) {
      fill(view, h('p', { class: 'error', role: 'alert' }, message(err)));
    }
    if (!stopped) timer = window.setTimeout(() => void load(), 2000);
  };
  fill(
    main,
    h('h1', {}, 'Topic ', h('code', {}, topic), ' of ', h('code', {}, app)),
    lookup,
    h('section', {}, h('h2', {}, 'Occupancy and presence'), view),
    h('section', {}, h('h2', { id: 'h-publish' }, 'Publish'), form),
    h('section', {}, h('h2', {}, 'Live tail'), h('div', { class: 'row' }, pause), tailState, tail),
    note,
  );
  void load();
  void follow();
  return {
    stop: () => {
      stopped = true;
      window.clearTimeout(timer);
      window.clearTimeout(tailTimer);
    },
  };
}
