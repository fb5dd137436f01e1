/**
 * `npm run bundle -- --out ft-gpu.tar.xz`: the portable GPU bundle, for x86-64 Linux machines that
 * have a GPU driver and nothing else (no Node, no npm, no internet).
 *
 * Layout of the archive (one top folder, `ft-gpu/`):
 *   ft                      launcher: `./ft doctor`, `./ft train translation …`, `./ft bench gpu`
 *   node/bin/node           the Node binary this script runs on (needs glibc ≥ 2.28, libstdc++)
 *   lib/libvulkan.so.1      the Vulkan loader (+ its real soname file); the driver brings the ICD
 *   app/dist/*.mjs          src/cli and bench/run.ts compiled by esbuild, with every pure-JS dependency
 *   app/node_modules/       what must stay files: the tfjs packages (one shared tfjs-core; the wasm
 *                           engine loads its .wasm and worker scripts by path), `webgpu` with the
 *                           linux-x64 dawn.node only — pruned to the files Node actually loads
 *   app/native/             the optional OpenBLAS addon, when built (it still needs libopenblas)
 *   app/data/, app/bench/reference/   default corpora + tokenizers, the PyTorch reference scripts
 *
 * Source files find their neighbours through `import.meta.url` (data/, package.json, the native
 * addon, bench/reference/); in the compiled files each module's `import.meta.url` is rewritten to
 * the URL its source would have under app/, so those lookups work unchanged.
 *
 * Options: --out FILE (.tar.xz), --dir DIR (also, or instead, write the unpacked tree to DIR, e.g.
 * to try it without an archive), --node PATH (default: this Node), --vulkan-loader PATH (default:
 * the system's libvulkan.so.1), --max-mib N (fail above this compressed size; default 45).
 */
import { build, type Metafile, type Plugin } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import os from 'node:os';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TOP = 'ft-gpu';

/**
 * Optional packages the bundle leaves out: ONNX Runtime (the CPU decode engine; native binaries for
 * every platform, ~100 MB) is not what a GPU bundle is for, and decoding falls back to the tfjs
 * model when it cannot be loaded (src/decode/engine.ts).
 */
const NOT_SHIPPED = ['onnxruntime-node'];
/** Packages that stay files under app/node_modules instead of being compiled in (see the header). */
const EXTERNAL = ['@tensorflow/*', 'webgpu', ...NOT_SHIPPED];
/** Packages the code loads by computed specifiers (webgpu.ts resolves `webgpu`, then imports its file URL). */
const ALWAYS_SHIPPED = ['webgpu', '@tensorflow/tfjs-backend-webgpu', '@tensorflow/tfjs-backend-wasm'];
/** Files Node loads by computed paths, which a static trace cannot see. */
const EXTRA_PACKAGE_FILES: Record<string, (file: string) => boolean> = {
  webgpu: (f) => f === 'dist/linux-x64/dawn.node',
  // dist/*.wasm: the stock engine; wasm-out/: the threaded build (glue, worker, .wasm; wasmThreads.ts).
  '@tensorflow/tfjs-backend-wasm': (f) => /^dist\/[^/]+\.wasm$/.test(f) || (f.startsWith('wasm-out/') && /\.(js|wasm)$/.test(f)),
};

export interface BundleOptions {
  out?: string;
  node: string;
  vulkanLoader: string;
  dir?: string;
  maxMiB: number;
}

class BundleError extends Error {}

function parseArgs(argv: string[]): BundleOptions {
  const opts: Partial<BundleOptions> = { node: process.execPath, maxMiB: 45 };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === '') throw new BundleError(`${flag} needs a value`);
      return v;
    };
    if (flag === '--out') opts.out = resolve(value());
    else if (flag === '--node') opts.node = resolve(value());
    else if (flag === '--vulkan-loader') opts.vulkanLoader = resolve(value());
    else if (flag === '--dir') opts.dir = resolve(value());
    else if (flag === '--max-mib') opts.maxMiB = Number(value());
    else throw new BundleError(`unknown option '${argv[i]}'; options: --out FILE.tar.xz, --dir DIR, --node PATH, --vulkan-loader PATH, --max-mib N`);
  }
  if (!opts.out && !opts.dir) throw new BundleError('--out FILE.tar.xz (or --dir DIR) is required');
  // The archive is for x86-64 Linux: its dawn.node and (by default) this very Node binary.
  if (process.platform !== 'linux' || process.arch !== 'x64') throw new BundleError(`the bundle is made on x86-64 Linux (this is ${process.platform}-${process.arch})`);
  if (opts.out && !opts.out.endsWith('.tar.xz')) throw new BundleError(`--out ${opts.out}: expected a .tar.xz file name`);
  if (!Number.isFinite(opts.maxMiB!) || opts.maxMiB! <= 0) throw new BundleError('--max-mib: expected a positive number');
  opts.vulkanLoader ??= findVulkanLoader();
  return opts as BundleOptions;
}

/** The system's Vulkan loader: ldconfig's entry, else the usual library folders. */
export function findVulkanLoader(): string {
  const ldconfig = ['/sbin/ldconfig', '/usr/sbin/ldconfig'].find((p) => existsSync(p));
  if (ldconfig) {
    const listing = spawnSync(ldconfig, ['-p'], { encoding: 'utf8' }).stdout ?? '';
    const line = listing.split('\n').find((l) => /^\s*libvulkan\.so\.1 \(.*x86-64.*\) => /.test(l));
    if (line) return line.split(' => ')[1].trim();
  }
  const found = ['/usr/lib/x86_64-linux-gnu', '/usr/lib64', '/usr/lib', '/lib/x86_64-linux-gnu'].map((d) => join(d, 'libvulkan.so.1')).find((p) => existsSync(p));
  if (!found) throw new BundleError('no Vulkan loader (libvulkan.so.1) on this machine: apt-get install libvulkan1, or pass --vulkan-loader PATH');
  return found;
}

/**
 * Rewrites `import.meta.url` in our own sources to the URL the module would have under app/
 * (computed at run time from the compiled file's own location, see BANNER).
 */
function relocateImportMeta(): Plugin {
  return {
    name: 'relocate-import-meta',
    setup(b) {
      b.onLoad({ filter: /\.[cm]?[jt]s$/ }, (args) => {
        const rel = relative(ROOT, args.path);
        if (rel.startsWith('..') || rel.split(sep).includes('node_modules')) return undefined;
        let text = readFileSync(args.path, 'utf8');
        text = text.replaceAll('import.meta.url', `__ftModuleUrl(${JSON.stringify(rel.split(sep).join('/'))})`);
        if (text.includes('import.meta')) throw new BundleError(`${rel}: uses import.meta beyond import.meta.url, which the bundle cannot relocate`);
        return { contents: text, loader: args.path.endsWith('.ts') ? 'ts' : 'js' };
      });
    },
  };
}

/** The CLI entry: what bin/factorized-transformer.js does, without tsx. */
function cliEntry(): Plugin {
  return {
    name: 'cli-entry',
    setup(b) {
      b.onResolve({ filter: /^ft-entry:cli$/ }, () => ({ path: 'cli', namespace: 'ft-entry' }));
      b.onLoad({ filter: /.*/, namespace: 'ft-entry' }, () => ({
        contents: "import { main } from './src/cli/main.ts';\nawait main(process.argv.slice(2));\n",
        resolveDir: ROOT,
        loader: 'ts',
      }));
    },
  };
}

// Compiled CommonJS dependencies use require, __filename and __dirname (sentencepiece-js' Emscripten
// glue), which ES modules lack, so each output file defines them. __ftModuleUrl maps a source path
// (relative to the repository) to its place under app/.
const BANNER = [
  "import { createRequire as __ftCreateRequire } from 'node:module';",
  "import { fileURLToPath as __ftFileURLToPath } from 'node:url';",
  'const require = __ftCreateRequire(import.meta.url);',
  'const __filename = __ftFileURLToPath(import.meta.url);',
  "const __dirname = __ftFileURLToPath(new URL('.', import.meta.url));",
  "const __ftAppRoot = new URL('../', import.meta.url);",
  'const __ftModuleUrl = (path) => new URL(path, __ftAppRoot).href;',
].join('\n');

/** Compiles the CLI and the benchmark runner into app/dist; returns the packages left external. */
async function compile(appDir: string): Promise<string[]> {
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: [
      { in: 'ft-entry:cli', out: 'cli' },
      { in: 'bench/run.ts', out: 'bench' },
    ],
    outdir: join(appDir, 'dist'),
    outExtension: { '.js': '.mjs' },
    bundle: true,
    splitting: true,
    chunkNames: 'chunk-[hash]',
    format: 'esm',
    platform: 'node',
    target: 'node20',
    external: EXTERNAL,
    banner: { js: BANNER },
    plugins: [cliEntry(), relocateImportMeta()],
    metafile: true,
    legalComments: 'linked',
    logLevel: 'warning',
  });
  const externals = new Set<string>();
  for (const out of Object.values(result.metafile.outputs)) {
    for (const imp of out.imports) if (imp.external && !isBuiltin(imp.path)) externals.add(imp.path);
  }
  return [...externals].sort();
}

/** The npm package a bare import names: `@scope/name/sub` → `@scope/name`. */
function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return parts.slice(0, specifier.startsWith('@') ? 2 : 1).join('/');
}

/** The package folder (relative to ROOT, under node_modules) holding `file`. */
function packageDirOf(file: string): string {
  let dir = dirname(file);
  while (dir !== '.' && dir.includes('node_modules')) {
    if (existsSync(join(ROOT, dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  throw new BundleError(`${file}: no package.json above it`);
}

function copyInto(appDir: string, rel: string): void {
  const to = join(appDir, rel);
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(join(ROOT, rel), to);
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

/**
 * Copies the external packages into app/node_modules, pruned to what Node loads: the files a
 * static trace from each package's entry reaches (esbuild resolves like Node: `exports`, `main`),
 * the package.json files that resolution reads, and the files loaded by computed paths.
 */
async function shipPackages(appDir: string, imports: string[]): Promise<string[]> {
  // Optional imports of packages that are not installed (e.g. vega's `canvas`, in a try) stay
  // unresolved, exactly as when running from the repository.
  const externals = [...new Set([...ALWAYS_SHIPPED, ...imports])].filter(
    (p) => !NOT_SHIPPED.includes(packageName(p)) && existsSync(join(ROOT, 'node_modules', packageName(p))),
  );
  for (const p of ALWAYS_SHIPPED) {
    if (!externals.includes(p)) throw new BundleError(`node_modules/${p} is missing: run npm ci (optional dependencies included) first`);
  }
  const trace = await build({
    absWorkingDir: ROOT,
    stdin: { contents: externals.map((p) => `import ${JSON.stringify(p)};`).join('\n'), resolveDir: ROOT, loader: 'js' },
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    metafile: true,
    logLevel: 'silent',
  });
  const files = new Set(Object.keys((trace.metafile as Metafile).inputs).filter((f) => f.startsWith('node_modules/')));
  const packages = new Set([...files].map(packageDirOf));
  for (const pkg of packages) files.add(`${pkg}/package.json`);
  for (const [name, wanted] of Object.entries(EXTRA_PACKAGE_FILES)) {
    const dir = `node_modules/${name}`;
    if (!existsSync(join(ROOT, dir))) throw new BundleError(`${dir} is missing: run npm ci (optional dependencies included) first`);
    for (const abs of walk(join(ROOT, dir))) {
      const rel = relative(join(ROOT, dir), abs).split(sep).join('/');
      if (wanted(rel)) files.add(`${dir}/${rel}`);
    }
  }
  for (const f of files) copyInto(appDir, f);
  return [...packages].sort();
}

function copyAssets(appDir: string): void {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string; license?: string };
  // The CLI reads its version from here; "type": "module" is what the compiled .mjs files are anyway.
  writeFileSync(join(appDir, 'package.json'), `${JSON.stringify({ name: pkg.name, version: pkg.version, license: pkg.license, private: true, type: 'module' }, null, 2)}\n`);
  // doctor checks that <package>/checkpoints is writable; here that is the bundle's own folder.
  mkdirSync(join(appDir, 'checkpoints'), { recursive: true });
  cpSync(join(ROOT, 'data'), join(appDir, 'data'), { recursive: true, filter: (src) => !basename(src).endsWith('.ids.bin') });
  mkdirSync(join(appDir, 'bench/reference'), { recursive: true });
  for (const f of readdirSync(join(ROOT, 'bench/reference'))) if (f.endsWith('.py')) copyFileSync(join(ROOT, 'bench/reference', f), join(appDir, 'bench/reference', f));
  const addon = join(ROOT, 'native/build/Release/blas.node');
  if (existsSync(addon)) {
    copyInto(appDir, 'native/index.cjs');
    copyInto(appDir, 'native/build/Release/blas.node');
  }
}

function copyVulkanLoader(libDir: string, loader: string): string {
  const real = realpathSync(loader);
  mkdirSync(libDir, { recursive: true });
  copyFileSync(real, join(libDir, basename(real)));
  if (basename(real) !== 'libvulkan.so.1') symlinkSync(basename(real), join(libDir, 'libvulkan.so.1'));
  return basename(real);
}

const LAUNCHER = `#!/bin/sh
# factorized-transformer, portable GPU bundle (made by scripts/bundle.ts).
#   ./ft doctor | ./ft train translation ... | ./ft bench gpu [--quick] | ./ft --help
# Uses shell built-ins only, so it runs with an empty PATH. The engine is the automatic choice
# (a real GPU through webgpu, else the wasm engine on the CPU) unless FT_BACKEND says otherwise;
# VK_DRIVER_FILES=/path/to/icd.json picks the Vulkan driver, FT_WEBGPU_FLAGS passes Dawn's flags.
case "$0" in */*) FT_HOME=\${0%/*} ;; *) FT_HOME=. ;; esac
FT_HOME=$(cd "$FT_HOME" && pwd -P) || exit 2
LD_LIBRARY_PATH="$FT_HOME/lib\${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
if [ "$1" = bench ]; then
  shift
  exec "$FT_HOME/node/bin/node" "$FT_HOME/app/dist/bench.mjs" "$@"
fi
exec "$FT_HOME/node/bin/node" "$FT_HOME/app/dist/cli.mjs" "$@"
`;

const README = `factorized-transformer: portable GPU bundle (x86-64 Linux)

Needs: glibc >= 2.34 and libstdc++ with GLIBCXX_3.4.30 (Ubuntu 22.04+, Debian 12+, RHEL 9+),
and for the GPU a driver with its Vulkan ICD (NVIDIA: nvidia_icd.json, usually in
/usr/share/vulkan/icd.d/ or /etc/vulkan/icd.d/). Node, the Vulkan loader and everything else
are inside this folder.

  ./ft doctor                              engine, GPU adapter, versions
  ./ft train translation --data DIR ...    as in the project README (./ft --help)
  ./ft quickstart                          the default English-Spanish job
  ./ft bench gpu [--quick]                 webgpu training/decoding figures, beside PyTorch CUDA
                                           when python3 with a CUDA torch is found (PYTHON=...)

Environment:
  FT_BACKEND=webgpu|wasm|cpu|auto   engine (default auto: webgpu on a real GPU, else wasm)
  VK_DRIVER_FILES=/path/icd.json    the Vulkan driver to use (when it is not found, or to pick one)
  FT_WEBGPU_FLAGS=backend=vulkan,adapter=NVIDIA   Dawn's flags (adapter: substring of its name)
`;

export async function makeBundle(opts: BundleOptions): Promise<{ bytes: number | null; packages: string[]; externals: string[] }> {
  const work = mkdtempSync(join(os.tmpdir(), 'ft-bundle-'));
  try {
    const top = join(work, TOP);
    const appDir = join(top, 'app');
    mkdirSync(appDir, { recursive: true });
    const externals = await compile(appDir);
    const packages = await shipPackages(appDir, externals);
    copyAssets(appDir);
    mkdirSync(join(top, 'node/bin'), { recursive: true });
    copyFileSync(opts.node, join(top, 'node/bin/node'));
    chmodSync(join(top, 'node/bin/node'), 0o755);
    copyVulkanLoader(join(top, 'lib'), opts.vulkanLoader);
    writeFileSync(join(top, 'ft'), LAUNCHER, { mode: 0o755 });
    writeFileSync(join(top, 'README.txt'), README);
    if (opts.dir) {
      rmSync(opts.dir, { recursive: true, force: true });
      cpSync(top, opts.dir, { recursive: true, verbatimSymlinks: true });
    }
    if (!opts.out) return { bytes: null, packages, externals };
    // A reproducible archive: fixed owner, sorted names.
    const tarFile = join(work, `${TOP}.tar`);
    run('tar', ['-C', work, '--owner=0', '--group=0', '--numeric-owner', '--sort=name', '-cf', tarFile, TOP]);
    // -9 with 48 MiB blocks: threads get a block each (one block would run on one core); the
    // bundle grows by well under 1 %.
    run('xz', ['-9', '-T0', '--block-size=48MiB', tarFile]);
    mkdirSync(dirname(opts.out), { recursive: true });
    // rename fails across file systems (tmpfs → disk); copy then.
    try {
      renameSync(`${tarFile}.xz`, opts.out);
    } catch {
      copyFileSync(`${tarFile}.xz`, opts.out);
    }
    return { bytes: statSync(opts.out).size, packages, externals };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.error) throw new BundleError(`${cmd}: ${r.error.message}${(r.error as NodeJS.ErrnoException).code === 'ENOENT' ? ' (not installed?)' : ''}`);
  if (r.status !== 0) throw new BundleError(`${cmd} ${args.join(' ')} failed: ${r.stderr.trim().split('\n').pop()}`);
}

async function cli(): Promise<number> {
  try {
    const opts = parseArgs(process.argv.slice(2));
    const t0 = performance.now();
    const { bytes, packages } = await makeBundle(opts);
    const seconds = ((performance.now() - t0) / 1000).toFixed(0);
    if (opts.dir) console.log(`${opts.dir}: the unpacked bundle (run ${join(opts.dir, 'ft')})`);
    const mib = (bytes ?? 0) / 2 ** 20;
    if (opts.out) console.log(`${opts.out}: ${bytes} bytes (${mib.toFixed(2)} MiB), ${seconds} s`);
    console.log(`  node ${opts.node}, Vulkan loader ${realpathSync(opts.vulkanLoader)}, packages: ${packages.map((p) => p.replace(/^node_modules\//, '')).join(', ')}`);
    if (mib > opts.maxMiB) {
      console.error(`error: the bundle is ${mib.toFixed(2)} MiB, over the ${opts.maxMiB} MiB limit (--max-mib)`);
      return 1;
    }
    return 0;
  } catch (err) {
    if (err instanceof BundleError) {
      console.error(`error: ${err.message}`);
      return 1;
    }
    throw err;
  }
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) process.exitCode = await cli();
