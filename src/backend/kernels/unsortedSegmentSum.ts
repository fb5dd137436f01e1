/**
 * UnsortedSegmentSum for the wasm and cpu backends.
 *
 * Why by hand: gather's gradient is an UnsortedSegmentSum. Stock wasm has no such kernel
 * ("Kernel 'UnsortedSegmentSum' not registered"), and the cpu backend's version loops over
 * every segment (the whole vocabulary) with tensor ops, which makes embedding gradients
 * thousands of times slower than they need to be. A single pass over the rows does it.
 */
import * as tf from '@tensorflow/tfjs-core';
import { InternalError } from '../../errors.ts';

type SegmentSumInputs = { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
type SegmentSumAttrs = { numSegments: number };

/** Plain-loop segment sum: out[segmentIds[i], :] += x[i, :]. Shared by both backends. */
export function segmentSumValues(
  x: tf.backend_util.TypedArray,
  xShape: number[],
  segmentIds: tf.backend_util.TypedArray,
  numSegments: number,
  out: Float32Array | Int32Array,
): void {
  const numRows = segmentIds.length;
  const rowSize = xShape.slice(1).reduce((a, b) => a * b, 1);
  out.fill(0);
  for (let i = 0; i < numRows; i++) {
    const segment = segmentIds[i];
    if (segment < 0 || segment >= numSegments) continue; // TF semantics: out-of-range ids are dropped
    const src = i * rowSize;
    const dst = segment * rowSize;
    for (let j = 0; j < rowSize; j++) out[dst + j] += x[src + j];
  }
}

function outputShape(xShape: number[], numSegments: number): number[] {
  return [numSegments, ...xShape.slice(1)];
}

/** Registers the kernel for `backendName` ('wasm' or 'cpu'), replacing any existing one. */
export function registerUnsortedSegmentSum(backendName: 'wasm' | 'cpu'): void {
  const kernelName = 'UnsortedSegmentSum';
  if (tf.getKernel(kernelName, backendName) !== undefined) tf.unregisterKernel(kernelName, backendName);
  tf.registerKernel({
    kernelName,
    backendName,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, segmentIds } = inputs as unknown as SegmentSumInputs;
      const { numSegments } = attrs as unknown as SegmentSumAttrs;
      if (segmentIds.shape.length !== 1 || segmentIds.shape[0] !== x.shape[0]) {
        throw new InternalError(`UnsortedSegmentSum: segmentIds must be 1-D with one id per row of x; got [${segmentIds.shape}] for x [${x.shape}]`);
      }
      const shape = outputShape(x.shape, numSegments);
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const b = backend as any;
      const size = shape.reduce((a, c) => a * c, 1);
      if (backendName === 'wasm') {
        const out = b.makeOutput(shape, x.dtype);
        // Heap views only after makeOutput: an allocation may grow the memory and detach older views.
        if (size > 0) segmentSumValues(b.typedArrayFromHeap(x), x.shape, b.typedArrayFromHeap(segmentIds), numSegments, b.typedArrayFromHeap(out));
        return out;
      }
      const xs = b.data.get(x.dataId).values as tf.backend_util.TypedArray;
      const ids = b.data.get(segmentIds.dataId).values as tf.backend_util.TypedArray;
      const values = x.dtype === 'int32' ? new Int32Array(size) : new Float32Array(size);
      segmentSumValues(xs, x.shape, ids, numSegments, values);
      const dataId = b.write(values, shape, x.dtype);
      return { dataId, shape, dtype: x.dtype };
    },
  });
}
