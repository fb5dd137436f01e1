/**
 * Exact GELU, x·Φ(x) (as torch.nn.functional.gelu), as one kernel each way.
 *
 * Why a kernel: as tfjs ops it is mul, erf, add, mul forward and, backward, erf's gradient (an
 * exp and several multiplies) plus the product rule: about a dozen full passes over the FFN's
 * [tokens, ffnDim] activations, the widest tensor of the block. `FtGelu` computes x·Φ(x) in one
 * pass; its registered gradient is `FtGeluGrad`, dy·(Φ(x) + x·φ(x)), one pass too. Both run on the
 * native addon (native/src/fused.c) when it is loaded, else as the JS loops here, on the wasm
 * heap or the cpu backend's arrays. Other engines (webgpu, tensorflow) have no such kernel and
 * `gelu` runs the op formula there.
 */
import * as tf from '@tensorflow/tfjs';
import type { NativeBlas } from '../native.ts';

export const GELU = 'FtGelu';
export const GELU_GRAD = 'FtGeluGrad';

type Backend = 'wasm' | 'cpu';

/**
 * erfc(z) for any z, Numerical Recipes' erfcc (fractional error < 1.2e-7 everywhere), the same fit
 * as the C kernel, so the JS fallback and the addon agree to float rounding.
 */
function erfc(z: number): number {
  const a = Math.abs(z);
  const t = 1 / (1 + 0.5 * a);
  const poly =
    -1.26551223 +
    t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  const tail = t * Math.exp(-a * a + poly);
  return z >= 0 ? tail : 2 - tail;
}

/** Φ(x), the standard normal CDF. */
function normalCdf(x: number): number {
  return 0.5 * erfc(-x * Math.SQRT1_2);
}

const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** out[i] = x[i]·Φ(x[i]). */
export function geluValues(x: Float32Array, out: Float32Array): void {
  for (let i = 0; i < x.length; i++) out[i] = x[i] * normalCdf(x[i]);
}

/** out[i] = dy[i]·(Φ(x[i]) + x[i]·φ(x[i])). */
export function geluGradValues(x: Float32Array, dy: Float32Array, out: Float32Array): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    out[i] = dy[i] * (normalCdf(v) + v * INV_SQRT_2PI * Math.exp(-0.5 * v * v));
  }
}

/** The op formula, for engines without the kernel (and the reference the tests compare with). */
export function geluOps(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))));
}

/** Exact GELU of a float32 tensor: one kernel where the engine has it, else the op formula. */
export function gelu(x: tf.Tensor): tf.Tensor {
  if (x.dtype === 'float32' && tf.getKernel(GELU, tf.getBackend())) return tf.engine().runKernel(GELU, { x }) as tf.Tensor;
  return geluOps(x);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyBackend = any;

/** A float32 output of `shape` whose values `fill` writes, on the wasm heap or as a cpu array. */
export function hostKernelOutput(
  backendName: Backend,
  backend: AnyBackend,
  shape: number[],
): { info: tf.TensorInfo; values: () => Float32Array } {
  if (backendName === 'wasm') {
    const info = backend.makeOutput(shape, 'float32') as tf.TensorInfo;
    // A view only when asked for: a later makeOutput may grow the heap and detach earlier views.
    return { info, values: () => backend.typedArrayFromHeap(info) as Float32Array };
  }
  const array = new Float32Array(tf.util.sizeFromShape(shape));
  const info = { dataId: backend.write(array, shape, 'float32'), shape, dtype: 'float32' } as tf.TensorInfo;
  // The cpu backend keeps the array it was given: writing it after `write` fills the tensor.
  return { info, values: () => array };
}

/**
 * An input's float32 values in the engine's own (host) memory: a view, never a sync. One copy
 * where it cannot be a view: the cpu backend's cast of a bool tensor to float32 keeps the bool's
 * Uint8Array (e.g. a padding mask), which a kernel reading float32 must not take as floats.
 */
export function hostKernelInput(backendName: Backend, backend: AnyBackend, t: tf.TensorInfo): Float32Array {
  if (backendName === 'wasm') return backend.typedArrayFromHeap(t) as Float32Array;
  const values = backend.data.get(t.dataId).values as ArrayLike<number>;
  return values instanceof Float32Array ? values : Float32Array.from(values);
}

/** The addon when it has the fused kernels (an addon built before them lacks them: JS loops then). */
export function withFusedKernels(native: NativeBlas | undefined): NativeBlas | undefined {
  return typeof native?.geluForward === 'function' && typeof native.layerNormForward === 'function' ? native : undefined;
}

/**
 * tfjs-layers' 'gelu' activation (what `tf.layers.dense({ activation: 'gelu' })` and a loaded
 * model.json with it build, e.g. BERT's MLM head), through `FtGelu` where the engine has it, else
 * tfjs' own formula, op for op. Same class name, so model.json files are unchanged; a model built
 * and one loaded in the same process compute the same values.
 */
class GeluActivation extends tf.serialization.Serializable {
  static className = 'gelu';
  apply(x: tf.Tensor): tf.Tensor {
    if (x.dtype === 'float32' && tf.getKernel(GELU, tf.getBackend())) return tf.engine().runKernel(GELU, { x }) as tf.Tensor;
    return tf.tidy(() => tf.mul(x, tf.mul(0.5, tf.add(1, tf.erf(tf.div(x, Math.sqrt(2)))))));
  }
  getConfig(): tf.serialization.ConfigDict {
    return {};
  }
}

let gradientRegistered = false;

/**
 * Registers `FtGelu` and `FtGeluGrad` for `backendName` on the addon's loops when given, else the
 * JS loops; and, once per process, the gradient of `FtGelu` (gradients are process-wide) and
 * the 'gelu' activation class of tfjs-layers.
 * Idempotent: a second call replaces the kernels (tests use it to switch the addon off and on).
 */
export function registerGelu(backendName: Backend, nativeBlas?: NativeBlas): void {
  const native = withFusedKernels(nativeBlas);
  const forward = native ? (x: Float32Array, out: Float32Array) => native.geluForward(x, out) : geluValues;
  const backward = native ? (x: Float32Array, dy: Float32Array, out: Float32Array) => native.geluGrad(x, dy, out) : geluGradValues;
  for (const name of [GELU, GELU_GRAD]) if (tf.getKernel(name, backendName)) tf.unregisterKernel(name, backendName);
  tf.registerKernel({
    kernelName: GELU,
    backendName,
    kernelFunc: ({ inputs, backend }) => {
      const { x } = inputs as { x: tf.TensorInfo };
      const out = hostKernelOutput(backendName, backend, x.shape);
      forward(hostKernelInput(backendName, backend, x), out.values());
      return out.info;
    },
  });
  tf.registerKernel({
    kernelName: GELU_GRAD,
    backendName,
    kernelFunc: ({ inputs, backend }) => {
      const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
      const out = hostKernelOutput(backendName, backend, x.shape);
      backward(hostKernelInput(backendName, backend, x), hostKernelInput(backendName, backend, dy), out.values());
      return out.info;
    },
  });
  if (gradientRegistered) return;
  gradientRegistered = true;
  // Process-wide, like gradients: replaces tfjs-layers' own 'gelu' for layers built from now on.
  tf.serialization.registerClass(GeluActivation);
  tf.registerGradient({
    kernelName: GELU,
    inputsToSave: ['x'],
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
      const [x] = saved;
      return { x: () => tf.engine().runKernel(GELU_GRAD, { x, dy: dy as tf.Tensor }) as tf.Tensor };
    },
  });
}
