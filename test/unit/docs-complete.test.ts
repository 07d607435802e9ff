import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import {
  CLOSE,
  ClientFrameSchemas,
  DEFAULT_APP_SETTINGS,
  ERRORS,
  EVENT_TYPES,
  JOB_STATES,
  JobCreateSchema,
  JobViewSchema,
  KickBodySchema,
  PushMessageSchema,
  REFUSED,
  ServerFrameSchemas,
  type ErrorCode,
} from '@push/protocol';

/**
 * The docs are the human view of libs/protocol (fastify's "all errors documented" test): every
 * frame kind has its section in docs/protocol.md, every field of a frame a row of that section's
 * table, every error code a table row in docs/protocol.md or docs/api.md. Adding a frame, a field
 * or a code without documenting it fails here.
 */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const read = (p: string): string => readFileSync(path.join(ROOT, p), 'utf8');
const protocol = read('docs/protocol.md');
const api = read('docs/api.md');

/** The text of the section whose heading line holds `` `name` `` (up to the next heading of any level). */
function section(doc: string, heading: RegExp): string | undefined {
  const lines = doc.split('\n');
  const start = lines.findIndex((l) => /^#{2,6} /.test(l) && heading.test(l));
  if (start < 0) return undefined;
  const rest = lines.slice(start + 1);
  const end = rest.findIndex((l) => /^#{1,6} /.test(l));
  return rest.slice(0, end < 0 ? undefined : end).join('\n');
}

/** Names of table rows in a text: the first cell's `` `names` `` (a cell may list several: `` `app`, `user` ``). */
function tableFields(text: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('|')) continue;
    const first = line.split('|')[1] ?? '';
    for (const m of first.matchAll(/`([^`]+)`/g)) out.add(m[1] as string);
  }
  return out;
}

/** Properties of an object schema, without the type tag `t`. */
const fieldsOf = (schema: { properties: Record<string, unknown> }): string[] =>
  Object.keys(schema.properties).filter((k) => k !== 't');

describe('docs: every part of the wire contract is documented', () => {
  for (const [direction, schemas] of [
    ['client', ClientFrameSchemas],
    ['server', ServerFrameSchemas],
  ] as const) {
    for (const [kind, schema] of Object.entries(schemas)) {
      it(`${direction} frame \`${kind}\` has a section in docs/protocol.md listing each of its fields`, () => {
        const text = section(protocol, new RegExp(`^#{3,5} \`${kind}\``));
        expect(text, `no "#### \`${kind}\`" section in docs/protocol.md`).to.not.equal(undefined);
        const documented = tableFields(text ?? '');
        for (const field of fieldsOf(schema as { properties: Record<string, unknown> })) {
          expect(documented.has(field), `field \`${field}\` of \`${kind}\` missing from its table`).to.equal(true);
        }
      });
    }
  }

  it('every error code has a table row in docs/protocol.md or docs/api.md', () => {
    const rows = new Set([...tableFields(protocol), ...tableFields(api)]);
    // Codes also appear in the second column of the refused-upgrade table and the API error table.
    for (const line of `${protocol}\n${api}`.split('\n')) {
      if (line.startsWith('|')) for (const m of line.matchAll(/`([a-z_]+)`/g)) rows.add(m[1] as string);
    }
    const missing = (Object.keys(ERRORS) as ErrorCode[]).filter((code) => !rows.has(code));
    expect(missing, 'error codes missing from the docs tables').to.deep.equal([]);
  });

  it('docs/api.md "Error codes" lists every code with its HTTP status, and no other', () => {
    const text = section(api, /^## Error codes/) ?? '';
    const listed = new Map<string, number>();
    for (const line of text.split('\n')) {
      const m = /^\| `([a-z_]+)` +\| (\d{3}) /.exec(line);
      if (m !== null) listed.set(m[1] as string, Number(m[2]));
    }
    const expected = new Map(Object.entries(ERRORS).map(([code, e]) => [code, e.status]));
    expect(Object.fromEntries(listed)).to.deep.equal(Object.fromEntries(expected));
  });

  it('every field of the push and kick bodies has a row in docs/api.md', () => {
    const rows = tableFields(api);
    for (const field of [...Object.keys(PushMessageSchema.properties), ...Object.keys(KickBodySchema.properties)]) {
      expect(rows.has(field), `body field \`${field}\` missing from docs/api.md`).to.equal(true);
    }
  });

  it('every field of the fan-out job body and of a job, and every job state, has a row in docs/api.md', () => {
    const text = section(api, /^## Fan-out jobs/) ?? '';
    const rows = tableFields(text);
    for (const field of [...Object.keys(JobCreateSchema.properties), ...Object.keys(JobViewSchema.properties)]) {
      expect(rows.has(field), `job field \`${field}\` missing from "Fan-out jobs" in docs/api.md`).to.equal(true);
    }
    for (const state of JOB_STATES) expect(rows.has(state), `job state \`${state}\``).to.equal(true);
  });

  it('every app setting has a row in docs/api.md "Settings"', () => {
    const rows = tableFields(section(api, /^### Settings/) ?? '');
    const missing = Object.keys(DEFAULT_APP_SETTINGS).filter((k) => !rows.has(k));
    expect(missing, 'app settings missing from docs/api.md "Settings"').to.deep.equal([]);
  });

  it('every close code the edge sends has a row in docs/protocol.md "Close codes"', () => {
    const text = section(protocol, /^## Close codes/) ?? '';
    const rows = new Set(
      text.split('\n').flatMap((l) => (l.startsWith('|') ? (l.split('|')[1]?.match(/\d{4}/g) ?? []) : [])),
    );
    const missing = [...Object.values(CLOSE), ...Object.values(REFUSED)].filter((c) => !rows.has(String(c)));
    expect(missing, 'close codes missing from docs/protocol.md').to.deep.equal([]);
  });

  it('every event type has a row in docs/api.md "Events"', () => {
    const rows = tableFields(section(api, /^### Events/) ?? '');
    expect(
      EVENT_TYPES.filter((t) => !rows.has(t)),
      'event types missing from docs/api.md "Events"',
    ).to.deep.equal([]);
  });

  it('the checks can fail: a section without a field and a code nowhere are found', () => {
    expect(tableFields('| `a`, `b` | x |\n| c | y |')).to.deep.equal(new Set(['a', 'b']));
    expect(section('## x\n#### `ping`\ntext\n#### `pong`\n', /^#{3,5} `ping`/)).to.equal('text');
    expect(section('#### `ping`\n', /^#{3,5} `nope`/)).to.equal(undefined);
  });
});

/** Every prose doc a user reads: the README, docs/*.md and the bench README. */
const PROSE = [
  'README.md',
  ...readdirSync(path.join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
  'bench/README.md',
];

/** `file:line` of each table separator row (`| --- | :-: |`) that is not the second row of its table. */
function straySeparators(file: string, text: string): string[] {
  const out: string[] = [];
  let row = 0;
  text.split('\n').forEach((line, i) => {
    row = line.startsWith('|') ? row + 1 : 0;
    if (row !== 2 && /^\|(\s*:?-+:?\s*\|)+\s*$/.test(line)) out.push(`${file}:${i + 1}`);
  });
  return out;
}

/**
 * Claims that were true once and are not any more (issue 14: the coordinator "does no work yet"
 * long after it delivered webhooks). A phrase goes here when a fix removes it from the docs.
 */
const STALE = ['does no work yet', 'beyond health and metrics'];

describe('docs: nothing stale or broken', () => {
  it('no table has a separator row in its middle (it renders as a row of dashes)', () => {
    expect(PROSE.flatMap((f) => straySeparators(f, read(f)))).to.deep.equal([]);
  });

  it('no doc makes a claim the code has outgrown', () => {
    const found = PROSE.flatMap((f) => STALE.filter((phrase) => read(f).includes(phrase)).map((p) => `${f}: ${p}`));
    expect(found).to.deep.equal([]);
  });

  it('every CLI command in its usage has a row in the CLI tables of docs/api.md', () => {
    const usage = execFileSync(process.execPath, [path.join(ROOT, 'apps/center/dist/cli.js'), '--help'], {
      encoding: 'utf8',
    });
    const commands = new Set<string>();
    for (const m of usage.matchAll(/^ {2}([a-z][a-z-]*)( [a-z][a-z-]*)?/gm)) commands.add(`${m[1] ?? ''}${m[2] ?? ''}`);
    // First cells split at unescaped pipes: a usage cell holds `\|` (`--disable \| --enable`).
    const rows = (section(api, /^## CLI/) ?? '')
      .split('\n')
      .filter((l) => l.startsWith('|'))
      .flatMap((l) => [...(l.split(/(?<!\\)\|/)[1] ?? '').matchAll(/`([^`]+)`/g)].map((m) => m[1] ?? ''));
    const missing = [...commands].filter((c) => !rows.some((r) => r === c || r.startsWith(`${c} `)));
    expect(commands.size).to.be.greaterThan(10);
    expect(missing, 'CLI commands missing from docs/api.md').to.deep.equal([]);
  });

  it("the README's watch sample shows the line `watch` prints when it connects", () => {
    const cli = read('apps/center/src/cli.ts');
    const template = /`(connected to \$\{c\.edge\} as \$\{c\.user\};[^`]*)`/.exec(cli)?.[1];
    expect(template, 'the connected line in cli.ts').to.be.a('string');
    const pattern = (template ?? '')
      .split(/\$\{[^}]+\}/)
      .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
      .join('\\S+');
    expect(read('README.md')).to.match(new RegExp(`^ *${pattern}$`, 'm'));
  });

  it('make dev and the README name the same way to stop it (make stop)', () => {
    expect(read('scripts/dev.sh')).to.not.match(/stop(ped)? (it )?(with|by) scripts\/stop\.sh|or scripts\/stop\.sh/);
    expect(read('scripts/dev.sh')).to.contain('make stop');
    expect(read('README.md')).to.contain('make stop');
  });

  it('the checks can fail: a stray separator is found', () => {
    expect(straySeparators('x', '| a | b |\n| - | - |\n| 1 | 2 |\n| --- | :-: |\n| 3 | 4 |')).to.deep.equal(['x:4']);
    expect(straySeparators('x', '| a |\n| --- |\n\n| b |\n| --- |')).to.deep.equal([]);
  });
});
