/**
 * The package as a user gets it: `npm pack`, the tarball installed into fresh projects (one per
 * tfjs version of the test matrix, with that version as the user's own tfjs), then plain Node ESM
 * and CommonJS scripts that train a model with the exported attention layer for 3 steps and save
 * and reload it, a strict NodeNext type-check of a consumer file, one tfjs copy, the compiled
 * `bin`, and the native addon built from the tarball's `native/` folder.
 *
 * The build (dist/) is remade only when a source is newer than it; installs use the npm cache.
 */
import { execFile, execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..');
const FIXTURES = join(ROOT, 'test/fixtures/package');
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');
/** The tfjs versions a user may have (the peer range's ends that exist). */
const TFJS_VERSIONS = ['4.22.0', '4.21.0'] as const;
const pkg = JSON.parse(execFileSync(process.execPath, ['-p', 'JSON.stringify(require("./package.json"))'], { cwd: ROOT, encoding: 'utf8' })) as {
  version: string;
};

function newestMtime(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(0, ...readdirSync(path).map((f) => newestMtime(join(path, f))));
}

/** Rebuilds dist/ when a source or build setting is newer than the last build. */
function ensureBuild(): void {
  const built = ['dist/index.js', 'dist/cjs/index.js'].map((f) => join(ROOT, f));
  const sources = Math.max(
    newestMtime(join(ROOT, 'src')),
    ...['package.json', 'tsconfig.json', 'tsconfig.build.json', 'tsconfig.build.cjs.json', 'scripts/build.mjs'].map((f) => newestMtime(join(ROOT, f))),
  );
  if (built.every((f) => existsSync(f) && statSync(f).mtimeMs >= sources)) return;
  execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: ROOT, stdio: 'inherit' });
}

const work = mkdtempSync(join(tmpdir(), 'ft-package-'));
let tarball = '';
let packedFiles: string[] = [];
const consumers = new Map<string, string>();
/** What the consumer scripts print (fileUrl: whether tfjs's own `file://` save/load worked). */
interface Result {
  ok: boolean;
  losses: number[];
  fileUrl: boolean;
  backend: string;
  tfjs: string;
}
const installs = new Map<string, Promise<void>>();

async function npm(args: string[], cwd: string): Promise<string> {
  const { stdout } = await run(NPM, args, { cwd, maxBuffer: 64 << 20, env: { ...process.env, npm_config_update_notifier: 'false' } });
  return stdout;
}

/** A fresh project with the user's own tfjs, the packed tarball and the consumer fixtures. */
async function installConsumer(version: string, runScripts: boolean): Promise<void> {
  const dir = join(work, `consumer-${version}`);
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `consumer-${version.replaceAll('.', '-')}`, private: true, type: 'module' }));
  cpSync(FIXTURES, dir, { recursive: true });
  const deps = [tarball, `@tensorflow/tfjs@${version}`, `@tensorflow/tfjs-backend-wasm@${version}`, '@types/node@20'];
  await npm(['install', '--prefer-offline', '--no-audit', '--no-fund', ...(runScripts ? [] : ['--ignore-scripts']), ...deps], dir);
  consumers.set(version, dir);
}

beforeAll(async () => {
  const t0 = Date.now();
  ensureBuild();
  const packed = JSON.parse(await npm(['pack', '--ignore-scripts', '--json', '--pack-destination', work], ROOT)) as {
    filename: string;
    files: { path: string }[];
  }[];
  tarball = join(work, packed[0]!.filename);
  packedFiles = packed[0]!.files.map((f) => f.path);
  // Both installs at once; the first one runs the package's install script (the native addon build).
  TFJS_VERSIONS.forEach((v, i) => installs.set(v, installConsumer(v, i === 0)));
  await Promise.all(installs.values());
  console.log(`package test: built if needed, packed and installed ${TFJS_VERSIONS.length} consumers in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}, 240_000);

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

describe('the packed tarball', () => {
  it('holds the builds, bin, native sources and default data, and no tests, sources, docs or results', () => {
    for (const f of ['package.json', 'README.md', 'LICENSE', 'bin/factorized-transformer.js', 'dist/index.js', 'dist/index.d.ts', 'dist/cjs/index.js', 'dist/cjs/index.d.ts', 'dist/cjs/package.json', 'dist/cli/main.js', 'native/build.cjs', 'native/binding.gyp', 'native/src/blas.c', 'native/index.cjs', 'data/web-rv1909.en-es.tsv.gz', 'data/moby-dick.en.spm.model']) {
      expect(packedFiles, f).toContain(f);
    }
    const unwanted = packedFiles.filter((f) => /^(src|test|docs|bench|experiments|scripts|data-scripts|checkpoints)\//.test(f) || f.startsWith('native/build/') || f.includes('.cache/'));
    expect(unwanted).toEqual([]);
  });
});

describe.each(TFJS_VERSIONS)('a consumer with @tensorflow/tfjs@%s', (version) => {
  function consumer(): string {
    const dir = consumers.get(version);
    if (!dir) throw new Error(`consumer ${version} was not installed`);
    return dir;
  }

  async function script(file: string): Promise<Result> {
    const { stdout } = await run(process.execPath, [file], { cwd: consumer() });
    return JSON.parse(stdout.trim().split('\n').at(-1)!) as Result;
  }

  it('gets one copy of tfjs-core, its own version', async () => {
    const tree = JSON.parse(await npm(['ls', '@tensorflow/tfjs-core', '--all', '--json'], consumer())) as Record<string, unknown>;
    const versions = new Set<string>();
    const walk = (node: unknown): void => {
      const deps = (node as { dependencies?: Record<string, { version?: string }> }).dependencies ?? {};
      for (const [name, child] of Object.entries(deps)) {
        if (name === '@tensorflow/tfjs-core' && child.version) versions.add(child.version);
        walk(child);
      }
    };
    walk(tree);
    expect([...versions]).toEqual([version]);
  });

  it('trains, saves and reloads a functional model with the attention layer from plain-Node ESM', async () => {
    const result = await script('train-save-load.mjs');
    expect(result.ok).toBe(true);
    expect(result.backend).toBe('wasm');
    expect(result.tfjs).toBe(version);
    expect(result.losses.length).toBe(3);
  });

  it('does the same through require() (CommonJS)', async () => {
    const result = await script('train-save-load.cjs');
    expect(result.ok).toBe(true);
    expect(result.tfjs).toBe(version);
  });

  async function tsc(...args: string[]): Promise<string> {
    const result = await run(process.execPath, [TSC, '-p', 'tsconfig.json', ...args], { cwd: consumer() }).catch((e: { stdout: string }) => e);
    return result.stdout;
  }

  it.runIf(version === TFJS_VERSIONS[0])('type-checks a consumer of the documented API (NodeNext, strict, noUncheckedIndexedAccess)', async () => {
    expect(await tsc()).toBe('');
  });

  // Known to fail while src/{attention/factorized-attention,factorized/dense,factorized/embedding,
  // models/embedding,models/layer-norm,models/blocks}.ts import LayerArgs from
  // '@tensorflow/tfjs-layers/dist/engine/topology' (a tfjs internal, not resolvable under NodeNext:
  // TS2307 for a consumer without skipLibCheck): make it `it` once they are gone. (A strict check
  // without skipLibCheck cannot be the test: tfjs's own .d.ts fail it, TS2304 'Long', TS2411.)
  it.runIf(version === TFJS_VERSIONS[0])('has declarations that import no tfjs internals (dist/...)', () => {
    const dist = join(consumer(), 'node_modules/factorized-transformer/dist');
    const leaks: string[] = [];
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, e.name);
        if (e.isDirectory()) walk(path);
        else if (e.name.endsWith('.d.ts') && /['"]@tensorflow\/[^'"]+\/dist\//.test(readFileSync(path, 'utf8'))) leaks.push(path.slice(dist.length + 1));
      }
    };
    walk(dist);
    expect(leaks).toEqual([]);
  });

  it.runIf(version === TFJS_VERSIONS[0])('runs the compiled CLI (no tsx installed) and builds the native addon from native/ when the repository could', async () => {
    const bin = join(consumer(), 'node_modules/.bin/factorized-transformer');
    expect(existsSync(join(consumer(), 'node_modules/tsx'))).toBe(false);
    expect((await run(bin, ['--version'])).stdout.trim()).toBe(pkg.version);
    if (existsSync(join(ROOT, 'native/build/Release/blas.node'))) {
      expect(existsSync(join(consumer(), 'node_modules/factorized-transformer/native/build/Release/blas.node'))).toBe(true);
    }
  });
});

describe('the packed tarball in a browser bundle (esbuild, platform browser)', () => {
  it.each(['factorized-transformer/browser', 'factorized-transformer'])('%s bundles with no Node built-in', async (specifier) => {
    const dir = consumers.get(TFJS_VERSIONS[0]);
    if (!dir) throw new Error('consumer was not installed');
    const { build } = await import('esbuild');
    const result = await build({
      absWorkingDir: dir,
      stdin: { contents: `import * as ft from '${specifier}';\nexport const layer = ft.FactorizedMultiHeadAttention;`, resolveDir: dir, loader: 'js' },
      bundle: true,
      platform: 'browser',
      format: 'esm',
      write: false,
      metafile: true,
      logLevel: 'silent',
      external: ['@tensorflow/*'],
    });
    expect(result.errors).toEqual([]);
    const inputs = Object.keys(result.metafile.inputs);
    // The browser condition picks the browser entry, and nothing Node-only comes with it.
    expect(inputs).toContain('node_modules/factorized-transformer/dist/entry/browser.js');
    // (backend/kernels/ holds kernel definitions, browser-safe; the engine start-up is Node's.)
    expect(inputs.filter((f) => /^node:|\/backend\/(index|native|webgpu|wasmThreads)\.js|\/(io|cli|tasks)\/|checkpoint|sentencepiece/.test(f))).toEqual([]);
    const imports = Object.values(result.metafile.inputs).flatMap((i) => i.imports.map((x) => x.path));
    expect(imports.filter((p) => p.startsWith('node:') || ['fs', 'path', 'crypto', 'zlib', 'os', 'child_process'].includes(p))).toEqual([]);
  });
});

/** README.md's library snippets: each ```js block preceded by `<!-- test: NAME.mjs -->`, as written. */
function readmeSnippets(): { name: string; code: string }[] {
  const md = readFileSync(join(ROOT, 'README.md'), 'utf8');
  return [...md.matchAll(/<!-- test: ([\w.-]+\.mjs) -->\n```js\n([\s\S]*?)\n```/g)].map((m) => ({ name: m[1]!, code: m[2]! }));
}

/** What each snippet must print: it ran the documented API to the end and got a sensible result. */
const SNIPPET_OUTPUT: Record<string, RegExp> = {
  'layer.mjs': /^loss \d+\.\d{3} → \d+\.\d{3} → \d+\.\d{3}$/m,
  'save-load.mjs': /^reloaded identical: true$/m,
  'fit-fd.mjs': /^decayed pairs: \S+\/qk, \S+\/ov$/m,
  'from-torch.mjs': /^rank 8 relative errors \{ qk: 0\.\d+, ov: 0\.\d+ \}$/m,
  'encoder.mjs': /^hidden \[ 1, 4, \d+ \] attention rank \d+$/m,
};

describe('the README library snippets, run as written in the consumer with tfjs 4.22', () => {
  const snippets = readmeSnippets();

  it('are all found in README.md', () => {
    expect(snippets.map((s) => s.name)).toEqual(Object.keys(SNIPPET_OUTPUT));
  });

  it.each(snippets)('$name', async ({ name, code }) => {
    const dir = consumers.get(TFJS_VERSIONS[0]);
    if (!dir) throw new Error('consumer was not installed');
    const env = { ...process.env, FT_LOG: '0' };
    if (name === 'encoder.mjs') {
      // The checkpoint the snippet names, made as its comment says (a tiny model, 2 updates).
      const bin = join(dir, 'node_modules/.bin/factorized-transformer');
      await run(bin, ['train', 'mlm', '--preset', 'bert_tiny', '--max-steps', '2', '--out', 'mlm-run', '--progress', 'none'], { cwd: dir, env });
    }
    writeFileSync(join(dir, `readme-${name}`), code);
    const { stdout } = await run(process.execPath, [`readme-${name}`], { cwd: dir, env });
    expect(stdout).toMatch(SNIPPET_OUTPUT[name]!);
  });
});
