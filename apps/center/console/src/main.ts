import { ApiError, api, appPath, currentSession, endSession, isAdmin, saveSession } from './api.js';
import { appDetail, appsList } from './apps.js';
import { announce, fill, h } from './dom.js';
import { jobsView } from './jobs.js';
import { overview } from './overview.js';
import { topicsView } from './topics.js';
import { userView } from './user.js';
import { webhooksView } from './webhooks.js';

/** A page of the console: `stop` ends its polling when the operator goes elsewhere. */
export interface View {
  stop(): void;
}

const main = document.getElementById('main') as HTMLElement;
const nav = document.getElementById('nav') as HTMLElement;
const who = document.getElementById('who') as HTMLElement;
let current: View | undefined;
/** The app the app pages (users, topics, webhooks, jobs) act on. */
let selectedApp: string | undefined;
/** Ids of every app (admin), for the app picker. */
let appIds: string[] = [];

/** The app an app page acts on: the key's own, else the one picked, else the first. */
export function activeApp(): string | undefined {
  return currentSession()?.app ?? selectedApp ?? appIds[0];
}

/** Goes to `hash` (e.g. `#/overview`). */
export function go(hash: string): void {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function loginView(problem?: string): void {
  nav.replaceChildren();
  who.replaceChildren();
  const key = h('input', { id: 'login-key', type: 'password', autocomplete: 'off', required: true });
  const app = h('input', { id: 'login-app', autocomplete: 'off', placeholder: 'empty for the admin key' });
  const error = h('p', { class: 'error', role: 'alert', id: 'login-error' }, problem ?? '');
  const form = h(
    'form',
    { class: 'stack', 'aria-labelledby': 'h-login' },
    h('h1', { id: 'h-login' }, 'Log in'),
    h(
      'p',
      { class: 'note' },
      'The admin key (PUSH_ADMIN_KEY) opens every app. An app’s API key opens that app only: give its id too. ',
      'The key stays in this tab (sessionStorage) and is sent only in the Authorization header.',
    ),
    h('label', {}, 'Key', key),
    h('label', {}, 'App id (for an app’s API key)', app),
    error,
    h('div', {}, h('button', { class: 'primary', type: 'submit' }, 'Log in')),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const s = { key: key.value.trim(), ...(app.value.trim() !== '' ? { app: app.value.trim() } : {}) };
    const check = s.app === undefined ? '/v1/admin/apps' : `${appPath(s.app)}/summary`;
    api('GET', check, undefined, s.key).then(
      () => {
        saveSession(s);
        announce('Logged in');
        go('#/overview');
        void refreshApps();
      },
      (err: unknown) => {
        error.textContent =
          err instanceof ApiError ? `${err.message} (${err.code})` : `Could not log in: ${String(err)}`;
        key.focus();
      },
    );
  });
  fill(main, form);
  key.focus();
}

function renderNav(route: string): void {
  const admin = isAdmin();
  const app = activeApp();
  const link = (href: string, text: string) =>
    h('a', { href, 'aria-current': route === href ? 'page' : undefined }, text);
  const section = location.hash.split('/')[3] ?? '';
  const appLink = (part: string, text: string) =>
    app === undefined
      ? null
      : h(
          'a',
          { href: `#/app/${encodeURIComponent(app)}/${part}`, 'aria-current': section === part ? 'page' : undefined },
          text,
        );
  fill(
    nav,
    link('#/overview', 'Overview'),
    admin ? link('#/apps', 'Apps') : null,
    appLink('users', 'Users'),
    appLink('topics', 'Topics'),
    appLink('webhooks', 'Webhooks'),
    appLink('jobs', 'Jobs'),
  );
  const picker = admin
    ? h(
        'label',
        { class: 'check' },
        'App',
        h(
          'select',
          {
            id: 'app-picker',
            onchange: (ev: Event) => {
              selectedApp = (ev.target as HTMLSelectElement).value;
              const part = location.hash.split('/')[3];
              if (location.hash.startsWith('#/app/') && part !== undefined)
                go(`#/app/${encodeURIComponent(selectedApp)}/${part}`);
              else renderNav(route);
            },
          },
          appIds.map((id) => h('option', { value: id, selected: id === app }, id)),
        ),
      )
    : h('span', {}, `app ${app ?? ''}`);
  fill(
    who,
    picker,
    h('span', {}, admin ? 'admin' : 'API key'),
    h(
      'button',
      {
        type: 'button',
        onclick: () => {
          endSession();
          current?.stop();
          current = undefined;
          loginView();
        },
      },
      'Log out',
    ),
  );
}

/** Shows the page the hash names. */
function route(): void {
  current?.stop();
  current = undefined;
  if (currentSession() === undefined) return loginView();
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const [top = 'overview'] = parts;
  if (top === 'app' && parts[1] !== undefined && currentSession()?.app === undefined) selectedApp = parts[1];
  renderNav(`#/${top}`);
  const app = top === 'app' ? (currentSession()?.app ?? parts[1]) : undefined;
  if (top === 'overview' || top === '') current = overview(main);
  else if (top === 'apps' && isAdmin()) current = parts[1] === undefined ? appsList(main) : appDetail(main, parts[1]);
  else if (top === 'app' && app !== undefined) {
    const section = parts[2];
    if (section === 'users') current = userView(main, app, parts[3]);
    else if (section === 'topics') current = topicsView(main, app, parts[3]);
    else if (section === 'webhooks') current = webhooksView(main, app);
    else if (section === 'jobs') current = jobsView(main, app);
  }
  if (current === undefined) {
    fill(main, h('h1', {}, 'Not found'), h('p', {}, 'No such page. ', h('a', { href: '#/overview' }, 'Overview')));
  }
  // Move focus to the page for keyboard and screen-reader users (not on the first load).
  if (document.activeElement !== document.body) main.focus();
}

/** Reloads the app ids for the picker (admin). */
export async function refreshApps(): Promise<void> {
  if (!isAdmin()) return;
  try {
    const r = await api<{ apps: Array<{ id: string }> }>('GET', '/v1/admin/apps');
    appIds = r.apps.map((a) => a.id).sort();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      endSession();
      return loginView('The key is no longer accepted: log in again.');
    }
  }
  renderNav(`#/${location.hash.replace(/^#\/?/, '').split('/')[0] ?? ''}`);
}

window.addEventListener('hashchange', route);
route();
void refreshApps();
