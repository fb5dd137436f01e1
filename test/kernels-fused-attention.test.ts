/**
 * Fused attention (FtAttention / FtAttentionGrad, src/backend/kernels/attention.ts): outputs and
 * gradients against the op-by-op computation the layer runs without the kernel, on the native
 * kernel (wasm + addon) and on the plain-JS loops (cpu without the addon); dropout drawn from the
 * seed (same mask as the JS mirror of the hash, statistics, determinism); the attention layer and
 * whole models (a seq2seq and a BERT training step) fused vs unfused; tensors not leaked.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ATTENTION_MASK_VALUE,
  FUSED_ATTENTION,
  FUSED_ATTENTION_GRAD,
  dropoutBase,
  dropoutKeep,
  dropoutScale,
  dropoutThreshold,
  fusedAttention,
  hasFusedAttention,
  registerFusedAttention,
  MIN_PARALLEL_MADDS,
} from '../src/backend/kernels/attention.ts';
import { loadNativeBlas } from '../src/backend/native.ts';
import { FactorizedMultiHeadAttention } from '../src/attention/factorized-attention.ts';
import { createAttentionCache, disposeAttentionCache } from '../src/attention/cache.ts';
import { TransformerSeq2Seq, type Seq2SeqOverrides } from '../src/models/index.ts';
import { buildBertForMaskedLM, disposeBertModel } from '../src/models/bert.ts';
import { resolveBertConfig } from '../src/models/bert-config.ts';
import { labelSmoothedCrossEntropy } from '../src/train/losses.ts';
import { globalRandom, setGlobalSeed } from '../src/random.ts';

const native = loadNativeBlas();

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  expect(a.shape).toEqual(b.shape);
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

/** |a − b| ≤ tol · max(1, |b|∞): absolute for O(1) values, relative for a summed loss. */
function expectClose(a: tf.Tensor, b: tf.Tensor, tol = 1e-5, what = ''): void {
  const scale = Math.max(1, tf.tidy(() => tf.max(tf.abs(b)).dataSync()[0]));
  expect(maxAbsDiff(a, b), what).toBeLessThanOrEqual(tol * scale);
}

/** Runs `fn` with the fused kernels unregistered on the active backend: the layer's op path. */
function unfused<T>(fn: () => T): T {
  const backend = tf.getBackend();
  const kernels = [FUSED_ATTENTION, FUSED_ATTENTION_GRAD].map((name) => tf.getKernel(name, backend));
  for (const k of kernels) if (k) tf.unregisterKernel(k.kernelName, backend);
  try {
    expect(hasFusedAttention()).toBe(false);
    return fn();
  } finally {
    for (const k of kernels) if (k) tf.registerKernel(k);
  }
}

interface Case {
  name: string;
  B: number;
  H: number;
  T: number;
  S: number;
  r: number;
  rv: number;
  causal: boolean;
  /** none; some (batch b pads its last b + 1 keys); allRow0 (batch 0 pads every key). */
  pad: 'none' | 'some' | 'allRow0';
}

const CASES: Case[] = [
  { name: 'padding, T ≠ S, r ≠ rv', B: 2, H: 3, T: 5, S: 7, r: 4, rv: 6, causal: false, pad: 'some' },
  { name: 'causal self-attention', B: 1, H: 2, T: 6, S: 6, r: 3, rv: 5, causal: true, pad: 'none' },
  { name: 'padding + causal with past keys (S > T)', B: 2, H: 2, T: 3, S: 8, r: 4, rv: 4, causal: true, pad: 'some' },
  { name: 'one query row (a decoding step)', B: 3, H: 2, T: 1, S: 9, r: 5, rv: 3, causal: true, pad: 'some' },
  { name: 'a batch row with every key padded', B: 2, H: 2, T: 4, S: 5, r: 4, rv: 4, causal: false, pad: 'allRow0' },
];

function paddingOf(c: Case): tf.Tensor2D | undefined {
  if (c.pad === 'none') return undefined;
  const rows = Array.from({ length: c.B }, (_, b) =>
    Array.from({ length: c.S }, (_, s) => (c.pad === 'allRow0' ? (b === 0 ? 1 : 0) : s >= c.S - (b + 1) ? 1 : 0)),
  );
  return tf.tensor2d(rows, [c.B, c.S], 'float32');
}

function inputsOf(c: Case, seed: number) {
  return {
    q: tf.randomNormal([c.B, c.H, c.T, c.r], 0, 1, 'float32', seed) as tf.Tensor4D,
    k: tf.randomNormal([c.B, c.H, c.S, c.r], 0, 1, 'float32', seed + 1) as tf.Tensor4D,
    v: tf.randomNormal([c.B, c.H, c.S, c.rv], 0, 1, 'float32', seed + 2) as tf.Tensor4D,
    w: tf.randomNormal([c.B, c.H, c.T, c.rv], 0, 1, 'float32', seed + 3) as tf.Tensor4D,
    pad: paddingOf(c),
  };
}

/** The kernels' dropout multipliers (0 or 1/(1 − rate)) as a [B, H, T, S] tensor, from the JS mirror of the hash. */
function dropoutMultipliers(B: number, H: number, T: number, S: number, rate: number, seed: number): tf.Tensor4D {
  const values = new Float32Array(B * H * T * S);
  const threshold = dropoutThreshold(rate);
  const scale = dropoutScale(rate);
  for (let bh = 0; bh < B * H; bh++) {
    const base = dropoutBase(seed, bh);
    for (let j = 0; j < T * S; j++) values[bh * T * S + j] = dropoutKeep(base, j, threshold) ? scale : 0;
  }
  return tf.tensor4d(values, [B, H, T, S]);
}

/** The op-by-op attention (what the layer runs without the kernel), with optional multipliers for dropout. */
function reference(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, pad: tf.Tensor2D | undefined, causal: boolean, drop?: tf.Tensor4D): tf.Tensor4D {
  const [B, , T] = q.shape;
  const S = k.shape[2];
  let logits: tf.Tensor = tf.matMul(q, k, false, true);
  let mask: tf.Tensor | null = pad ? tf.mul(tf.reshape(pad, [B, 1, 1, S]), ATTENTION_MASK_VALUE) : null;
  if (causal) {
    const future = tf.buffer([1, 1, T, S]);
    for (let t = 0; t < T; t++) for (let s = 0; s < S; s++) future.set(s > t + S - T ? ATTENTION_MASK_VALUE : 0, 0, 0, t, s);
    mask = mask ? tf.minimum(mask, future.toTensor()) : future.toTensor();
  }
  if (mask) logits = tf.add(logits, mask);
  let probs = tf.softmax(logits);
  if (drop) probs = tf.mul(probs, drop);
  return tf.matMul(probs, v) as tf.Tensor4D;
}

type Attention = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) => tf.Tensor4D;

/** Output and gradients of Σ w ⊙ attention(q, k, v) with respect to q, k and v. */
function outputAndGrads(attention: Attention, q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, w: tf.Tensor4D): tf.Tensor[] {
  const out = attention(q, k, v);
  const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(attention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D), w)))([q, k, v]);
  return [out, ...grads];
}

function kernelSuite(): void {
  for (const c of CASES) {
    it(`${c.name}: output and dq, dk, dv equal the op path's to 1e-5`, () => {
      tf.tidy(() => {
        const { q, k, v, w, pad } = inputsOf(c, 11);
        const fused = outputAndGrads((a, b, d) => fusedAttention(a, b, d, { keyPadding: pad, causal: c.causal, dropout: 0, seed: 0 }), q, k, v, w);
        const ops = outputAndGrads((a, b, d) => reference(a, b, d, pad, c.causal), q, k, v, w);
        ['out', 'dq', 'dk', 'dv'].forEach((what, i) => expectClose(fused[i], ops[i], 1e-5, what));
      });
    });
  }

  it('with dropout: the op path given the same mask (the JS mirror of the hash), output and gradients to 1e-5', () => {
    const c = CASES[2];
    const rate = 0.3;
    const seed = 987654321;
    tf.tidy(() => {
      const { q, k, v, w, pad } = inputsOf(c, 21);
      const drop = dropoutMultipliers(c.B, c.H, c.T, c.S, rate, seed);
      const fused = outputAndGrads((a, b, d) => fusedAttention(a, b, d, { keyPadding: pad, causal: c.causal, dropout: rate, seed }), q, k, v, w);
      const ops = outputAndGrads((a, b, d) => reference(a, b, d, pad, c.causal, drop), q, k, v, w);
      ['out', 'dq', 'dk', 'dv'].forEach((what, i) => expectClose(fused[i], ops[i], 1e-5, what));
      // The mask really drops something here (else this compares two undropped attentions).
      const undropped = reference(q, k, v, pad, c.causal);
      expect(maxAbsDiff(fused[0], undropped)).toBeGreaterThan(1e-2);
    });
  });

  it('dropout statistics: the rate of dropped weights, kept ones scaled by 1/(1 − rate), deterministic per seed', () => {
    // With v = identity the output is the dropped probability matrix itself.
    const [B, H, T, S] = [2, 4, 48, 48];
    const rate = 0.25;
    tf.tidy(() => {
      const q = tf.randomNormal([B, H, T, 8], 0, 1, 'float32', 5) as tf.Tensor4D;
      const k = tf.randomNormal([B, H, S, 8], 0, 1, 'float32', 6) as tf.Tensor4D;
      const eye = tf.tile(tf.reshape(tf.eye(S), [1, 1, S, S]), [B, H, 1, 1]) as tf.Tensor4D;
      const probs = reference(q, k, eye, undefined, false).dataSync();
      const run = (seed: number) => fusedAttention(q, k, eye, { causal: false, dropout: rate, seed }).dataSync();
      const a = run(7);
      let dropped = 0;
      let worst = 0;
      for (let i = 0; i < a.length; i++) {
        if (a[i] === 0) dropped++;
        else worst = Math.max(worst, Math.abs(a[i] - probs[i] / (1 - rate)));
      }
      const fraction = dropped / a.length; // 18,432 draws: σ ≈ 0.0032
      expect(fraction).toBeGreaterThan(rate - 0.02);
      expect(fraction).toBeLessThan(rate + 0.02);
      expect(worst).toBeLessThan(1e-5);
      // Per head, too: no slice may reuse another's mask.
      const masks = new Set<string>();
      for (let bh = 0; bh < B * H; bh++) masks.add(Array.from(a.subarray(bh * T * S, (bh + 1) * T * S), (x) => (x === 0 ? 0 : 1)).join(''));
      expect(masks.size).toBe(B * H);
      expect(Array.from(run(7))).toEqual(Array.from(a));
      expect(Array.from(run(8))).not.toEqual(Array.from(a));
    });
  });

  it('keeps no tensor beyond its output, with or without a gradient pass', () => {
    const c = CASES[0];
    const { q, k, v, w, pad } = inputsOf(c, 31);
    const before = tf.memory().numTensors;
    const out = fusedAttention(q, k, v, { keyPadding: pad, causal: true, dropout: 0.1, seed: 3 });
    expect(tf.memory().numTensors).toBe(before + 1);
    out.dispose();
    const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) =>
      tf.sum(tf.mul(fusedAttention(a as tf.Tensor4D, b as tf.Tensor4D, d as tf.Tensor4D, { keyPadding: pad, causal: true, dropout: 0.1, seed: 3 }), w)),
    )([q, k, v]);
    expect(tf.memory().numTensors).toBe(before + 3);
    tf.dispose([...grads, q, k, v, w, ...(pad ? [pad] : [])]);
  });

  it('checks its inputs: mismatched shapes are a caller bug (InternalError)', () => {
    tf.tidy(() => {
      const q = tf.zeros([1, 2, 3, 4]) as tf.Tensor4D;
      const k = tf.zeros([1, 2, 5, 4]) as tf.Tensor4D;
      expect(() => fusedAttention(q, k, tf.zeros([1, 2, 6, 4]) as tf.Tensor4D, { causal: false, dropout: 0, seed: 0 })).toThrow(/expected q \[B,H,T,r\]/);
      expect(() => fusedAttention(q, k, tf.zeros([1, 2, 5, 4]) as tf.Tensor4D, { keyPadding: tf.zeros([1, 4]) as tf.Tensor2D, causal: false, dropout: 0, seed: 0 })).toThrow(
        /keyPadding must be \[1, 5\]/,
      );
    });
  });
}

describe.skipIf(!native.blas)(`native kernel on wasm${native.blas ? '' : ` (skipped: ${native.reason})`}`, () => {
  it('is what the wasm engine runs', () => {
    expect(tf.getBackend()).toBe('wasm');
    expect(hasFusedAttention()).toBe(true);
  });
  kernelSuite();

  it('runs the (b, h) slices on several threads with the same result as on one', () => {
    const blas = native.blas!;
    const threads = blas.getNumThreads();
    // Large enough to be split over threads at all (smaller calls run serially).
    const c: Case = { name: '', B: 2, H: 4, T: 128, S: 136, r: 32, rv: 24, causal: true, pad: 'some' };
    expect(c.B * c.H * c.T * c.S * (c.r + c.rv)).toBeGreaterThan(MIN_PARALLEL_MADDS);
    tf.tidy(() => {
      const { q, k, v, w, pad } = inputsOf(c, 41);
      const run = (n: number) => {
        blas.setNumThreads(n);
        try {
          return outputAndGrads((a, b, d) => fusedAttention(a, b, d, { keyPadding: pad, causal: true, dropout: 0.2, seed: 99 }), q, k, v, w);
        } finally {
          blas.setNumThreads(threads);
        }
      };
      const one = run(1);
      const three = run(3);
      one.forEach((t, i) => expect(maxAbsDiff(t, three[i])).toBe(0));
    });
  });
});

describe('plain-JS kernel on cpu (no addon)', () => {
  let previous = '';
  beforeAll(async () => {
    previous = tf.getBackend();
    registerFusedAttention('cpu', undefined);
    await tf.setBackend('cpu');
  });
  afterAll(async () => {
    registerFusedAttention('cpu', native.blas);
    await tf.setBackend(previous);
  });
  it('is registered on cpu', () => {
    expect(hasFusedAttention()).toBe(true);
  });
  kernelSuite();
});

describe('on cpu, a padding mask cast from bool', () => {
  let previous = '';
  beforeAll(async () => {
    previous = tf.getBackend();
    await tf.setBackend('cpu');
  });
  afterAll(async () => {
    await tf.setBackend(previous);
  });
  it('reads as the same float mask (the cpu backend keeps the bool tensor\'s Uint8Array on cast), native and JS', () => {
    for (const blas of [native.blas, undefined]) {
      registerFusedAttention('cpu', blas);
      tf.tidy(() => {
        const [B, H, T, S, r] = [2, 2, 3, 5, 4];
        const q = tf.randomNormal([B, H, T, r], 0, 1, 'float32', 1) as tf.Tensor4D;
        const k = tf.randomNormal([B, H, S, r], 0, 1, 'float32', 2) as tf.Tensor4D;
        const v = tf.randomNormal([B, H, S, r], 0, 1, 'float32', 3) as tf.Tensor4D;
        const ids = tf.tensor2d([[5, 6, 7, 0, 0], [5, 6, 7, 8, 0]], [B, S], 'int32');
        const castMask = tf.cast(tf.equal(ids, 0), 'float32') as tf.Tensor2D;
        const floatMask = tf.tensor2d([[0, 0, 0, 1, 1], [0, 0, 0, 0, 1]], [B, S], 'float32');
        const attrs = { causal: false, dropout: 0, seed: 1 };
        const viaCast = fusedAttention(q, k, v, { ...attrs, keyPadding: castMask });
        const viaFloat = fusedAttention(q, k, v, { ...attrs, keyPadding: floatMask });
        expect(maxAbsDiff(viaCast, viaFloat)).toBe(0);
      });
    }
    registerFusedAttention('cpu', native.blas);
  });
});

describe.skipIf(!native.blas)('the attention layer, fused vs op path', () => {
  const H = 2;
  const d = 8;

  function layer(causal: boolean, seed: number): FactorizedMultiHeadAttention {
    setGlobalSeed(seed);
    const l = new FactorizedMultiHeadAttention({ numHeads: H, modelDim: d, rank: 3, causal, dropout: 0.2 });
    l.build([1, 1, d]); // draws its initial weights from the process-wide stream now, not inside a test's first call
    return l;
  }

  /** Output and the gradients of Σ w ⊙ out with respect to every weight of the layer. */
  function run(l: FactorizedMultiHeadAttention, x: tf.Tensor3D, memory: tf.Tensor3D | null, pad: tf.Tensor2D | undefined, w: tf.Tensor): tf.Tensor[] {
    const vars = l.trainableWeights.map((v) => (v as unknown as { val: tf.Variable }).val);
    const out = l.attend(x, memory, { keyPaddingMask: pad });
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(l.attend(x, memory, { keyPaddingMask: pad }), w)) as tf.Scalar, vars);
    value.dispose();
    expect(vars.length).toBe(8);
    return [out, ...vars.map((v) => grads[v.name])];
  }

  it('self-attention (causal, padded) and cross-attention (T ≠ S, padded): output and every factor weight gradient to 1e-5', () => {
    for (const cross of [false, true]) {
      const l = layer(!cross, 3);
      tf.tidy(() => {
        const x = tf.randomNormal([2, 5, d], 0, 1, 'float32', 1) as tf.Tensor3D;
        const memory = cross ? (tf.randomNormal([2, 7, d], 0, 1, 'float32', 2) as tf.Tensor3D) : null;
        const S = cross ? 7 : 5;
        const pad = tf.tensor2d([Array(S).fill(0), [...Array(S - 2).fill(0), 1, 1]], [2, S], 'bool') as tf.Tensor2D;
        const w = tf.randomNormal([2, 5, d], 0, 1, 'float32', 4);
        const fused = run(l, x, memory, pad, w);
        const ops = unfused(() => run(l, x, memory, pad, w));
        fused.forEach((t, i) => expectClose(t, ops[i], 1e-5, i === 0 ? 'output' : l.trainableWeights[i - 1].name));
      });
      l.dispose();
    }
  });

  it('in training with dropout, draws exactly one seed from the process-wide stream, as the op path does', () => {
    const l = layer(false, 5);
    const x = tf.randomNormal([1, 4, d], 0, 1, 'float32', 1) as tf.Tensor3D;
    const stateAfter = (fn: () => void) => {
      setGlobalSeed(77);
      fn();
      return globalRandom.getState().state;
    };
    const fusedState = stateAfter(() => tf.dispose(l.attend(x, null, { training: true })));
    const opState = stateAfter(() => unfused(() => tf.dispose(l.attend(x, null, { training: true }))));
    expect(fusedState).toBe(opState);
    expect(stateAfter(() => tf.dispose(l.attend(x, null, { training: false })))).toBe(stateAfter(() => undefined));
    x.dispose();
    l.dispose();
  });

  it('incremental decoding with a cache (one query row per step) gives the op path\'s outputs, leaking nothing', () => {
    const l = layer(true, 6);
    const steps = tf.randomNormal([2, 4, d], 0, 1, 'float32', 9) as tf.Tensor3D;
    const decode = () => {
      const cache = createAttentionCache(false);
      const outs: tf.Tensor[] = [];
      for (let t = 0; t < 4; t++) {
        outs.push(tf.tidy(() => l.attend(tf.slice(steps, [0, t, 0], [2, 1, d]) as tf.Tensor3D, null, { cache })));
      }
      disposeAttentionCache(cache);
      return outs;
    };
    decode().forEach((t) => t.dispose()); // warm the layer's cached weight layouts
    const before = tf.memory().numTensors;
    const fused = decode();
    expect(tf.memory().numTensors).toBe(before + 4);
    const ops = unfused(decode);
    fused.forEach((t, i) => expectClose(t, ops[i]));
    tf.dispose([...fused, ...ops, steps]);
    l.dispose();
  });

  it('a training step through the layer leaves the tensor count flat', () => {
    const l = layer(true, 8);
    const x = tf.randomNormal([2, 6, d], 0, 1, 'float32', 1) as tf.Tensor3D;
    const vars = l.trainableWeights.map((v) => (v as unknown as { val: tf.Variable }).val);
    const step = () => {
      const { value, grads } = tf.variableGrads(() => tf.sum(l.attend(x, null, { training: true })) as tf.Scalar, vars);
      tf.dispose([value, ...Object.values(grads)]);
    };
    step();
    const before = tf.memory().numTensors;
    step();
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
    l.dispose();
  });
});

describe.skipIf(!native.blas)('whole models: one training step fused vs op path', () => {
  /** Loss and gradients of one training step, dropout on (attention dropout off: its masks differ by design). */
  function step(vars: tf.Variable[], loss: () => tf.Scalar): tf.Tensor[] {
    setGlobalSeed(123);
    const { value, grads } = tf.variableGrads(loss, vars);
    return [value, ...vars.map((v) => grads[v.name])];
  }

  function compare(vars: tf.Variable[], loss: () => tf.Scalar): void {
    const fused = step(vars, loss);
    const ops = unfused(() => step(vars, loss));
    fused.forEach((t, i) => expectClose(t, ops[i], 1e-5, i === 0 ? 'loss' : vars[i - 1].name));
    tf.dispose([...fused, ...ops]);
  }

  it('seq2seq (encoder self, decoder causal self and cross attention): same loss and gradients to 1e-5', () => {
    const config: Seq2SeqOverrides = {
      srcVocabSize: 13,
      tgtVocabSize: 11,
      padId: 0,
      bosId: 1,
      eosId: 2,
      modelDim: 16,
      numHeads: 2,
      ffnDim: 24,
      encoderLayers: 2,
      decoderLayers: 2,
      dropout: 0.1,
      attentionDropout: 0,
      activationDropout: 0.1,
      maxPositions: 32,
      attentionRankScale: 0.5,
    };
    setGlobalSeed(1);
    const model = new TransformerSeq2Seq(config);
    const src = tf.tensor2d([[3, 4, 5, 6, 2], [7, 8, 2, 0, 0]], [2, 5], 'int32');
    const tgtIn = tf.tensor2d([[1, 3, 4, 5], [1, 6, 7, 0]], [2, 4], 'int32');
    const tgtOut = [3, 4, 5, 2, 6, 7, 2, 0];
    const targets = tf.tensor2d(tgtOut, [2, 4], 'int32');
    const vars = model.trainableWeights.map((w) => (w as unknown as { val: tf.Variable }).val);
    compare(vars, () => labelSmoothedCrossEntropy(model.forward(src, tgtIn, true), targets, { smoothing: 0.1, padId: 0, targetIds: tgtOut }).loss);
    tf.dispose([src, tgtIn, targets]);
    model.dispose();
  });

  it('BERT masked LM: same loss and gradients to 1e-5', () => {
    setGlobalSeed(2);
    const bert = buildBertForMaskedLM(
      resolveBertConfig({ vocabSize: 40, padId: 0, modelDim: 16, numHeads: 2, ffnDim: 32, numLayers: 2, maxPositions: 12, dropout: 0.1, attentionDropout: 0 }),
    );
    const tokens = tf.tensor2d([[2, 5, 6, 7, 8, 3], [2, 9, 10, 3, 0, 0]], [2, 6], 'int32');
    const positions = tf.tensor2d([[1, 3], [2, 0]], [2, 2], 'int32');
    const labelIds = [6, 8, 10, 0];
    const labels = tf.tensor2d(labelIds, [2, 2], 'int32');
    const vars = bert.model.trainableWeights.map((w) => (w as unknown as { val: tf.Variable }).val);
    compare(vars, () => {
      const logits = bert.model.apply([tokens, positions], { training: true }) as tf.Tensor;
      return labelSmoothedCrossEntropy(logits, labels, { smoothing: 0, padId: 0, targetIds: labelIds }).loss;
    });
    tf.dispose([tokens, positions, labels]);
    disposeBertModel(bert.model);
  });
});
