/**
 * The multi-threaded (SIMD + pthreads) wasm engine under Node.
 *
 * tfjs-backend-wasm ships a threaded build but never uses it in Node: its feature flag answers
 * "no threads" for Node (tfjs issue #3830), it hands Emscripten the worker and main script as
 * blob: URLs (Node workers need file paths), the C side sizes its thread pool from the CPU count
 * halved, and running pthreads keep the process alive at exit. Here we start that same build
 * ourselves with each of those fixed, and register it under the name 'wasm' so all of tfjs's
 * wasm kernels (and ours) apply unchanged.
 *
 * This reaches into the package's internals (wasm-out/ files, the BackendWasm constructor, the
 * Emscripten module's PThread object), so tfjs-backend-wasm is pinned to an exact version in
 * package.json; TFJS_WASM_VERSION below is checked at start-up and the threaded path is skipped,
 * with a reason, on any other version.
 */
import * as tf from '@tensorflow/tfjs-core';
// Type only: importing the package registers the 'wasm' backend (priority 2), so the module itself
// is imported by initBackend() (backend/index.ts) when the wasm engine is chosen, never at load.
import type * as TfWasm from '@tensorflow/tfjs-backend-wasm';
import { packageRequire } from '../package-root.ts';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import os from 'node:os';

export const TFJS_WASM_VERSION = '4.22.0';


/* eslint-disable @typescript-eslint/no-explicit-any */
type EmscriptenModule = any;
type EmscriptenFactory = (config: Record<string, unknown>) => Promise<EmscriptenModule>;

interface Worker {
  ref(): void;
  unref(): void;
}

/**
 * The Emscripten worker script must be a real file; it is shipped inside the package as a JS
 * string (for blob: URLs), so it is written once per version+content into the temp folder.
 * `.cjs` because the worker relies on CommonJS `require` and `__filename`.
 */
function workerScriptPath(pkgDir: string): string {
  const { wasmWorkerContents } = packageRequire(join(pkgDir, 'wasm-out/tfjs-backend-wasm-threaded-simd.worker.js')) as {
    wasmWorkerContents: string;
  };
  // The string was made for a Blob: its "\n" escapes are real newlines here; re-escape them as tfjs does.
  const source = wasmWorkerContents.replace(/\n/g, '\\n');
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 12);
  const dir = join(os.tmpdir(), 'factorized-transformer');
  const file = join(dir, `tfjs-wasm-worker-${TFJS_WASM_VERSION}-${hash}.cjs`);
  if (!existsSync(file) || readFileSync(file, 'utf8') !== source) {
    mkdirSync(dir, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, source);
    // rename is atomic: parallel processes (test workers) never see a half-written script.
    renameSync(tmp, file);
  }
  return file;
}

/** Workers must not keep the process alive: unref them and make Emscripten's later ref() a no-op. */
function releaseWorkers(module: EmscriptenModule): void {
  const pthread = module.PThread;
  const tame = (w: Worker): void => {
    w.ref = () => {};
    w.unref();
  };
  for (const w of [...pthread.unusedWorkers, ...pthread.runningWorkers] as Worker[]) tame(w);
  const allocate = pthread.allocateUnusedWorker.bind(pthread);
  pthread.allocateUnusedWorker = () => {
    allocate();
    tame(pthread.unusedWorkers[pthread.unusedWorkers.length - 1]);
  };
}

interface StockRegistration {
  factory: () => tf.KernelBackend | Promise<tf.KernelBackend>;
  priority: number;
}
let stockRegistration: StockRegistration | undefined;

/** Puts tfjs's own (single-thread) wasm registration back, e.g. after the threaded start failed. */
export function restoreStockWasm(): void {
  if (!stockRegistration) return;
  tf.removeBackend('wasm');
  tf.registerBackend('wasm', stockRegistration.factory, stockRegistration.priority);
}

/**
 * Registers the threaded SIMD wasm engine as backend 'wasm' (replacing tfjs's registration).
 * `threads` is the XNNPACK pool size (main thread included). Call before tf.setBackend('wasm').
 * `tfWasm` is the imported @tensorflow/tfjs-backend-wasm module (imported by the caller, lazily).
 * Throws with a one-line reason when this tfjs version or platform cannot do it.
 */
export function registerThreadedWasm(threads: number, tfWasm: typeof TfWasm): void {
  const pkgDir = dirname(packageRequire.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
  const version = (JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { version: string }).version;
  if (version !== TFJS_WASM_VERSION) {
    throw new Error(`threaded wasm needs @tensorflow/tfjs-backend-wasm ${TFJS_WASM_VERSION}, found ${version}`);
  }
  if (typeof SharedArrayBuffer === 'undefined') throw new Error('threaded wasm needs SharedArrayBuffer');
  const gluePath = join(pkgDir, 'wasm-out/tfjs-backend-wasm-threaded-simd.js');
  const wasmPath = join(pkgDir, 'wasm-out/tfjs-backend-wasm-threaded-simd.wasm');
  const factory = packageRequire(gluePath) as EmscriptenFactory;
  const workerPath = workerScriptPath(pkgDir);

  const registry = (tf.engine() as unknown as { registryFactory: Record<string, StockRegistration> }).registryFactory;
  if (!stockRegistration && registry.wasm) stockRegistration = registry.wasm;
  tf.removeBackend('wasm');
  tf.registerBackend(
    'wasm',
    async () => {
      const module = await factory({
        locateFile: (path: string, prefix: string) =>
          path.endsWith('.worker.js') ? workerPath : path.endsWith('.wasm') ? wasmPath : prefix + path,
        // Workers load the glue script by path (importScripts reads the file).
        mainScriptUrlOrBlob: gluePath,
        // The pool size is capped by half the "logical cores" the module is told about; tell it
        // enough cores for the pool we ask for.
        instantiateWasm: (imports: Record<string, Record<string, unknown>>, receive: (i: WebAssembly.Instance, m: WebAssembly.Module) => void) => {
          imports.env.emscripten_num_logical_cores = () => Math.max(os.cpus().length, 2 * threads);
          const bytes = readFileSync(wasmPath);
          WebAssembly.instantiate(bytes, imports as WebAssembly.Imports).then((r) => receive(r.instance, r.module));
          return {};
        },
      });
      releaseWorkers(module);
      module.tfjs = {
        init: module.cwrap('init', null, []),
        initWithThreadsCount: module.cwrap('init_with_threads_count', null, ['number']),
        getThreadsCount: module.cwrap('get_threads_count', 'number', []),
        registerTensor: module.cwrap('register_tensor', null, ['number', 'number', 'number']),
        disposeData: module.cwrap('dispose_data', null, ['number']),
        dispose: module.cwrap('dispose', null, []),
      };
      tfWasm.setThreadsCount(threads);
      return new tfWasm.BackendWasm(module);
    },
    2,
  );
}
