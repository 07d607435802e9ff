import { api, appPath } from './api.js';
import { message } from './apps.js';
import { announce, fill, h, num } from './dom.js';
import type { View } from './main.js';
import type { Job } from './types.js';

/** Fan-out jobs with their progress, and cancel. */
export function jobsView(main: HTMLElement, app: string): View {
  const base = `${appPath(app)}/jobs`;
  const list = h('div', {}, 'loading…');
  const out = h('p', { role: 'status' });
  let stopped = false;
  let timer: number | undefined;
  const load = async (): Promise<void> => {
    try {
      const { jobs } = await api<{ jobs: Job[] }>('GET', base);
      fill(
        list,
        jobs.length === 0
          ? h('p', { class: 'muted' }, 'No fan-out jobs in this app.')
          : h(
              'table',
              {},
              h('caption', { class: 'visually-hidden' }, 'Fan-out jobs'),
              h(
                'thead',
                {},
                h(
                  'tr',
                  {},
                  ['job', 'state', 'progress', 'written', 'skipped', 'failed', 'total', 'created', ''].map((t) =>
                    h('th', { scope: 'col' }, t),
                  ),
                ),
              ),
              h(
                'tbody',
                {},
                jobs.map((j) =>
                  h(
                    'tr',
                    { 'data-job': j.id },
                    h('td', {}, h('code', {}, j.id)),
                    h('td', {}, j.state),
                    h(
                      'td',
                      {},
                      h('progress', {
                        class: 'progress',
                        max: 1,
                        value: j.progress,
                        'aria-label': `progress of ${j.id}`,
                      }),
                      ` ${Math.round(j.progress * 100)}%`,
                    ),
                    h('td', { class: 'num' }, num(j.written)),
                    h('td', { class: 'num' }, num(j.skipped)),
                    h('td', { class: 'num' }, num(j.failed)),
                    h('td', { class: 'num' }, num(j.total)),
                    h('td', {}, new Date(j.createdAt).toLocaleString()),
                    h(
                      'td',
                      {},
                      j.state === 'open' || j.state === 'queued' || j.state === 'running'
                        ? h(
                            'button',
                            {
                              type: 'button',
                              class: 'danger',
                              onclick: () => {
                                api('POST', `${base}/${encodeURIComponent(j.id)}/cancel`).then(
                                  () => {
                                    out.textContent = `Job ${j.id} cancelled.`;
                                    announce(out.textContent);
                                    void load();
                                  },
                                  (err: unknown) => (out.textContent = message(err)),
                                );
                              },
                            },
                            `Cancel ${j.id}`,
                          )
                        : null,
                    ),
                  ),
                ),
              ),
            ),
      );
    } catch (err) {
      fill(list, h('p', { class: 'error', role: 'alert' }, message(err)));
    }
    if (!stopped) timer = window.setTimeout(() => void load(), 2000);
  };
  fill(main, h('h1', {}, 'Fan-out jobs of ', h('code', {}, app)), out, list);
  void load();
  return {
    stop: () => {
      stopped = true;
      window.clearTimeout(timer);
    },
  };
}
