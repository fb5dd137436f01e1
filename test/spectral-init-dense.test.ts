// The paper's spectral initialization of dense and embedding factor pairs (truncated SVD of the
// layer's default-initialized full matrix), the eigen solver behind it, the 'rebalance' and false
// modes kept beside it, the config schema that selects them, and which factor pairs the trainer
// gives Frobenius decay instead of weight decay.
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { UserError } from '../src/errors.ts';
import { FactorizedDense, FactorizedEmbedding, pairDecayGrads } from '../src/factorized/index.ts';
import { fromArray, gramOfColumns, svd, symmetricEigen } from '../src/factorized/linalg.ts';
import { hostRandomNormal, hostRandomUniform } from '../src/factorized/host-random.ts';
import { truncatedSvdFactors } from '../src/factorized/spectral.ts';
import { TokenEmbedding } from '../src/models/embedding.ts';
import { resolveSeq2SeqConfig, TransformerSeq2Seq, type Seq2SeqOverrides } from '../src/models/index.ts';
import { globalRandom, setGlobalSeed } from '../src/random.ts';
import { Trainer, type LossFn } from '../src/train/index.ts';

/** Row-major a [m, k] · b [k, n] in Float64. */
function mul(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let l = 0; l < k; l++) s += a[i * k + l] * b[l * n + j];
    c[i * n + j] = s;
  }
  return c;
}
function transposed(a: ArrayLike<number>, m: number, n: number): Float64Array {
  const t = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) t[j * m + i] = a[i * n + j];
  return t;
}
function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}
/** The best rank-r approximation of w [m, n] by the one-sided Jacobi SVD (linalg.svd, Float64), and its singular values. */
function referenceTruncation(w: ArrayLike<number>, m: number, n: number, r: number): { product: Float64Array; s: Float64Array } {
  const { u, s, v } = svd(fromArray(m, n, w));
  const p = s.length;
  const product = new Float64Array(m * n);
  for (let c = 0; c < Math.min(r, p); c++) {
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) product[i * n + j] += u.data[i * p + c] * s[c] * v.data[j * p + c];
  }
  return { product, s };
}
/** Off-diagonal max and diagonal of aᵀa for a row-major [rows, cols] a. */
function gramParts(a: ArrayLike<number>, rows: number, cols: number): { off: number; diag: number[] } {
  const g = gramOfColumns(a, rows, cols).data;
  let off = 0;
  const diag: number[] = [];
  for (let i = 0; i < cols; i++) {
    for (let j = 0; j < cols; j++) {
      if (i === j) diag.push(g[i * cols + j]);
      else off = Math.max(off, Math.abs(g[i * cols + j]));
    }
  }
  return { off, diag };
}

/** Frees a built layer's weights (tfjs refuses to dispose a layer that was never applied). */
function free(layer: tf.layers.Layer): void {
  for (const w of layer.weights) w.dispose();
}

describe('symmetricEigen (tred2 + tql2)', () => {
  it('decomposes symmetric matrices, definite or not, with orthonormal eigenvectors, eigenvalues descending', () => {
    for (const [n, seed] of [[1, 1], [2, 2], [7, 3], [40, 4]]) {
      const x = hostRandomNormal([n, n], 0, 1, seed);
      const a = new Float64Array(n * n);
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) a[i * n + j] = x[i * n + j] + x[j * n + i]; // indefinite
      const { values, vectors } = symmetricEigen({ rows: n, cols: n, data: a });
      for (let k = 1; k < n; k++) expect(values[k]).toBeLessThanOrEqual(values[k - 1]);
      // A = Zᵀ diag(λ) Z with the eigenvectors as rows of Z; Z Zᵀ = I.
      const z = vectors.data;
      const scaled = new Float64Array(n * n);
      for (let k = 0; k < n; k++) for (let j = 0; j < n; j++) scaled[k * n + j] = values[k] * z[k * n + j];
      expect(maxAbs(mul(transposed(z, n, n), scaled, n, n, n), a)).toBeLessThan(1e-10 * n);
      const eye = new Float64Array(n * n);
      for (let i = 0; i < n; i++) eye[i * n + i] = 1;
      expect(maxAbs(mul(z, transposed(z, n, n), n, n, n), eye)).toBeLessThan(1e-12 * n);
      // |λ| are the singular values of a symmetric matrix.
      const ref = svd(fromArray(n, n, a)).s;
      const abs = Array.from(values, Math.abs).sort((p, q) => q - p);
      expect(maxAbs(abs, ref)).toBeLessThan(1e-10 * n);
    }
  });

  it('handles repeated eigenvalues and a zero matrix', () => {
    const n = 5;
    const eye = new Float64Array(n * n);
    for (let i = 0; i < n; i++) eye[i * n + i] = 2;
    expect(Array.from(symmetricEigen({ rows: n, cols: n, data: eye }).values)).toEqual([2, 2, 2, 2, 2]);
    expect(Array.from(symmetricEigen({ rows: 3, cols: 3, data: new Float64Array(9) }).values)).toEqual([0, 0, 0]);
  });
});

describe('truncatedSvdFactors', () => {
  const shapes: [number, number, number][] = [[9, 5, 3], [5, 9, 3], [8, 8, 8], [12, 7, 7], [6, 11, 2], [4, 3, 5]];
  it('equals a reference truncated SVD (Float64 Jacobi), with the full matrix\'s top singular values and balanced factors', () => {
    shapes.forEach(([m, n, r], k) => {
      const w = hostRandomUniform([m, n], -1, 1, 100 + k);
      const { u, vt, s } = truncatedSvdFactors(w, m, n, r);
      expect(u.length).toBe(m * r);
      expect(vt.length).toBe(r * n);
      const ref = referenceTruncation(w, m, n, r);
      expect(maxAbs(mul(u, vt, m, r, n), ref.product)).toBeLessThan(1e-4);
      const p = Math.min(r, m, n);
      expect(maxAbs(s, ref.s.slice(0, p))).toBeLessThan(1e-4);
      // The product's own singular values are the full matrix's top r (then zeros).
      const productS = svd(fromArray(m, n, mul(u, vt, m, r, n))).s;
      expect(maxAbs(productS.slice(0, p), ref.s.slice(0, p))).toBeLessThan(1e-4);
      for (let c = p; c < productS.length; c++) expect(productS[c]).toBeLessThan(1e-4);
      // Balanced: UᵀU = (Vᵀ)(Vᵀ)ᵀ = diag(s), zero columns past min(m, n).
      const gu = gramParts(u, m, r);
      const gv = gramParts(transposed(vt, r, n), n, r);
      expect(gu.off).toBeLessThan(1e-5);
      expect(gv.off).toBeLessThan(1e-5);
      const expected = Array.from({ length: r }, (_, c) => (c < p ? ref.s[c] : 0));
      expect(maxAbs(gu.diag, expected)).toBeLessThan(1e-4);
      expect(maxAbs(gv.diag, expected)).toBeLessThan(1e-4);
    });
  });

  it('keeps a rank-deficient matrix exactly and leaves the missing directions zero', () => {
    const [m, n, k] = [10, 6, 2];
    const a = hostRandomNormal([m, k], 0, 1, 7);
    const b = hostRandomNormal([k, n], 0, 1, 8);
    const w = Float32Array.from(mul(a, b, m, k, n));
    const { u, vt, s } = truncatedSvdFactors(w, m, n, 4);
    expect(maxAbs(mul(u, vt, m, 4, n), w)).toBeLessThan(1e-5);
    expect(s[2]).toBeLessThan(1e-5);
    expect(Number.isFinite(s[3]) && Array.from(u).every(Number.isFinite) && Array.from(vt).every(Number.isFinite)).toBe(true);
  });
});

describe('spectral initialization of the layers (the paper\'s: SVD of the default-initialized matrix)', () => {
  it('FactorizedDense: the truncated SVD of the Glorot-uniform kernel the dense layer would draw; at full rank that kernel itself', () => {
    for (const [inDim, units, rank] of [[6, 10, 3], [12, 5, 2], [7, 9, 7]]) {
      setGlobalSeed(21);
      const layer = new FactorizedDense({ units, rank });
      layer.build([null, inDim]);
      setGlobalSeed(21);
      const kernel = tf.initializers.glorotUniform({ seed: globalRandom.nextSeed() }).apply([inDim, units]);
      const w = kernel.dataSync();
      const [U, Vs] = layer.getWeights();
      const product = mul(U.dataSync(), Vs.dataSync(), inDim, rank, units);
      expect(maxAbs(product, referenceTruncation(w, inDim, units, rank).product)).toBeLessThan(1e-5);
      if (rank === Math.min(inDim, units)) expect(maxAbs(product, w)).toBeLessThan(1e-5);
      expect(gramParts(U.dataSync(), inDim, rank).off).toBeLessThan(1e-5);
      kernel.dispose();
      free(layer);
    }
  });

  it('FactorizedEmbedding: the truncated SVD of an N(0, 1/outputDim) table', () => {
    setGlobalSeed(22);
    const emb = new FactorizedEmbedding({ inputDim: 15, outputDim: 6, rank: 3 });
    emb.build();
    setGlobalSeed(22);
    const table = hostRandomNormal([15, 6], 0, 1 / Math.sqrt(6), globalRandom.nextSeed());
    const [U, Vs] = emb.getWeights();
    expect(maxAbs(mul(U.dataSync(), Vs.dataSync(), 15, 3, 6), referenceTruncation(table, 15, 6, 3).product)).toBeLessThan(1e-5);
    free(emb);
  });

  it('TokenEmbedding (what the models use): the truncated SVD of the dense table of the same seed, pad row zero', () => {
    const common = { vocabSize: 14, modelDim: 6, padId: 1 };
    const build = (rankScale: number | null, spectralInit?: boolean | 'rebalance') => {
      setGlobalSeed(23);
      const layer = new TokenEmbedding({ ...common, rankScale, spectralInit });
      layer.build([[1, 1]]);
      return layer;
    };
    const dense = build(null);
    const table = dense.embeddings!.read().dataSync();
    for (const scale of [0.5, 1]) {
      const layer = build(scale);
      const r = layer.rank;
      const u = layer.embeddingU!.read().dataSync();
      const product = mul(u, transposed(layer.embeddingV!.read().dataSync(), 6, r), 14, r, 6);
      expect(maxAbs(product, referenceTruncation(table, 14, 6, r).product)).toBeLessThan(1e-5);
      if (scale === 1) expect(maxAbs(product, table)).toBeLessThan(1e-5); // SI at rank scale 1 starts from the dense model
      expect(Array.from(u.slice(common.padId * r, common.padId * r + r)).every((x) => x === 0)).toBe(true);
      free(layer);
    }
    // 'rebalance' keeps the random product of the unbalanced factors (the old meaning of true).
    const random = build(0.5, false);
    const rebalanced = build(0.5, 'rebalance');
    const productOf = (l: TokenEmbedding) => mul(l.embeddingU!.read().dataSync(), transposed(l.embeddingV!.read().dataSync(), 6, l.rank), 14, l.rank, 6);
    expect(maxAbs(productOf(rebalanced), productOf(random))).toBeLessThan(1e-5);
    expect(maxAbs(productOf(rebalanced), referenceTruncation(table, 14, 6, 3).product)).toBeGreaterThan(1e-2);
    expect(gramParts(rebalanced.embeddingU!.read().dataSync(), 14, 3).off).toBeLessThan(1e-5);
    expect(gramParts(random.embeddingU!.read().dataSync(), 14, 3).off).toBeGreaterThan(1e-3);
    for (const l of [dense, random, rebalanced]) free(l);
  });

  it('is seeded, and takes the same two seeds in every mode', () => {
    const draw = (seed: number, spectralInit: boolean | 'rebalance') => {
      setGlobalSeed(seed);
      const layer = new FactorizedDense({ units: 9, rank: 3, spectralInit });
      layer.build([null, 8]);
      const values = layer.getWeights().map((t) => Array.from(t.dataSync()));
      const next = globalRandom.nextSeed();
      free(layer);
      return { values, next };
    };
    const a = draw(5, true);
    expect(draw(5, true).values).toEqual(a.values);
    expect(draw(6, true).values).not.toEqual(a.values);
    expect(draw(5, 'rebalance').next).toBe(a.next);
    expect(draw(5, false).next).toBe(a.next);
  });

  it('rejects a bad spectralInit option with a one-line UserError, and round-trips the modes through getConfig', () => {
    expect(() => new FactorizedDense({ units: 3, spectralInit: 'svd' as never })).toThrow(UserError);
    expect(() => new FactorizedEmbedding({ inputDim: 4, outputDim: 3, spectralInit: 1 as never })).toThrow(/'spectralInit' must be true, false or 'rebalance'/);
    expect(() => new TokenEmbedding({ vocabSize: 4, modelDim: 3, padId: 0, rankScale: 0.5, spectralInit: 'yes' as never })).toThrow(UserError);
    for (const mode of [true, false, 'rebalance'] as const) {
      const config = new FactorizedDense({ units: 3, spectralInit: mode }).getConfig();
      expect(config.spectralInit).toBe(mode);
      expect((FactorizedDense.fromConfig(FactorizedDense, config) as FactorizedDense).spectralInit).toBe(mode);
    }
  });
});

const TINY: Seq2SeqOverrides = {
  srcVocabSize: 12,
  tgtVocabSize: 12,
  padId: 0,
  bosId: 1,
  eosId: 2,
  modelDim: 8,
  numHeads: 2,
  ffnDim: 16,
  encoderLayers: 1,
  decoderLayers: 1,
  maxPositions: 16,
  dropout: 0,
};

describe('model config: spectralInit', () => {
  it('old settings load and mean the paper\'s SI; \'rebalance\' is a choice for linear and embedding only', () => {
    const choice = (spectralInit: unknown) => resolveSeq2SeqConfig({ ...TINY, spectralInit } as Seq2SeqOverrides).spectralInit;
    expect(choice(true)).toEqual({ qk: true, ov: true, linear: true, embedding: true });
    expect(choice(false)).toEqual({ qk: false, ov: false, linear: false, embedding: false });
    expect(choice({ linear: false })).toEqual({ qk: true, ov: true, linear: false, embedding: true });
    expect(choice({ linear: 'rebalance', embedding: 'rebalance' })).toEqual({ qk: true, ov: true, linear: 'rebalance', embedding: 'rebalance' });
    expect(() => choice({ qk: 'rebalance' })).toThrow(UserError);
    expect(() => choice('rebalance')).toThrow(/'spectralInit' must be true, false or \{ qk, ov, linear, embedding \}/);
    expect(() => choice({ linear: 'svd' })).toThrow(/'spectralInit' must be true, false or \{ qk, ov, linear, embedding \} \(linear and embedding may also be 'rebalance'\)/);
  });

  it('reaches the FFN and embedding layers of a built model', () => {
    setGlobalSeed(31);
    const model = new TransformerSeq2Seq({ ...TINY, linearRankScale: 0.5, embeddingRankScale: 0.5, spectralInit: { linear: 'rebalance', embedding: false } });
    const pairs = Object.fromEntries(model.factorPairs().map((p) => [p.name, p]));
    const ffnIn = pairs['encoder/0/ffn_in'].u.read(); // [8, 4], re-balanced
    expect(gramParts(ffnIn.dataSync(), 8, 4).off).toBeLessThan(1e-5);
    expect(model.sourceEmbedding.spectralInit).toBe(false);
    const emb = pairs['embedding/source'].u.read(); // [12, 4], as drawn
    expect(gramParts(emb.dataSync(), 12, 4).off).toBeGreaterThan(1e-3);
    model.dispose();
  });
});

describe('Frobenius decay or weight decay, per factor pair type (the experiment variants)', () => {
  it('fd: every pair (qk, ov, linear, embedding) gets Frobenius decay and no weight decay, the rest weight decay; baseline: weight decay on all', async () => {
    setGlobalSeed(41);
    const model = new TransformerSeq2Seq({ ...TINY, tieOutput: false, attentionRankScale: 0.5, linearRankScale: 0.5, embeddingRankScale: 0.5 });
    const pairs = model.factorPairs();
    expect(new Set(pairs.map((p) => p.kind))).toEqual(new Set(['qk', 'ov', 'linear', 'embedding']));
    const weights = model.model.trainableWeights;
    const before = weights.map((w) => tf.clone(w.read()));
    // A loss with zero gradient that reaches every weight: one plain SGD-like update is decay alone.
    const zeroLoss: LossFn<number> = () => ({ loss: tf.mul(tf.addN(weights.map((w) => tf.sum(w.read()))), 0) as tf.Scalar, numTokens: 1 });
    const [lr, wd, lambda] = [0.1, 0.5, 0.2];
    const expectedFd = new Map<string, tf.Tensor>();
    for (const p of pairs) {
      const { dU, dV } = pairDecayGrads(p, lambda);
      expectedFd.set(p.u.name, tf.sub(p.u.read(), tf.mul(dU, lr)));
      expectedFd.set(p.v.name, tf.sub(p.v.read(), tf.mul(dV, lr)));
      tf.dispose([dU, dV]);
    }
    const step = async (frobeniusDecay: number) => {
      weights.forEach((w, i) => w.write(tf.clone(before[i])));
      await new Trainer<number>({
        model: { model: model.model, factorPairs: () => model.factorPairs() },
        lossFn: zeroLoss,
        data: { numBatches: () => 1, batches: () => [0] },
        maxSteps: 1, optimizer: 'nag', momentum: 0, lr, schedule: 'constant', weightDecay: wd, frobeniusDecay, progress: 'none',
      }).train();
    };
    const diff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
    await step(lambda);
    let decayed = 0;
    weights.forEach((w, i) => {
      const fd = expectedFd.get(w.name);
      if (fd) decayed++;
      const expected = fd ?? tf.mul(before[i], 1 - lr * wd);
      expect(diff(w.read(), expected), w.name).toBeLessThan(1e-6);
      if (!fd) expected.dispose();
    });
    expect(decayed).toBe(2 * pairs.length);
    await step(0);
    weights.forEach((w, i) => {
      const expected = tf.mul(before[i], 1 - lr * wd);
      expect(diff(w.read(), expected), w.name).toBeLessThan(1e-6);
      expected.dispose();
    });
    tf.dispose([...before, ...expectedFd.values()]);
    model.dispose();
  });
});
