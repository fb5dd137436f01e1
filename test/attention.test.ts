import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import {
  FactorizedMultiHeadAttention,
  createAttentionCache,
  disposeAttentionCache,
  reorderAttentionCache,
  fromDenseAttention,
} from '../src/attention/index.ts';
import { collectFactorPairs } from '../src/factorized/index.ts';
import { InternalError, UserError } from '../src/errors.ts';
import { setGlobalSeed } from '../src/random.ts';

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

function randn(shape: number[], seed: number, scale = 1): tf.Tensor {
  return tf.mul(tf.randomNormal(shape, 0, 1, 'float32', seed), scale);
}

/**
 * An independent dense MHA (x·W convention, head h = columns h·dh…): per-head loops, explicit
 * masks with -Infinity, scale 1/√dh.
 */
function denseMha(
  xq: tf.Tensor3D,
  xkv: tf.Tensor3D,
  w: { wq: tf.Tensor2D; wk: tf.Tensor2D; wv: tf.Tensor2D; wo: tf.Tensor2D; bq?: tf.Tensor1D; bk?: tf.Tensor1D; bv?: tf.Tensor1D; bo?: tf.Tensor1D },
  H: number,
  opts: { causal?: boolean; pad?: number[][] } = {},
): tf.Tensor3D {
  return tf.tidy(() => {
    const [B, T, d] = xq.shape;
    const S = xkv.shape[1];
    const inner = w.wq.shape[1];
    const dh = inner / H;
    const proj = (x: tf.Tensor3D, W: tf.Tensor2D, b?: tf.Tensor1D) => {
      const y = tf.matMul(tf.reshape(x, [-1, d]), W);
      return tf.reshape(b ? tf.add(y, b) : y, [B, -1, inner]);
    };
    const q = proj(xq, w.wq, w.bq);
    const k = proj(xkv, w.wk, w.bk);
    const v = proj(xkv, w.wv, w.bv);
    const maskValues: number[] = [];
    for (let b = 0; b < B; b++)
      for (let i = 0; i < T; i++)
        for (let j = 0; j < S; j++) {
          const masked = (opts.causal && j > i + (S - T)) || (opts.pad && opts.pad[b][j] === 1);
          maskValues.push(masked ? -Infinity : 0);
        }
    const mask = tf.tensor3d(maskValues, [B, T, S]);
    const heads: tf.Tensor[] = [];
    for (let h = 0; h < H; h++) {
      const qh = tf.slice(q, [0, 0, h * dh], [B, T, dh]);
      const kh = tf.slice(k, [0, 0, h * dh], [B, S, dh]);
      const vh = tf.slice(v, [0, 0, h * dh], [B, S, dh]);
      const logits = tf.add(tf.div(tf.matMul(qh, kh, false, true), Math.sqrt(dh)), mask);
      heads.push(tf.matMul(tf.softmax(logits), vh));
    }
    const concat = tf.concat(heads, 2);
    const out = tf.matMul(tf.reshape(concat, [-1, inner]), w.wo);
    return tf.reshape(w.bo ? tf.add(out, w.bo) : out, [B, T, d]);
  });
}

/** Dense weights equivalent to a factorized layer at r = d/H: W_Q = concat_h Wq[h], … */
function denseFromLayer(layer: FactorizedMultiHeadAttention) {
  const [wq, wk, wv, wo, bq, bk, bv, bo] = layer.getWeights();
  const H = layer.numHeads;
  const d = layer.modelDim!;
  const r = layer.rank;
  return {
    wq: tf.concat(tf.unstack(wq), 1) as tf.Tensor2D,
    wk: tf.concat(tf.unstack(wk), 1) as tf.Tensor2D,
    wv: tf.concat(tf.unstack(wv), 1) as tf.Tensor2D,
    wo: tf.reshape(wo, [H * r, d]) as tf.Tensor2D,
    bq: bq ? (tf.reshape(bq, [H * r]) as tf.Tensor1D) : undefined,
    bk: bk ? (tf.reshape(bk, [H * r]) as tf.Tensor1D) : undefined,
    bv: bv ? (tf.reshape(bv, [H * r]) as tf.Tensor1D) : undefined,
    bo: bo ? (tf.clone(bo) as tf.Tensor1D) : undefined, // getWeights() gives the variables themselves
  };
}

function randomizeBiases(layer: FactorizedMultiHeadAttention, seed: number): void {
  const ws = layer.getWeights();
  layer.setWeights(ws.map((w, i) => (i < 4 ? w : randn(w.shape, seed + i, 0.3))));
}

describe('FactorizedMultiHeadAttention', () => {
  it('has the documented weights, order and shapes; rank from rank / rankScale', () => {
    const layer = new FactorizedMultiHeadAttention({ numHeads: 4, modelDim: 16 });
    layer.build([null, null, 16]);
    expect(layer.getWeights().map((w) => w.shape)).toEqual([
      [4, 16, 4],
      [4, 16, 4],
      [4, 16, 4],
      [4, 4, 16],
      [4, 4],
      [4, 4],
      [4, 4],
      [16],
    ]);
    expect(layer.weights.map((w) => w.originalName.split('/').pop())).toEqual([
      'queryFactor',
      'keyFactor',
      'valueFactor',
      'outputFactor',
      'queryBias',
      'keyBias',
      'valueBias',
      'outputBias',
    ]);
    const scaled = new FactorizedMultiHeadAttention({ numHeads: 4, rankScale: 0.5, useBias: false });
    scaled.build([null, null, 32]);
    expect(scaled.rank).toBe(4);
    expect(scaled.modelDim).toBe(32);
    expect(scaled.getWeights().length).toBe(4);
    const fixed = new FactorizedMultiHeadAttention({ numHeads: 2, rank: 3 });
    fixed.build([null, null, 8]);
    expect(fixed.getWeights()[3].shape).toEqual([2, 3, 8]);
    [layer, scaled, fixed].forEach((l) => l.dispose());
  });

  it('rejects bad configs and inputs with a UserError', () => {
    expect(() => new FactorizedMultiHeadAttention({ numHeads: 0 })).toThrow(UserError);
    expect(() => new FactorizedMultiHeadAttention({ numHeads: 2, rank: 2, rankScale: 1 })).toThrow(/either 'rank' or 'rankScale'/);
    expect(() => new FactorizedMultiHeadAttention({ numHeads: 2, dropout: 1.5 })).toThrow(/dropout/);
    const odd = new FactorizedMultiHeadAttention({ numHeads: 3 });
    expect(() => odd.build([null, null, 8])).toThrow(/not divisible/);
    const layer = new FactorizedMultiHeadAttention({ numHeads: 2, modelDim: 4 });
    const x = tf.zeros([1, 3, 4]) as tf.Tensor3D;
    const wrong = tf.zeros([1, 3, 5]) as tf.Tensor3D;
    expect(() => layer.attend(wrong, null)).toThrow(/query width 5 != modelDim 4/);
    expect(() => layer.attend(x, null, { keyPaddingMask: tf.zeros([1, 2]) as tf.Tensor2D })).toThrow(/keyPaddingMask must be \[1, 3\]/);
    tf.dispose([x, wrong]);
    layer.dispose();
  });

  it('reads the rank from model.json files that still call it headDim, and writes it as rank', () => {
    // Deserialization calls the constructor with the stored config.
    const legacy = new FactorizedMultiHeadAttention({ numHeads: 2, modelDim: 8, headDim: 3, name: 'legacy' });
    expect(legacy.rank).toBe(3);
    expect(legacy.getConfig()).toMatchObject({ rank: 3 });
    expect(legacy.getConfig()).not.toHaveProperty('headDim');
  });

  it('reports a tensor of the wrong shape as an InternalError (a broken contract), not a UserError', () => {
    const layer = new FactorizedMultiHeadAttention({ numHeads: 2, modelDim: 4 });
    const wrong = tf.zeros([1, 3, 5]) as tf.Tensor3D;
    let caught: unknown;
    try {
      layer.attend(wrong, null);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InternalError);
    expect(caught).not.toBeInstanceOf(UserError);
    wrong.dispose();
  });

  it('equals an independently written dense MHA at r = d/H (self, cross, causal, padding, biases)', () => {
    setGlobalSeed(7);
    const B = 2, T = 5, S = 7, d = 12, H = 3;
    const layer = new FactorizedMultiHeadAttention({ numHeads: H, modelDim: d });
    layer.build([null, null, d]);
    randomizeBiases(layer, 100);
    const dense = denseFromLayer(layer);
    const xq = randn([B, T, d], 1) as tf.Tensor3D;
    const mem = randn([B, S, d], 2) as tf.Tensor3D;
    const pad = [
      [0, 0, 0, 0, 0, 1, 1],
      [0, 0, 0, 0, 0, 0, 0],
    ];
    const padT = tf.tensor2d(pad);
    const cases: [tf.Tensor, tf.Tensor][] = [
      [layer.attend(xq, null), denseMha(xq, xq, dense, H)],
      [layer.attend(xq, mem), denseMha(xq, mem, dense, H)],
      [layer.attend(xq, null, { causal: true }), denseMha(xq, xq, dense, H, { causal: true })],
      [layer.attend(xq, mem, { keyPaddingMask: padT as tf.Tensor2D }), denseMha(xq, mem, dense, H, { pad })],
    ];
    for (const [ours, ref] of cases) {
      expect(ours.shape).toEqual([B, T, d]);
      expect(maxAbsDiff(ours, ref)).toBeLessThan(1e-5);
    }
    tf.dispose([...cases.flat(), xq, mem, padT, ...Object.values(dense).filter((t) => t) as tf.Tensor[]]);
    layer.dispose();
  });

  it('gives padded keys zero weight and never lets causal rows see the future', () => {
    const B = 2, T = 6, d = 8, H = 2;
    const layer = new FactorizedMultiHeadAttention({ numHeads: H, modelDim: d });
    const x = randn([B, T, d], 3) as tf.Tensor3D;
    const pad = tf.tensor2d([
      [0, 0, 0, 0, 1, 1],
      [0, 0, 0, 0, 0, 0],
    ]) as tf.Tensor2D;
    // Changing padded key positions (4, 5) of row 0 must not change any output of row 0.
    const changed = tf.tidy(() => {
      const noise = randn([1, 2, d], 4, 10);
      const row0 = tf.concat([tf.slice(x, [0, 0, 0], [1, 4, d]), noise], 1);
      return tf.concat([row0, tf.slice(x, [1, 0, 0], [1, T, d])], 0) as tf.Tensor3D;
    });
    const q = tf.slice(x, [0, 0, 0], [B, 3, d]) as tf.Tensor3D; // queries unchanged
    const a = layer.attend(q, x, { keyPaddingMask: pad });
    const b = layer.attend(q, changed, { keyPaddingMask: pad });
    expect(maxAbsDiff(tf.slice(a, [0, 0, 0], [1, 3, d]), tf.slice(b, [0, 0, 0], [1, 3, d]))).toBe(0);
    // Causal: output at position t depends only on inputs ≤ t.
    const full = layer.attend(x, null, { causal: true });
    const future = tf.tidy(() => tf.concat([tf.slice(x, [0, 0, 0], [B, 3, d]), randn([B, 3, d], 5, 10)], 1) as tf.Tensor3D);
    const full2 = layer.attend(future, null, { causal: true });
    expect(maxAbsDiff(tf.slice(full, [0, 0, 0], [B, 3, d]), tf.slice(full2, [0, 0, 0], [B, 3, d]))).toBe(0);
    expect(maxAbsDiff(tf.slice(full, [0, 3, 0], [B, 3, d]), tf.slice(full2, [0, 3, 0], [B, 3, d]))).toBeGreaterThan(1e-3);
    // An all-padded row gives finite numbers (uniform attention), never NaN.
    const allPad = tf.ones([B, T]) as tf.Tensor2D;
    const c = layer.attend(x, null, { keyPaddingMask: allPad });
    expect(Array.from(c.dataSync()).every(Number.isFinite)).toBe(true);
    tf.dispose([x, pad, changed, q, a, b, full, future, full2, allPad, c]);
    layer.dispose();
  });

  it('matches finite differences (gradients of the layer w.r.t. every weight, the query and the memory)', () => {
    setGlobalSeed(11);
    const B = 1, T = 3, S = 4, d = 4, H = 2;
    const layer = new FactorizedMultiHeadAttention({ numHeads: H, modelDim: d, rank: 3 });
    layer.build([null, null, d]);
    randomizeBiases(layer, 200);
    const xq = tf.variable(randn([B, T, d], 6)) as tf.Variable<tf.Rank.R3>;
    const mem = tf.variable(randn([B, S, d], 7)) as tf.Variable<tf.Rank.R3>;
    const probe = randn([B, T, d], 8) as tf.Tensor3D;
    const pad = tf.tensor2d([[0, 0, 0, 1]]) as tf.Tensor2D;
    const lossOf = () => tf.sum(tf.mul(layer.attend(xq, mem, { keyPaddingMask: pad }), probe)) as tf.Scalar;
    const vars = [...layer.trainableWeights.map((w) => w.read() as tf.Variable), xq, mem];
    const { grads } = tf.variableGrads(lossOf, vars);
    const eps = 1e-2;
    for (const v of vars) {
      const values = v.dataSync().slice();
      const analytic = grads[v.name].dataSync();
      const n = Math.min(values.length, 12);
      for (let i = 0; i < n; i++) {
        const orig = values[i];
        values[i] = orig + eps;
        v.assign(tf.tensor(values, v.shape));
        const plus = tf.tidy(() => lossOf().dataSync()[0]);
        values[i] = orig - eps;
        v.assign(tf.tensor(values, v.shape));
        const minus = tf.tidy(() => lossOf().dataSync()[0]);
        values[i] = orig;
        v.assign(tf.tensor(values, v.shape));
        const numeric = (plus - minus) / (2 * eps);
        expect(Math.abs(numeric - analytic[i])).toBeLessThan(2e-3 + 1e-2 * Math.abs(analytic[i]));
      }
    }
    tf.dispose([xq, mem, probe, pad, ...Object.values(grads)]);
    layer.dispose();
  });

  it('incremental self-attention with a cache equals the full causal pass', () => {
    const B = 2, T = 5, d = 8, H = 2;
    const layer = new FactorizedMultiHeadAttention({ numHeads: H, modelDim: d, causal: true, rank: 3 });
    const x = randn([B, T, d], 9) as tf.Tensor3D;
    const full = layer.attend(x, null);
    const cache = createAttentionCache(false);
    const steps: tf.Tensor[] = [];
    for (let t = 0; t < T; t++) {
      const step = tf.slice(x, [0, t, 0], [B, 1, d]) as tf.Tensor3D;
      steps.push(layer.attend(step, step, { cache }));
      step.dispose();
    }
    expect(cache.key!.shape).toEqual([B, H, T, 3]);
    const incremental = tf.concat(steps, 1);
    expect(maxAbsDiff(full, incremental)).toBeLessThan(1e-5);
    disposeAttentionCache(cache);

    // Decoding reuses laid-out weights between steps; after the weights change (an optimizer
    // step, setWeights) it must use the new ones.
    layer.setWeights(layer.getWeights().map((w, i) => randn(w.shape, 300 + i, 0.5)));
    const fullNew = layer.attend(x, null);
    const cache2 = createAttentionCache(false);
    const steps2: tf.Tensor[] = [];
    for (let t = 0; t < T; t++) {
      const step = tf.slice(x, [0, t, 0], [B, 1, d]) as tf.Tensor3D;
      steps2.push(layer.attend(step, null, { cache: cache2 }));
      step.dispose();
    }
    const incremental2 = tf.concat(steps2, 1);
    expect(maxAbsDiff(fullNew, incremental2)).toBeLessThan(1e-5);
    expect(maxAbsDiff(full, fullNew)).toBeGreaterThan(1e-2);
    disposeAttentionCache(cache2);
    tf.dispose([x, full, incremental, ...steps, fullNew, incremental2, ...steps2]);
    const beforeDispose = tf.memory().numTensors;
    layer.dispose(); // frees the weights and the decoding layouts
    expect(tf.memory().numTensors).toBe(beforeDispose - 8 /* weights */ - 4 /* decoding layouts */);
  });

  it('cross-attention with a static cache equals the full pass; reorderAttentionCache follows beams', () => {
    const B = 2, T = 4, S = 6, d = 8, H = 2;
    const layer = new FactorizedMultiHeadAttention({ numHeads: H, modelDim: d });
    const x = randn([B, T, d], 10) as tf.Tensor3D;
    const mem = randn([B, S, d], 11) as tf.Tensor3D;
    const pad = tf.tensor2d([
      [0, 0, 0, 0, 1, 1],
      [0, 0, 0, 0, 0, 0],
    ]) as tf.Tensor2D;
    const full = layer.attend(x, mem, { keyPaddingMask: pad });
    const cache = createAttentionCache(true);
    const steps: tf.Tensor[] = [];
    for (let t = 0; t < T; t++) {
      const step = tf.slice(x, [0, t, 0], [B, 1, d]) as tf.Tensor3D;
      steps.push(layer.attend(step, t === 0 ? mem : null, { cache, keyPaddingMask: pad }));
      step.dispose();
    }
    expect(maxAbsDiff(full, tf.concat(steps, 1))).toBeLessThan(1e-5);

    // Reorder: swap the two batch rows and duplicate row 1; a step now must match the full pass
    // of the correspondingly reordered memory.
    const order = tf.tensor1d([1, 1, 0], 'int32');
    reorderAttentionCache(cache, order);
    expect(cache.key!.shape[0]).toBe(3);
    const mem2 = tf.gather(mem, order) as tf.Tensor3D;
    const pad2 = tf.gather(pad, order) as tf.Tensor2D;
    const q = randn([3, 1, d], 12) as tf.Tensor3D;
    const viaCache = layer.attend(q, null, { cache, keyPaddingMask: pad2 });
    const direct = layer.attend(q, mem2, { keyPaddingMask: pad2 });
    expect(maxAbsDiff(viaCache, direct)).toBeLessThan(1e-6);

    // Self-attention cache reorder, then one more step, equals the reordered full pass.
    const selfCache = createAttentionCache(false);
    const causal = new FactorizedMultiHeadAttention({ numHeads: H, modelDim: d, causal: true });
    for (let t = 0; t < 3; t++) {
      const step = tf.slice(x, [0, t, 0], [B, 1, d]) as tf.Tensor3D;
      tf.dispose([causal.attend(step, null, { cache: selfCache }), step]);
    }
    const perm = tf.tensor1d([1, 0], 'int32');
    reorderAttentionCache(selfCache, perm);
    const xPerm = tf.gather(x, perm) as tf.Tensor3D;
    const last = tf.slice(xPerm, [0, 3, 0], [B, 1, d]) as tf.Tensor3D;
    const stepOut = causal.attend(last, null, { cache: selfCache });
    const fullPerm = causal.attend(tf.slice(xPerm, [0, 0, 0], [B, 4, d]) as tf.Tensor3D, null);
    expect(maxAbsDiff(stepOut, tf.slice(fullPerm, [0, 3, 0], [B, 1, d]))).toBeLessThan(1e-5);

    // A static cache of another batch size is a clear error, not a shape crash deep in matMul.
    const wrongBatch = randn([2, 1, d], 17) as tf.Tensor3D;
    expect(() => layer.attend(wrongBatch, null, { cache })).toThrow(/cache batch 3 != query batch 2/);
    wrongBatch.dispose();
    disposeAttentionCache(cache);
    disposeAttentionCache(selfCache);
    expect(cache.key).toBeUndefined();
    tf.dispose([x, mem, pad, full, ...steps, order, mem2, pad2, q, viaCache, direct, perm, xPerm, last, stepOut, fullPerm]);
    layer.dispose();
    causal.dispose();
  });

  it('saves and restores inside a functional model with identical outputs (tf.loadLayersModel)', async () => {
    const d = 8;
    const q = tf.input({ shape: [null, d] });
    const m = tf.input({ shape: [null, d] });
    const self = new FactorizedMultiHeadAttention({ numHeads: 2, causal: true, rankScale: 0.5, name: 'self_attn' }).apply([q]) as tf.SymbolicTensor;
    const cross = new FactorizedMultiHeadAttention({ numHeads: 4, useBias: false, dropout: 0.1, name: 'cross_attn' }).apply([self, m]) as tf.SymbolicTensor;
    const model = tf.model({ inputs: [q, m], outputs: tf.layers.dense({ units: 3 }).apply(cross) as tf.SymbolicTensor });
    expect(model.outputs[0].shape).toEqual([null, null, 3]);
    let saved: tf.io.ModelArtifacts | undefined;
    await model.save(
      tf.io.withSaveHandler(async (artifacts) => {
        saved = artifacts;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    const loaded = await tf.loadLayersModel(tf.io.fromMemory(saved!));
    const x = randn([2, 5, d], 13);
    const mem = randn([2, 3, d], 14);
    const a = model.predict([x, mem]) as tf.Tensor;
    const b = loaded.predict([x, mem]) as tf.Tensor;
    expect(a.shape).toEqual([2, 5, 3]);
    expect(maxAbsDiff(a, b)).toBe(0);
    const restored = loaded.getLayer('self_attn') as FactorizedMultiHeadAttention;
    expect(restored).toBeInstanceOf(FactorizedMultiHeadAttention);
    expect(restored.getConfig()).toEqual(model.getLayer('self_attn').getConfig());
    expect((loaded.getLayer('cross_attn') as FactorizedMultiHeadAttention).getConfig()).toMatchObject({
      numHeads: 4,
      useBias: false,
      dropout: 0.1,
      causal: false,
      spectralInit: true,
      modelDim: d,
    });
    // The causal config flag holds in the functional path: changing later tokens leaves earlier
    // outputs of the self-attention layer unchanged.
    const selfOnly = tf.model({ inputs: loaded.inputs[0], outputs: loaded.getLayer('self_attn').output as tf.SymbolicTensor });
    const x2 = tf.tidy(() => tf.concat([tf.slice(x, [0, 0, 0], [2, 2, d]), randn([2, 3, d], 15, 5)], 1));
    const s1 = selfOnly.predict(x) as tf.Tensor;
    const s2 = selfOnly.predict(x2) as tf.Tensor;
    expect(maxAbsDiff(tf.slice(s1, [0, 0, 0], [2, 2, d]), tf.slice(s2, [0, 0, 0], [2, 2, d]))).toBe(0);
    expect(maxAbsDiff(s1, s2)).toBeGreaterThan(1e-3);
    tf.dispose([x2, s1, s2]);
    // collectFactorPairs finds both layers' QK and OV pairs through the model.
    expect(collectFactorPairs([loaded]).map((p) => p.name)).toEqual(['self_attn/qk', 'self_attn/ov', 'cross_attn/qk', 'cross_attn/ov']);
    tf.dispose([x, mem, a, b]);
    model.dispose();
    loaded.dispose();
  });

  it('does not leak tensors over forward + backward passes', () => {
    const layer = new FactorizedMultiHeadAttention({ numHeads: 2, modelDim: 8, dropout: 0.2 });
    const x = randn([2, 4, 8], 15) as tf.Tensor3D;
    const mem = randn([2, 3, 8], 16) as tf.Tensor3D;
    const pad = tf.tensor2d([
      [0, 0, 1],
      [0, 0, 0],
    ]) as tf.Tensor2D;
    const step = () => {
      const { value, grads } = tf.variableGrads(
        () => tf.sum(layer.attend(x, mem, { keyPaddingMask: pad, causal: false, training: true })) as tf.Scalar,
        layer.trainableWeights.map((w) => w.read() as tf.Variable),
      );
      tf.dispose([value, ...Object.values(grads)]);
    };
    tf.dispose(layer.attend(x, mem)); // builds the layer
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) step();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, mem, pad]);
    layer.dispose();
  });
});

describe('fromDenseAttention', () => {
  it('is exact at full rank (with biases) and reports the best rank-r error below it', async () => {
    const B = 2, T = 4, d = 8, H = 2;
    const w = {
      wq: randn([d, d], 20, 0.4) as tf.Tensor2D,
      wk: randn([d, d], 21, 0.4) as tf.Tensor2D,
      wv: randn([d, d], 22, 0.4) as tf.Tensor2D,
      wo: randn([d, d], 23, 0.4) as tf.Tensor2D,
      bq: randn([d], 24, 0.2) as tf.Tensor1D,
      bk: randn([d], 25, 0.2) as tf.Tensor1D,
      bv: randn([d], 26, 0.2) as tf.Tensor1D,
      bo: randn([d], 27, 0.2) as tf.Tensor1D,
    };
    const x = randn([B, T, d], 28) as tf.Tensor3D;
    const ref = denseMha(x, x, w, H, { causal: true });
    const { layer, relativeErrors } = await fromDenseAttention({ ...w, numHeads: H, causal: true });
    expect(relativeErrors.qk).toBeLessThan(1e-6);
    expect(relativeErrors.ov).toBeLessThan(1e-6);
    const ours = layer.attend(x, null);
    expect(maxAbsDiff(ours, ref)).toBeLessThan(1e-5);
    // More rank than the dense head has: still exact (zero padding columns).
    const wide = await fromDenseAttention({ ...w, numHeads: H, rank: 6, causal: true });
    const oursWide = wide.layer.attend(x, null);
    expect(maxAbsDiff(oursWide, ref)).toBeLessThan(1e-5);

    // Rank 2 < dh = 4: the error equals the tail of each head's product spectrum.
    const { wq, wk, wv, wo } = w;
    const low = await fromDenseAttention({ wq, wk, wv, wo, numHeads: H, rank: 2 });
    expect(low.relativeErrors.qk).toBeGreaterThan(0.01);
    expect(low.relativeErrors.ov).toBeGreaterThan(0.01);
    const [Wq, Wk] = low.layer.getWeights();
    const err = tf.tidy(() => {
      let num = 0;
      let den = 0;
      for (let h = 0; h < H; h++) {
        const dense = tf.matMul(tf.slice(wq, [0, h * 4], [d, 4]), tf.slice(wk, [0, h * 4], [d, 4]), false, true);
        // the layer folds √(r/dh) into its QK product
        const fact = tf.mul(tf.matMul(tf.gather(Wq, h), tf.gather(Wk, h), false, true), Math.sqrt(4 / 2));
        num += tf.sum(tf.square(tf.sub(dense, fact))).dataSync()[0];
        den += tf.sum(tf.square(dense)).dataSync()[0];
      }
      return Math.sqrt(num / den);
    });
    expect(Math.abs(err - low.relativeErrors.qk)).toBeLessThan(1e-4);
    tf.dispose([...Object.values(w), x, ref, ours, oursWide]);
    [layer, wide.layer, low.layer].forEach((l) => l.dispose());
  });

  it('rejects mismatched shapes', async () => {
    const a = tf.zeros([4, 4]) as tf.Tensor2D;
    const b = tf.zeros([4, 3]) as tf.Tensor2D;
    await expect(fromDenseAttention({ wq: a, wk: a, wv: b, wo: a, numHeads: 2 })).rejects.toThrow(/wv must be \[4,4\]/);
    await expect(fromDenseAttention({ wq: a, wk: a, wv: a, wo: a, numHeads: 3 })).rejects.toThrow(UserError);
    tf.dispose([a, b]);
  });
});
