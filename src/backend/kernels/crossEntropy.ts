/**
 * Label-smoothed softmax cross-entropy from logits, with a one-pass gradient kernel.
 *
 * Why a kernel: written with tfjs ops, the backward pass of logsumexp + gather + mean builds
 * half a dozen [tokens, vocab] temporaries (softmax, the gather gradient scattered over the whole
 * flattened vocabulary, broadcast means, their sums), all alive until the step's tidy ends: at 4k
 * tokens x 8k vocabulary (131 MB each) that overflows the 4 GB wasm heap. The gradient has a
 * closed form, g = mask · (dyLoss · (p − (1−ε)·onehot − ε/V) + dyNll · (p − onehot)), which one
 * loop writes straight into its only output. On engines without the kernel (tensorflow, webgl)
 * the same formula runs as ops. The upstream gradient dy stays a tensor, an input of the kernel:
 * reading it on the host (dataSync) would stall a GPU pipeline, and fails outright on webgpu.
 * On webgpu the forward rows (logsumexp, target logit, mean) are one WGSL kernel too (webgpu.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { NativeBlas } from '../native.ts';
import { InternalError } from '../../errors.ts';

export const CROSS_ENTROPY_GRAD = 'FtSoftmaxCrossEntropyGrad';
/** Optional per-engine forward kernel: logits [n, V], targets [n] → [n, 3] of (logsumexp, x_target, row mean). */
export const CROSS_ENTROPY_ROWS = 'FtSoftmaxCrossEntropyRows';

export interface SoftmaxCrossEntropyOptions {
  /** Label smoothing ε in [0, 1). */
  smoothing: number;
  /** Targets equal to this id contribute nothing (and get a zero gradient). */
  padId: number;
}

export interface SoftmaxCrossEntropy {
  /** Σ over non-pad rows of (1−ε)·(lse − x_t) + ε·(lse − mean_v x_v). */
  loss: tf.Scalar;
  /** Σ over non-pad rows of lse − x_t (the plain negative log-likelihood). */
  nll: tf.Scalar;
}

type GradAttrs = { smoothing: number; padId: number; dyLoss: number; dyNll: number };
/** The kernel's attributes; dyLoss and dyNll come from its `dy` input ([2]: loss, nll). */
type KernelAttrs = { smoothing: number; padId: number };

/**
 * The gradient loop shared by the wasm and cpu kernels:
 * out[i, v] = mask_i · ((dyLoss + dyNll) · p_iv − dyLoss·ε/V − [v = t_i]·(dyLoss·(1−ε) + dyNll)).
 */
export function crossEntropyGradValues(
  logits: Float32Array,
  lse: Float32Array,
  targets: Int32Array,
  vocab: number,
  attrs: GradAttrs,
  out: Float32Array,
): void {
  const { smoothing, padId, dyLoss, dyNll } = attrs;
  const scaleP = dyLoss + dyNll;
  const uniform = (dyLoss * smoothing) / vocab;
  const atTarget = dyLoss * (1 - smoothing) + dyNll;
  for (let i = 0; i < targets.length; i++) {
    const row = i * vocab;
    const t = targets[i];
    if (t === padId) {
      out.fill(0, row, row + vocab);
      continue;
    }
    const m = lse[i];
    for (let v = 0; v < vocab; v++) out[row + v] = scaleP * Math.exp(logits[row + v] - m) - uniform;
    if (t >= 0 && t < vocab) out[row + t] -= atTarget;
  }
}

/**
 * Registers the gradient kernel for `backendName` ('wasm' or 'cpu'), on the native addon's loop
 * when given (a C expf loop; the JS loop is several times slower). Idempotent.
 */
export function registerCrossEntropyGrad(backendName: 'wasm' | 'cpu', native?: NativeBlas): void {
  const gradValues = native
    ? (logits: Float32Array, lse: Float32Array, targets: Int32Array, vocab: number, a: GradAttrs, out: Float32Array) =>
        native.crossEntropyGrad(logits, lse, targets, vocab, a.smoothing, a.padId, a.dyLoss, a.dyNll, out)
    : crossEntropyGradValues;
  if (tf.getKernel(CROSS_ENTROPY_GRAD, backendName)) tf.unregisterKernel(CROSS_ENTROPY_GRAD, backendName);
  tf.registerKernel({
    kernelName: CROSS_ENTROPY_GRAD,
    backendName,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { logits, lse, targets, dy } = inputs as { logits: tf.TensorInfo; lse: tf.TensorInfo; targets: tf.TensorInfo; dy: tf.TensorInfo };
      const { smoothing, padId } = attrs as unknown as KernelAttrs;
      const vocab = logits.shape[1];
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const b = backend as any;
      // dy lives in this engine's own (host) memory: reading it here is a memory access, not a sync.
      const withDy = (d: ArrayLike<number>): GradAttrs => ({ smoothing, padId, dyLoss: d[0], dyNll: d[1] });
      if (backendName === 'wasm') {
        const out = b.makeOutput(logits.shape, 'float32');
        // Heap views only after makeOutput: an allocation may grow the memory and detach older views.
        const a = withDy(b.typedArrayFromHeap(dy));
        gradValues(b.typedArrayFromHeap(logits), b.typedArrayFromHeap(lse), b.typedArrayFromHeap(targets), vocab, a, b.typedArrayFromHeap(out));
        return out;
      }
      const values = new Float32Array(tf.util.sizeFromShape(logits.shape));
      const read = (t: tf.TensorInfo) => b.data.get(t.dataId).values;
      gradValues(read(logits), read(lse), read(targets), vocab, withDy(read(dy)), values);
      return { dataId: b.write(values, logits.shape, 'float32'), shape: logits.shape, dtype: 'float32' };
    },
  });
}

/** The same gradient as ops (dy scaled in-graph), for engines without the kernel. */
function gradAsOps(logits: tf.Tensor2D, lse: tf.Tensor1D, targets: tf.Tensor1D, dy: tf.Tensor1D, vocab: number, a: KernelAttrs): tf.Tensor2D {
  return tf.tidy(() => {
    const mask = tf.cast(tf.notEqual(targets, tf.scalar(a.padId, 'int32')), 'float32').reshape([-1, 1]);
    const p = tf.exp(tf.sub(logits, lse.reshape([-1, 1])));
    const onehot = tf.oneHot(tf.maximum(targets, tf.scalar(0, 'int32')), vocab, 1, 0, 'float32');
    const [dyLoss, dyNll] = tf.unstack(dy) as [tf.Scalar, tf.Scalar];
    const uniform = tf.mul(dyLoss, a.smoothing / vocab);
    const atTarget = tf.add(tf.mul(dyLoss, 1 - a.smoothing), dyNll);
    const g = tf.sub(tf.sub(tf.mul(p, tf.add(dyLoss, dyNll)), uniform), tf.mul(onehot, atTarget));
    return tf.mul(g, mask) as tf.Tensor2D;
  });
}

/** Per row: logsumexp, the target's logit (0 for an out-of-range target) and the mean logit. */
function crossEntropyRows(logits: tf.Tensor2D, targets: tf.Tensor1D): [tf.Tensor1D, tf.Tensor1D, tf.Tensor1D] {
  if (tf.getKernel(CROSS_ENTROPY_ROWS, tf.getBackend())) {
    const rows = tf.engine().runKernel(CROSS_ENTROPY_ROWS, { logits, targets }) as tf.Tensor2D;
    return tf.unstack(rows, 1) as [tf.Tensor1D, tf.Tensor1D, tf.Tensor1D];
  }
  const vocab = logits.shape[1];
  const lse = tf.logSumExp(logits, 1) as tf.Tensor1D;
  const index = tf.add(tf.mul(tf.range(0, targets.shape[0], 1, 'int32'), tf.scalar(vocab, 'int32')), tf.maximum(targets, tf.scalar(0, 'int32')));
  const targetLogit = tf.gather(tf.reshape(logits, [-1]), index) as tf.Tensor1D;
  return [lse, targetLogit, tf.mean(logits, 1) as tf.Tensor1D];
}

/**
 * Summed label-smoothed cross-entropy and NLL of `logits` [n, V] against int32 `targets` [n].
 * Differentiable with respect to `logits`; the gradient is one [n, V] tensor.
 */
export function softmaxCrossEntropy(logits: tf.Tensor2D, targets: tf.Tensor1D, options: SoftmaxCrossEntropyOptions): SoftmaxCrossEntropy {
  const { smoothing, padId } = options;
  if (logits.rank !== 2 || targets.rank !== 1 || logits.shape[0] !== targets.shape[0]) {
    throw new InternalError(`softmaxCrossEntropy: expected logits [n, V] and targets [n]; got [${logits.shape}] and [${targets.shape}]`);
  }
  if (targets.dtype !== 'int32') throw new InternalError(`softmaxCrossEntropy: targets must be int32, got ${targets.dtype}`);
  const vocab = logits.shape[1];
  // Two outputs share one backward pass: customGrad supports a single output, so the loss and the
  // nll are stacked into a [2] vector and split after.
  const forward = (x: tf.Tensor, save: tf.GradSaveFunc) => {
    const logitsIn = x as tf.Tensor2D;
    const [value, lse] = tf.tidy(() => {
      const [lse, targetLogit, meanLogit] = crossEntropyRows(logitsIn, targets);
      const mask = tf.cast(tf.notEqual(targets, tf.scalar(padId, 'int32')), 'float32');
      const nll = tf.sum(tf.mul(tf.sub(lse, targetLogit), mask));
      const smooth = tf.sum(tf.mul(tf.sub(lse, meanLogit), mask));
      const loss = tf.add(tf.mul(nll, 1 - smoothing), tf.mul(smooth, smoothing));
      return [tf.stack([loss, nll]), lse];
    });
    // The engine keeps clones of saved tensors only while a gradient tape records (and frees them
    // after backprop); everything else made here is freed by the tidy around this function.
    // `targets` is saved too: the caller may dispose its own handle (e.g. a reshape made inside
    // a tidy) before the backward pass runs.
    save([logitsIn, lse, targets]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [savedLogits, savedLse, savedTargets] = saved as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D];
        const attrs: KernelAttrs = { smoothing, padId };
        const dyVector = dy as tf.Tensor1D;
        if (tf.getKernel(CROSS_ENTROPY_GRAD, tf.getBackend())) {
          const inputs = { logits: savedLogits, lse: savedLse, targets: savedTargets, dy: dyVector };
          return tf.engine().runKernel(CROSS_ENTROPY_GRAD, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
        }
        return gradAsOps(savedLogits, savedLse, savedTargets, dyVector, vocab, attrs);
      },
    };
  };
  const both = tf.customGrad(forward as unknown as Parameters<typeof tf.customGrad>[0]);
  const stacked = both(logits);
  const [loss, nll] = tf.unstack(stacked) as [tf.Scalar, tf.Scalar];
  stacked.dispose();
  return { loss, nll };
}
