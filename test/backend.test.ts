import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backend/index.ts';

describe('backend', () => {
  it('starts a backend and computes', async () => {
    const info = await initBackend();
    expect(['tensorflow', 'tensorflow-gpu', 'wasm', 'cpu']).toContain(info.name);
    expect(tf.getBackend()).toBeTruthy();
    const y = tf.tidy(() => tf.matMul(tf.ones([2, 3]), tf.ones([3, 2])).dataSync());
    expect(Array.from(y)).toEqual([3, 3, 3, 3]);
  });

  it('gather gradient works (UnsortedSegmentSum) and matches a dense computation', async () => {
    await initBackend();
    const table = tf.tensor2d([[1, 2], [3, 4], [5, 6]]);
    const ids = tf.tensor1d([2, 0, 2], 'int32');
    const g = tf.grad((t: tf.Tensor) => tf.gather(t, ids).sum())(table);
    expect(Array.from(await g.data())).toEqual([1, 1, 0, 0, 2, 2]);
    tf.dispose([table, ids, g]);
  });

  it('rejects an unknown backend with a one-line error', async () => {
    await expect(initBackend({ backend: 'gpu' as never })).rejects.toThrow(/unknown backend 'gpu'/);
  });
});
