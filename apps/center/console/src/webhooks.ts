import { api, appPath } from './api.js';
import { message } from './apps.js';
import { announce, fill, h, num } from './dom.js';
import type { View } from './main.js';
import type { DeadLetter, Summary, Webhook } from './types.js';

/** Webhook endpoints with what waits for them, their dead letters, replay and purge. */
export function webhooksView(main: HTMLElement, app: string): View {
  const base = `${appPath(app)}/webhooks`;
  const list = h('div', {}, 'loading…');
  const out = h('p', { role: 'status', id: 'webhook-status' });
  const load = async (): Promise<void> => {
    try {
      const [{ webhooks }, summary] = await Promise.all([
        api<{ webhooks: Webhook[] }>('GET', base),
        api<Summary>('GET', `${appPath(app)}/summary`),
      ]);
      const figures = new Map(summary.apps.find((a) => a.id === app)?.webhooks.map((w) => [w.id, w]) ?? []);
      if (webhooks.length === 0) return fill(list, h('p', { class: 'muted' }, 'No webhook endpoints in this app.'));
      const sections = await Promise.all(
        webhooks.map(async (w) => {
          const epBase = `${base}/${encodeURIComponent(w.id)}`;
          const { deadLetters } = await api<{ deadLetters: DeadLetter[] }>('GET', `${epBase}/dead-letters?limit=20`);
          const f = figures.get(w.id);
          const act = (label: string, cls: string, run: () => Promise<string>) =>
            h(
              'button',
              {
                type: 'button',
                class: cls,
                onclick: () => {
                  run().then(
                    (text) => {
                      out.textContent = text;
                      announce(text);
                      void load();
                    },
                    (err: unknown) => (out.textContent = message(err)),
                  );
                },
              },
              label,
            );
          return h(
            'section',
            { class: 'card', 'data-webhook': w.id },
            h('h2', {}, h('code', {}, w.url), w.disabled ? h('span', { class: 'badge warn' }, ' disabled') : null),
            h(
              'p',
              {},
              `id ${w.id} · events: ${w.events.join(', ') || '–'} · kinds: ${w.kinds.join(', ') || '–'} · waiting: `,
              h('strong', { 'data-col': 'waiting' }, num(f?.waiting)),
              ' · dead letters: ',
              h('strong', { 'data-col': 'dead-letters' }, num(f?.deadLetters)),
            ),
            h(
              'div',
              { class: 'row' },
              act(`Replay dead letters of ${w.id}`, 'primary', async () => {
                const r = await api<{ replayed: number }>('POST', `${epBase}/dead-letters/replay`);
                return `Replayed ${r.replayed} dead letter(s) of ${w.id}.`;
              }),
              act(`Purge dead letters of ${w.id}`, 'danger', async () => {
                if (!window.confirm(`Drop every dead letter of ${w.url}? They cannot be replayed afterwards.`))
                  return 'Nothing purged.';
                const r = await api<{ purged: number }>('DELETE', `${epBase}/dead-letters`);
                return `Purged ${r.purged} dead letter(s) of ${w.id}.`;
              }),
            ),
            deadLetters.length === 0
              ? h('p', { class: 'muted' }, 'No dead letters.')
              : h(
                  'details',
                  {},
                  h('summary', {}, `First ${deadLetters.length} dead letter(s)`),
                  h(
                    'ol',
                    {},
                    deadLetters.map((d) => h('li', {}, h('pre', {}, JSON.stringify(d, null, 1)))),
                  ),
                ),
          );
        }),
      );
      fill(list, sections);
    } catch (err) {
      fill(list, h('p', { class: 'error', role: 'alert' }, message(err)));
    }
  };
  fill(
    main,
    h('h1', {}, 'Webhooks of ', h('code', {}, app)),
    h(
      'p',
      { class: 'note' },
      'Waiting: events not yet delivered to the endpoint (pending or in flight), a count, not a time.',
    ),
    h('div', { class: 'row' }, h('button', { type: 'button', onclick: () => void load() }, 'Refresh')),
    out,
    list,
  );
  void load();
  return { stop: () => undefined };
}
