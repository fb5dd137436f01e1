import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { FactorizedMultiHeadAttention } from '../src/attention/index.ts';
import { FactorizedDense, FactorizedEmbedding } from '../src/factorized/index.ts';
import { LayerNorm, TokenEmbedding, TransformerDecoderBlock, TransformerEncoderBlock } from '../src/models/index.ts';
import { GatherPositions, OutputBias } from '../src/models/mlm-head.ts';
import { UserError } from '../src/errors.ts';
import { setGlobalSeed } from '../src/random.ts';

const V = 11;
const d = 8;

function ids(rows: number[][]): tf.Tensor2D {
  return tf.tensor2d(rows, [rows.length, rows[0].length], 'int32');
}

/** ids with `extra` padding (id 0) appended to every row. */
function padded(rows: number[][], extra: number): tf.Tensor2D {
  return ids(rows.map((r) => [...r, ...new Array<number>(extra).fill(0)]));
}

/** max |a[:, :T] − b[:, :T]| over the first T positions. */
function diffOnFirst(a: tf.Tensor, b: tf.Tensor, T: number): number {
  return tf.tidy(() => {
    const sa = tf.slice(a, [0, 0], [a.shape[0], T]);
    const sb = tf.slice(b, [0, 0], [b.shape[0], T]);
    return tf.max(tf.abs(tf.sub(sa, sb))).dataSync()[0];
  });
}

function maskedEmbedding(name?: string): tf.layers.Layer {
  return tf.layers.embedding({ inputDim: V, outputDim: d, maskZero: true, name });
}

// Rows of equal length whose last real token is nonzero; row 1 already has one padded position.
const ROWS = [
  [3, 5, 7, 2, 9],
  [4, 1, 6, 8, 0],
];

describe('Keras masks: FactorizedMultiHeadAttention in a functional model', () => {
  it('gives the same outputs on real tokens with and without trailing padding (embedding maskZero → attention)', () => {
    setGlobalSeed(1);
    const input = tf.input({ shape: [null], dtype: 'int32' });
    const x = maskedEmbedding().apply(input) as tf.SymbolicTensor;
    const out = new FactorizedMultiHeadAttention({ numHeads: 2 }).apply(x) as tf.SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: out });
    const T = ROWS[0].length;
    const base = model.predict(ids(ROWS)) as tf.Tensor;
    for (const extra of [1, 4]) {
      const longer = model.predict(padded(ROWS, extra)) as tf.Tensor;
      expect(diffOnFirst(base, longer, T)).toBeLessThan(1e-5);
    }
    // Row 1's own padding is masked too: it equals row 1 without that position.
    const short = model.predict(ids([ROWS[1].slice(0, 4)])) as tf.Tensor;
    expect(diffOnFirst(tf.slice(base, [1, 0], [1, 4]), short, 4)).toBeLessThan(1e-5);
    // The same layer without the mask (plain embedding) does change: the test measures something.
    const plain = tf.layers.embedding({ inputDim: V, outputDim: d, weights: model.layers[1].getWeights() });
    const unmasked = (t: tf.Tensor) => (model.layers[2] as FactorizedMultiHeadAttention).attend(plain.apply(t) as tf.Tensor3D, null);
    expect(diffOnFirst(unmasked(ids(ROWS)), unmasked(padded(ROWS, 4)), T)).toBeGreaterThan(1e-3);
  });

  it('propagates the query mask (computeMask) through attention, LayerNorm, FactorizedDense and a second attention', () => {
    setGlobalSeed(2);
    const input = tf.input({ shape: [null], dtype: 'int32' });
    let h = maskedEmbedding().apply(input) as tf.SymbolicTensor;
    h = new FactorizedMultiHeadAttention({ numHeads: 2 }).apply(h) as tf.SymbolicTensor;
    h = new LayerNorm().apply(h) as tf.SymbolicTensor;
    h = new FactorizedDense({ units: d, rank: 3, activation: 'relu' }).apply(h) as tf.SymbolicTensor;
    h = new FactorizedMultiHeadAttention({ numHeads: 4, rank: 2 }).apply([h]) as tf.SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: h });
    const base = model.predict(ids(ROWS)) as tf.Tensor;
    expect(diffOnFirst(base, model.predict(padded(ROWS, 3)) as tf.Tensor, ROWS[0].length)).toBeLessThan(1e-5);
    // The model's output mask is the input's (ids ≠ 0): masked query positions stay masked.
    const x = padded(ROWS, 2);
    const mask = model.computeMask(x) as tf.Tensor | tf.Tensor[];
    const outMask = Array.isArray(mask) ? mask[0] : mask;
    expect(Array.from(outMask.dataSync())).toEqual(Array.from(tf.notEqual(x, 0).dataSync()));
  });

  it('hands its output mask on to a tfjs mask consumer (an RNN skips the padded steps)', () => {
    setGlobalSeed(3);
    const input = tf.input({ shape: [null], dtype: 'int32' });
    let h = maskedEmbedding().apply(input) as tf.SymbolicTensor;
    h = new FactorizedMultiHeadAttention({ numHeads: 2 }).apply(h) as tf.SymbolicTensor;
    h = tf.layers.simpleRNN({ units: 4 }).apply(h) as tf.SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: h });
    const base = model.predict(ids(ROWS)) as tf.Tensor;
    const longer = model.predict(padded(ROWS, 3)) as tf.Tensor;
    expect(tf.max(tf.abs(tf.sub(base, longer))).dataSync()[0]).toBeLessThan(1e-5);
  });

  it('masks the memory in cross-attention ([query, memory]) with the memory input\'s mask', () => {
    setGlobalSeed(4);
    const target = tf.input({ shape: [null], dtype: 'int32' });
    const source = tf.input({ shape: [null], dtype: 'int32' });
    const q = tf.layers.embedding({ inputDim: V, outputDim: d }).apply(target) as tf.SymbolicTensor;
    const m = maskedEmbedding().apply(source) as tf.SymbolicTensor;
    const out = new FactorizedMultiHeadAttention({ numHeads: 2 }).apply([q, m]) as tf.SymbolicTensor;
    const model = tf.model({ inputs: [target, source], outputs: out });
    const tgt = ids([[1, 2, 3], [4, 5, 6]]);
    const base = model.predict([tgt, ids(ROWS)]) as tf.Tensor;
    const longer = model.predict([tgt, padded(ROWS, 4)]) as tf.Tensor;
    expect(tf.max(tf.abs(tf.sub(base, longer))).dataSync()[0]).toBeLessThan(1e-5);
  });

  it('keeps masking after save / tf.loadLayersModel and trains with fit (no stale masks, no errors)', async () => {
    setGlobalSeed(8);
    const input = tf.input({ shape: [null], dtype: 'int32' });
    let h = maskedEmbedding().apply(input) as tf.SymbolicTensor;
    h = new FactorizedMultiHeadAttention({ numHeads: 2, name: 'attn' }).apply(h) as tf.SymbolicTensor;
    h = new LayerNorm().apply(h) as tf.SymbolicTensor;
    h = tf.layers.globalAveragePooling1d().apply(h) as tf.SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: tf.layers.dense({ units: 2 }).apply(h) as tf.SymbolicTensor });
    let saved: tf.io.ModelArtifacts | undefined;
    await model.save(tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }));
    const reloaded = await tf.loadLayersModel(tf.io.fromMemory(saved!));
    const attnOut = (m: tf.LayersModel) => tf.model({ inputs: m.inputs, outputs: m.getLayer('attn').output as tf.SymbolicTensor });
    const original = attnOut(model);
    const restored = attnOut(reloaded);
    const base = restored.predict(ids(ROWS)) as tf.Tensor;
    expect(diffOnFirst(base, original.predict(ids(ROWS)) as tf.Tensor, ROWS[0].length)).toBe(0);
    expect(diffOnFirst(base, restored.predict(padded(ROWS, 3)) as tf.Tensor, ROWS[0].length)).toBeLessThan(1e-5);
    reloaded.compile({ optimizer: 'adam', loss: 'sparseCategoricalCrossentropy' });
    const history = await reloaded.fit(padded(ROWS, 2), tf.tensor1d([0, 1]), { epochs: 3, verbose: 0 });
    expect(history.history.loss.every((l) => Number.isFinite(l as number))).toBe(true);
  });

  it('computeMask returns the query mask for [query] and [query, memory]', () => {
    const layer = new FactorizedMultiHeadAttention({ numHeads: 2 });
    const q = tf.zeros([2, 3, d]);
    const mem = tf.zeros([2, 5, d]);
    const qMask = tf.tensor2d([[1, 1, 0], [1, 0, 0]], [2, 3], 'bool');
    const mMask = tf.ones([2, 5], 'bool');
    expect(layer.computeMask(q, qMask)).toBe(qMask);
    expect(layer.computeMask([q, mem], [qMask, mMask])).toBe(qMask);
    expect(layer.computeMask([q, mem], [null, mMask] as unknown as tf.Tensor[])).toBeNull();
    // A mask that fits no input is a clear error, not a silent misuse.
    expect(() => layer.computeMask(q, tf.ones([2, 4], 'bool'))).toThrow(UserError);
    expect(() => layer.apply(q, { mask: tf.ones([2, 4], 'bool') })).toThrow(/Keras mask of input 0 has shape \[2,4\]; expected \[2,3\]/);
  });

  it('combines a Keras mask with the causal flag', () => {
    setGlobalSeed(5);
    const layer = new FactorizedMultiHeadAttention({ numHeads: 2, causal: true });
    const x = tf.randomNormal([1, 4, d], 0, 1, 'float32', 7) as tf.Tensor3D;
    const mask = tf.tensor2d([[0, 1, 1, 1]], [1, 4], 'bool'); // left padding: position 0
    const viaKeras = layer.apply(x, { mask }) as tf.Tensor;
    const viaAttend = layer.attend(x, null, { keyPaddingMask: tf.tensor2d([[1, 0, 0, 0]]), causal: true });
    expect(tf.max(tf.abs(tf.sub(viaKeras, viaAttend))).dataSync()[0]).toBeLessThan(1e-6);
  });
});

describe('Keras masks: the other layers', () => {
  it('pass a mask through where they work per position', () => {
    const x = tf.zeros([2, 3, d]);
    const mask = tf.tensor2d([[1, 1, 0], [1, 0, 0]], [2, 3], 'bool');
    const perPosition: tf.layers.Layer[] = [
      new FactorizedDense({ units: 4 }),
      new LayerNorm(),
      new TokenEmbedding({ vocabSize: V, modelDim: d, padId: 0 }),
      new FactorizedEmbedding({ inputDim: V, outputDim: d }),
      new OutputBias({}),
    ];
    for (const layer of perPosition) {
      expect(layer.supportsMasking, layer.name).toBe(true);
      expect(layer.computeMask(x, mask), layer.name).toBe(mask);
      expect(layer.computeMask([x], [mask]), layer.name).toBe(mask);
    }
    // GatherPositions takes the mask and drops it: its rows are the listed positions, not t.
    const gather = new GatherPositions({});
    expect(gather.supportsMasking).toBe(true);
    expect(gather.computeMask([x, tf.zeros([2, 1], 'int32')], [mask, null] as unknown as tf.Tensor[])).toBeNull();
  });

  it('TransformerEncoderBlock honours the Keras mask of its input (same outputs with trailing padding)', () => {
    setGlobalSeed(6);
    const input = tf.input({ shape: [null], dtype: 'int32' });
    let h = maskedEmbedding().apply(input) as tf.SymbolicTensor;
    h = new TransformerEncoderBlock({ modelDim: d, numHeads: 2, ffnDim: 16, padId: 0 }).apply(h) as tf.SymbolicTensor;
    h = new TransformerEncoderBlock({ modelDim: d, numHeads: 2, ffnDim: 16, normFirst: true }).apply(h) as tf.SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: h });
    const base = model.predict(ids(ROWS)) as tf.Tensor;
    expect(diffOnFirst(base, model.predict(padded(ROWS, 3)) as tf.Tensor, ROWS[0].length)).toBeLessThan(1e-5);
    expect(Array.from((model.computeMask(ids(ROWS)) as tf.Tensor[])[0].dataSync())).toEqual(Array.from(tf.notEqual(ids(ROWS), 0).dataSync()));
  });

  it('TransformerDecoderBlock honours the Keras masks of the target and the memory', () => {
    setGlobalSeed(7);
    const target = tf.input({ shape: [null], dtype: 'int32' });
    const source = tf.input({ shape: [null], dtype: 'int32' });
    const y = maskedEmbedding('target_embedding').apply(target) as tf.SymbolicTensor;
    const memory = maskedEmbedding('source_embedding').apply(source) as tf.SymbolicTensor;
    const out = new TransformerDecoderBlock({ modelDim: d, numHeads: 2, ffnDim: 16 }).apply([y, memory]) as tf.SymbolicTensor;
    const model = tf.model({ inputs: [target, source], outputs: out });
    // Left-padded target (position 0 is padding): the causal self-attention must skip it too.
    const tgt = [[0, 2, 3], [1, 4, 5]];
    const base = model.predict([ids(tgt), ids(ROWS)]) as tf.Tensor;
    const longerSource = model.predict([ids(tgt), padded(ROWS, 3)]) as tf.Tensor;
    expect(tf.max(tf.abs(tf.sub(base, longerSource))).dataSync()[0]).toBeLessThan(1e-5);
    const longerTarget = model.predict([padded(tgt, 2), ids(ROWS)]) as tf.Tensor;
    // (Row 0's position 0 is itself padding: its output is meaningless, so compare positions 1..2.)
    const real = (t: tf.Tensor) => tf.slice(t, [0, 1, 0], [2, 2, d]);
    expect(tf.max(tf.abs(tf.sub(real(base), real(longerTarget)))).dataSync()[0]).toBeLessThan(1e-5);
    // Row 0's target padding at position 0 is masked as a key: row 0 at positions 1..2 equals
    // the same row without it.
    const unpadded = model.predict([ids([[2, 3]]), ids([ROWS[0]])]) as tf.Tensor;
    expect(tf.max(tf.abs(tf.sub(tf.slice(base, [0, 1, 0], [1, 2, d]), unpadded))).dataSync()[0]).toBeLessThan(1e-5);
  });
});
