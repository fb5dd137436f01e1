/**
 * GatherV2 for the wasm backend: whole rows copied on the wasm heap.
 *
 * Why by hand: the stock wasm kernel walks every output element through a generic strided loop
 * (and reshapes its operands first), single-threaded once the native addon runs the matrix
 * products. Beam search reorders its attention cache with gather on axis 0 of [rows, H, S, r],
 * where each index selects one contiguous block of H·S·r floats: the stock loop made that 62 % of
 * a beam step. Viewed as [outer, axisLen, inner], out[o, n, :] = x[o, indices[n], :] is one
 * `copyWithin` of `inner` elements per (o, n).
 *
 * batchDims > 0 (unused by this package) and non-int32 indices go to the stock kernel.
 */
import * as tf from '@tensorflow/tfjs-core';
import { replaceKernel, stockKernel } from './matMul.ts';

/* eslint-disable @typescript-eslint/no-explicit-any */
type WasmBackend = any;
type TensorInfo = tf.TensorInfo;

/** Rows shorter than this are copied element by element: a copyWithin call costs more than a few elements. */
const MIN_COPY_ROW = 16;

/** out[o, n, :] = x[o, indices[n], :] for x [outer, axisLen, inner]; elements of any typed array kind. */
export function gatherRows(
  x: tf.backend_util.TypedArray,
  indices: Int32Array,
  out: tf.backend_util.TypedArray,
  outer: number,
  axisLen: number,
  inner: number,
): void {
  const n = indices.length;
  if (inner >= MIN_COPY_ROW && x.buffer === out.buffer && x.BYTES_PER_ELEMENT === out.BYTES_PER_ELEMENT) {
    // Both on the wasm heap: copy rows within one byte view of it (x and out never overlap).
    const bytes = x.BYTES_PER_ELEMENT;
    const heap = new Uint8Array(x.buffer);
    const rowBytes = inner * bytes;
    for (let o = 0; o < outer; o++) {
      const src = x.byteOffset + o * axisLen * rowBytes;
      const dst = out.byteOffset + o * n * rowBytes;
      for (let j = 0; j < n; j++) {
        const from = src + indices[j] * rowBytes;
        heap.copyWithin(dst + j * rowBytes, from, from + rowBytes);
      }
    }
    return;
  }
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < n; j++) {
      const from = (o * axisLen + indices[j]) * inner;
      const to = (o * n + j) * inner;
      for (let i = 0; i < inner; i++) out[to + i] = x[from + i];
    }
  }
}

/** Replaces the wasm backend's GatherV2 (batchDims 0, int32 indices). Idempotent. */
export function registerWasmGather(): void {
  const stock = stockKernel('GatherV2');
  replaceKernel('GatherV2', (args) => {
    const backend = args.backend as WasmBackend;
    const { x, indices } = args.inputs as { x: TensorInfo; indices: TensorInfo };
    const { axis, batchDims } = args.attrs as unknown as { axis: number; batchDims: number };
    if ((batchDims ?? 0) !== 0 || indices.dtype !== 'int32' || x.dtype === 'string') return stock(args);
    const ax = tf.util.parseAxisParam(axis, x.shape)[0];
    const axisLen = x.shape[ax];
    const ids = backend.typedArrayFromHeap(indices) as Int32Array;
    // Out-of-range indices throw, with the stock kernel's own check and message.
    for (let i = 0; i < ids.length; i++) {
      const index = ids[i];
      tf.util.assert(index <= axisLen - 1 && index >= 0, () => `GatherV2: the index value ${index} is not in [0, ${axisLen - 1}]`);
    }
    const outShape = [...x.shape.slice(0, ax), ...indices.shape, ...x.shape.slice(ax + 1)];
    const out = backend.makeOutput(outShape, x.dtype);
    if (tf.util.sizeFromShape(outShape) === 0) return out;
    const outer = tf.util.sizeFromShape(x.shape.slice(0, ax));
    const inner = tf.util.sizeFromShape(x.shape.slice(ax + 1));
    // Views after makeOutput: an allocation may grow the wasm memory and detach older views.
    gatherRows(backend.typedArrayFromHeap(x), backend.typedArrayFromHeap(indices), backend.typedArrayFromHeap(out), outer, axisLen, inner);
    return out;
  });
}
