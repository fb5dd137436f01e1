/**
 * The installed package's root folder (the one holding its package.json, `data/` and `native/`),
 * found from this module's own location, so that file lookups work the same from the TypeScript
 * sources (src/), the ESM build (dist/) and the CommonJS build (dist/cjs/). Every lookup of a
 * shipped file goes through here: no other module uses `import.meta.url` for paths.
 *
 * The CommonJS build replaces `import.meta.url` below by `__filename`'s URL (scripts/build.mjs).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE_NAME = 'factorized-transformer';

function findPackageRoot(from: string): string {
  for (let dir = from; ; ) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === PACKAGE_NAME) return dir;
      } catch {
        // Not ours (unreadable or not JSON): keep looking upwards.
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`${PACKAGE_NAME}: cannot find its package.json above ${from}`);
    dir = parent;
  }
}

// eslint-disable-next-line @typescript-eslint/ban-ts-comment -- an error in one of the two passes only, so @ts-expect-error would fail the other
// @ts-ignore -- TS1343 in the CommonJS pass only; scripts/build.mjs rewrites this line there.
const thisFile = fileURLToPath(import.meta.url);

/** Absolute path of the package root. */
export const packageRoot: string = findPackageRoot(dirname(thisFile));

/** A `require` that resolves like the package's own modules (dependencies, optional addons). */
export const packageRequire: NodeJS.Require = createRequire(join(packageRoot, 'package.json'));

/** A path inside the package, e.g. `packagePath('data', 'x.gz')`. */
export function packagePath(...parts: string[]): string {
  return join(packageRoot, ...parts);
}
