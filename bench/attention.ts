/**
 * `npm run bench -- attention`: forward+backward time of FactorizedMultiHeadAttention against a
 * dense MHA computing the same function (same d, H, r = d/H) in the same run, and the share of a
 * training step the Frobenius-decay hook takes. Targets: ratio ≤ 1.10, FD share ≤ 3 %.
 */
import * as tf from '@tensorflow/tfjs';
import { FactorizedMultiHeadAttention } from '../src/attention/index.ts';
import { addFrobeniusDecayGrads, collectFactorPairs } from '../src/factorized/index.ts';
import { timeMedian, type Benchmark, type BenchResult } from './common.ts';

/** The fair peer: a standard dense MHA with fused [d, d] projections and biases (x · W + b). */
class DenseMha {
  readonly vars: tf.Variable[];
  constructor(
    readonly d: number,
    readonly H: number,
  ) {
    const w = (seed: number) => tf.variable(tf.randomNormal([d, d], 0, 1 / Math.sqrt(d), 'float32', seed));
    const b = () => tf.variable(tf.zeros([d]));
    this.vars = [w(1), w(2), w(3), w(4), b(), b(), b(), b()];
  }

  forward(x: tf.Tensor3D): tf.Tensor3D {
    const [B, T, d] = x.shape;
    const H = this.H;
    const dh = d / H;
    const [wq, wk, wv, wo, bq, bk, bv, bo] = this.vars;
    const flat = tf.reshape(x, [B * T, d]);
    const heads = (w: tf.Tensor, b: tf.Tensor) =>
      tf.transpose(tf.reshape(tf.add(tf.matMul(flat, w as tf.Tensor2D), b), [B, T, H, dh]), [0, 2, 1, 3]);
    const q = tf.mul(heads(wq, bq), 1 / Math.sqrt(dh));
    const k = heads(wk, bk);
    const v = heads(wv, bv);
    const probs = tf.softmax(tf.matMul(q, k, false, true));
    const ctx = tf.reshape(tf.transpose(tf.matMul(probs, v), [0, 2, 1, 3]), [B * T, d]);
    return tf.reshape(tf.add(tf.matMul(ctx, wo as tf.Tensor2D), bo), [B, T, d]);
  }
}

function forwardBackward(f: () => tf.Tensor3D, vars: tf.Variable[], probe: tf.Tensor3D): Record<string, tf.Tensor> {
  const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(f(), probe)) as tf.Scalar, vars);
  value.dispose();
  return grads;
}

async function settle(grads: Record<string, tf.Tensor>): Promise<void> {
  await Promise.all(Object.values(grads).map((g) => g.data()));
  tf.dispose(Object.values(grads));
}

export const run: Benchmark = async ({ quick }) => {
  const d = 256;
  const H = 4;
  const B = quick ? 4 : 32;
  const T = quick ? 16 : 64;
  const reps = quick ? 3 : 7;
  const x = tf.randomNormal([B, T, d], 0, 1, 'float32', 7) as tf.Tensor3D;
  const probe = tf.randomNormal([B, T, d], 0, 1, 'float32', 8) as tf.Tensor3D;

  const layer = new FactorizedMultiHeadAttention({ numHeads: H, modelDim: d });
  layer.build([null, null, d]);
  const fVars = layer.trainableWeights.map((w) => w.read() as tf.Variable);
  const dense = new DenseMha(d, H);

  const timeFactorized = () => settle(forwardBackward(() => layer.attend(x, null), fVars, probe));
  const timeDense = () => settle(forwardBackward(() => dense.forward(x), dense.vars, probe));
  // Alternate single runs of the two (after warm-up) so drift from other processes on the cores
  // hits both alike; report the medians.
  const ourTimes: number[] = [];
  const baseTimes: number[] = [];
  for (let i = 0; i < 2; i++) {
    await timeFactorized();
    await timeDense();
  }
  for (let i = 0; i < 2 * reps + 1; i++) {
    ourTimes.push(await timeMedian(timeFactorized, 1, 0));
    baseTimes.push(await timeMedian(timeDense, 1, 0));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const ours = median(ourTimes);
  const base = median(baseTimes);

  const pairs = collectFactorPairs([layer]);
  const enabled = { qk: true, ov: true, linear: true, embedding: true };
  // The FD hook timed inside real training steps: forward+backward (synced), then the hook
  // (synced). One readback of the last tensor written per phase, so neither phase pays for
  // reading back every gradient; wasm/cpu kernels run synchronously anyway.
  const lastFdName = pairs[pairs.length - 1].v.name;
  const shares: number[] = [];
  const fdTimes: number[] = [];
  const stepTimes: number[] = [];
  for (let i = 0; i < reps + 1; i++) {
    const t0 = performance.now();
    const grads = forwardBackward(() => layer.attend(x, null), fVars, probe);
    grads[lastFdName].dataSync();
    const t1 = performance.now();
    const withFd = addFrobeniusDecayGrads(grads, pairs, 1e-4, enabled);
    withFd[lastFdName].dataSync();
    const t2 = performance.now();
    tf.dispose(Object.values(withFd));
    if (i === 0) continue; // warm-up
    shares.push((t2 - t1) / (t2 - t0));
    fdTimes.push(t2 - t1);
    stepTimes.push(t2 - t0);
  }
  const fd = median(fdTimes);
  const step = median(stepTimes);

  // Lower per-head rank (the paper's rank-scale): same dense baseline, fewer FLOPs.
  const lowRank: BenchResult[] = [];
  for (const rankScale of quick ? [] : [0.5, 0.25]) {
    const low = new FactorizedMultiHeadAttention({ numHeads: H, modelDim: d, rankScale });
    low.build([null, null, d]);
    const lowVars = low.trainableWeights.map((w) => w.read() as tf.Variable);
    const ms = await timeMedian(() => settle(forwardBackward(() => low.attend(x, null), lowVars, probe)), reps, 1);
    lowRank.push({
      name: `attention/forward_backward_ms_rank_scale_${rankScale}`,
      value: ms,
      unit: 'ms',
      baseline: base,
      ratio: ms / base,
      extra: { d, H, r: low.rank, batch: B, tokens: T, backend: tf.getBackend(), baselineName: 'dense MHA (full rank)' },
    });
    low.dispose();
  }

  const shape = { d, H, r: layer.rank, batch: B, tokens: T, backend: tf.getBackend(), FT_THREADS: process.env.FT_THREADS ?? 'default' };
  const results: BenchResult[] = [
    {
      name: 'attention/forward_backward_ms',
      value: ours,
      unit: 'ms',
      baseline: base,
      ratio: ours / base,
      extra: { ...shape, baselineName: 'dense MHA, fused [d, d] projections', target: 'ratio <= 1.10' },
    },
    {
      name: 'attention/frobenius_decay_share',
      value: median(shares),
      unit: 'fraction',
      baseline: null,
      ratio: null,
      extra: { ...shape, fdMsMedian: fd, stepWithFdMsMedian: step, perStepShares: shares.map((v) => +v.toFixed(4)), target: '<= 0.03' },
    },
    ...lowRank,
  ];
  tf.dispose([x, probe, ...dense.vars]);
  layer.dispose();
  return results;
};
