/**
 * WGSL kernels for the webgpu engine: both halves of softmaxCrossEntropy (kernels/crossEntropy.ts).
 *
 * Why: as stock ops, the forward pass (logSumExp's max / subtract / exp / sum / log, the gather of
 * the target logits, the row means) reads the [tokens, vocab] logits six times and writes three
 * [tokens, vocab] temporaries; here one workgroup per row reads it once (two passes over a row
 * held in cache) and writes 3 numbers per row. The gradient has a closed form written in one pass
 * (see crossEntropyGradValues), with dy read on the device: no sync read, no one-hot.
 *
 * The other custom kernels need no webgpu version: UnsortedSegmentSum is stock on webgpu (atomic
 * adds over a [d, tokens] transpose; no one-hot), the Tile gradient is registered for every engine
 * as tensor ops (kernels/tileGradient.ts), and the BLAS matMul is a wasm-only replacement for
 * wasm's slow batched/transposed products (webgpu's own BatchMatMul handles both).
 *
 * AddN is wrapped: the stock webgpu kernel binds every input as its own storage buffer in one
 * shader, so summing more tensors than the device's maxStorageBuffersPerShaderStage (8 by
 * default, 16 on lavapipe) fails pipeline validation — and the trainer's gradient norm sums one
 * term per weight (40+). The wrapper sums in chunks that fit, then sums the partial sums.
 *
 * These programs follow tfjs-backend-webgpu's WebGPUProgram interface; its helpers are passed in
 * (`webgpu_util`) because the package is an optional dependency imported only when used.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { WebGpuUtil } from '../webgpu.ts';
import { CROSS_ENTROPY_GRAD, CROSS_ENTROPY_ROWS } from './crossEntropy.ts';

/* eslint-disable @typescript-eslint/no-explicit-any */
type WebGpuBackend = any;

/** The part of tfjs-backend-webgpu's WebGPUProgram these kernels fill in. */
interface Program {
  variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  uniforms?: string;
  size?: boolean;
  getUserCode(): string;
}

/**
 * Per row of logits [n, V] with targets [n]: out[i] = (logsumexp_i, x[i, t_i], mean_i), [n, 3].
 * A target outside [0, V) (padding) reads as 0; the caller masks those rows.
 */
function rowsProgram(n: number, vocab: number): Program {
  const block = vocab >= 4096 ? 256 : 64;
  return {
    variableNames: ['logits', 'targets'],
    outputShape: [n, 3],
    shaderKey: `ftCrossEntropyRows_${block}`,
    dispatchLayout: { x: [0, 1] },
    dispatch: [n, 1, 1],
    workgroupSize: [block, 1, 1],
    getUserCode: () => `
    var<workgroup> buf : array<f32, ${block}>;
    var<workgroup> rowMax : f32;
    const blockSize = ${block};
    fn main(index : i32) {
      let row = index / blockSize;
      let tid = i32(localId.x);
      let cols = uniforms.logitsShape[1];
      // A dispatch reshaped to 2-D (over 65535 rows) has spare workgroups: they compute but must
      // not write (an out-of-range write would be clamped onto the last element). No early
      // return: every invocation has to reach the barriers.
      let inRange = row < uniforms.logitsShape[0];
      var m = -3.402823e+38f;
      for (var col = tid; col < cols; col += blockSize) {
        m = max(m, getLogits(row, col));
      }
      buf[tid] = m;
      workgroupBarrier();
      for (var s = blockSize / 2; s > 0; s = s / 2) {
        if (tid < s) { buf[tid] = max(buf[tid], buf[tid + s]); }
        workgroupBarrier();
      }
      if (tid == 0) { rowMax = buf[0]; }
      workgroupBarrier();
      let mx = rowMax;
      workgroupBarrier();
      var e = 0.0;
      var total = 0.0;
      for (var col = tid; col < cols; col += blockSize) {
        let x = getLogits(row, col);
        e += exp(x - mx);
        total += x;
      }
      buf[tid] = e;
      workgroupBarrier();
      for (var s = blockSize / 2; s > 0; s = s / 2) {
        if (tid < s) { buf[tid] = buf[tid] + buf[tid + s]; }
        workgroupBarrier();
      }
      if (tid == 0 && inRange) { setOutputAtCoords(row, 0, mx + log(buf[0])); }
      workgroupBarrier();
      buf[tid] = total;
      workgroupBarrier();
      for (var s = blockSize / 2; s > 0; s = s / 2) {
        if (tid < s) { buf[tid] = buf[tid] + buf[tid + s]; }
        workgroupBarrier();
      }
      if (tid == 0 && inRange) {
        let t = i32(getTargets(row));
        var xt = 0.0;
        if (t >= 0 && t < cols) { xt = getLogits(row, t); }
        setOutputAtCoords(row, 1, xt);
        setOutputAtCoords(row, 2, buf[0] / f32(cols));
      }
    }`,
  };
}

/**
 * out[i, v] = mask_i · ((dyLoss + dyNll) · exp(x_iv − lse_i) − dyLoss·ε/V − [v = t_i]·(dyLoss·(1−ε) + dyNll)),
 * one thread per element; dy = (dyLoss, dyNll) is a [2] tensor read on the device.
 */
function gradProgram(shape: [number, number], util: WebGpuUtil): Program {
  const workgroupSize: [number, number, number] = [64, 1, 1];
  const dispatchLayout = util.flatDispatchLayout(shape);
  return {
    variableNames: ['logits', 'lse', 'targets', 'dy'],
    outputShape: shape,
    shaderKey: 'ftCrossEntropyGrad',
    dispatchLayout,
    dispatch: util.computeDispatch(dispatchLayout, shape, workgroupSize),
    workgroupSize,
    size: true,
    uniforms: 'smoothing : f32, padId : i32,',
    getUserCode: () => `
    fn main(index : i32) {
      if (index < uniforms.size) {
        let vocab = uniforms.outShape[1];
        let row = index / vocab;
        let col = index - row * vocab;
        let t = i32(getTargets(row));
        if (t == uniforms.padId) {
          setOutputAtIndex(index, 0.0);
          return;
        }
        let dyLoss = getDy(0);
        let dyNll = getDy(1);
        var g = (dyLoss + dyNll) * exp(getLogitsByOutputIndex(index) - getLse(row)) - dyLoss * uniforms.smoothing / f32(vocab);
        if (col == t) {
          g -= dyLoss * (1.0 - uniforms.smoothing) + dyNll;
        }
        setOutputAtIndex(index, g);
      }
    }`,
  };
}

let stockAddN: tf.KernelFunc | undefined;

/** AddN over any number of inputs, in chunks the device can bind at once. */
function chunkedAddN(args: { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const stock = stockAddN!;
  const inputs = args.inputs as unknown as tf.TensorInfo[];
  const b = args.backend as WebGpuBackend;
  // One binding is the output.
  const max = Math.max(2, Number(b.device?.limits?.maxStorageBuffersPerShaderStage ?? 8) - 1);
  if (inputs.length <= max) return stock(args) as tf.TensorInfo;
  const partials: tf.TensorInfo[] = [];
  for (let i = 0; i < inputs.length; i += max) {
    partials.push(stock({ ...args, inputs: inputs.slice(i, i + max) as unknown as tf.NamedTensorInfoMap }) as tf.TensorInfo);
  }
  const out = chunkedAddN({ ...args, inputs: partials as unknown as tf.NamedTensorInfoMap });
  for (const p of partials) b.disposeData(p.dataId);
  return out;
}

/** Registers the cross-entropy kernels and the chunked AddN for 'webgpu' (idempotent). */
export function registerWebGpuKernels(util: WebGpuUtil): void {
  if (!stockAddN) {
    const stock = tf.getKernel('AddN', 'webgpu');
    if (!stock) throw new Error("tfjs-backend-webgpu registered no 'AddN' kernel");
    stockAddN = stock.kernelFunc;
    tf.unregisterKernel('AddN', 'webgpu');
    tf.registerKernel({ kernelName: 'AddN', backendName: 'webgpu', kernelFunc: chunkedAddN as unknown as tf.KernelFunc });
  }
  for (const name of [CROSS_ENTROPY_ROWS, CROSS_ENTROPY_GRAD]) {
    if (tf.getKernel(name, 'webgpu')) tf.unregisterKernel(name, 'webgpu');
  }
  tf.registerKernel({
    kernelName: CROSS_ENTROPY_ROWS,
    backendName: 'webgpu',
    kernelFunc: ({ inputs, backend }) => {
      const { logits, targets } = inputs as { logits: tf.TensorInfo; targets: tf.TensorInfo };
      const program = rowsProgram(logits.shape[0], logits.shape[1]);
      return (backend as WebGpuBackend).runWebGPUProgram(program, [logits, targets], 'float32');
    },
  });
  tf.registerKernel({
    kernelName: CROSS_ENTROPY_GRAD,
    backendName: 'webgpu',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { logits, lse, targets, dy } = inputs as { logits: tf.TensorInfo; lse: tf.TensorInfo; targets: tf.TensorInfo; dy: tf.TensorInfo };
      const { smoothing, padId } = attrs as unknown as { smoothing: number; padId: number };
      const program = gradProgram(logits.shape as [number, number], util);
      const uniforms = [
        { type: 'float32', data: [smoothing] },
        { type: 'int32', data: [padId] },
      ];
      return (backend as WebGpuBackend).runWebGPUProgram(program, [logits, lse, targets, dy], 'float32', uniforms);
    },
  });
}
