// Builds the web console (issue 19) into apps/center/dist/console/: console.js (esbuild, one
// minified file with uPlot), console.css (ours and uPlot's) and index.html, which the center
// serves at /console/. Prints the sizes and fails when console.js is over its budget, gzipped.
// Run by `make build` and by the console's browser tests (so they never test a stale bundle).
import { build } from 'esbuild';
import { mkdirSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
export const outDir = join(here, '..', 'dist', 'console');
/** The budget for the console's JavaScript, gzipped. */
export const MAX_GZIPPED_BYTES = 150 * 1024;

/** Builds the console; resolves with console.js's sizes in bytes. */
export async function bundle() {
  mkdirSync(outDir, { recursive: true });
  await build({
    entryPoints: [join(here, 'src', 'main.ts')],
    outfile: join(outDir, 'console.js'),
    bundle: true,
    minify: true,
    format: 'iife',
    target: ['es2020'],
    platform: 'browser',
    legalComments: 'none',
    logLevel: 'warning',
  });
  const uplotCss = readFileSync(createRequire(import.meta.url).resolve('uplot/dist/uPlot.min.css'), 'utf8');
  writeFileSync(join(outDir, 'console.css'), `${uplotCss}\n${readFileSync(join(here, 'console.css'), 'utf8')}`);
  copyFileSync(join(here, 'index.html'), join(outDir, 'index.html'));
  const js = readFileSync(join(outDir, 'console.js'));
  return { minified: js.length, gzipped: gzipSync(js, { level: 9 }).length };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { minified, gzipped } = await bundle();
  console.log(`console.js: ${minified} bytes minified, ${gzipped} bytes gzipped (budget ${MAX_GZIPPED_BYTES})`);
  if (gzipped > MAX_GZIPPED_BYTES) {
    console.error(`console.js is over its budget: ${gzipped} > ${MAX_GZIPPED_BYTES} bytes gzipped`);
    process.exit(1);
  }
}
