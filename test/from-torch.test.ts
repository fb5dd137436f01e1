import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { fromTorchAttention } from '../src/attention/index.ts';
import type { TorchAttentionWeights } from '../src/attention/index.ts';
import { UserError } from '../src/errors.ts';

const B = 2, T = 3, S = 5, d = 12, H = 3, dh = 4;

function randn(shape: number[], seed: number, scale: number): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.randomNormal(shape, 0, 1, 'float32', seed), scale));
}

/** Random weights in torch's layout: nn.Linear.weight is [out, in]. */
function torchWeights() {
  return {
    q: randn([d, d], 1, 0.4) as tf.Tensor2D,
    k: randn([d, d], 2, 0.4) as tf.Tensor2D,
    v: randn([d, d], 3, 0.4) as tf.Tensor2D,
    o: randn([d, d], 4, 0.4) as tf.Tensor2D,
    bq: randn([d], 5, 0.2) as tf.Tensor1D,
    bk: randn([d], 6, 0.2) as tf.Tensor1D,
    bv: randn([d], 7, 0.2) as tf.Tensor1D,
    bo: randn([d], 8, 0.2) as tf.Tensor1D,
  };
}
type Torch = ReturnType<typeof torchWeights>;

/**
 * torch.nn.MultiheadAttention's forward written out in tfjs ops: y = x Wᵀ + b per projection,
 * heads = contiguous blocks of dh features, softmax(q_h k_hᵀ / √dh) v_h, concat, out projection.
 */
function torchMha(xq: tf.Tensor3D, xkv: tf.Tensor3D, w: Torch, biases = true): tf.Tensor3D {
  return tf.tidy(() => {
    const linear = (x: tf.Tensor3D, W: tf.Tensor2D, b: tf.Tensor1D) => {
      const y = tf.matMul(tf.reshape(x, [-1, x.shape[2]]), W, false, true);
      return tf.reshape(biases ? tf.add(y, b) : y, [x.shape[0], x.shape[1], W.shape[0]]);
    };
    const split = (x: tf.Tensor) => tf.transpose(tf.reshape(x, [B, -1, H, dh]), [0, 2, 1, 3]); // [B, H, L, dh]
    const q = split(linear(xq, w.q, w.bq));
    const k = split(linear(xkv, w.k, w.bk));
    const v = split(linear(xkv, w.v, w.bv));
    const probs = tf.softmax(tf.div(tf.matMul(q, k, false, true), Math.sqrt(dh)));
    const context = tf.reshape(tf.transpose(tf.matMul(probs, v), [0, 2, 1, 3]), [B, -1, H * dh]) as tf.Tensor3D;
    return linear(context, w.o, w.bo) as tf.Tensor3D;
  });
}

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

describe('fromTorchAttention', () => {
  it('reproduces a PyTorch / Hugging Face attention at full rank (separate nn.Linear weights as nested arrays)', async () => {
    const w = torchWeights();
    const xq = randn([B, T, d], 10, 1) as tf.Tensor3D;
    const mem = randn([B, S, d], 11, 1) as tf.Tensor3D;
    const { layer, relativeErrors } = await fromTorchAttention({
      // As `state_dict[...].tolist()` would give them: HF BERT's query/key/value.weight, output.dense.weight.
      qWeight: w.q.arraySync(),
      kWeight: w.k.arraySync(),
      vWeight: w.v.arraySync(),
      outWeight: w.o.arraySync(),
      qBias: w.bq.arraySync(),
      kBias: w.bk.arraySync(),
      vBias: w.bv.arraySync(),
      outBias: w.bo.arraySync(),
      numHeads: H,
    });
    expect(layer.rank).toBe(dh);
    expect(relativeErrors.qk).toBeLessThan(1e-6);
    expect(relativeErrors.ov).toBeLessThan(1e-6);
    expect(maxAbsDiff(layer.attend(xq, null), torchMha(xq, xq, w))).toBeLessThan(1e-4);
    expect(maxAbsDiff(layer.attend(xq, mem), torchMha(xq, mem, w))).toBeLessThan(1e-4);
    layer.dispose();
  });

  it('reads nn.MultiheadAttention\'s packed in_proj_weight [3E, d] (flat Float32Array with its shape) the same way', async () => {
    const w = torchWeights();
    const xq = randn([B, T, d], 12, 1) as tf.Tensor3D;
    const mem = randn([B, S, d], 13, 1) as tf.Tensor3D;
    const inProj = tf.concat([w.q, w.k, w.v], 0);
    const { layer } = await fromTorchAttention({
      inProjWeight: { data: inProj.dataSync() as Float32Array, shape: [3 * d, d] },
      inProjBias: tf.concat([w.bq, w.bk, w.bv]).dataSync() as Float32Array,
      outWeight: w.o,
      outBias: w.bo,
      numHeads: H,
    });
    expect(maxAbsDiff(layer.attend(xq, mem), torchMha(xq, mem, w))).toBeLessThan(1e-4);
    // The caller's tensors are left alone.
    expect(w.o.isDisposed || w.bo.isDisposed).toBe(false);
    layer.dispose();
  });

  it('without biases (bias=False) and with some biases missing (zeros, as BEiT\'s key)', async () => {
    const w = torchWeights();
    const x = randn([B, T, d], 14, 1) as tf.Tensor3D;
    const noBias = await fromTorchAttention({ qWeight: w.q, kWeight: w.k, vWeight: w.v, outWeight: w.o, numHeads: H });
    expect(noBias.layer.useBias).toBe(false);
    expect(maxAbsDiff(noBias.layer.attend(x, null), torchMha(x, x, w, false))).toBeLessThan(1e-4);
    const partial = await fromTorchAttention({ qWeight: w.q, kWeight: w.k, vWeight: w.v, outWeight: w.o, qBias: w.bq, vBias: w.bv, numHeads: H });
    const zeroK = { ...w, bk: tf.zeros([d]) as tf.Tensor1D, bo: tf.zeros([d]) as tf.Tensor1D };
    expect(maxAbsDiff(partial.layer.attend(x, null), torchMha(x, x, zeroK))).toBeLessThan(1e-4);
    noBias.layer.dispose();
    partial.layer.dispose();
  });

  it('at a truncated rank reports ‖P − P_r‖_F / ‖P‖_F of the heads\' QK and OV products (bias rows included)', async () => {
    const w = torchWeights();
    const r = 2;
    const { layer, relativeErrors } = await fromTorchAttention({
      qWeight: w.q, kWeight: w.k, vWeight: w.v, outWeight: w.o, qBias: w.bq, kBias: w.bk, vBias: w.bv, outBias: w.bo, numHeads: H, rank: r,
    });
    expect(layer.rank).toBe(r);
    const [Wq, Wk, Wv, Wo, Bq, Bk, Bv] = layer.getWeights();
    const errors = tf.tidy(() => {
      const acc = { qk: [0, 0], ov: [0, 0] };
      for (let h = 0; h < H; h++) {
        // Head h of torch's x Wᵀ + b as [d + 1, dh]: rows h·dh… of W transposed, bias as the last row.
        const aug = (W: tf.Tensor2D, b: tf.Tensor1D) => tf.concat([tf.transpose(tf.slice(W, [h * dh, 0], [dh, d])), tf.reshape(tf.slice(b, [h * dh], [dh]), [1, dh])], 0);
        const denseQK = tf.matMul(aug(w.q, w.bq), aug(w.k, w.bk), false, true);
        const denseOV = tf.matMul(aug(w.v, w.bv), tf.slice(w.o, [0, h * dh], [d, dh]), false, true); // [d+1, d]
        const fAug = (F: tf.Tensor, b: tf.Tensor) => tf.concat([tf.gather(F, h), tf.reshape(tf.gather(b, h), [1, r])], 0);
        // The layer scales logits by 1/√r instead of 1/√dh: its QK product carries √(r/dh).
        const factQK = tf.mul(tf.matMul(fAug(Wq, Bq), fAug(Wk, Bk), false, true), Math.sqrt(dh / r));
        const factOV = tf.matMul(fAug(Wv, Bv), tf.gather(Wo, h));
        for (const [kind, dense, fact] of [['qk', denseQK, factQK], ['ov', denseOV, factOV]] as const) {
          acc[kind][0] += tf.sum(tf.square(tf.sub(dense, fact))).dataSync()[0];
          acc[kind][1] += tf.sum(tf.square(dense)).dataSync()[0];
        }
      }
      return { qk: Math.sqrt(acc.qk[0] / acc.qk[1]), ov: Math.sqrt(acc.ov[0] / acc.ov[1]) };
    });
    expect(relativeErrors.qk).toBeGreaterThan(0.05);
    expect(relativeErrors.ov).toBeGreaterThan(0.05);
    expect(Math.abs(errors.qk - relativeErrors.qk)).toBeLessThan(1e-4);
    expect(Math.abs(errors.ov - relativeErrors.ov)).toBeLessThan(1e-4);
    layer.dispose();
  });

  it('rejects mixed or mis-shaped weights with a UserError naming the torch tensor', async () => {
    const w = torchWeights();
    const base: TorchAttentionWeights = { qWeight: w.q, kWeight: w.k, vWeight: w.v, outWeight: w.o, numHeads: H };
    await expect(fromTorchAttention({ ...base, inProjWeight: tf.concat([w.q, w.k, w.v]) })).rejects.toThrow(/either inProjWeight/);
    await expect(fromTorchAttention({ ...base, vWeight: tf.zeros([d, d - 1]) })).rejects.toThrow(/vWeight must be \[12, 12\]/);
    await expect(fromTorchAttention({ ...base, outWeight: tf.zeros([d, d - 1]) })).rejects.toThrow(/outWeight must be \[12, 12\]/);
    await expect(fromTorchAttention({ ...base, qBias: new Float32Array(5) })).rejects.toThrow(/qBias must be \[12\]/);
    await expect(fromTorchAttention({ ...base, qWeight: new Float32Array(d * d) })).rejects.toThrow(/give \{ data, shape \}/);
    await expect(fromTorchAttention({ ...base, kWeight: { data: new Float32Array(3), shape: [d, d] } })).rejects.toThrow(UserError);
    await expect(fromTorchAttention({ ...base, numHeads: 5 })).rejects.toThrow(UserError);
  });

  it('leaks no tensors', async () => {
    const w = torchWeights();
    const before = tf.memory().numTensors;
    const { layer } = await fromTorchAttention({ inProjWeight: tf.concat([w.q, w.k, w.v]), outWeight: w.o, numHeads: H });
    // The layer's own 4 factor variables, plus the packed input made above.
    expect(tf.memory().numTensors - before).toBe(5);
    layer.dispose();
  });
});
