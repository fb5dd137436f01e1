/**
 * Frobenius decay in tfjs' own `model.fit` (src/factorized/fit.ts): one SGD step of `fit` with
 * `addFrobeniusDecay` must equal a hand-made step whose gradients are the task's plus the
 * closed-form FD gradients (the Trainer's path, addFrobeniusDecayGrads).
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { FactorizedMultiHeadAttention } from '../src/attention/factorized-attention.ts';
import { addFrobeniusDecay } from '../src/factorized/fit.ts';
import { addFrobeniusDecayGrads, collectFactorPairs } from '../src/factorized/frobenius.ts';

const B = 3;
const T = 5;
const D = 8;
const LR = 0.5;
const COEF = 0.3;

function buildModel(): tf.LayersModel {
  const x = tf.input({ shape: [T, D] });
  const y = new FactorizedMultiHeadAttention({ numHeads: 2, rankScale: 0.5 }).apply(x) as tf.SymbolicTensor;
  const model = tf.model({ inputs: x, outputs: y });
  model.compile({ optimizer: tf.train.sgd(LR), loss: 'meanSquaredError' });
  return model;
}

async function weightsOf(model: tf.LayersModel): Promise<Float32Array[]> {
  return Promise.all(model.getWeights().map(async (w) => (await w.data()) as Float32Array));
}

function maxAbsDiff(a: Float32Array[], b: Float32Array[]): number {
  let m = 0;
  a.forEach((x, i) => x.forEach((v, j) => (m = Math.max(m, Math.abs(v - b[i][j])))));
  return m;
}

describe('addFrobeniusDecay with model.fit', () => {
  it('one fit step equals task gradients + closed-form FD gradients', async () => {
    const xs = tf.randomNormal([B, T, D], 0, 1, 'float32', 1);
    const ys = tf.randomNormal([B, T, D], 0, 1, 'float32', 2);
    const fitted = buildModel();
    const initial = fitted.getWeights().map((w) => w.clone());
    const manual = buildModel();
    manual.setWeights(initial);
    const plain = buildModel();
    plain.setWeights(initial);

    const pairs = addFrobeniusDecay(fitted, { coef: COEF });
    expect(pairs.map((p) => p.kind).sort()).toEqual(['ov', 'qk']);
    await fitted.fit(xs, ys, { batchSize: B, epochs: 1, shuffle: false, verbose: 0 });
    await plain.fit(xs, ys, { batchSize: B, epochs: 1, shuffle: false, verbose: 0 });

    // The same step by hand: d(mean squared error) + coef · closed-form FD, then w -= lr · g.
    const vars = manual.trainableWeights.map((w) => w.read() as tf.Variable);
    const { grads } = tf.variableGrads(() => tf.losses.meanSquaredError(ys, manual.apply(xs) as tf.Tensor) as tf.Scalar, vars);
    const withFd = addFrobeniusDecayGrads(grads, collectFactorPairs(manual.layers), COEF);
    for (const w of manual.trainableWeights) {
      const v = w.read() as tf.Variable;
      v.assign(tf.tidy(() => tf.sub(v, tf.mul(LR, withFd[v.name]))));
    }
    Object.values(withFd).forEach((g) => g.dispose());

    const [a, b, c] = await Promise.all([weightsOf(fitted), weightsOf(manual), weightsOf(plain)]);
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-5);
    // The decay changed the step (the comparison above is not vacuous).
    expect(maxAbsDiff(a, c)).toBeGreaterThan(1e-3);
    tf.dispose([xs, ys, ...initial]);
    [fitted, manual, plain].forEach((m) => m.dispose());
  });

  it('refuses a second call on the same layers and a negative coef', () => {
    const model = buildModel();
    addFrobeniusDecay(model, { coef: 0.1 });
    expect(() => addFrobeniusDecay(model, { coef: 0.1 })).toThrow(/already has Frobenius decay/);
    expect(() => addFrobeniusDecay(buildModel(), { coef: -1 })).toThrow(/coef must be a finite number >= 0/);
    model.dispose();
  });

  it('pairs: only the chosen kinds get the decay', () => {
    const model = buildModel();
    expect(addFrobeniusDecay(model, { coef: 0.1, pairs: { ov: false } }).map((p) => p.kind)).toEqual(['qk']);
    model.dispose();
  });
});
