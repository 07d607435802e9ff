import { api, appPath, currentSession } from './api.js';
import { LiveChart } from './chart.js';
import { fill, h, num, since, table } from './dom.js';
import type { View } from './main.js';
import type { EdgeFigures, Summary } from './types.js';

/** How often the overview asks for the summary, ms. */
const POLL_MS = 2000;

/** Per second between two counter readings; undefined when there is no earlier one or it went down (a restart). */
function rate(now: number | null | undefined, before: number | null | undefined, seconds: number): number | undefined {
  if (now === undefined || now === null || before === undefined || before === null || now < before || seconds <= 0)
    return undefined;
  return (now - before) / seconds;
}

/** What the overview cannot show yet: said on the page (and in docs/operations.md), never faked. */
const NOT_YET = [
  'Broadcast (_all) rate on its own: the topic rate counts _all with every other topic.',
  'Messages delivered per app: edges count deliveries over all apps (shown per edge to the admin).',
  'Webhook lag as a time: the figure is the number of events waiting (not yet delivered or in flight).',
  "NATS server figures beyond the round trip (the server's own monitoring port has them).",
];

/** The live overview: charts and tables from the summary API, every two seconds. */
export function overview(main: HTMLElement): View {
  const s = currentSession();
  const admin = s?.app === undefined;
  const path = admin ? '/v1/admin/summary' : `${appPath(s?.app ?? '')}/summary`;
  const charts = {
    connections: new LiveChart('Connections per app', 'conn'),
    rates: new LiveChart('Messages per second', '/s'),
    pending: new LiveChart('Pending in inboxes', 'msgs'),
    loop: admin ? new LiveChart('Edge event-loop delay (p99)', 'ms') : undefined,
  };
  const total = h('strong', { id: 'total-connections', 'aria-live': 'polite' }, '–');
  const updated = h('span', { class: 'muted' }, 'loading…');
  const error = h('p', { class: 'error', role: 'alert' });
  const health = h('div');
  const edges = h('div');
  const apps = h('div');
  fill(
    main,
    h('h1', {}, 'Overview'),
    h('p', {}, 'Connections now: ', total, ' · ', updated),
    error,
    h('section', { class: 'card', 'aria-labelledby': 'h-health' }, h('h2', { id: 'h-health' }, 'Health'), health),
    h(
      'div',
      { class: 'grid' },
      Object.values(charts).map((c) => c?.el),
    ),
    h('section', { 'aria-labelledby': 'h-apps' }, h('h2', { id: 'h-apps' }, 'Apps'), apps),
    h('section', { 'aria-labelledby': 'h-edges' }, h('h2', { id: 'h-edges' }, 'Edges'), edges),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'h-notyet' },
      h('h2', { id: 'h-notyet' }, 'Not shown yet'),
      h(
        'ul',
        { class: 'note' },
        NOT_YET.map((t) => h('li', {}, t)),
        admin ? null : h('li', {}, "Edges' delivery counters and event-loop delay: they cover every app (admin only)."),
      ),
    ),
  );

  let prev: Summary | undefined;
  let timer: number | undefined;
  let stopped = false;

  const edgeRow = (e: EdgeFigures, before: EdgeFigures | undefined, dt: number) => {
    const same = before !== undefined && before.startedAt === e.startedAt;
    return [
      e.edge,
      h('span', { 'data-edge': e.edge, 'data-col': 'connections' }, num(e.connections)),
      num(e.users),
      num(rate(e.messagesOut, same ? before.messagesOut : undefined, dt), 1),
      num(rate(e.acks, same ? before.acks : undefined, dt), 1),
      num(rate(e.topicFramesOut, same ? before.topicFramesOut : undefined, dt), 1),
      e.eventLoopDelayMs === undefined ? '–' : `${num(e.eventLoopDelayMs.mean, 1)} / ${num(e.eventLoopDelayMs.p99, 1)}`,
      e.startedAt === undefined ? '–' : since(e.startedAt),
    ];
  };

  const render = (sum: Summary): void => {
    const dt = prev === undefined ? 0 : (sum.at - prev.at) / 1000;
    const before = prev;
    const conns = sum.apps.reduce((n, a) => n + a.connections, 0);
    total.textContent = num(conns);
    updated.textContent = `updated ${new Date(sum.at).toLocaleTimeString()}`;
    error.textContent = '';
    fill(
      health,
      h(
        'ul',
        { class: 'row' },
        (['nats', 'redis', 'postgres'] as const).map((k) => {
          const v = sum.health[k];
          return h(
            'li',
            { class: `badge ${v.ok ? 'ok' : 'bad'}`, 'data-health': k },
            `${k === 'nats' ? 'NATS' : k === 'redis' ? 'Redis' : 'Postgres'}: ${v.ok ? `up (${num(v.ms, 1)} ms)` : `down: ${v.detail ?? ''}`}`,
          );
        }),
        h(
          'li',
          { class: `badge ${sum.edgesSilent > 0 ? 'warn' : 'ok'}` },
          `Edges: ${sum.edges.length} answering${sum.edgesSilent > 0 ? `, ${sum.edgesSilent} silent` : ''}`,
        ),
      ),
    );
    // Rates per app: what the inbox and topic streams stored since the last sample.
    const appRates = sum.apps.map((a) => {
      const b = before?.apps.find((x) => x.id === a.id);
      return { a, in: rate(a.inboxStored, b?.inboxStored, dt), topic: rate(a.topicStored, b?.topicStored, dt) };
    });
    fill(
      apps,
      table(
        'Apps',
        ['app', 'connections', 'pending', 'stored/s (inbox)', 'topic msgs/s', 'webhooks waiting', 'dead letters'],
        appRates.map(({ a, in: inRate, topic }) => [
          h('span', {}, a.id, a.disabled ? h('span', { class: 'badge warn' }, ' disabled') : null),
          h('span', { 'data-app': a.id, 'data-col': 'connections' }, num(a.connections)),
          h('span', { 'data-app': a.id, 'data-col': 'pending' }, num(a.pending)),
          num(inRate, 1),
          num(topic, 1),
          a.unavailable === undefined ? num(a.webhooks.reduce((n, w) => n + (w.waiting ?? 0), 0)) : '–',
          a.unavailable === undefined
            ? num(a.webhooks.reduce((n, w) => n + (w.deadLetters ?? 0), 0))
            : h('span', { class: 'warn', title: a.unavailable }, 'not read'),
        ]),
        [1, 2, 3, 4, 5, 6],
      ),
      sum.appsOmitted > 0
        ? h('p', { class: 'note' }, `${sum.appsOmitted} more apps not shown (the first 100 by id are).`)
        : null,
    );
    fill(
      edges,
      admin
        ? table(
            'Edges',
            [
              'edge',
              'connections',
              'users',
              'delivered/s',
              'acks/s',
              'topic frames/s',
              'loop delay mean / p99 ms',
              'started',
            ],
            sum.edges.map((e) =>
              edgeRow(
                e,
                before?.edges.find((x) => x.edge === e.edge),
                dt,
              ),
            ),
            [1, 2, 3, 4, 5, 6],
          )
        : table(
            'Edges',
            ['edge', 'connections of this app'],
            sum.edges.map((e) => [
              e.edge,
              h('span', { 'data-edge': e.edge, 'data-col': 'connections' }, num(e.connections)),
            ]),
            [1],
          ),
    );
    // Charts.
    charts.connections.push(sum.at, Object.fromEntries(sum.apps.map((a) => [a.id, a.connections])));
    charts.pending.push(
      sum.at,
      Object.fromEntries(sum.apps.filter((a) => a.pending !== null).map((a) => [a.id, a.pending ?? 0])),
    );
    if (before !== undefined) {
      const sumOf = (xs: Array<number | undefined>): number => xs.reduce<number>((n, x) => n + (x ?? 0), 0);
      const r: Record<string, number> = {
        'stored in inboxes': sumOf(appRates.map((x) => x.in)),
        'topic messages': sumOf(appRates.map((x) => x.topic)),
      };
      if (admin) {
        const edgeRate = (k: 'messagesOut' | 'acks' | 'messagesIn') =>
          sumOf(
            sum.edges.map((e) => {
              const b = before.edges.find((x) => x.edge === e.edge);
              return b?.startedAt === e.startedAt ? rate(e[k], b?.[k], dt) : undefined;
            }),
          );
        r['delivered'] = edgeRate('messagesOut');
        r['acks'] = edgeRate('acks');
        r['client to client'] = edgeRate('messagesIn');
      }
      charts.rates.push(sum.at, r);
    }
    charts.loop?.push(sum.at, Object.fromEntries(sum.edges.map((e) => [e.edge, e.eventLoopDelayMs?.p99 ?? 0])));
    prev = sum;
  };

  const tick = async (): Promise<void> => {
    try {
      render(await api<Summary>('GET', path));
    } catch (err) {
      error.textContent = `Summary not available: ${err instanceof Error ? err.message : String(err)}`;
    }
    if (!stopped) timer = window.setTimeout(() => void tick(), POLL_MS);
  };
  const onResize = (): void => Object.values(charts).forEach((c) => c?.resize());
  window.addEventListener('resize', onResize);
  void tick();
  return {
    stop: () => {
      stopped = true;
      window.clearTimeout(timer);
      window.removeEventListener('resize', onResize);
      Object.values(charts).forEach((c) => c?.destroy());
    },
  };
}
