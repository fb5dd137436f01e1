/**
 * Engine choice and start-up: tfjs-node-gpu > webgpu (a real GPU) > tfjs-node > wasm > cpu.
 *
 * The native TensorFlow backends download libtensorflow at install time and are optional
 * dependencies; where they are missing we fall back to the pure-npm engines and say why, once.
 * webgpu (webgpu.ts: tfjs-backend-webgpu on Dawn, both optional npm packages) is the GPU engine
 * that installs from npm alone; `auto` takes it only on a real adapter, never a software one.
 * The wasm engine is made fast here: threaded (SIMD + pthreads, see wasmThreads.ts), matrix
 * products on the system BLAS through the optional native addon (kernels/matMul.ts), and the
 * kernels stock wasm lacks or does slowly replaced (kernels/).
 *
 * Env: FT_BACKEND (auto|tensorflow|webgpu|wasm|cpu; webgpu forces the engine, a software adapter
 * included, and falls back with one logged reason when no adapter starts), FT_WEBGPU_FLAGS (Dawn's
 * flags, e.g. backend=vulkan,adapter=NVIDIA; see webgpu.ts), FT_THREADS (compute threads; default the number of
 * CPUs), FT_NATIVE_BLAS=0 (skip the addon), FT_WASM_THREADS=0|1 (force the wasm thread pool off/on;
 * by default on only when the native BLAS is unavailable), FT_LOG=0 (do not log the choice: the
 * default of `verbose`; FT_BACKEND_LOG=0 is the older name and still works). The test setup
 * (test/setup.ts) sets FT_THREADS=1 and FT_BACKEND_LOG=0 like any user could; nothing here knows
 * about the test runner.
 *
 * Importing this module does nothing but define it: the engines, our kernels and gradients, and the
 * `file://` model routers are installed by `initBackend()` only, so that importing the package
 * leaves a user's tfjs set-up as it was.
 */
import * as tf from '@tensorflow/tfjs';
import { packageRequire } from '../package-root.ts';
import os from 'node:os';
import { UserError } from '../errors.ts';
import { registerUnsortedSegmentSum } from './kernels/unsortedSegmentSum.ts';
import { registerWasmMatMul } from './kernels/matMul.ts';
import { registerCrossEntropyGrad } from './kernels/crossEntropy.ts';
import { registerGelu } from './kernels/gelu.ts';
import { registerLayerNorm } from './kernels/layerNorm.ts';
import { registerVectorizedTileGradient } from './kernels/tileGradient.ts';
import { registerWasmReduce } from './kernels/reduce.ts';
import { registerWasmGather } from './kernels/gather.ts';
import { registerWasmIdentity } from './kernels/identity.ts';
import { registerFusedAttention } from './kernels/attention.ts';
import { loadNativeBlas } from './native.ts';
import { registerThreadedWasm, restoreStockWasm, TFJS_WASM_VERSION } from './wasmThreads.ts';
import { gpuDeviceNodeVisible, probeWebGpu, startWebGpu, webGpuStatus, type WebGpuStatus } from './webgpu.ts';

export type BackendChoice = 'auto' | 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';
export interface BackendOptions {
  /** Which engine; defaults to env FT_BACKEND, then 'auto'. */
  backend?: BackendChoice;
  /**
   * Log the choice (and a forced webgpu's fallback) to stderr, once per process. Default: true
   * unless env FT_LOG=0 (or its older name FT_BACKEND_LOG=0).
   */
  verbose?: boolean;
}
export interface BackendInfo {
  name: string;
  requested: BackendChoice;
  skipped: { name: string; reason: string }[];
}

/** What `doctor` prints: the engine in use, what was skipped and why, threads, BLAS, versions. */
export interface BackendDescription {
  active: string;
  requested: BackendChoice;
  skipped: { name: string; reason: string }[];
  /** Compute threads of the active engine (wasm: the larger of the XNNPACK pool and the BLAS threads; 1 for cpu). */
  threads: number;
  /** wasm: whether the threaded build runs (or why not) and its pool size incl. the main thread. */
  wasmThreads: { enabled: boolean; pool: number; reason?: string };
  nativeBlas: { available: boolean; reason?: string; config?: string; threads?: number; coreTypeChosen?: string };
  /** Which implementation BatchMatMul/_FusedMatMul use on this engine. */
  matMul: 'native' | 'wasm-sliced' | 'stock';
  /** The WebGPU adapter (of the running engine, or what a probe found), or why there is none. */
  webgpu: WebGpuStatus | { adapter?: undefined; reason: string; flags?: undefined };
  versions: Record<string, string>;
}

let current: BackendInfo | undefined;
let logged = false;
let wasmThreadsState: { enabled: boolean; reason?: string } = { enabled: false, reason: 'wasm not started' };
let matMulPath: BackendDescription['matMul'] = 'stock';
let wasmPrepared = false;

const CHOICES: readonly BackendChoice[] = ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'];

function parseChoice(value: string | undefined, source: string): BackendChoice {
  const v = (value ?? 'auto').trim() || 'auto';
  if (!(CHOICES as readonly string[]).includes(v)) {
    throw new UserError(`${source}: unknown backend '${v}'; expected one of ${CHOICES.join(', ')}`);
  }
  return v as BackendChoice;
}

/**
 * Threads for the compute pools: FT_THREADS, else every CPU this process may use. (A program that
 * already runs one process per core, such as the test runner, sets FT_THREADS=1.)
 */
export function computeThreads(): number {
  const raw = process.env.FT_THREADS;
  if (raw !== undefined && raw.trim() !== '') {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1) throw new UserError(`FT_THREADS: expected a positive integer, got '${raw}'`);
    return n;
  }
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

function tryRequire(pkg: string): string | undefined {
  try {
    packageRequire(pkg);
    return undefined;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return e.code === 'MODULE_NOT_FOUND' ? 'not installed' : String(e.message).split('\n')[0];
  }
}

/**
 * Registers the wasm engine and our kernels, once per process.
 *
 * Thread plan (measured on 2 shared cores, transformer_small training step: one wasm thread +
 * 2 BLAS threads 10.6 s, 2 wasm threads + 2 BLAS threads 14.9 s): with the native BLAS doing the
 * matrix products, wasm stays single-threaded so that two thread pools do not fight over the
 * cores; without it, XNNPACK's pool gets every thread. FT_WASM_THREADS=1/0 forces either way.
 */
async function prepareWasm(): Promise<void> {
  if (wasmPrepared) return;
  // Importing the package registers the stock backend and all its kernels: done here, never at
  // import time, so that a user's tfjs keeps its own backend until initBackend() is called.
  const tfWasm = await import('@tensorflow/tfjs-backend-wasm');
  const threads = computeThreads();
  const native = loadNativeBlas();
  const forced = process.env.FT_WASM_THREADS;
  if (forced === '0') {
    wasmThreadsState = { enabled: false, reason: 'disabled by FT_WASM_THREADS=0' };
  } else if (forced !== '1' && native.blas) {
    wasmThreadsState = { enabled: false, reason: 'native BLAS runs the matrix products on all threads (FT_WASM_THREADS=1 to thread wasm too)' };
  } else if (threads < 2) {
    wasmThreadsState = { enabled: false, reason: 'one compute thread (FT_THREADS or CPU count)' };
  } else {
    try {
      registerThreadedWasm(threads, tfWasm);
      wasmThreadsState = { enabled: true };
    } catch (err) {
      wasmThreadsState = { enabled: false, reason: String((err as Error).message).split('\n')[0] };
    }
  }
  if (native.blas) native.blas.setNumThreads(threads);
  matMulPath = registerWasmMatMul(native.blas).path;
  registerUnsortedSegmentSum('wasm');
  registerCrossEntropyGrad('wasm', native.blas);
  registerGelu('wasm', native.blas);
  registerLayerNorm('wasm', native.blas);
  registerWasmReduce(native.blas);
  registerWasmGather();
  registerWasmIdentity();
  // Without the addon the layer keeps its op path on wasm: its products run on XNNPACK, JS loops would be slower.
  if (native.blas) registerFusedAttention('wasm', native.blas);
  wasmPrepared = true;
}

/** The cpu kernels and the (engine-independent) Tile gradient: tests and tools compare against (or fall back to) cpu on any engine. */
function registerSharedKernels(): void {
  registerUnsortedSegmentSum('cpu');
  registerCrossEntropyGrad('cpu', loadNativeBlas().blas);
  registerGelu('cpu', loadNativeBlas().blas);
  registerLayerNorm('cpu', loadNativeBlas().blas);
  registerFusedAttention('cpu', loadNativeBlas().blas);
  registerVectorizedTileGradient();
}

async function setUp(name: 'tensorflow' | 'wasm' | 'cpu'): Promise<boolean> {
  registerSharedKernels();
  if (name === 'wasm') await prepareWasm();
  let ok = await tf.setBackend(name);
  await tf.ready();
  if (!ok && name === 'wasm' && wasmThreadsState.enabled) {
    // The threaded start failed (tf.setBackend reports it as false): fall back to stock wasm.
    wasmThreadsState = { enabled: false, reason: 'threaded start failed; using single-thread wasm' };
    restoreStockWasm();
    ok = await tf.setBackend(name);
    await tf.ready();
  }
  return ok;
}

/** Whether to log by default: FT_LOG=0 (or FT_BACKEND_LOG=0, its older name) turns it off. */
function logByDefault(): boolean {
  return process.env.FT_LOG !== '0' && process.env.FT_BACKEND_LOG !== '0';
}

/**
 * Picks and starts the engine, registers our kernels and gradients with it (and with cpu), and
 * registers the `file://` save/load routers (io/file-routers.ts) unless tfjs-node serves
 * `file://` already. Idempotent: a second call with the same choice is free.
 */
export async function initBackend(options: BackendOptions = {}): Promise<BackendInfo> {
  const verbose = options.verbose ?? logByDefault();
  // Imported here, not at the top: io/ builds on train/checkpoint.ts, which has no business being
  // loaded (or in a cycle) with the backend module, and only initBackend needs the routers.
  const { registerFileRouters } = await import('../io/file-routers.ts');
  registerFileRouters();
  const requested =
    options.backend !== undefined ? parseChoice(options.backend, 'backend option') : parseChoice(process.env.FT_BACKEND, 'FT_BACKEND');
  computeThreads(); // a bad FT_THREADS is the user's mistake, not a reason to fall back to another engine
  if (current && current.requested === requested && tf.getBackend() === (current.name.startsWith('tensorflow') ? 'tensorflow' : current.name)) {
    return current;
  }
  const skipped: BackendInfo['skipped'] = [];
  let name: string | undefined;
  // A forced webgpu that cannot start falls back like auto (minus the GPU engines), with its reason logged.
  const order: ('tensorflow-gpu' | 'tensorflow' | 'webgpu' | 'wasm' | 'cpu')[] =
    requested === 'auto'
      ? ['tensorflow-gpu', 'webgpu', 'tensorflow', 'wasm', 'cpu']
      : requested === 'tensorflow'
        ? ['tensorflow-gpu', 'tensorflow']
        : requested === 'webgpu'
          ? ['webgpu', 'tensorflow', 'wasm', 'cpu']
          : [requested];
  for (const candidate of order) {
    if (candidate === 'webgpu') {
      const reason = await tryWebGpu(requested === 'webgpu');
      if (!reason) {
        name = candidate;
        break;
      }
      skipped.push({ name: 'webgpu', reason });
      if (requested === 'webgpu' && verbose) process.stderr.write(`[factorized-transformer] webgpu unavailable: ${reason}; falling back\n`);
      continue;
    }
    if (candidate === 'tensorflow-gpu' || candidate === 'tensorflow') {
      const pkg = candidate === 'tensorflow-gpu' ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node';
      const why = tryRequire(pkg);
      if (why) {
        skipped.push({ name: pkg, reason: why });
        continue;
      }
      if (await setUp('tensorflow')) {
        // auto wants tfjs-node-gpu on a GPU only: on a CPU-only TensorFlow, webgpu or the CPU engines come next.
        const onGpu = (tf.backend() as { isUsingGpuDevice?: boolean }).isUsingGpuDevice;
        if (requested === 'auto' && candidate === 'tensorflow-gpu' && onGpu === false) {
          skipped.push({ name: pkg, reason: 'installed, but TensorFlow found no CUDA GPU' });
          continue;
        }
        name = candidate;
        break;
      }
      skipped.push({ name: pkg, reason: 'setBackend failed' });
      continue;
    }
    try {
      if (await setUp(candidate)) {
        name = candidate;
        break;
      }
      skipped.push({ name: candidate, reason: 'setBackend failed' });
    } catch (err) {
      skipped.push({ name: candidate, reason: String((err as Error).message).split('\n')[0] });
    }
  }
  if (!name) {
    throw new Error(`no usable backend for '${requested}': ${skipped.map((s) => `${s.name} (${s.reason})`).join('; ')}`);
  }
  current = { name, requested, skipped };
  if (verbose && !logged) {
    logged = true;
    const d = describeBackend();
    const gpu = d.webgpu.adapter;
    const extra =
      name === 'wasm'
        ? ` (${d.threads} threads, matMul ${d.matMul}${d.nativeBlas.available ? '' : `; native BLAS unavailable: ${d.nativeBlas.reason}`})`
        : name === 'webgpu' && gpu
          ? ` (${gpu.vendor} ${gpu.architecture}: ${gpu.description || gpu.device}${gpu.isFallbackAdapter ? ', software' : ''})`
          : '';
    const why = skipped.length ? `; skipped ${skipped.map((s) => `${s.name}: ${s.reason}`).join(', ')}` : '';
    process.stderr.write(`[factorized-transformer] backend ${name}${extra}${why}\n`);
  }
  return current;
}

/**
 * Starts webgpu; undefined when it runs, else why not. Forced: any adapter, software included.
 * Auto: only a real GPU, decided by a child-process probe first so that machines without one
 * (or with only lavapipe) never load Dawn into this process (see webgpu.ts).
 */
async function tryWebGpu(forced: boolean): Promise<string | undefined> {
  if (!forced) {
    // FT_WEBGPU_FLAGS may pick a backend that needs no device node (e.g. OpenGL ES): then always probe.
    if (!gpuDeviceNodeVisible() && !process.env.FT_WEBGPU_FLAGS) {
      return 'no GPU device visible (/dev/dri/renderD*, /dev/nvidia*); only a software adapter could run (FT_BACKEND=webgpu uses one)';
    }
    const probe = probeWebGpu();
    if (!probe.adapter) return probe.reason;
    if (probe.adapter.isFallbackAdapter) {
      return `only a software adapter (${probe.adapter.description || probe.adapter.device}); FT_BACKEND=webgpu uses it anyway`;
    }
  }
  registerSharedKernels();
  const status = await startWebGpu(forced);
  return status.adapter ? undefined : status.reason;
}

/** The engine chosen by the last initBackend call, if any. */
export function backendInfo(): BackendInfo | undefined {
  return current;
}

function packageVersion(pkg: string): string | undefined {
  try {
    return (packageRequire(`${pkg}/package.json`) as { version: string }).version;
  } catch {
    return undefined;
  }
}

/** A description of the running engine for `doctor` and benchmark output. Call after initBackend. */
export function describeBackend(): BackendDescription {
  const active = current?.name ?? tf.getBackend() ?? 'none';
  const native = loadNativeBlas();
  let wasmPool = 0;
  let threads = 1;
  if (active === 'wasm') {
    let pool = 1;
    try {
      pool = (packageRequire('@tensorflow/tfjs-backend-wasm') as { getThreadsCount(): number }).getThreadsCount();
    } catch {
      pool = 1;
    }
    threads = Math.max(pool, matMulPath === 'native' && native.blas ? native.blas.getNumThreads() : 1);
    wasmPool = pool;
  } else if (active.startsWith('tensorflow')) {
    threads = computeThreads();
  }
  const versions: Record<string, string> = { node: process.versions.node };
  for (const pkg of ['@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-wasm', '@tensorflow/tfjs-backend-webgpu', 'webgpu', '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu']) {
    const v = packageVersion(pkg);
    if (v) versions[pkg] = v;
  }
  if (native.blas) versions.blas = native.blas.config();
  return {
    active,
    requested: current?.requested ?? 'auto',
    skipped: current?.skipped ?? [],
    threads,
    wasmThreads: active === 'wasm' ? { ...wasmThreadsState, pool: wasmPool } : { enabled: false, pool: 0, reason: `engine is ${active}` },
    nativeBlas: native.blas
      ? { available: true, config: native.blas.config(), threads: native.blas.getNumThreads(), coreTypeChosen: native.coreTypeChosen }
      : { available: false, reason: native.reason },
    matMul: active === 'wasm' ? matMulPath : 'stock',
    webgpu: webGpuStatus() ?? { reason: 'not probed (call probeWebGpu, as doctor does)' },
    versions,
  };
}

export { TFJS_WASM_VERSION };
export { probeWebGpu, parseWebGpuFlags } from './webgpu.ts';
export type { WebGpuAdapterDescription, WebGpuStatus } from './webgpu.ts';
export { softmaxCrossEntropy } from './kernels/crossEntropy.ts';
export type { SoftmaxCrossEntropy, SoftmaxCrossEntropyOptions } from './kernels/crossEntropy.ts';
