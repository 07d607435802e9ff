import { ApiError, api } from './api.js';
import { announce, fill, h, num } from './dom.js';
import { go, refreshApps, type View } from './main.js';
import type { AppView, Settings } from './types.js';

const adminApp = (id: string): string => `/v1/admin/apps/${encodeURIComponent(id)}`;
const message = (err: unknown): string =>
  err instanceof ApiError ? `${err.message} (${err.code})` : err instanceof Error ? err.message : String(err);

/** A secret shown once (a new API key or signing secret), with a note that it is not shown again. */
function shownOnce(label: string, value: string): HTMLElement {
  return h(
    'div',
    { role: 'status' },
    h('p', {}, `${label} (shown this once; copy it now):`),
    h('p', { class: 'secret', 'data-secret': label }, value),
  );
}

/** The apps: list and create (admin). */
export function appsList(main: HTMLElement): View {
  const list = h('div', {}, 'loading…');
  const created = h('div');
  const idIn = h('input', { id: 'new-app-id', autocomplete: 'off', placeholder: 'generated when empty' });
  const nameIn = h('input', { id: 'new-app-name', autocomplete: 'off' });
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h(
    'form',
    { class: 'row', 'aria-labelledby': 'h-create' },
    h('label', {}, 'Id', idIn),
    h('label', {}, 'Name', nameIn),
    h('button', { class: 'primary', type: 'submit' }, 'Create app'),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    error.textContent = '';
    const body: Record<string, string> = {};
    if (idIn.value.trim() !== '') body['id'] = idIn.value; // as typed: spaces are part of an id
    if (nameIn.value.trim() !== '') body['name'] = nameIn.value.trim();
    api<{ app: AppView; apiKey: string }>('POST', '/v1/admin/apps', body).then(
      (r) => {
        fill(
          created,
          h('p', {}, 'Created ', h('a', { href: `#/apps/${encodeURIComponent(r.app.id)}` }, r.app.id)),
          shownOnce('API key', r.apiKey),
        );
        announce(`App ${r.app.id} created`);
        idIn.value = '';
        nameIn.value = '';
        void load();
        void refreshApps();
      },
      (err: unknown) => {
        error.textContent = message(err);
        idIn.setAttribute('aria-invalid', 'true');
        idIn.focus();
      },
    );
  });
  const load = async (): Promise<void> => {
    try {
      const r = await api<{ apps: AppView[] }>('GET', '/v1/admin/apps');
      fill(
        list,
        h(
          'table',
          {},
          h('caption', { class: 'visually-hidden' }, 'Apps'),
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['id', 'name', 'state', 'API keys', 'updated'].map((t) => h('th', { scope: 'col' }, t)),
            ),
          ),
          h(
            'tbody',
            {},
            r.apps.map((a) =>
              h(
                'tr',
                {},
                h('td', {}, h('a', { href: `#/apps/${encodeURIComponent(a.id)}` }, a.id)),
                h('td', {}, a.name),
                h(
                  'td',
                  {},
                  a.disabled
                    ? h('span', { class: 'badge warn' }, 'disabled')
                    : h('span', { class: 'badge ok' }, 'enabled'),
                ),
                h('td', { class: 'num' }, num(a.apiKeys.length)),
                h('td', {}, new Date(a.updatedAt).toLocaleString()),
              ),
            ),
          ),
        ),
      );
    } catch (err) {
      fill(list, h('p', { class: 'error', role: 'alert' }, message(err)));
    }
  };
  fill(
    main,
    h('h1', {}, 'Apps'),
    h('h2', { id: 'h-create' }, 'Create an app'),
    form,
    error,
    created,
    h('h2', {}, 'All apps'),
    list,
  );
  void load();
  return { stop: () => undefined };
}

/** The form field of one setting, by the type of its current value. */
function settingField(key: string, value: unknown): { el: HTMLElement; read: () => unknown; input: HTMLInputElement } {
  const id = `setting-${key}`;
  const err = h('span', { class: 'field-error', id: `${id}-error` });
  if (typeof value === 'boolean') {
    const input = h('input', { id, type: 'checkbox', name: key, checked: value, 'aria-describedby': `${id}-error` });
    return { el: h('div', {}, h('label', { class: 'check' }, input, key), err), read: () => input.checked, input };
  }
  const isList = Array.isArray(value);
  const input = h('input', {
    id,
    name: key,
    // Numbers as text: the server's validation (and its message) is what the operator should see.
    inputmode: typeof value === 'number' ? 'numeric' : undefined,
    value: isList
      ? (value as unknown[]).join(', ')
      : typeof value === 'string' || typeof value === 'number'
        ? String(value)
        : JSON.stringify(value ?? ''),
    'aria-describedby': `${id}-error`,
  });
  const read = (): unknown => {
    const raw = input.value.trim();
    if (isList)
      return raw === ''
        ? []
        : raw
            .split(',')
            .map((x) => x.trim())
            .filter((x) => x !== '');
    if (typeof value === 'number') return raw === '' || !/^-?\d+(\.\d+)?$/.test(raw) ? raw : Number(raw);
    return input.value;
  };
  return { el: h('div', {}, h('label', {}, key + (isList ? ' (comma-separated)' : ''), input), err), read, input };
}

/** One app (admin): settings with inline validation errors, secrets, keys, disable, delete. */
export function appDetail(main: HTMLElement, id: string): View {
  const body = h('div', {}, 'loading…');
  const notice = h('div');
  fill(main, h('h1', {}, 'App ', h('code', {}, id)), notice, body);

  const render = (app: AppView): void => {
    const fields = Object.keys(app.settings)
      .sort()
      .map((k) => ({ key: k, ...settingField(k, app.settings[k]) }));
    const nameIn = h('input', { id: 'app-name', value: app.name, 'aria-describedby': 'app-name-error' });
    const formError = h('p', { class: 'error', role: 'alert', id: 'settings-error' });
    const saved = h('p', { role: 'status', id: 'settings-saved' });
    const form = h(
      'form',
      { 'aria-labelledby': 'h-settings', novalidate: true },
      h('label', {}, 'Name', nameIn),
      h('span', { class: 'field-error', id: 'app-name-error' }),
      h(
        'div',
        { class: 'fields' },
        fields.map((f) => f.el),
      ),
      formError,
      saved,
      h('div', { class: 'row' }, h('button', { class: 'primary', type: 'submit' }, 'Save settings')),
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      for (const f of fields) {
        f.input.removeAttribute('aria-invalid');
        const e = document.getElementById(`setting-${f.key}-error`);
        if (e !== null) e.textContent = '';
      }
      formError.textContent = '';
      saved.textContent = '';
      const settings: Settings = {};
      for (const f of fields) {
        const v = f.read();
        if (JSON.stringify(v) !== JSON.stringify(app.settings[f.key])) settings[f.key] = v;
      }
      const patch: Record<string, unknown> = { settings };
      if (nameIn.value !== app.name) patch['name'] = nameIn.value;
      api<{ app: AppView }>('PATCH', adminApp(id), patch).then(
        (r) => {
          saved.textContent = `Saved at ${new Date().toLocaleTimeString()}.`;
          announce('Settings saved');
          render(r.app);
          document.getElementById('settings-saved')?.replaceChildren(`Saved at ${new Date().toLocaleTimeString()}.`);
        },
        (err: unknown) => {
          // `settings.<key>: why` names the field: shown beside it; anything else above the button.
          const text = message(err);
          const m = /^settings\.([A-Za-z0-9_]+)(?:\[\d+\])?: (.*)$/.exec(err instanceof ApiError ? err.message : '');
          const field = m === null ? undefined : fields.find((f) => f.key === m[1]);
          if (field !== undefined && m !== null) {
            field.input.setAttribute('aria-invalid', 'true');
            const e = document.getElementById(`setting-${field.key}-error`);
            if (e !== null) e.textContent = `${m[2] ?? ''} (${err instanceof ApiError ? err.code : ''})`;
            field.input.focus();
          } else if (err instanceof ApiError && /^name/.test(err.message)) {
            nameIn.setAttribute('aria-invalid', 'true');
            document.getElementById('app-name-error')?.replaceChildren(text);
            nameIn.focus();
          } else {
            formError.textContent = text;
          }
        },
      );
    });

    const action = (label: string, cls: string, run: () => Promise<void>) =>
      h(
        'button',
        {
          type: 'button',
          class: cls,
          onclick: () => {
            run().catch((err: unknown) => fill(notice, h('p', { class: 'error', role: 'alert' }, message(err))));
          },
        },
        label,
      );
    const confirmIn = h('input', { id: 'delete-confirm', autocomplete: 'off', 'aria-describedby': 'delete-help' });
    const deleteForm = h(
      'form',
      { class: 'row', 'aria-labelledby': 'h-danger' },
      h(
        'label',
        {},
        h('span', { id: 'delete-help' }, `Type ${app.id} to delete the app, its streams and messages`),
        confirmIn,
      ),
      h('button', { type: 'submit', class: 'danger' }, 'Delete app'),
    );
    deleteForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (confirmIn.value !== app.id) {
        confirmIn.setAttribute('aria-invalid', 'true');
        fill(notice, h('p', { class: 'error', role: 'alert' }, 'The id typed does not match: nothing was deleted.'));
        return;
      }
      api('DELETE', adminApp(id)).then(
        () => {
          announce(`App ${id} deleted`);
          void refreshApps();
          go('#/apps');
        },
        (err: unknown) => fill(notice, h('p', { class: 'error', role: 'alert' }, message(err))),
      );
    });

    fill(
      body,
      h(
        'p',
        {},
        app.disabled ? h('span', { class: 'badge warn' }, 'disabled') : h('span', { class: 'badge ok' }, 'enabled'),
        ` · updated ${new Date(app.updatedAt).toLocaleString()}`,
      ),
      h('h2', { id: 'h-settings' }, 'Settings'),
      form,
      h('h2', {}, 'Signing secrets'),
      h(
        'p',
        { class: 'note' },
        `${app.secrets.length} valid (newest first): ${app.secrets.map((s) => s.kid).join(', ')}. Client tokens signed with either verify.`,
      ),
      action('Rotate signing secret', '', async () => {
        const r = await api<{ app: AppView }>('POST', `${adminApp(id)}/secrets`);
        render(r.app);
        const s = r.app.secrets[0];
        fill(notice, s === undefined ? null : shownOnce(`New signing secret ${s.kid}`, s.secret));
        announce('Signing secret rotated');
      }),
      h('h2', {}, 'API keys'),
      h(
        'ul',
        {},
        app.apiKeys.map((k) =>
          h(
            'li',
            { class: 'row' },
            h('code', {}, k.id),
            action(`Revoke key ${k.id}`, 'danger', async () => {
              await api('DELETE', `${adminApp(id)}/keys/${encodeURIComponent(k.id)}`);
              await reload();
              announce(`Key ${k.id} revoked`);
            }),
          ),
        ),
      ),
      action('Add API key', '', async () => {
        const r = await api<{ apiKey: string; app: AppView }>('POST', `${adminApp(id)}/keys`);
        render(r.app);
        fill(notice, shownOnce('New API key', r.apiKey));
        announce('API key added');
      }),
      h('h2', { id: 'h-danger' }, 'Disable or delete'),
      h(
        'div',
        { class: 'row' },
        action(app.disabled ? 'Enable app' : 'Disable app', app.disabled ? '' : 'danger', async () => {
          const r = await api<{ app: AppView }>('PATCH', adminApp(id), { disabled: !app.disabled });
          render(r.app);
          announce(r.app.disabled ? 'App disabled: its connections were closed' : 'App enabled');
        }),
      ),
      deleteForm,
    );
  };
  const reload = async (): Promise<void> => render((await api<{ app: AppView }>('GET', adminApp(id))).app);
  reload().catch((err: unknown) => fill(body, h('p', { class: 'error', role: 'alert' }, message(err))));
  return { stop: () => undefined };
}

export { message };
