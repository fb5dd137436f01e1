/**
 * BatchMatMul and _FusedMatMul for the wasm backend.
 *
 * Why by hand: tfjs-backend-wasm sends a matrix product to XNNPACK only when the batch is 1 and
 * neither operand is transposed; every other product (attention's QKᵀ and A·V per head, and
 * every weight gradient, which transposes) runs a scalar C loop at 2-3 GFLOP/s. Two faster
 * paths, chosen once at registration:
 *  - native: one sgemm per batch slice on the system OpenBLAS (native/ addon), reading and
 *    writing the wasm heap in place (zero copy), transposes passed to sgemm as flags;
 *  - wasm-only fallback: transposed operands are made explicit with the Transpose kernel and each
 *    batch slice goes through the stock kernel's XNNPACK path (batch 1, no transpose).
 * Batch dimensions broadcast like NumPy (tfjs semantics) in both.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { NativeBlas } from '../native.ts';
import { InternalError } from '../../errors.ts';

/* eslint-disable @typescript-eslint/no-explicit-any */
type WasmBackend = any;
type TensorInfo = tf.TensorInfo;

/** Activation codes shared with native/src/blas.c. */
export const ACTIVATION_CODES: Record<string, number> = {
  linear: 0,
  relu: 1,
  relu6: 2,
  elu: 3,
  leakyrelu: 4,
  sigmoid: 5,
  prelu: 6,
};

export interface MatMulPlan {
  batchShape: number[];
  batch: number;
  m: number;
  n: number;
  k: number;
  /** Per output batch slice, which matrix of a / b it reads; null when it is slice i itself. */
  aIndex: Int32Array | null;
  bIndex: Int32Array | null;
}

/** Shapes, broadcasting and per-slice operand indices of a (batched) matrix product. */
export function planMatMul(aShape: number[], bShape: number[], transposeA: boolean, transposeB: boolean): MatMulPlan {
  const ar = aShape.length;
  const br = bShape.length;
  if (ar < 2 || br < 2) throw new InternalError(`matMul: operands must have rank >= 2, got ${aShape} and ${bShape}`);
  const m = transposeA ? aShape[ar - 1] : aShape[ar - 2];
  const k = transposeA ? aShape[ar - 2] : aShape[ar - 1];
  const kB = transposeB ? bShape[br - 1] : bShape[br - 2];
  const n = transposeB ? bShape[br - 2] : bShape[br - 1];
  if (k !== kB) {
    throw new InternalError(
      `matMul: inner dimensions ${k} and ${kB} of shapes [${aShape}] and [${bShape}] (transposeA=${transposeA}, transposeB=${transposeB}) must match`,
    );
  }
  const aBatch = aShape.slice(0, -2);
  const bBatch = bShape.slice(0, -2);
  const batchShape = tf.backend_util.assertAndGetBroadcastShape(aBatch, bBatch);
  const batch = batchShape.reduce((x, y) => x * y, 1);
  return {
    batchShape,
    batch,
    m,
    n,
    k,
    aIndex: broadcastIndex(aBatch, batchShape),
    bIndex: broadcastIndex(bBatch, batchShape),
  };
}

/** For each element (or slice) of `outShape`, row-major, the one of `shape` it broadcasts from; null when identical. */
function broadcastIndex(shape: number[], outShape: number[]): Int32Array | null {
  const size = outShape.reduce((x, y) => x * y, 1);
  const padded = [...new Array(outShape.length - shape.length).fill(1), ...shape];
  if (padded.every((d, i) => d === outShape[i])) return null;
  const index = new Int32Array(size);
  const strides = new Array(padded.length).fill(0);
  for (let i = padded.length - 1, s = 1; i >= 0; i--) {
    strides[i] = padded[i] === 1 ? 0 : s;
    s *= padded[i];
  }
  for (let flat = 0; flat < size; flat++) {
    let rest = flat;
    let src = 0;
    for (let i = outShape.length - 1; i >= 0; i--) {
      const coord = rest % outShape[i];
      rest = Math.floor(rest / outShape[i]);
      src += coord * strides[i];
    }
    index[flat] = src;
  }
  return index;
}

/** The wasm memory as it is now: it may have grown (and been replaced) since the last call. */
function heapBuffer(backend: WasmBackend): ArrayBufferLike {
  return (backend.wasm.wasmMemory?.buffer ?? backend.wasm.HEAPU8.buffer) as ArrayBufferLike;
}

function heapF32(backend: WasmBackend, t: TensorInfo, buffer: ArrayBufferLike): Float32Array {
  const { memoryOffset } = backend.dataIdMap.get(t.dataId);
  return new Float32Array(buffer, memoryOffset, tf.util.sizeFromShape(t.shape));
}

/** Whether a bias of this shape can be pre-filled row by row (it broadcasts along all but the last axis). */
function biasIsRowVector(bias: TensorInfo, n: number): boolean {
  return tf.util.sizeFromShape(bias.shape) === n && bias.shape[bias.shape.length - 1] === n;
}

/** Writes `bias` broadcast (NumPy rules) to `outShape` into `c`; throws when it does not broadcast. */
function fillBroadcast(c: Float32Array, outShape: number[], bias: Float32Array, biasShape: number[]): void {
  const shape = tf.backend_util.assertAndGetBroadcastShape(biasShape, outShape);
  if (shape.length !== outShape.length || shape.some((d, i) => d !== outShape[i])) {
    throw new InternalError(`fused matMul: bias of shape [${biasShape}] does not broadcast to the output [${outShape}]`);
  }
  const index = broadcastIndex(biasShape, outShape);
  if (!index) c.set(bias);
  else for (let i = 0; i < c.length; i++) c[i] = bias[index[i]];
}

function nativeMatMul(
  blas: NativeBlas,
  backend: WasmBackend,
  a: TensorInfo,
  b: TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  bias: TensorInfo | null,
  activation: { code: number; alpha: number; prelu: TensorInfo | null },
): TensorInfo {
  if (a.dtype !== 'float32' || b.dtype !== 'float32') throw new InternalError('matMul: only float32 operands are supported on wasm');
  const plan = planMatMul(a.shape, b.shape, transposeA, transposeB);
  const out = backend.makeOutput([...plan.batchShape, plan.m, plan.n], 'float32');
  if (plan.batch * plan.m * plan.n === 0) return out;
  // Views are taken after makeOutput: an allocation can grow (replace) the wasm memory.
  const buffer = heapBuffer(backend);
  const c = heapF32(backend, out, buffer);
  let beta = 0;
  if (bias) {
    const bv = heapF32(backend, bias, buffer);
    if (biasIsRowVector(bias, plan.n)) for (let row = 0; row < c.length; row += plan.n) c.set(bv, row);
    else fillBroadcast(c, out.shape, bv, bias.shape);
    beta = 1;
  }
  if (plan.k === 0 && !bias) c.fill(0);
  blas.gemmBatched(
    heapF32(backend, a, buffer),
    heapF32(backend, b, buffer),
    c,
    plan.aIndex,
    plan.bIndex,
    plan.batch,
    plan.m,
    plan.n,
    plan.k,
    transposeA,
    transposeB,
    beta,
  );
  if (activation.code !== ACTIVATION_CODES.linear) {
    blas.applyActivation(c, activation.code, activation.alpha, activation.prelu ? heapF32(backend, activation.prelu, buffer) : null);
  }
  return out;
}

/**
 * The wasm-only path: a view of `n` floats at byte offset `offset` inside an existing allocation,
 * registered as a tensor for the duration of one stock-kernel call. Released with releaseView,
 * which unregisters it without freeing the parent's memory.
 */
function viewTensor(backend: WasmBackend, memoryOffset: number, shape: number[]): TensorInfo {
  const dataId = {};
  const id = backend.dataIdNextNumber++;
  backend.dataIdMap.set(dataId, { id, memoryOffset, shape, dtype: 'float32', refCount: 1 });
  backend.wasm.tfjs.registerTensor(id, tf.util.sizeFromShape(shape), memoryOffset);
  return { dataId, shape, dtype: 'float32' };
}

function releaseView(backend: WasmBackend, t: TensorInfo): void {
  const { id } = backend.dataIdMap.get(t.dataId);
  backend.wasm.tfjs.disposeData(id); // C side only (drops cached XNNPACK operators for this id)
  backend.dataIdMap.delete(t.dataId);
}

function transposeLast2(backend: WasmBackend, x: TensorInfo, transposeKernel: tf.KernelFunc): TensorInfo {
  const perm = x.shape.map((_, i) => i);
  perm[perm.length - 1] = perm.length - 2;
  perm[perm.length - 2] = perm.length - 1;
  return transposeKernel({ inputs: { x }, backend, attrs: { perm } }) as TensorInfo;
}

function wasmSlicedMatMul(
  backend: WasmBackend,
  a: TensorInfo,
  b: TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  stock: tf.KernelFunc,
  transposeKernel: tf.KernelFunc,
): TensorInfo {
  const plan = planMatMul(a.shape, b.shape, transposeA, transposeB);
  const aT = transposeA ? transposeLast2(backend, a, transposeKernel) : a;
  const bT = transposeB ? transposeLast2(backend, b, transposeKernel) : b;
  const out = backend.makeOutput([...plan.batchShape, plan.m, plan.n], 'float32');
  const aBase = backend.dataIdMap.get(aT.dataId).memoryOffset as number;
  const bBase = backend.dataIdMap.get(bT.dataId).memoryOffset as number;
  const outBase = backend.dataIdMap.get(out.dataId).memoryOffset as number;
  const sliceBytesA = plan.m * plan.k * 4;
  const sliceBytesB = plan.k * plan.n * 4;
  const sliceBytesOut = plan.m * plan.n * 4;
  for (let i = 0; i < plan.batch && sliceBytesOut > 0; i++) {
    const ai = plan.aIndex ? plan.aIndex[i] : i;
    const bi = plan.bIndex ? plan.bIndex[i] : i;
    const a2 = viewTensor(backend, aBase + ai * sliceBytesA, [plan.m, plan.k]);
    const b2 = viewTensor(backend, bBase + bi * sliceBytesB, [plan.k, plan.n]);
    const slice = stock({ inputs: { a: a2, b: b2 }, backend, attrs: { transposeA: false, transposeB: false } }) as TensorInfo;
    const buffer = heapBuffer(backend);
    const src = backend.dataIdMap.get(slice.dataId).memoryOffset as number;
    new Uint8Array(buffer).copyWithin(outBase + i * sliceBytesOut, src, src + sliceBytesOut);
    backend.disposeData(slice.dataId);
    releaseView(backend, a2);
    releaseView(backend, b2);
  }
  if (aT !== a) backend.disposeData(aT.dataId);
  if (bT !== b) backend.disposeData(bT.dataId);
  return out;
}

export interface MatMulKernelsInfo {
  path: 'native' | 'wasm-sliced';
}

/**
 * Replaces the wasm backend's BatchMatMul and _FusedMatMul. With `blas` both run on the native
 * sgemm; without, BatchMatMul runs per slice on XNNPACK and _FusedMatMul stays stock (layers
 * call it batch-1 untransposed, which stock already sends to XNNPACK; gradients use BatchMatMul).
 * Idempotent.
 */
export function registerWasmMatMul(blas: NativeBlas | undefined): MatMulKernelsInfo {
  const stockBatch = stockKernel('BatchMatMul');
  const stockFused = stockKernel('_FusedMatMul');
  const transposeKernel = tf.getKernel('Transpose', 'wasm')!.kernelFunc;

  replaceKernel('BatchMatMul', (args) => {
    const { inputs, backend, attrs } = args;
    const { a, b } = inputs as { a: TensorInfo; b: TensorInfo };
    const { transposeA, transposeB } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
    if (blas) return nativeMatMul(blas, backend, a, b, transposeA, transposeB, null, { code: 0, alpha: 0, prelu: null });
    const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2));
    const batchB = tf.util.sizeFromShape(b.shape.slice(0, -2));
    // One untransposed product is already XNNPACK's case in the stock kernel.
    if (batchA === 1 && batchB === 1 && !transposeA && !transposeB) return stockBatch(args);
    return wasmSlicedMatMul(backend, a, b, transposeA, transposeB, stockBatch, transposeKernel);
  });

  replaceKernel('_FusedMatMul', (args) => {
    const { inputs, backend, attrs } = args;
    const { a, b, bias, preluActivationWeights } = inputs as {
      a: TensorInfo;
      b: TensorInfo;
      bias?: TensorInfo;
      preluActivationWeights?: TensorInfo;
    };
    const { transposeA, transposeB, activation, leakyreluAlpha } = attrs as unknown as {
      transposeA: boolean;
      transposeB: boolean;
      activation: string;
      leakyreluAlpha?: number;
    };
    const code = ACTIVATION_CODES[activation];
    const n = transposeB ? b.shape[b.shape.length - 2] : b.shape[b.shape.length - 1];
    const preluOk = !preluActivationWeights || [1, n].includes(tf.util.sizeFromShape(preluActivationWeights.shape));
    if (blas && code !== undefined && preluOk) {
      return nativeMatMul(blas, backend, a, b, transposeA, transposeB, bias ?? null, {
        code,
        alpha: leakyreluAlpha ?? 0.2,
        prelu: preluActivationWeights ?? null,
      });
    }
    return stockFused(args);
  });
  return { path: blas ? 'native' : 'wasm-sliced' };
}

const stockKernels = new Map<string, tf.KernelFunc>();

/** The kernel tfjs registered for wasm, remembered before we first replace it. */
export function stockKernel(name: string): tf.KernelFunc {
  if (!stockKernels.has(name)) {
    const k = tf.getKernel(name, 'wasm');
    if (!k) throw new InternalError(`kernel ${name} is not registered for wasm`);
    stockKernels.set(name, k.kernelFunc);
  }
  return stockKernels.get(name)!;
}

export function replaceKernel(name: string, kernelFunc: tf.KernelFunc): void {
  const existing = tf.getKernel(name, 'wasm');
  if (existing) tf.unregisterKernel(name, 'wasm');
  // setupFunc binds the stock kernel's C entry points when the backend starts; keep it.
  tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc, setupFunc: existing?.setupFunc });
}

/** Puts tfjs's own wasm BatchMatMul and _FusedMatMul back (benchmarks compare against them). */
export function restoreStockWasmMatMul(): void {
  for (const name of ['BatchMatMul', '_FusedMatMul']) replaceKernel(name, stockKernel(name));
}
