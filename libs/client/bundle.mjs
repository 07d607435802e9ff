// Builds the single-file browser bundle dist/push-client.min.js (global `PushClient`) from the
// TypeScript sources with esbuild, and prints its size, minified and gzipped. Run by `make build`
// and by the browser tests (so they never test a stale bundle).
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
export const bundlePath = join(here, 'dist', 'push-client.min.js');

/** Builds the bundle; resolves with its sizes in bytes. */
export async function bundle() {
  await build({
    entryPoints: [join(here, 'src', 'browser.ts')],
    outfile: bundlePath,
    bundle: true,
    minify: true,
    format: 'iife',
    target: ['es2020'],
    platform: 'browser',
    legalComments: 'none',
    logLevel: 'warning',
  });
  const bytes = readFileSync(bundlePath);
  return { minified: bytes.length, gzipped: gzipSync(bytes, { level: 9 }).length };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { minified, gzipped } = await bundle();
  console.log(`push-client.min.js: ${minified} bytes minified, ${gzipped} bytes gzipped`);
}
