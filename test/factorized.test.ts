import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import {
  FactorizedDense,
  FactorizedEmbedding,
  addFrobeniusDecayGrads,
  fromDenseEmbedding,
  fromDenseKernel,
  collectFactorPairs,
  factorVariableNames,
  factorize,
  frobeniusDecayGrads,
  frobeniusPenalty,
  frobeniusPenaltyTotal,
  pairDecayGrads,
  spectralInit,
} from '../src/factorized/index.ts';
import { svd, fromArray } from '../src/factorized/linalg.ts';
import { hostRandomNormal, hostRandomUniform } from '../src/factorized/host-random.ts';
import { globalRandom, setGlobalSeed } from '../src/random.ts';
import { FactorizedMultiHeadAttention } from '../src/attention/index.ts';
import { InternalError, UserError } from '../src/errors.ts';

function randn(shape: number[], seed: number, scale = 1): tf.Tensor {
  return tf.mul(tf.randomNormal(shape, 0, 1, 'float32', seed), scale);
}
function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

/** Host Float64 a[h] · b[h]ᵀ for row-major [H, m, r] and [H, n, r] (independent of src/). */
function productsF64(a: ArrayLike<number>, b: ArrayLike<number>, H: number, m: number, n: number, r: number): Float64Array {
  const out = new Float64Array(H * m * n);
  for (let h = 0; h < H; h++)
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < r; k++) s += a[(h * m + i) * r + k] * b[(h * n + j) * r + k];
        out[(h * m + i) * n + j] = s;
      }
  return out;
}
function gramF64(a: ArrayLike<number>, H: number, m: number, r: number): Float64Array {
  const out = new Float64Array(H * r * r);
  for (let h = 0; h < H; h++)
    for (let p = 0; p < r; p++)
      for (let q = 0; q < r; q++) {
        let s = 0;
        for (let i = 0; i < m; i++) s += a[(h * m + i) * r + p] * a[(h * m + i) * r + q];
        out[(h * r + p) * r + q] = s;
      }
  return out;
}
const maxAbs = (x: ArrayLike<number>) => Array.from(x).reduce((m, v) => Math.max(m, Math.abs(v)), 0);

/** Checks the spectral-init contract: same products (rel. 1e-5), UᵀU = VᵀV diagonal. */
function expectBalancedSameProduct(U: tf.Tensor, V: tf.Tensor, U2: tf.Tensor, V2: tf.Tensor): void {
  const [H, m, r] = U.shape.length === 3 ? U.shape : [1, ...U.shape];
  const n = V.shape[V.shape.length - 2];
  const before = productsF64(U.dataSync(), V.dataSync(), H, m, n, r);
  const after = productsF64(U2.dataSync(), V2.dataSync(), H, m, n, r);
  const scale = maxAbs(before) || 1;
  const diff = before.map((x, i) => x - after[i]);
  expect(maxAbs(diff) / scale).toBeLessThan(1e-5);
  const gu = gramF64(U2.dataSync(), H, m, r);
  const gv = gramF64(V2.dataSync(), H, n, r);
  const gscale = maxAbs(gu) || 1;
  for (let h = 0; h < H; h++)
    for (let p = 0; p < r; p++)
      for (let q = 0; q < r; q++) {
        const i = (h * r + p) * r + q;
        if (p !== q) {
          expect(Math.abs(gu[i]) / gscale).toBeLessThan(1e-5);
          expect(Math.abs(gv[i]) / gscale).toBeLessThan(1e-5);
        }
        expect(Math.abs(gu[i] - gv[i]) / gscale).toBeLessThan(1e-5);
      }
  // Diagonal sorted descending: the singular values of the product.
  for (let h = 0; h < H; h++)
    for (let p = 1; p < r; p++) expect(gu[(h * r + p) * r + p]).toBeLessThanOrEqual(gu[(h * r + p - 1) * r + p - 1] * (1 + 1e-5) + 1e-12);
}

describe('linalg.svd', () => {
  it('reconstructs square, tall, wide and rank-deficient matrices with orthonormal factors', () => {
    const cases: [number, number][] = [
      [5, 5],
      [7, 3],
      [3, 6],
    ];
    const rankOne = fromArray(4, 5, Array.from({ length: 20 }, (_, i) => (1 + (i % 5)) * (Math.floor(i / 5) - 1.5)));
    for (const [m, n] of [...cases, [4, 5] as [number, number]]) {
      const a = m === 4 ? rankOne : fromArray(m, n, Array.from({ length: m * n }, (_, i) => Math.sin(i * 1.7 + m) + (i % 3 === 0 ? 0.5 : 0)));
      const { u, s, v } = svd(a);
      const p = Math.min(m, n);
      for (let i = 0; i < m; i++)
        for (let j = 0; j < n; j++) {
          let acc = 0;
          for (let k = 0; k < p; k++) acc += u.data[i * p + k] * s[k] * v.data[j * p + k];
          expect(Math.abs(acc - a.data[i * n + j])).toBeLessThan(1e-12);
        }
      for (let k = 1; k < p; k++) expect(s[k]).toBeLessThanOrEqual(s[k - 1]);
      // Orthonormal singular vectors for the nonzero singular values (those of zero ones may be 0).
      for (let k = 0; k < p; k++)
        for (let l = 0; l < p; l++) {
          let vv = 0;
          let uu = 0;
          for (let j = 0; j < n; j++) vv += v.data[j * p + k] * v.data[j * p + l];
          for (let i = 0; i < m; i++) uu += u.data[i * p + k] * u.data[i * p + l];
          if (s[k] > 1e-9 && s[l] > 1e-9) {
            expect(Math.abs(vv - (k === l ? 1 : 0))).toBeLessThan(1e-12);
            expect(Math.abs(uu - (k === l ? 1 : 0))).toBeLessThan(1e-12);
          }
        }
      if (m === 4) expect(s[1]).toBeLessThan(1e-12 * s[0]); // rank one
    }
  });
});

describe('spectralInit', () => {
  it('keeps each head product and balances the factors (random, batched)', async () => {
    const U = randn([3, 10, 4], 1);
    const V = randn([3, 7, 4], 2);
    const { U: U2, V: V2 } = await spectralInit(U, V);
    expect(U2.shape).toEqual([3, 10, 4]);
    expect(V2.shape).toEqual([3, 7, 4]);
    expectBalancedSameProduct(U, V, U2, V2);
    tf.dispose([U, V, U2, V2]);
  });

  it('handles rank-deficient, ill-conditioned and fewer-rows-than-rank inputs', async () => {
    // rank 2 < r = 4: U = A·C with A [9, 2].
    const A = randn([9, 2], 3);
    const U = tf.matMul(A, randn([2, 4], 4));
    const V = randn([6, 4], 5);
    const r1 = await spectralInit(U, V);
    expectBalancedSameProduct(U, V, r1.U, r1.V);
    // Ill-conditioned: columns scaled over 6 orders of magnitude (condition ~1e6).
    const scales = tf.tensor1d([1, 1e-2, 1e-4, 1e-6]);
    const Ui = tf.mul(randn([8, 4], 6), scales);
    const Vi = randn([8, 4], 7);
    const r2 = await spectralInit(Ui, Vi);
    expectBalancedSameProduct(Ui, Vi, r2.U, r2.V);
    // m = 2 < r = 3.
    const Us = randn([2, 2, 3], 8);
    const Vs = randn([2, 5, 3], 9);
    const r3 = await spectralInit(Us, Vs);
    expectBalancedSameProduct(Us, Vs, r3.U, r3.V);
    const [a, b] = [randn([2, 3], 1), randn([2, 4], 1)];
    await expect(spectralInit(a, b)).rejects.toThrow(InternalError); // factor shapes are a contract between layers, not user input
    tf.dispose([a, b]);
    tf.dispose([A, U, V, r1.U, r1.V, scales, Ui, Vi, r2.U, r2.V, Us, Vs, r3.U, r3.V]);
  });

  it('is what FactorizedMultiHeadAttention applies to its QK and OV pairs at init', () => {
    const layer = new FactorizedMultiHeadAttention({ numHeads: 2, modelDim: 8, rank: 3 });
    layer.build([null, null, 8]);
    const [wq, wk, wv, wo] = layer.getWeights();
    const gq = gramF64(wq.dataSync(), 2, 8, 3);
    const gk = gramF64(wk.dataSync(), 2, 8, 3);
    const woT = tf.transpose(wo, [0, 2, 1]);
    const gv = gramF64(wv.dataSync(), 2, 8, 3);
    const go = gramF64(woT.dataSync(), 2, 8, 3);
    const s = maxAbs(gq);
    for (let i = 0; i < gq.length; i++) {
      expect(Math.abs(gq[i] - gk[i]) / s).toBeLessThan(1e-5);
      expect(Math.abs(gv[i] - go[i]) / maxAbs(gv)).toBeLessThan(1e-5);
    }
    expect(Math.abs(gq[1]) / s).toBeLessThan(1e-5); // off-diagonal
    woT.dispose();
    layer.dispose();
  });
});

describe('factorize', () => {
  it('is exact at full rank and the best rank-r approximation below, with the right error', async () => {
    const W = randn([6, 9], 10) as tf.Tensor2D;
    const full = await factorize(W, 6);
    expect(full.relativeError).toBeLessThan(1e-7);
    const rec = tf.matMul(full.U, full.V, false, true);
    expect(maxAbsDiff(rec, W)).toBeLessThan(1e-5);
    const low = await factorize(W, 2);
    expect(low.U.shape).toEqual([6, 2]);
    expect(low.V.shape).toEqual([9, 2]);
    const rec2 = tf.matMul(low.U, low.V, false, true);
    const err = tf.tidy(() => Math.sqrt(tf.sum(tf.square(tf.sub(W, rec2))).dataSync()[0] / tf.sum(tf.square(W)).dataSync()[0]));
    expect(Math.abs(err - low.relativeError)).toBeLessThan(1e-5);
    // Eckart–Young: no other rank-2 product from a random pair does better.
    const [u0, v0] = [randn([6, 2], 11), randn([9, 2], 12)];
    const { U, V } = await spectralInit(u0, v0);
    const other = tf.tidy(() => Math.sqrt(tf.sum(tf.square(tf.sub(W, tf.matMul(U, V, false, true)))).dataSync()[0] / tf.sum(tf.square(W)).dataSync()[0]));
    tf.dispose([u0, v0, U, V]);
    expect(low.relativeError).toBeLessThan(other);
    await expect(factorize(W, 0)).rejects.toThrow(/rank must be a positive integer/);
    await expect(factorize(W, 0)).rejects.toThrow(InternalError);
    tf.dispose([W, full.U, full.V, rec, low.U, low.V, rec2]);
  });
});

describe('Frobenius decay', () => {
  it('penalty equals ½‖UVᵀ‖² computed densely, per head summed', () => {
    const U = randn([3, 5, 2], 20);
    const V = randn([3, 4, 2], 21);
    const p = frobeniusPenalty(U, V);
    const dense = tf.tidy(() => tf.mul(0.5, tf.sum(tf.square(tf.matMul(U as tf.Tensor3D, V as tf.Tensor3D, false, true)))));
    expect(Math.abs(p.dataSync()[0] - dense.dataSync()[0]) / dense.dataSync()[0]).toBeLessThan(1e-5);
    const p2 = frobeniusPenalty(tf.gather(U, 0), tf.gather(V, 0));
    const d2 = tf.tidy(() => tf.mul(0.5, tf.sum(tf.square(tf.matMul(tf.gather(U, 0), tf.gather(V, 0), false, true)))));
    expect(Math.abs(p2.dataSync()[0] - d2.dataSync()[0]) / d2.dataSync()[0]).toBeLessThan(1e-5);
    // A tensor of the wrong shape reaching FD is a broken contract (a bug), not the user's input.
    expect(() => frobeniusPenalty(randn([2, 3], 1), randn([2, 3, 3], 1))).toThrow(InternalError);
    expect(() => frobeniusDecayGrads(randn([2, 3], 1), randn([2, 4], 1), 0.1)).toThrow(InternalError);
    tf.dispose([U, V, p, dense, p2, d2]);
  });

  it('closed-form gradients equal autodiff of coef · penalty (plain and vTransposed pairs)', () => {
    const coef = 0.37;
    const U = randn([2, 6, 3], 22);
    const V = randn([2, 5, 3], 23);
    const [gU, gV] = tf.grads((u: tf.Tensor, v: tf.Tensor) => tf.mul(coef, tf.mul(0.5, tf.sum(tf.square(tf.matMul(u as tf.Tensor3D, v as tf.Tensor3D, false, true))))))([U, V]);
    const { dU, dV } = frobeniusDecayGrads(U, V, coef);
    expect(maxAbsDiff(dU, gU) / maxAbs(gU.dataSync())).toBeLessThan(1e-5);
    expect(maxAbsDiff(dV, gV) / maxAbs(gV.dataSync())).toBeLessThan(1e-5);

    // An OV-style pair (V stored transposed) through a real layer.
    const layer = new FactorizedMultiHeadAttention({ numHeads: 2, modelDim: 6, rank: 2 });
    layer.build([null, null, 6]);
    const ov = layer.factorPairs()[1];
    expect(ov.vTransposed).toBe(true);
    const wv = ov.u.read() as tf.Variable;
    const wo = ov.v.read() as tf.Variable;
    const { grads } = tf.variableGrads(() => tf.mul(coef, tf.mul(0.5, tf.sum(tf.square(tf.matMul(wv as tf.Tensor3D, wo as tf.Tensor3D))))) as tf.Scalar, [wv, wo]);
    const fd = pairDecayGrads(ov, coef);
    expect(fd.dV.shape).toEqual(wo.shape);
    expect(maxAbsDiff(fd.dU, grads[wv.name]) / maxAbs(grads[wv.name].dataSync())).toBeLessThan(1e-5);
    expect(maxAbsDiff(fd.dV, grads[wo.name]) / maxAbs(grads[wo.name].dataSync())).toBeLessThan(1e-5);
    tf.dispose([U, V, gU, gV, dU, dV, fd.dU, fd.dV, ...Object.values(grads)]);
    layer.dispose();
  });

  it('addFrobeniusDecayGrads adds the FD terms to enabled pair kinds only; factorVariableNames lists factors', async () => {
    const coef = 1e-2;
    const attn = new FactorizedMultiHeadAttention({ numHeads: 2, modelDim: 4, name: 'attn_fd' });
    attn.build([null, null, 4]);
    const ffn = new FactorizedDense({ units: 5, rank: 2, name: 'ffn_fd' });
    ffn.build([null, 4]);
    const pairs = collectFactorPairs([attn, ffn]);
    expect(pairs.map((p) => `${p.name}:${p.kind}`)).toEqual(['attn_fd/qk:qk', 'attn_fd/ov:ov', 'ffn_fd/linear:linear']);
    const vars = [...attn.trainableWeights, ...ffn.trainableWeights];
    const zerosFor = () => Object.fromEntries(vars.map((v) => [v.name, tf.zerosLike(v.read())]));
    const grads = zerosFor();
    const biasGrad = grads[attn.outputBias!.name];
    const out = addFrobeniusDecayGrads(grads, pairs, coef, { qk: true, ov: false, linear: true, embedding: true });
    expect(biasGrad.isDisposed).toBe(false); // untouched entries pass through
    expect(out[attn.outputBias!.name]).toBe(biasGrad);
    const qkExpected = frobeniusDecayGrads(attn.queryFactor.read(), attn.keyFactor.read(), coef);
    expect(maxAbsDiff(out[attn.queryFactor.name], qkExpected.dU)).toBeLessThan(1e-9);
    expect(maxAbsDiff(out[attn.keyFactor.name], qkExpected.dV)).toBeLessThan(1e-9);
    expect(maxAbs(out[attn.valueFactor.name].dataSync())).toBe(0); // ov disabled
    const lin = pairDecayGrads(pairs[2], coef);
    expect(maxAbsDiff(out[ffn.outputFactor.name], lin.dV)).toBeLessThan(1e-9);
    expect(grads[attn.queryFactor.name].isDisposed).toBe(true); // replaced entries are disposed
    const names = factorVariableNames(pairs);
    expect(names.has(attn.outputFactor.name)).toBe(true);
    expect(names.has(attn.outputBias!.name)).toBe(false);
    expect(names.size).toBe(6);
    const total = await frobeniusPenaltyTotal(pairs, { qk: true, ov: false, linear: false, embedding: false });
    const qkPen = frobeniusPenalty(attn.queryFactor.read(), attn.keyFactor.read());
    expect(Math.abs(total - qkPen.dataSync()[0])).toBeLessThan(1e-6 * total);
    expect(() => addFrobeniusDecayGrads({}, pairs, -1)).toThrow(/frobeniusDecay/);
    tf.dispose([...Object.values(out), qkExpected.dU, qkExpected.dV, lin.dU, lin.dV, qkPen]);
    attn.dispose();
    tf.dispose(tf.zeros([1])); // keep ffn (never applied) alive: tfjs forbids disposing unused layers
  });
});

describe('FactorizedDense', () => {
  it('computes x·U·V_s + b with rank / rankScale and its factor pair', () => {
    const layer = new FactorizedDense({ units: 6, rankScale: 0.5, activation: 'relu' });
    const x = randn([2, 3, 8], 30);
    const y = layer.apply(x) as tf.Tensor;
    expect(layer.rank).toBe(3); // 0.5 · min(8, 6)
    expect(y.shape).toEqual([2, 3, 6]);
    const [U, Vs, b] = layer.getWeights();
    expect(U.shape).toEqual([8, 3]);
    expect(Vs.shape).toEqual([3, 6]);
    const ref = tf.tidy(() => tf.relu(tf.add(tf.matMul(tf.reshape(x, [6, 8]), tf.matMul(U, Vs)), b)).reshape([2, 3, 6]));
    expect(maxAbsDiff(y, ref)).toBeLessThan(1e-5);
    expect(new FactorizedDense({ units: 4, rank: 2 }).getConfig().rank).toBe(2);
    const full = new FactorizedDense({ units: 4, useBias: false });
    tf.dispose(full.apply(tf.zeros([1, 10])) as tf.Tensor);
    expect(full.rank).toBe(4);
    expect(full.getWeights().length).toBe(1 + 1);
    expect(layer.factorPairs()[0]).toMatchObject({ kind: 'linear', vTransposed: true });
    expect(() => new FactorizedDense({ units: 4, rank: 2, rankScale: 0.5 })).toThrow(UserError);
    expect(() => new FactorizedDense({ units: 4, activation: 'swish' as never })).toThrow(/activation/);
    tf.dispose([x, y, ref]);
  });
});

describe('FactorizedEmbedding', () => {
  it('looks up rows of U·V_s, projects back with Eᵀ, and exposes its factor pair', () => {
    const emb = new FactorizedEmbedding({ inputDim: 11, outputDim: 6, rank: 2 });
    const ids = tf.tensor2d([
      [1, 4, 10],
      [0, 0, 3],
    ], [2, 3], 'int32');
    const out = emb.apply(ids) as tf.Tensor;
    expect(out.shape).toEqual([2, 3, 6]);
    const [U, Vs] = emb.getWeights();
    expect(U.shape).toEqual([11, 2]);
    const E = tf.matMul(U, Vs);
    const ref = tf.reshape(tf.gather(E, tf.reshape(ids, [-1])), [2, 3, 6]);
    expect(maxAbsDiff(out, ref)).toBeLessThan(1e-6);
    const h = randn([2, 3, 6], 31);
    const logits = emb.projectToVocab(h);
    const refLogits = tf.reshape(tf.matMul(tf.reshape(h, [6, 6]), E, false, true), [2, 3, 11]);
    expect(maxAbsDiff(logits, refLogits)).toBeLessThan(1e-5);
    expect(emb.factorPairs()[0]).toMatchObject({ kind: 'embedding', vTransposed: true });
    expect(new FactorizedEmbedding({ inputDim: 100, outputDim: 8, rankScale: 0.25 }).rank).toBe(2);
    expect(() => new FactorizedEmbedding({ inputDim: 0, outputDim: 8 })).toThrow(/inputDim/);
    tf.dispose([ids, out, E, ref, h, logits, refLogits]);
  });
});

describe('serialization of FactorizedDense / FactorizedEmbedding', () => {
  it('round-trips a model through tf.loadLayersModel with identical outputs', async () => {
    const ids = tf.input({ shape: [null], dtype: 'int32' });
    const e = new FactorizedEmbedding({ inputDim: 20, outputDim: 8, rankScale: 0.5, name: 'emb' }).apply(ids) as tf.SymbolicTensor;
    const f = new FactorizedDense({ units: 12, rank: 3, activation: 'gelu', name: 'ffn' }).apply(e) as tf.SymbolicTensor;
    const model = tf.model({ inputs: ids, outputs: f });
    let saved: tf.io.ModelArtifacts | undefined;
    await model.save(
      tf.io.withSaveHandler(async (a) => {
        saved = a;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    const loaded = await tf.loadLayersModel(tf.io.fromMemory(saved!));
    const x = tf.tensor2d([
      [1, 2, 19],
      [5, 0, 7],
    ], [2, 3], 'int32');
    const a = model.predict(x) as tf.Tensor;
    const b = loaded.predict(x) as tf.Tensor;
    expect(a.shape).toEqual([2, 3, 12]);
    expect(maxAbsDiff(a, b)).toBe(0);
    expect(loaded.getLayer('ffn').getConfig()).toEqual(model.getLayer('ffn').getConfig());
    expect(loaded.getLayer('emb').getConfig()).toEqual(model.getLayer('emb').getConfig());
    expect(collectFactorPairs([loaded]).map((p) => p.kind)).toEqual(['embedding', 'linear']);
    tf.dispose([x, a, b]);
    model.dispose();
    loaded.dispose();
  });
});

describe('no leaks in the factorized layers', () => {
  it('keeps tf.memory().numTensors constant over 5 forward + backward passes', () => {
    const emb = new FactorizedEmbedding({ inputDim: 30, outputDim: 8, rank: 4 });
    const ffn = new FactorizedDense({ units: 8, rankScale: 0.5, activation: 'gelu' });
    const ids = tf.tensor2d([
      [1, 2, 3],
      [4, 5, 29],
    ], [2, 3], 'int32');
    const step = () => {
      const { value, grads } = tf.variableGrads(() => {
        const h = ffn.apply(emb.apply(ids) as tf.Tensor) as tf.Tensor;
        return tf.sum(emb.projectToVocab(h)) as tf.Scalar;
      }, [...emb.trainableWeights, ...ffn.trainableWeights].map((w) => w.read() as tf.Variable));
      tf.dispose([value, ...Object.values(grads)]);
    };
    tf.dispose(tf.tidy(() => ffn.apply(emb.apply(ids) as tf.Tensor) as tf.Tensor)); // builds both
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) step();
    expect(tf.memory().numTensors).toBe(before);
    ids.dispose();
  });
});

describe('fromDenseKernel / fromDenseEmbedding', () => {
  it('convert dense weights exactly at full rank and report the truncation error below', async () => {
    const kernel = randn([6, 5], 40) as tf.Tensor2D;
    const bias = randn([5], 41) as tf.Tensor1D;
    const x = randn([3, 6], 42);
    const { layer, relativeError } = await fromDenseKernel({ kernel, bias, activation: 'tanh' });
    expect(layer.rank).toBe(5);
    expect(relativeError).toBeLessThan(1e-7);
    const y = layer.apply(x) as tf.Tensor;
    const ref = tf.tanh(tf.add(tf.matMul(x as tf.Tensor2D, kernel), bias));
    expect(maxAbsDiff(y, ref)).toBeLessThan(1e-5);
    const low = await fromDenseKernel({ kernel, rankScale: 0.4 });
    expect(low.layer.rank).toBe(2);
    const [U, Vs] = low.layer.getWeights();
    const err = tf.tidy(() => Math.sqrt(tf.sum(tf.square(tf.sub(kernel, tf.matMul(U, Vs)))).dataSync()[0] / tf.sum(tf.square(kernel)).dataSync()[0]));
    expect(Math.abs(err - low.relativeError)).toBeLessThan(1e-5);

    const table = randn([9, 4], 43) as tf.Tensor2D;
    const emb = await fromDenseEmbedding({ embeddings: table });
    expect(emb.relativeError).toBeLessThan(1e-7);
    const ids = tf.tensor1d([0, 8, 3], 'int32');
    const e = emb.layer.apply(ids) as tf.Tensor;
    const eRef = tf.gather(table, ids);
    expect(maxAbsDiff(e, eRef)).toBeLessThan(1e-5);
    const badBias = randn([4], 1) as tf.Tensor1D;
    await expect(fromDenseKernel({ kernel, bias: badBias })).rejects.toThrow(/bias must be \[5\]/);
    await expect(fromDenseKernel({ kernel, bias: badBias })).rejects.toThrow(InternalError);
    badBias.dispose();
    tf.dispose([kernel, bias, x, y, ref, table, ids, e, eRef]);
  });
});

describe('host-drawn initial values (no read-back at build)', () => {
  it('equal tf.randomUniform / tf.randomNormal bit for bit', () => {
    for (const seed of [1, 7, 123456789, 2147483646]) {
      for (const shape of [[5], [3, 7], [2, 4, 3]]) {
        const u = tf.randomUniform(shape, -0.3, 0.7, 'float32', seed);
        expect(Array.from(hostRandomUniform(shape, -0.3, 0.7, seed))).toEqual(Array.from(u.dataSync()));
        const n = tf.randomNormal(shape, 0.1, 2.5, 'float32', seed);
        expect(Array.from(hostRandomNormal(shape, 0.1, 2.5, seed))).toEqual(Array.from(n.dataSync()));
        tf.dispose([u, n]);
      }
    }
  });

  it("give FactorizedDense (spectralInit: 'rebalance') the factors that re-balancing the tfjs initializers' draws gives", async () => {
    setGlobalSeed(42);
    const layer = new FactorizedDense({ units: 6, rank: 3, spectralInit: 'rebalance' });
    layer.build([null, 5]);
    const [U, Vs] = layer.getWeights();
    // The same seeds in the same order, through tfjs' own initializer and the tensor spectralInit.
    setGlobalSeed(42);
    const limit = Math.sqrt(3 * Math.sqrt(2 / (5 + 6) / 3));
    const init = () => tf.initializers.randomUniform({ minval: -limit, maxval: limit, seed: globalRandom.nextSeed() });
    const u0 = init().apply([5, 3]);
    const vs0 = init().apply([3, 6]);
    const v0 = tf.transpose(vs0);
    const ref = await spectralInit(u0, v0);
    expect(Array.from(U.dataSync())).toEqual(Array.from(ref.U.dataSync()));
    const refVs = tf.transpose(ref.V);
    expect(Array.from(Vs.dataSync())).toEqual(Array.from(refVs.dataSync()));
    tf.dispose([u0, vs0, v0, ref.U, ref.V, refVs]);
  });
});
