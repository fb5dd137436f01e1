/**
 * `npm run bench [-- NAME ...] [--json] [--quick] [--backend NAME]`: runs the named benchmarks
 * (by default every benchmark marked `byDefault`). Each benchmark lives in `bench/<name>.ts` and
 * exports `run: Benchmark`.
 *
 * The list is static (not a directory scan) so that the GPU bundle (scripts/bundle.ts) can compile
 * this runner and every benchmark into one JavaScript program.
 *
 * Engine: a benchmark that names its own (`gpu`: webgpu) runs on it; the others on `--backend`,
 * else FT_BACKEND, else the automatic choice.
 *
 * Process: with more than one benchmark to run, each runs in a child process of its own (this
 * runner, re-invoked with one name), so that the peak resident set a benchmark reports is its own
 * and not the high-water mark of every benchmark before it, as the PyTorch references' are.
 */
import { spawnSync } from 'node:child_process';
import { initBackend, type BackendChoice } from '../src/backend/index.ts';
import type { Benchmark, BenchResult } from './common.ts';

interface BenchEntry {
  load: () => Promise<{ run: Benchmark }>;
  /** Part of a plain `npm run bench` (false: runs only when named). */
  byDefault: boolean;
  /** The engine this benchmark measures, whatever --backend says. */
  backend?: BackendChoice;
}

const BENCHMARKS: Record<string, BenchEntry> = {
  attention: { load: () => import('./attention.ts'), byDefault: true },
  decode: { load: () => import('./decode.ts'), byDefault: true },
  'decode-cpu': { load: () => import('./decode-cpu.ts'), byDefault: true },
  // ONNX Runtime (optional peer dependency) on the model's ONNX export: a candidate engine (issue 17).
  // Our tfjs decode beside ONNX Runtime's (with and without spinning threads) and PyTorch's.
  'decode-onnx': { load: () => import('./decode-onnx.ts'), byDefault: true },
  // Minutes per step on a software Vulkan device: only when asked for.
  gpu: { load: () => import('./gpu.ts'), byDefault: false, backend: 'webgpu' as BackendChoice },
  kernels: { load: () => import('./kernels.ts'), byDefault: true },
  memory: { load: () => import('./memory.ts'), byDefault: true },
  // Kernel calls and time per kernel type of one training step and one beam step: a diagnosis, not a figure.
  profile: { load: () => import('./profile.ts'), byDefault: false },
  'train-mlm': { load: () => import('./train-mlm.ts'), byDefault: true },
  'train-mlm-default': { load: () => import('./train-mlm-default.ts'), byDefault: true },
  'train-translation': { load: () => import('./train-translation.ts'), byDefault: true },
  'train-translation-cpu': { load: () => import('./train-translation-cpu.ts'), byDefault: true },
};
const available = Object.keys(BENCHMARKS);

function fail(message: string): never {
  console.error(`error: ${message}`);
  process.exit(1);
}

const args = process.argv.slice(2);
let json = false;
let quick = false;
let backend: BackendChoice | undefined;
const names: string[] = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--json') json = true;
  else if (a === '--quick') quick = true;
  else if (a === '--backend' || a.startsWith('--backend=')) {
    const value = a === '--backend' ? args[++i] : a.slice('--backend='.length);
    if (!value) fail('--backend needs a value, e.g. --backend wasm');
    backend = value as BackendChoice;
  } else if (a.startsWith('--')) fail(`unknown option '${a}'; options: --json, --quick, --backend NAME`);
  else if (!available.includes(a)) fail(`unknown benchmark '${a}'; available: ${available.join(', ')}`);
  else names.push(a);
}

function print(r: BenchResult): void {
  if (json) {
    console.log(JSON.stringify(r));
    return;
  }
  const base = r.baseline === null ? 'no baseline' : `${r.baselineName ?? 'baseline'} ${r.baseline.toPrecision(4)} ${r.unit}`;
  const ratio = (r.ratio === null ? '' : `, ratio ${r.ratio.toFixed(3)}`) + (r.pytorch1 ? `; PyTorch ${r.pytorch1.version} ${r.pytorch1.value.toPrecision(4)}, ratio ${r.pytorch1.ratio.toFixed(3)}` : '');
  const extra = r.extra ? `  ${JSON.stringify(r.extra)}` : '';
  console.log(`${r.name}: ${Number.isInteger(r.value) ? r.value : r.value.toPrecision(4)} ${r.unit} (${base}${ratio})${memory(r)}${extra}`);
}

/** `; peak RSS ours MiB vs PyTorch's (ratio)` when the benchmark measured both. */
function memory(r: BenchResult): string {
  const ours = r.extra?.peakRssMiB;
  if (typeof ours !== 'number') return '';
  const theirs = (r.extra?.pytorch as { peak_rss_mib?: number } | undefined)?.peak_rss_mib;
  const legacy = (r.extra?.pytorch1 as { peak_rss_mib?: number } | undefined)?.peak_rss_mib;
  const vs = (mib: number | undefined, who: string) => (typeof mib === 'number' ? `; ${who} ${Math.round(mib)} MiB, ratio ${(ours / mib).toFixed(2)}` : '');
  return `; peak RSS ${Math.round(ours)} MiB${vs(theirs, r.baselineName ?? 'PyTorch')}${vs(legacy, `PyTorch ${r.pytorch1?.version ?? '1.x'}`)}`;
}

/** Runs each benchmark in a child process of its own (see the header); false when one failed. */
function runEachInItsOwnProcess(selected: string[]): boolean {
  let ok = true;
  const flags = [...(json ? ['--json'] : []), ...(quick ? ['--quick'] : []), ...(backend ? ['--backend', backend] : [])];
  for (const name of selected) {
    const child = spawnSync(process.execPath, [...process.execArgv, process.argv[1], name, ...flags], { stdio: 'inherit', env: process.env });
    if (child.status !== 0) ok = false;
  }
  return ok;
}

const selected = names.length ? names : available.filter((n) => BENCHMARKS[n].byDefault);
if (selected.length > 1) process.exit(runEachInItsOwnProcess(selected) ? 0 : 1);
try {
  for (const name of selected) {
    const entry = BENCHMARKS[name];
    const choice = entry.backend ?? backend;
    await initBackend(choice ? { backend: choice } : {});
    const mod = await entry.load();
    for (const r of await mod.run({ json, quick })) print(r);
  }
} catch (err) {
  // A benchmark that cannot run here (no GPU adapter, bad option) says why in one line.
  if (process.env.FT_DEBUG) console.error(err);
  fail(String((err as Error).message ?? err).split('\n')[0]);
}
