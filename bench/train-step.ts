/** Shared pieces of the training benchmarks (not a benchmark itself: run.ts skips it). */
import * as tf from '@tensorflow/tfjs';
import type { TrainOptimizer } from '../src/train/index.ts';

/** Deterministic token ids in [4, vocab) (ids 0-3 are special). */
export function randomIds(n: number, vocab: number, seed: number): Int32Array {
  let s = seed >>> 0;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = 4 + (s % (vocab - 4));
  }
  return out;
}

/**
 * One optimizer update as the trainer does it: gradients of the summed loss, scaled to a mean over
 * tokens, then Adam. Returns a function that runs one step and waits for its result (an async
 * read: on a GPU engine a synchronous one cannot run, and the wait is what the timing must include).
 */
export function makeTrainStep(
  weights: tf.LayerVariable[],
  optimizer: TrainOptimizer,
  lossFn: () => { loss: tf.Scalar; numTokens: number },
): () => Promise<void> {
  const variables = weights.map((w) => w.read() as tf.Variable);
  return async () => {
    let numTokens = 1;
    const { value, grads } = tf.variableGrads(() => {
      const out = lossFn();
      numTokens = out.numTokens;
      return out.loss;
    }, variables);
    const scaled = tf.tidy(() => Object.fromEntries(Object.entries(grads).map(([k, g]) => [k, tf.div(g, numTokens)])));
    tf.dispose(grads);
    optimizer.step(scaled, 1e-4);
    tf.dispose(scaled);
    await value.data();
    value.dispose();
  };
}
