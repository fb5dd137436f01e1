/**
 * Sum and Mean for the wasm backend, without a transpose.
 *
 * Why by hand: the stock wasm kernels move the reduced axes innermost with a Transpose (a full
 * copy) whenever they are not innermost already — every bias gradient sums over axis 0 of
 * [tokens, units] — and then add one element at a time, single-threaded once the native addon
 * runs the matrix products (measured: Sum was 26 % of a bert_small MLM training step). When the
 * reduced axes form one contiguous block (leading, middle or trailing, size-1 axes ignored), the
 * input is [outer, reduce, inner] in memory as it is, and the sum runs in place:
 * native/src/reduce.c when the addon is loaded, `sumBlock` below when it is not. Any other axis
 * set (e.g. axes 0 and 2 of a rank-3 tensor) goes to the stock kernel.
 *
 * Accuracy: for inner > 1 both paths add the rows in order, the same float additions as the stock
 * kernel; for inner == 1 the native path keeps 16 partial sums and the JS path a double, both at
 * least as accurate as the stock kernel's single float running sum.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { NativeBlas } from '../native.ts';
import { replaceKernel, stockKernel } from './matMul.ts';

/* eslint-disable @typescript-eslint/no-explicit-any */
type WasmBackend = any;
type TensorInfo = tf.TensorInfo;

/** x viewed as [outer, reduce, inner] for a reduction over one contiguous block of axes. */
export interface ReduceBlock {
  outer: number;
  reduce: number;
  inner: number;
}

/**
 * The [outer, reduce, inner] view of a reduction of `shape` over `axes` (normalized, i.e.
 * non-negative), or null when the reduced axes are not one contiguous block. Axes of size 1 are
 * ignored (they change no memory order), so [2, 1, 3] over axes [0, 2] is a block.
 */
export function reduceBlock(shape: number[], axes: number[]): ReduceBlock | null {
  const reduced = new Set(axes);
  let outer = 1;
  let reduce = 1;
  let inner = 1;
  // 0: before the block, 1: inside it, 2: after it.
  let phase = 0;
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    if (reduced.has(d)) {
      if (phase === 2) return null;
      phase = 1;
      reduce *= shape[d];
    } else if (phase === 0) {
      outer *= shape[d];
    } else {
      phase = 2;
      inner *= shape[d];
    }
  }
  return { outer, reduce, inner };
}

/**
 * JS fallback of native reduceSum: out[o, i] = (Σ_r x[o, r, i]) / divisor. int32 wraps like the
 * stock kernel's C int32 sum (each store into the Int32Array takes the value mod 2^32).
 */
export function sumBlock(x: Float32Array | Int32Array, out: Float32Array | Int32Array, block: ReduceBlock, divisor: number): void {
  const { outer, reduce, inner } = block;
  for (let o = 0; o < outer; o++) {
    const xBase = o * reduce * inner;
    const outBase = o * inner;
    if (inner === 1) {
      let acc = 0; // a double: exact for int32, more accurate than a float running sum
      for (let r = 0; r < reduce; r++) acc += x[xBase + r];
      out[outBase] = acc / divisor;
      continue;
    }
    out.fill(0, outBase, outBase + inner);
    for (let r = 0; r < reduce; r++) {
      const row = xBase + r * inner;
      for (let i = 0; i < inner; i++) out[outBase + i] += x[row + i];
    }
    if (divisor !== 1) for (let i = 0; i < inner; i++) out[outBase + i] /= divisor;
  }
}

/** Output shape of a reduction of `shape` over `axes`, keepDims or not. */
function reducedShape(shape: number[], axes: number[], keepDims: boolean): number[] {
  return keepDims ? shape.map((d, i) => (axes.includes(i) ? 1 : d)) : shape.filter((_, i) => !axes.includes(i));
}

/**
 * Sum (float32, int32) or Mean (float32) of `x` over `axis`, or null when the axes are not one
 * block or the dtype is not ours (the caller then runs the stock kernel).
 */
function reduceInPlace(
  blas: NativeBlas | undefined,
  backend: WasmBackend,
  x: TensorInfo,
  axis: number | number[],
  keepDims: boolean,
  mean: boolean,
): TensorInfo | null {
  if (x.dtype !== 'float32' && (mean || x.dtype !== 'int32')) return null;
  const axes = tf.util.parseAxisParam(axis, x.shape);
  const block = reduceBlock(x.shape, axes);
  if (!block) return null;
  const out = backend.makeOutput(reducedShape(x.shape, axes, keepDims), x.dtype);
  if (block.outer * block.inner === 0) return out;
  // Mean divides by the reduce size; an empty reduction gives 0, as on the cpu backend (which sums
  // x / n). Heap views only after makeOutput: an allocation may grow the wasm memory and detach older views.
  const divisor = mean ? Math.max(block.reduce, 1) : 1;
  const xs = backend.typedArrayFromHeap(x);
  const outs = backend.typedArrayFromHeap(out);
  if (blas && x.dtype === 'float32') blas.reduceSum(xs, outs, block.outer, block.reduce, block.inner, divisor);
  else sumBlock(xs, outs, block, divisor);
  return out;
}

/**
 * Replaces the wasm backend's Sum and Mean; `blas` (the native addon) runs the float32 loop when
 * given and built with reduceSum. Idempotent.
 */
export function registerWasmReduce(blas: NativeBlas | undefined): void {
  // An addon built before reduce.c existed has no reduceSum: the JS loop stands in.
  const native = typeof blas?.reduceSum === 'function' ? blas : undefined;
  for (const name of ['Sum', 'Mean'] as const) {
    const stock = stockKernel(name);
    replaceKernel(name, (args) => {
      const { x } = args.inputs as { x: TensorInfo };
      const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
      return reduceInPlace(native, args.backend, x, axis, keepDims, name === 'Mean') ?? stock(args);
    });
  }
}
