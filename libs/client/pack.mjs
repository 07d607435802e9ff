// Packs the SDK as a tarball a user installs in another project (`npm install
// <path>/push-client-<version>.tgz`): what `npm pack` makes of this package (its `files` list:
// dist without maps, the README), written into dist/ (git ignores it; `files` leaves tarballs
// out, so a pack never holds an older one). Run by `make build`, after tsc and bundle.mjs, and by
// the package test (so it never installs a stale tarball). Prints the tarball's path.
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** Packs the package; returns the tarball's absolute path. */
export function pack() {
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', 'dist'], {
    cwd: here,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [info] = JSON.parse(out);
  return join(here, 'dist', info.filename);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(pack());
