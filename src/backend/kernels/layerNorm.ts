/**
 * LayerNorm over the last axis, optionally of x + residual, as one kernel each way.
 *
 * Why a kernel: as tfjs ops (models/layer-norm.ts) a LayerNorm is mean, sub, square, mean, add,
 * rsqrt, mul, mul, add forward and about a dozen kernels backward, plus the residual add before
 * it; each a full pass over [tokens, d] and 0.02-0.2 ms of engine overhead. Here:
 *
 * - `FtLayerNorm` (x, gamma, beta) → [y, mean, rstd]: y = (x − mean)·rstd·γ + β per row,
 *   rstd = 1/√(var + ε) with the biased variance, as the op version.
 * - `FtLayerNormResidual` (x, residual, gamma, beta) → [y, sum, mean, rstd]: the same of
 *   sum = x + residual, which is also returned (the pre-norm block carries it on as its stream;
 *   the backward pass needs it). Two kernel names, not one with an optional input, because a
 *   registered gradient saves a fixed list of inputs and outputs.
 * - `FtLayerNormGrad` (dy, s, gamma, mean, rstd[, dsum]) → [dx, dgamma, dbeta]: with x̂ =
 *   (s − mean)·rstd and g = dy·γ, dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) (+ dsum, the gradient
 *   of the `sum` output, so that one tensor is the gradient of both x and residual);
 *   dγ = Σ dy·x̂ and dβ = Σ dy over rows, accumulated in double.
 *
 * Both run on the native addon (native/src/fused.c) when loaded, else as the JS loops here.
 * Engines without the kernels keep the op version: the caller checks `hasFusedLayerNorm()`.
 */
import * as tf from '@tensorflow/tfjs';
import type { NativeBlas } from '../native.ts';
import { hostKernelInput, hostKernelOutput, withFusedKernels } from './gelu.ts';
import { UserError } from '../../errors.ts';

export const LAYER_NORM = 'FtLayerNorm';
export const LAYER_NORM_RESIDUAL = 'FtLayerNormResidual';
export const LAYER_NORM_GRAD = 'FtLayerNormGrad';

type Backend = 'wasm' | 'cpu';

/** The JS forward loop (same contract as the addon's layerNormForward). */
export function layerNormValues(
  x: Float32Array,
  residual: Float32Array | null,
  gamma: Float32Array,
  beta: Float32Array,
  epsilon: number,
  y: Float32Array,
  sum: Float32Array | null,
  mean: Float32Array,
  rstd: Float32Array,
): void {
  const d = gamma.length;
  const rows = x.length / d;
  for (let i = 0; i < rows; i++) {
    const o = i * d;
    let s: Float32Array = x;
    if (residual && sum) {
      for (let j = o; j < o + d; j++) sum[j] = x[j] + residual[j];
      s = sum;
    }
    let total = 0;
    for (let j = o; j < o + d; j++) total += s[j];
    const m = total / d;
    let squares = 0;
    for (let j = o; j < o + d; j++) squares += (s[j] - m) * (s[j] - m);
    const r = 1 / Math.sqrt(squares / d + epsilon);
    for (let j = 0; j < d; j++) y[o + j] = (s[o + j] - m) * r * gamma[j] + beta[j];
    mean[i] = m;
    rstd[i] = r;
  }
}

/** The JS backward loop (same contract as the addon's layerNormGrad). */
export function layerNormGradValues(
  dy: Float32Array,
  s: Float32Array,
  gamma: Float32Array,
  mean: Float32Array,
  rstd: Float32Array,
  dsum: Float32Array | null,
  dx: Float32Array,
  dgamma: Float32Array,
  dbeta: Float32Array,
): void {
  const d = gamma.length;
  const rows = dy.length / d;
  const accG = new Float64Array(d);
  const accB = new Float64Array(d);
  const g = new Float64Array(d);
  const xhat = new Float64Array(d);
  for (let i = 0; i < rows; i++) {
    const o = i * d;
    const m = mean[i];
    const r = rstd[i];
    let sg = 0;
    let sgx = 0;
    for (let j = 0; j < d; j++) {
      xhat[j] = (s[o + j] - m) * r;
      g[j] = dy[o + j] * gamma[j];
      sg += g[j];
      sgx += g[j] * xhat[j];
      accG[j] += dy[o + j] * xhat[j];
      accB[j] += dy[o + j];
    }
    const a = sg / d;
    const b = sgx / d;
    for (let j = 0; j < d; j++) dx[o + j] = r * (g[j] - a - xhat[j] * b) + (dsum ? dsum[o + j] : 0);
  }
  dgamma.set(accG);
  dbeta.set(accB);
}

type ForwardFn = typeof layerNormValues;
type GradFn = typeof layerNormGradValues;

let gradientsRegistered = false;

/**
 * Registers the three kernels for `backendName` on the addon's loops when given, else the JS
 * loops; and, once per process, the gradients of the two forward kernels. Idempotent: a second
 * call replaces the kernels (tests use it to switch the addon off and on).
 */
export function registerLayerNorm(backendName: Backend, nativeBlas?: NativeBlas): void {
  const native = withFusedKernels(nativeBlas);
  const forward: ForwardFn = native ? (...a) => native.layerNormForward(...a) : layerNormValues;
  const backward: GradFn = native ? (...a) => native.layerNormGrad(...a) : layerNormGradValues;
  for (const name of [LAYER_NORM, LAYER_NORM_RESIDUAL, LAYER_NORM_GRAD]) {
    if (tf.getKernel(name, backendName)) tf.unregisterKernel(name, backendName);
  }
  const forwardKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
    const { x, residual, gamma, beta } = inputs as Record<string, tf.TensorInfo | undefined> as {
      x: tf.TensorInfo;
      residual?: tf.TensorInfo;
      gamma: tf.TensorInfo;
      beta: tf.TensorInfo;
    };
    const rows = x.shape.slice(0, -1);
    // Every output first: on wasm a later allocation may grow the heap and detach earlier views.
    const y = hostKernelOutput(backendName, backend, x.shape);
    const sum = residual ? hostKernelOutput(backendName, backend, x.shape) : null;
    const mean = hostKernelOutput(backendName, backend, rows);
    const rstd = hostKernelOutput(backendName, backend, rows);
    const read = (t: tf.TensorInfo) => hostKernelInput(backendName, backend, t);
    forward(
      read(x),
      residual ? read(residual) : null,
      read(gamma),
      read(beta),
      (attrs as { epsilon: number }).epsilon,
      y.values(),
      sum ? sum.values() : null,
      mean.values(),
      rstd.values(),
    );
    return sum ? [y.info, sum.info, mean.info, rstd.info] : [y.info, mean.info, rstd.info];
  };
  tf.registerKernel({ kernelName: LAYER_NORM, backendName, kernelFunc: forwardKernel });
  tf.registerKernel({ kernelName: LAYER_NORM_RESIDUAL, backendName, kernelFunc: forwardKernel });
  tf.registerKernel({
    kernelName: LAYER_NORM_GRAD,
    backendName,
    kernelFunc: ({ inputs, backend }) => {
      const { dy, s, gamma, mean, rstd, dsum } = inputs as Record<string, tf.TensorInfo | undefined> as {
        dy: tf.TensorInfo;
        s: tf.TensorInfo;
        gamma: tf.TensorInfo;
        mean: tf.TensorInfo;
        rstd: tf.TensorInfo;
        dsum?: tf.TensorInfo;
      };
      const dx = hostKernelOutput(backendName, backend, dy.shape);
      const dgamma = hostKernelOutput(backendName, backend, gamma.shape);
      const dbeta = hostKernelOutput(backendName, backend, gamma.shape);
      const read = (t: tf.TensorInfo) => hostKernelInput(backendName, backend, t);
      backward(read(dy), read(s), read(gamma), read(mean), read(rstd), dsum ? read(dsum) : null, dx.values(), dgamma.values(), dbeta.values());
      return [dx.info, dgamma.info, dbeta.info];
    },
  });
  if (gradientsRegistered) return;
  gradientsRegistered = true;
  // Both gradients run in the engine's backward tidy: the kernel's three outputs that no input
  // asks for are freed there.
  tf.registerGradient({
    kernelName: LAYER_NORM,
    inputsToSave: ['x', 'gamma'],
    outputsToSave: [false, true, true],
    gradFunc: (dys: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
      const [x, gamma, mean, rstd] = saved;
      const dy = (dys as tf.Tensor[])[0];
      const [dx, dgamma, dbeta] = tf.engine().runKernel(LAYER_NORM_GRAD, { dy, s: x, gamma, mean, rstd }) as tf.Tensor[];
      return { x: () => dx, gamma: () => dgamma, beta: () => dbeta };
    },
  });
  tf.registerGradient({
    kernelName: LAYER_NORM_RESIDUAL,
    inputsToSave: ['gamma'],
    outputsToSave: [false, true, true, true],
    gradFunc: (dys: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
      const [gamma, sum, mean, rstd] = saved;
      const [dy, dsum] = dys as tf.Tensor[];
      const [dx, dgamma, dbeta] = tf.engine().runKernel(LAYER_NORM_GRAD, { dy, s: sum, gamma, mean, rstd, dsum }) as tf.Tensor[];
      // x and residual get the same gradient; a clone shares the data but is its own tensor, so
      // the tape may accumulate (and free) either without touching the other.
      return { x: () => dx, residual: () => dx.clone(), gamma: () => dgamma, beta: () => dbeta };
    },
  });
}

/** Whether the active engine has the fused LayerNorm kernels. */
export function hasFusedLayerNorm(): boolean {
  return tf.getKernel(LAYER_NORM, tf.getBackend()) !== undefined;
}

export interface LayerNormResult {
  /** The normalized output. */
  y: tf.Tensor;
  /** x + residual, when a residual was given. */
  sum?: tf.Tensor;
}

/**
 * Fused LayerNorm of `x` (+ `residual`) over the last axis with weights gamma, beta [d]. Call only
 * when `hasFusedLayerNorm()`. The per-row mean and rstd are disposed here (the tape keeps its
 * own references while it records).
 */
export function fusedLayerNorm(x: tf.Tensor, residual: tf.Tensor | null, gamma: tf.Tensor, beta: tf.Tensor, epsilon: number): LayerNormResult {
  const d = x.shape[x.shape.length - 1];
  if (x.dtype !== 'float32' || gamma.shape.length !== 1 || gamma.shape[0] !== d || !tf.util.arraysEqual(beta.shape, gamma.shape)) {
    throw new UserError(`LayerNorm: expected a float32 input [..., ${gamma.shape[0]}] for gamma/beta [${gamma.shape}]; got ${x.dtype} [${x.shape}]`);
  }
  if (residual && (residual.dtype !== 'float32' || !tf.util.arraysEqual(residual.shape, x.shape))) {
    throw new UserError(`LayerNorm: the residual [${residual.shape}] must be float32 of the input's shape [${x.shape}]`);
  }
  const attrs = { epsilon } as unknown as tf.NamedAttrMap;
  if (residual) {
    const [y, sum, mean, rstd] = tf.engine().runKernel(LAYER_NORM_RESIDUAL, { x, residual, gamma, beta }, attrs) as tf.Tensor[];
    tf.dispose([mean, rstd]);
    return { y, sum };
  }
  const [y, mean, rstd] = tf.engine().runKernel(LAYER_NORM, { x, gamma, beta }, attrs) as tf.Tensor[];
  tf.dispose([mean, rstd]);
  return { y };
}
