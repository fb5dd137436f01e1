import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { labelSmoothedCrossEntropy } from '../src/train/index.ts';

/** The textbook formula with an explicit one-hot, to check the gather/logsumexp version against. */
function oneHotReference(logits: tf.Tensor, targets: tf.Tensor, eps: number, pad: number): tf.Scalar {
  return tf.tidy(() => {
    const V = logits.shape[logits.shape.length - 1];
    const logp = tf.logSoftmax(logits);
    const q = tf.add(tf.mul(tf.oneHot(targets as tf.Tensor2D, V), 1 - eps), eps / V);
    const perToken = tf.neg(tf.sum(tf.mul(q, logp), -1));
    const mask = tf.cast(tf.notEqual(targets, pad), 'float32');
    return tf.sum(tf.mul(perToken, mask)) as tf.Scalar;
  });
}

describe('labelSmoothedCrossEntropy', () => {
  const logits = tf.randomNormal([3, 4, 7], 0, 2, 'float32', 11);
  const targets = tf.tensor2d([[1, 6, 2, 0], [3, 0, 0, 0], [5, 5, 4, 2]], [3, 4], 'int32');

  it('equals the one-hot formula, ignoring padding, for several ε', () => {
    for (const eps of [0, 0.1, 0.3]) {
      const out = labelSmoothedCrossEntropy(logits, targets, { smoothing: eps, padId: 0 });
      const ref = oneHotReference(logits, targets, eps, 0);
      expect(out.numTokens).toBe(8);
      expect(out.loss.dataSync()[0]).toBeCloseTo(ref.dataSync()[0], 4);
      const nllRef = oneHotReference(logits, targets, 0, 0);
      expect(out.nllLoss.dataSync()[0]).toBeCloseTo(nllRef.dataSync()[0], 4);
      tf.dispose([out.loss, out.nllLoss, ref, nllRef]);
    }
  });

  it('has the gradient of the one-hot formula', () => {
    const f = (x: tf.Tensor) => labelSmoothedCrossEntropy(x, targets, { smoothing: 0.1, padId: 0 }).loss;
    const g = tf.grad(f)(logits);
    const gRef = tf.grad((x: tf.Tensor) => oneHotReference(x, targets, 0.1, 0))(logits);
    const diff = tf.max(tf.abs(tf.sub(g, gRef))).dataSync()[0];
    expect(diff).toBeLessThan(1e-5);
    // Padded positions get no gradient at all.
    const padRow = tf.slice(g, [1, 1, 0], [1, 3, 7]);
    expect(tf.max(tf.abs(padRow)).dataSync()[0]).toBe(0);
    tf.dispose([g, gRef, padRow]);
  });

  it('matches torch cross_entropy(label_smoothing=0.1, ignore_index=pad, reduction=sum)', () => {
    // Reference from PyTorch 1.13 (python3-torch) on these exact logits.
    const torchLogits = [
      [[-2.310411800234176, -0.3732508612577643, -1.0608166785462863, 0.9995093547811761, -0.8840250045832653],
        [-1.2755469302148053, -0.623224579866079, -0.8664416019125772, -1.2956271403277857, 1.52363162310635],
        [0.3236605664983738, 2.0177260314861085, 1.1357423400213507, -1.226881339001083, 0.519998663178938]],
      [[-0.9528856397032842, -0.09174174090816388, 0.5563227724483105, -0.009446277892507904, -1.21768777910687],
        [-1.2654653080284903, -1.1195351830271254, -1.746404903728242, 1.041012457033509, 0.6539244967350809],
        [0.14821544548810084, -1.1461092231976013, 1.8727763768553416, -0.30991497424174674, 0.24018023403782535]],
    ];
    const l = tf.tensor3d(torchLogits);
    const t = tf.tensor2d([[1, 4, 0], [2, 0, 0]], [2, 3], 'int32');
    const out = labelSmoothedCrossEntropy(l, t, { smoothing: 0.1, padId: 0 });
    expect(out.loss.dataSync()[0]).toBeCloseTo(3.345115548187618, 5);
    expect(out.numTokens).toBe(3);
    tf.dispose([l, t, out.loss, out.nllLoss]);
  });

  it('counts tokens from the host ids when given (targetIds), without reading the targets back', () => {
    const ids = Int32Array.from([1, 6, 2, 0, 3, 0, 0, 0, 5, 5, 4, 2]);
    const dataSync = tf.Tensor.prototype.dataSync;
    tf.Tensor.prototype.dataSync = () => {
      throw new Error('dataSync called');
    };
    let out: ReturnType<typeof labelSmoothedCrossEntropy>;
    try {
      out = labelSmoothedCrossEntropy(logits, targets, { smoothing: 0.1, padId: 0, targetIds: ids });
    } finally {
      tf.Tensor.prototype.dataSync = dataSync;
    }
    const ref = labelSmoothedCrossEntropy(logits, targets, { smoothing: 0.1, padId: 0 });
    expect(out.numTokens).toBe(8);
    expect(out.loss.dataSync()[0]).toBe(ref.loss.dataSync()[0]);
    expect(() => labelSmoothedCrossEntropy(logits, targets, { smoothing: 0, padId: 0, targetIds: ids.subarray(1) })).toThrow(/targetIds has 11 values/);
    tf.dispose([out.loss, out.nllLoss, ref.loss, ref.nllLoss]);
  });

  it('leaks no tensors and rejects bad input', () => {
    const before = tf.memory().numTensors;
    const out = labelSmoothedCrossEntropy(logits, targets, { smoothing: 0.1, padId: 0 });
    tf.dispose([out.loss, out.nllLoss]);
    expect(tf.memory().numTensors).toBe(before);
    expect(() => labelSmoothedCrossEntropy(logits, targets, { smoothing: 1, padId: 0 })).toThrow(/labelSmoothing/);
    const bad = tf.tensor2d([[1, 9, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], [3, 4], 'int32');
    expect(() => labelSmoothedCrossEntropy(logits, bad, { smoothing: 0, padId: 0 })).toThrow(/outside vocabulary/);
    bad.dispose();
  });
});
