#!/usr/bin/env node
// The package build (`npm run build`, run by `prepare`): TypeScript sources (src/) to
//   dist/      ESM, .d.ts, source maps        (tsconfig.build.json; every module, the CLI included)
//   dist/cjs/  CommonJS, .d.ts, source maps   (tsconfig.build.cjs.json; the library entry points
//              and what they import, with a {"type":"commonjs"} package.json)
// The browser entry (src/entry/browser.ts → dist/entry/browser.js, `./browser` and the `browser`
// condition of `.`) is ESM only: bundlers consume ESM, so it has no CommonJS twin.
// The one use of `import.meta.url` (src/package-root.ts) becomes `__filename`'s URL in dist/cjs.
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

function run(project) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [tsc, '-p', project], { cwd: root, stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`tsc -p ${project} exited with ${code}`))));
  });
}

rmSync(join(root, 'dist'), { recursive: true, force: true });
await Promise.all([run('tsconfig.build.json'), run('tsconfig.build.cjs.json')]);

writeFileSync(join(root, 'dist/cjs/package.json'), JSON.stringify({ type: 'commonjs' }) + '\n');
const packageRoot = join(root, 'dist/cjs/package-root.js');
const source = readFileSync(packageRoot, 'utf8');
if (!source.includes('import.meta.url')) throw new Error(`${packageRoot}: expected one import.meta.url to rewrite`);
writeFileSync(packageRoot, source.replaceAll('import.meta.url', 'require("node:url").pathToFileURL(__filename).href'));
