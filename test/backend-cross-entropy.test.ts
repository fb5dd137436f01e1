/**
 * softmaxCrossEntropy (src/backend/kernels/crossEntropy.ts): value and gradient against the plain
 * op composition (logsumexp, gather, mean) on the cpu reference, on wasm and cpu, with padding and
 * label smoothing; and the op fallback used by engines without the kernel.
 */
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend, softmaxCrossEntropy } from '../src/backend/index.ts';
import { CROSS_ENTROPY_GRAD, crossEntropyGradValues, registerCrossEntropyGrad } from '../src/backend/kernels/crossEntropy.ts';
import { loadNativeBlas } from '../src/backend/native.ts';

const N = 7;
const V = 11;
const PAD = 0;
const targetsData = [3, 0, 10, 1, 0, 5, 10]; // two pad rows

function logitsData(): Float32Array {
  const out = new Float32Array(N * V);
  for (let i = 0; i < out.length; i++) out[i] = Math.sin(i * 1.7) * 4 + Math.cos(i * 0.3);
  return out;
}

/** The reference: the obvious op composition, differentiated by tfjs. */
function reference(logits: tf.Tensor2D, targets: tf.Tensor1D, smoothing: number): [tf.Scalar, tf.Scalar] {
  const lse = tf.logSumExp(logits, 1);
  const onehot = tf.oneHot(targets, V);
  const targetLogit = tf.sum(tf.mul(logits, onehot), 1);
  const mask = tf.cast(tf.notEqual(targets, PAD), 'float32');
  const nll = tf.sum(tf.mul(tf.sub(lse, targetLogit), mask)) as tf.Scalar;
  const smooth = tf.sum(tf.mul(tf.sub(lse, tf.mean(logits, 1)), mask));
  return [tf.add(tf.mul(nll, 1 - smoothing), tf.mul(smooth, smoothing)) as tf.Scalar, nll];
}

describe('softmaxCrossEntropy', () => {
  for (const smoothing of [0, 0.1]) {
    for (const backend of ['wasm', 'cpu']) {
      it(`${backend}, smoothing ${smoothing}: value and gradient match the op composition on cpu`, async () => {
        await initBackend({ backend: 'wasm' });
        // variableGrads needs variables: wrap the logits in one and differentiate through it.
        const run = (b: string, useKernel: boolean) => {
          tf.setBackend(b);
          const v = tf.variable(tf.tensor2d(logitsData(), [N, V]));
          const targets = tf.tensor1d(targetsData, 'int32');
          const { value, grads } = tf.variableGrads(() => {
            const [loss, nll] = useKernel
              ? (({ loss, nll }) => [loss, nll] as [tf.Scalar, tf.Scalar])(softmaxCrossEntropy(v as unknown as tf.Tensor2D, targets, { smoothing, padId: PAD }))
              : reference(v as unknown as tf.Tensor2D, targets, smoothing);
            return tf.add(loss, tf.mul(nll, 0.5)) as tf.Scalar;
          }, [v]);
          const out = { value: value.dataSync()[0], grad: Array.from(grads[v.name].dataSync()) };
          tf.dispose([v, targets, value, ...Object.values(grads)]);
          return out;
        };
        const ours = run(backend, true);
        const ref = run('cpu', false);
        await tf.setBackend('wasm');
        expect(ours.value).toBeCloseTo(ref.value, 3);
        ours.grad.forEach((g, i) => expect(Math.abs(g - ref.grad[i])).toBeLessThan(1e-5));
        // pad rows get exactly zero gradient
        for (const row of [1, 4]) for (let v = 0; v < V; v++) expect(ours.grad[row * V + v] === 0).toBe(true);
      });
    }
  }

  it('engines without the kernel use the op fallback with the same result', async () => {
    await initBackend({ backend: 'wasm' });
    const run = () => {
      const v = tf.variable(tf.tensor2d(logitsData(), [N, V]));
      const targets = tf.tensor1d(targetsData, 'int32');
      const { grads } = tf.variableGrads(() => softmaxCrossEntropy(v as unknown as tf.Tensor2D, targets, { smoothing: 0.1, padId: PAD }).loss, [v]);
      const g = Array.from(grads[v.name].dataSync());
      tf.dispose([v, targets, ...Object.values(grads)]);
      return g;
    };
    await tf.setBackend('cpu');
    const withKernel = run();
    tf.unregisterKernel(CROSS_ENTROPY_GRAD, 'cpu');
    const withOps = run();
    registerCrossEntropyGrad('cpu', loadNativeBlas().blas);
    await tf.setBackend('wasm');
    withOps.forEach((g, i) => expect(Math.abs(g - withKernel[i])).toBeLessThan(1e-5));
  });

  const native = loadNativeBlas();
  it.skipIf(!native.blas)(`the native gradient loop equals the JS loop${native.blas ? '' : ` (skipped: ${native.reason})`}`, () => {
    const n = 5;
    const vocab = 37;
    const logits = new Float32Array(n * vocab).map((_, i) => Math.sin(i) * 3);
    const lse = new Float32Array(n).map((_, r) => {
      let m = -Infinity;
      for (let v = 0; v < vocab; v++) m = Math.max(m, logits[r * vocab + v]);
      let s = 0;
      for (let v = 0; v < vocab; v++) s += Math.exp(logits[r * vocab + v] - m);
      return m + Math.log(s);
    });
    const targets = new Int32Array([4, 0, 36, 7, 0]);
    const attrs = { smoothing: 0.1, padId: 0, dyLoss: 0.7, dyNll: 0.3 };
    const js = new Float32Array(n * vocab);
    const c = new Float32Array(n * vocab).fill(NaN);
    crossEntropyGradValues(logits, lse, targets, vocab, attrs, js);
    native.blas!.crossEntropyGrad(logits, lse, targets, vocab, attrs.smoothing, attrs.padId, attrs.dyLoss, attrs.dyNll, c);
    js.forEach((g, i) => expect(Math.abs(g - c[i])).toBeLessThan(1e-6));
    expect(() => native.blas!.crossEntropyGrad(logits, lse, targets, vocab + 1, 0, 0, 1, 0, c)).toThrow(/sizes do not match/);
  });

  it('leaves no tensors behind, with or without a gradient tape', async () => {
    await initBackend({ backend: 'wasm' });
    const logits = tf.tensor2d(logitsData(), [N, V]);
    const targets = tf.tensor1d(targetsData, 'int32');
    const before = tf.memory().numTensors;
    const { loss, nll } = softmaxCrossEntropy(logits, targets, { smoothing: 0.1, padId: PAD });
    tf.dispose([loss, nll]);
    const v = tf.variable(logits);
    const afterVar = tf.memory().numTensors;
    const { value, grads } = tf.variableGrads(() => softmaxCrossEntropy(v as unknown as tf.Tensor2D, targets, { smoothing: 0.1, padId: PAD }).loss, [v]);
    tf.dispose([value, ...Object.values(grads)]);
    expect(tf.memory().numTensors).toBe(afterVar);
    v.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([logits, targets]);
  });

  it('rejects mismatched shapes and non-int targets', () => {
    const logits = tf.zeros([3, 4]) as tf.Tensor2D;
    expect(() => softmaxCrossEntropy(logits, tf.tensor1d([1, 2], 'int32'), { smoothing: 0, padId: 0 })).toThrow(/expected logits \[n, V\] and targets \[n\]/);
    expect(() => softmaxCrossEntropy(logits, tf.tensor1d([1, 2, 3], 'float32'), { smoothing: 0, padId: 0 })).toThrow(/int32/);
    logits.dispose();
  });
});
