/** Small DOM helpers: elements are built with `h`, never from HTML strings (no injection). */

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | undefined | EventListener>;

/** An element with attributes (`on<event>` are listeners; `false`/undefined are left out) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Array<Child | Child[]>
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === 'value' && 'value' in el) (el as HTMLInputElement).value = String(v);
    else if (k === 'checked' && el instanceof HTMLInputElement) el.checked = v === true;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** Replaces the children of `el`. */
export function fill(el: Element, ...children: Array<Child | Child[]>): void {
  el.replaceChildren();
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

/** Says `text` to screen readers (the page's polite live region). */
export function announce(text: string): void {
  const status = document.getElementById('status');
  if (status !== null) status.textContent = text;
}

/** A number for a table: integers grouped, rates with one decimal. */
export function num(n: number | null | undefined, digits = 0): string {
  if (n === undefined || n === null || !Number.isFinite(n)) return '–';
  return n.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** A table with a caption, header cells and rows; `numeric` column indexes align right. */
export function table(caption: string, head: string[], rows: Array<Array<Child>>, numeric: number[] = []): HTMLElement {
  return h(
    'table',
    {},
    h('caption', { class: 'visually-hidden' }, caption),
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        head.map((t, i) => h('th', { scope: 'col', class: numeric.includes(i) ? 'num' : undefined }, t)),
      ),
    ),
    h(
      'tbody',
      {},
      rows.length === 0
        ? h('tr', {}, h('td', { colspan: head.length, class: 'muted' }, 'none'))
        : rows.map((r) =>
            h(
              'tr',
              {},
              r.map((c, i) => h('td', { class: numeric.includes(i) ? 'num' : undefined }, c)),
            ),
          ),
    ),
  );
}

/** A time for people: `since` epoch ms as local time and how long ago. */
export function since(ms: number): string {
  if (!ms) return '–';
  const ago = Math.max(0, Math.round((Date.now() - ms) / 1000));
  const span = ago < 120 ? `${ago} s` : ago < 7200 ? `${Math.round(ago / 60)} min` : `${Math.round(ago / 3600)} h`;
  return `${new Date(ms).toLocaleTimeString()} (${span} ago)`;
}
