// Builds the single-file browser bundles (global `PushClient`) from the TypeScript sources with
// esbuild: dist/push-client.min.js, and dist/push-client-apps.min.js, the same with multi-app
// sessions (`attach`). Prints their sizes, minified and gzipped, the plain one first. Run by
// `make build` and by the browser tests (so they never test a stale bundle).
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
export const bundlePath = join(here, 'dist', 'push-client.min.js');
export const appsBundlePath = join(here, 'dist', 'push-client-apps.min.js');

/** Builds one bundle from its entry; resolves with its sizes in bytes. */
async function bundleOne(entry, outfile) {
  await build({
    entryPoints: [join(here, 'src', entry)],
    outfile,
    bundle: true,
    minify: true,
    format: 'iife',
    target: ['es2022'],
    platform: 'browser',
    legalComments: 'none',
    logLevel: 'warning',
  });
  const bytes = readFileSync(outfile);
  return { minified: bytes.length, gzipped: gzipSync(bytes, { level: 9 }).length };
}

/** Builds both bundles; resolves with their sizes in bytes. */
export async function bundle() {
  return { plain: await bundleOne('browser.ts', bundlePath), apps: await bundleOne('browser-apps.ts', appsBundlePath) };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { plain, apps } = await bundle();
  console.log(`push-client.min.js: ${plain.minified} bytes minified, ${plain.gzipped} bytes gzipped`);
  console.log(`push-client-apps.min.js: ${apps.minified} bytes minified, ${apps.gzipped} bytes gzipped`);
}
