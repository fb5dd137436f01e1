/**
 * Identity for the wasm backend without a copy.
 *
 * Why: the stock wasm kernel allocates and copies the whole tensor, and a training step calls it
 * about 500 times (bert_small MLM step: 492 calls, 4 % of the step): tfjs-core's engine clones
 * every tensor an op saves for its gradient while a tape records (Engine.saveTensorsForBackwardMode,
 * `keep(clone(t))`), so each forward op under tf.grad / optimizer.minimize costs a copy of its
 * inputs or outputs. Found with a stack capture of the kernel; the calls are tfjs-core's, not ours.
 * Tensors are immutable, so the result may share the input's memory: like the stock Reshape
 * kernel (and the cpu backend's Identity), the output takes the input's dataId and the backend's
 * reference count on it goes up by one; the memory is freed when the last tensor on it is disposed.
 */
import * as tf from '@tensorflow/tfjs-core';
import { replaceKernel, stockKernel } from './matMul.ts';

/** Replaces the wasm backend's Identity with a shared-memory one (strings: the stock kernel). Idempotent. */
export function registerWasmIdentity(): void {
  const stock = stockKernel('Identity');
  replaceKernel('Identity', (args) => {
    const { x } = args.inputs as { x: tf.TensorInfo };
    if (x.dtype === 'string') return stock(args);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    (args.backend as any).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  });
}
