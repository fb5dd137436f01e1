/**
 * TransformerSeq2Seq: shapes and masks, save → tf.loadLayersModel round trip, incremental decoding
 * equal to the teacher-forced forward pass, factor pairs, config errors, and decoding with the
 * real model (beam 1 = greedy, no leaks).
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { TransformerEncoderBlock, TransformerSeq2Seq, activate, resolveSeq2SeqConfig, seq2seqConfigFromPreset, transformer_small, transformer_base } from '../src/models/index.ts';
import type { Seq2SeqOverrides } from '../src/models/index.ts';
import { beamSearch, greedyDecode } from '../src/decode/index.ts';
import { UserError } from '../src/errors.ts';
import { countSeq2SeqParameters, fullRankArchitecture } from '../src/models/parameters.ts';
import { setGlobalSeed } from '../src/random.ts';
import { fileIOHandler } from '../src/train/checkpoint.ts';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const TINY: Seq2SeqOverrides = {
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
  attentionDropout: 0.1,
  activationDropout: 0.1,
  maxPositions: 32,
};

/** Every structural variant: norms, positions, sharing, tying, factorized layers at reduced rank. */
const VARIANTS: Record<string, Seq2SeqOverrides> = {
  'post-norm, sinusoidal, tied, dense': TINY,
  'pre-norm, learned, gelu, untied factorized output, factorized FFN + embeddings': {
    ...TINY,
    normFirst: true,
    positions: 'learned',
    activation: 'gelu',
    tieOutput: false,
    attentionRankScale: 0.5,
    linearRankScale: 0.5,
    embeddingRankScale: 0.5,
    spectralInit: { qk: true, ov: false, linear: true, embedding: false },
    attentionBias: false,
  },
  'shared joint-vocabulary embeddings, factorized, tied': {
    ...TINY,
    tgtVocabSize: 13,
    shareEmbeddings: true,
    embeddingRankScale: 0.25,
    scaleEmbedding: false,
  },
};

function ids(rows: number[][], pad = 0): tf.Tensor2D {
  const T = Math.max(...rows.map((r) => r.length));
  return tf.tensor2d(rows.map((r) => [...r, ...Array(T - r.length).fill(pad)]), [rows.length, T], 'int32');
}

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

async function roundTrip(model: tf.LayersModel): Promise<tf.LayersModel> {
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(tf.io.withSaveHandler(async (artifacts) => {
    saved = artifacts;
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  }));
  // Through JSON text, as model.json on disk.
  const topology = JSON.parse(JSON.stringify(saved!.modelTopology));
  return tf.loadLayersModel(tf.io.fromMemory({ ...saved!, modelTopology: topology }));
}

const SOURCES = [[3, 4, 5, 6, 2], [7, 8, 2], [9, 2]];
const TARGETS_IN = [[1, 3, 4, 5], [1, 6, 7], [1, 8, 9, 10]];

describe('TransformerSeq2Seq forward', () => {
  it('maps [B, S] and [B, T] ids to [B, T, V] logits', () => {
    setGlobalSeed(1);
    const model = new TransformerSeq2Seq(TINY);
    const src = ids(SOURCES);
    const tgt = ids(TARGETS_IN);
    const logits = model.forward(src, tgt, false);
    expect(logits.shape).toEqual([3, 4, 11]);
    expect(logits.dtype).toBe('float32');
    expect(Array.from(logits.dataSync()).every(Number.isFinite)).toBe(true);
    tf.dispose([src, tgt, logits]);
    model.dispose();
  });

  it('source padding does not change the result, and decoder positions do not see the future', () => {
    setGlobalSeed(2);
    const model = new TransformerSeq2Seq(VARIANTS['pre-norm, learned, gelu, untied factorized output, factorized FFN + embeddings']);
    tf.tidy(() => {
      const alone = model.forward(ids([[7, 8, 2]]), ids([[1, 6, 7]]), false);
      // Same sentence padded to a longer batch: its rows must be unchanged.
      const batched = model.forward(ids([[7, 8, 2, 0, 0, 0], [3, 4, 5, 6, 9, 2]]), ids([[1, 6, 7], [1, 3, 4]]), false);
      expect(maxAbsDiff(alone, batched.slice([0, 0, 0], [1, 3, 11]))).toBeLessThan(1e-5);
      // Changing the last target token leaves earlier positions' logits alone (causal).
      const changed = model.forward(ids([[7, 8, 2]]), ids([[1, 6, 9]]), false);
      expect(maxAbsDiff(alone.slice([0, 0, 0], [1, 2, 11]), changed.slice([0, 0, 0], [1, 2, 11]))).toBeLessThan(1e-5);
      expect(maxAbsDiff(alone.slice([0, 2, 0], [1, 1, 11]), changed.slice([0, 2, 0], [1, 1, 11]))).toBeGreaterThan(1e-4);
      // But a real source token does change them.
      const otherSource = model.forward(ids([[7, 9, 2]]), ids([[1, 6, 7]]), false);
      expect(maxAbsDiff(alone, otherSource)).toBeGreaterThan(1e-4);
    });
    model.dispose();
  });

  it('dropout acts only in training and is reproducible from the seed', () => {
    setGlobalSeed(3);
    const model = new TransformerSeq2Seq(TINY);
    tf.tidy(() => {
      const src = ids(SOURCES);
      const tgt = ids(TARGETS_IN);
      const a = model.forward(src, tgt, false);
      const b = model.forward(src, tgt, false);
      expect(maxAbsDiff(a, b)).toBe(0);
      setGlobalSeed(42);
      const t1 = model.forward(src, tgt, true);
      setGlobalSeed(42);
      const t2 = model.forward(src, tgt, true);
      expect(maxAbsDiff(t1, t2)).toBe(0);
      expect(maxAbsDiff(a, t1)).toBeGreaterThan(1e-3);
    });
    model.dispose();
  });

  it('gradients reach every trainable weight', () => {
    setGlobalSeed(4);
    const model = new TransformerSeq2Seq(VARIANTS['pre-norm, learned, gelu, untied factorized output, factorized FFN + embeddings']);
    const src = ids(SOURCES);
    const tgt = ids(TARGETS_IN);
    const vars = model.trainableWeights.map((w) => (w as unknown as { val: tf.Variable }).val);
    const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(model.forward(src, tgt, true))) as tf.Scalar, vars);
    expect(Object.keys(grads)).toHaveLength(vars.length);
    for (const v of vars) expect(tf.tidy(() => tf.sum(tf.abs(grads[v.name])).dataSync()[0])).toBeGreaterThan(0);
    tf.dispose([value, src, tgt, ...Object.values(grads)]);
    model.dispose();
  });
});

describe('building blocks', () => {
  it('the encoder block masks padding keys given by the ids input', () => {
    setGlobalSeed(15);
    const block = new TransformerEncoderBlock({ modelDim: 8, numHeads: 2, ffnDim: 16, padId: 0, normFirst: true, activation: 'gelu', linearRankScale: 0.5 });
    tf.tidy(() => {
      const x = tf.randomNormal([1, 4, 8], 0, 1, 'float32', 3);
      const tokenIds = tf.tensor2d([[5, 6, 0, 0]], [1, 4], 'int32');
      // Different vectors at the two padded positions.
      const noise = tf.concat([tf.zeros([1, 2, 8]), tf.randomNormal([1, 2, 8], 0, 5, 'float32', 4)], 1);
      const a = block.apply([x, tokenIds]) as tf.Tensor;
      const b = block.apply([tf.add(x, noise), tokenIds]) as tf.Tensor;
      expect(maxAbsDiff(a.slice([0, 0, 0], [1, 2, 8]), b.slice([0, 0, 0], [1, 2, 8]))).toBeLessThan(1e-5);
      // Without ids nothing is masked, so the padded positions matter.
      const c = block.apply([x]) as tf.Tensor;
      const d = block.apply([tf.add(x, noise)]) as tf.Tensor;
      expect(maxAbsDiff(c.slice([0, 0, 0], [1, 2, 8]), d.slice([0, 0, 0], [1, 2, 8]))).toBeGreaterThan(1e-3);
    });
    expect(block.factorPairs('bert/0').map((p) => p.name)).toEqual(['bert/0/self_attn/qk', 'bert/0/self_attn/ov', 'bert/0/ffn_in', 'bert/0/ffn_out']);
    block.dispose();
  });

  it('gelu is the exact erf form and relu is relu', () => {
    tf.tidy(() => {
      const x = tf.tensor1d([-2, -1, 0, 1, 2]);
      const gelu = Array.from(activate(x, 'gelu').dataSync());
      [-0.0455003, -0.1586553, 0, 0.8413447, 1.9544997].forEach((v, i) => expect(gelu[i]).toBeCloseTo(v, 5));
      expect(Array.from(activate(x, 'relu').dataSync())).toEqual([0, 0, 0, 1, 2]);
    });
  });
});

describe('TransformerSeq2Seq save and load', () => {
  for (const [label, config] of Object.entries(VARIANTS)) {
    it(`restores identical outputs with tf.loadLayersModel (${label})`, async () => {
      setGlobalSeed(5);
      const model = new TransformerSeq2Seq(config);
      const loaded = await roundTrip(model.model);
      const restored = TransformerSeq2Seq.fromModel(loaded, config);
      expect(loaded.weights.map((w) => w.originalName)).toEqual(model.model.weights.map((w) => w.originalName));
      expect(new Set(loaded.weights.map((w) => w.originalName)).size).toBe(loaded.weights.length);
      expect(restored.numParameters()).toBe(model.numParameters());
      tf.tidy(() => {
        const src = ids(SOURCES);
        const tgt = ids(TARGETS_IN);
        expect(maxAbsDiff(model.forward(src, tgt, false), restored.forward(src, tgt, false))).toBe(0);
        // Every weight came back (not re-initialized): compare values one by one.
        const original = model.model.getWeights();
        restored.model.getWeights().forEach((w, i) => expect(maxAbsDiff(w, original[i])).toBe(0));
      });
      expect(restored.factorPairs().map((p) => p.name)).toEqual(model.factorPairs().map((p) => p.name));
      model.dispose();
      restored.dispose();
    });
  }

  it('round-trips through model.json + weights.bin on disk', async () => {
    setGlobalSeed(14);
    const config = VARIANTS['pre-norm, learned, gelu, untied factorized output, factorized FFN + embeddings'];
    const model = new TransformerSeq2Seq(config);
    const dir = join(mkdtempSync(join(tmpdir(), 'ft-models-')), 'model');
    try {
      await model.model.save(fileIOHandler(dir));
      const topology = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
      const text = JSON.stringify(topology);
      for (const className of ['TokenEmbedding', 'TransformerEncoderBlock', 'TransformerDecoderBlock', 'TransformerLayerNorm', 'FactorizedDense']) {
        expect(text).toContain(`"class_name":"${className}"`);
      }
      const restored = TransformerSeq2Seq.fromModel(await tf.loadLayersModel(fileIOHandler(dir)), config);
      tf.tidy(() => {
        const src = ids(SOURCES);
        const tgt = ids(TARGETS_IN);
        expect(maxAbsDiff(model.forward(src, tgt, false), restored.forward(src, tgt, false))).toBe(0);
      });
      restored.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
      model.dispose();
    }
  });

  it('creating and disposing a model leaves no tensors behind', () => {
    const before = tf.memory().numTensors;
    for (const config of Object.values(VARIANTS)) new TransformerSeq2Seq(config).dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses a checkpoint that does not match the config', async () => {
    setGlobalSeed(6);
    const model = new TransformerSeq2Seq(TINY);
    const loaded = await roundTrip(model.model);
    expect(() => TransformerSeq2Seq.fromModel(loaded, { ...TINY, tgtVocabSize: 12 })).toThrow(/target vocabulary size is 11 in the checkpoint but 12/);
    expect(() => TransformerSeq2Seq.fromModel(loaded, { ...TINY, encoderLayers: 3 })).toThrow(/layer 'encoder_2' is missing/);
    expect(() => TransformerSeq2Seq.fromModel(loaded, { ...TINY, tieOutput: false })).toThrow(UserError);
    model.dispose();
    loaded.dispose();
  });
});

describe('incremental decoding', () => {
  for (const [label, config] of Object.entries(VARIANTS)) {
    it(`step-by-step logits with the cache equal the teacher-forced forward pass (${label})`, () => {
      setGlobalSeed(7);
      const model = new TransformerSeq2Seq(config);
      const V = model.config.tgtVocabSize;
      const targets = [[1, 3, 4, 5, 6], [1, 6, 7, 8, 4], [1, 8, 9, 10, 3]];
      const full = tf.tidy(() => tf.logSoftmax(model.forward(ids(SOURCES), ids(targets), false)));
      const state = model.startDecoding(SOURCES, 1);
      for (let t = 0; t < targets[0].length; t++) {
        const step = model.decodeStep(state, Int32Array.from(targets, (row) => row[t]));
        expect(step.shape).toEqual([3, V]);
        const expected = full.slice([0, t, 0], [3, 1, V]).reshape([3, V]);
        expect(maxAbsDiff(step, expected)).toBeLessThan(2e-5);
        tf.dispose([step, expected]);
      }
      model.disposeDecoderState(state);
      full.dispose();
      model.dispose();
    });
  }

  it('reordering the state follows beam parents (row copies give the copied row\'s logits)', () => {
    setGlobalSeed(8);
    const model = new TransformerSeq2Seq(TINY);
    const state = model.startDecoding(SOURCES, 2); // rows: s0 s0 s1 s1 s2 s2
    const first = model.decodeStep(state, Int32Array.from([1, 1, 1, 1, 1, 1]));
    first.dispose();
    const rows = Int32Array.from([1, 1, 3, 2, 4, 5]);
    model.reorderDecoderState(state, rows, true);
    const tokens = Int32Array.from([3, 4, 5, 5, 6, 7]);
    const reordered = model.decodeStep(state, tokens);
    // Reference: the same two-step sequences teacher-forced.
    const expected = tf.tidy(() => {
      const src = ids([SOURCES[0], SOURCES[0], SOURCES[1], SOURCES[1], SOURCES[2], SOURCES[2]]);
      const tgt = ids(Array.from(tokens, (t) => [1, t]));
      return tf.logSoftmax(model.forward(src, tgt, false)).slice([0, 1, 0], [6, 1, 11]).reshape([6, 11]);
    });
    expect(maxAbsDiff(reordered, expected)).toBeLessThan(2e-5);
    // Dropping a sentence (sameSource false) keeps the survivors right.
    model.reorderDecoderState(state, Int32Array.from([4, 5]), false);
    const third = model.decodeStep(state, Int32Array.from([8, 9]));
    const expectedThird = tf.tidy(() => {
      const out = tf.logSoftmax(model.forward(ids([SOURCES[2], SOURCES[2]]), ids([[1, 6, 8], [1, 7, 9]]), false));
      return out.slice([0, 2, 0], [2, 1, 11]).reshape([2, 11]);
    });
    expect(maxAbsDiff(third, expectedThird)).toBeLessThan(2e-5);
    tf.dispose([reordered, expected, third, expectedThird]);
    model.disposeDecoderState(state);
    model.dispose();
  });
});

describe('decoding with the model', () => {
  it('beam size 1 equals greedy; n-best is sorted; memory stays flat', async () => {
    setGlobalSeed(9);
    const model = new TransformerSeq2Seq({ ...TINY, dropout: 0, attentionDropout: 0, activationDropout: 0 });
    const opts = { maxLenA: 1, maxLenB: 3 };
    const greedy = await greedyDecode(model, SOURCES, opts);
    const beam1 = await beamSearch(model, SOURCES, { ...opts, beamSize: 1 });
    beam1.forEach(([h], i) => {
      expect(h.tokens).toEqual(greedy[i].tokens);
      expect(h.score).toBeCloseTo(greedy[i].score, 4);
    });
    const nbest = await beamSearch(model, SOURCES, { ...opts, beamSize: 4, nBest: 3 });
    // Each hypothesis' scores are what the teacher-forced model gives its tokens + EOS
    // (all hypotheses rescored in one padded batch).
    const flat = nbest.flatMap((hyps, i) => hyps.map((h) => ({ h, source: SOURCES[i] })));
    const rescored = tf.tidy(() => {
      const logProbs = tf.logSoftmax(model.forward(ids(flat.map((f) => f.source)), ids(flat.map((f) => [model.bosId, ...f.h.tokens])), false));
      return logProbs.arraySync() as number[][][];
    });
    flat.forEach(({ h }, n) => {
      const sequence = [...h.tokens, model.eosId];
      const expected = sequence.map((token, t) => rescored[n][t][token]);
      h.positionalScores.forEach((s, t) => expect(s).toBeCloseTo(expected[t], 4));
      expect(h.score).toBeCloseTo(expected.reduce((a, b) => a + b, 0) / sequence.length, 4);
    });
    nbest.forEach((hyps) => {
      expect(hyps).toHaveLength(3);
      for (let k = 1; k < hyps.length; k++) expect(hyps[k - 1].score).toBeGreaterThanOrEqual(hyps[k].score);
    });
    const before = tf.memory().numTensors;
    for (let i = 0; i < 2; i++) {
      await beamSearch(model, SOURCES, { ...opts, beamSize: 3, nBest: 2 });
      await greedyDecode(model, SOURCES, opts);
    }
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });

  it('rejects empty or out-of-vocabulary sources', async () => {
    setGlobalSeed(10);
    const model = new TransformerSeq2Seq(TINY);
    await expect(beamSearch(model, [[3, 2], []])).rejects.toThrow(/source sentence 1 is empty/);
    await expect(greedyDecode(model, [[3, 99]])).rejects.toThrow(/token id 99 outside the vocabulary/);
    model.dispose();
  });
});

describe('factor pairs and configuration', () => {
  it('labels every factor pair by kind with a positional name', () => {
    setGlobalSeed(11);
    const model = new TransformerSeq2Seq(VARIANTS['pre-norm, learned, gelu, untied factorized output, factorized FFN + embeddings']);
    const pairs = model.factorPairs();
    const names = pairs.map((p) => `${p.name}:${p.kind}`);
    expect(names).toContain('embedding/source:embedding');
    expect(names).toContain('embedding/target:embedding');
    expect(names).toContain('encoder/0/self_attn/qk:qk');
    expect(names).toContain('encoder/1/self_attn/ov:ov');
    expect(names).toContain('decoder/1/cross_attn/qk:qk');
    expect(names).toContain('decoder/0/ffn_in:linear');
    expect(names).toContain('output_projection:linear');
    // 2 embeddings + 2 enc × (2 attn + 2 ffn) + 2 dec × (4 attn + 2 ffn) + output
    expect(pairs).toHaveLength(2 + 8 + 12 + 1);
    // Ranks follow the scales: attention r = floor(0.5 · 16 / 2) = 4; FFN floor(0.5 · 16) = 8; embedding floor(0.5 · 11) = 5.
    const byName = Object.fromEntries(pairs.map((p) => [p.name, p]));
    expect(byName['encoder/0/self_attn/qk'].u.shape).toEqual([2, 16, 4]);
    expect(byName['decoder/0/ffn_in'].u.shape).toEqual([16, 8]);
    expect(byName['embedding/target'].u.shape).toEqual([11, 5]);
    // Every factor is a model weight (so the trainer's FD sees what the optimizer trains).
    const weightNames = new Set(model.trainableWeights.map((w) => w.name));
    for (const p of pairs) {
      expect(weightNames.has(p.u.name)).toBe(true);
      expect(weightNames.has(p.v.name)).toBe(true);
    }
    model.dispose();
  });

  it('spectral init balances exactly the pair types asked for', () => {
    setGlobalSeed(12);
    const model = new TransformerSeq2Seq({ ...TINY, attentionRankScale: 0.5, spectralInit: { qk: true, ov: false } });
    const gramOffDiagonal = (x: tf.Tensor) => tf.tidy(() => {
      const g = tf.matMul(x as tf.Tensor3D, x as tf.Tensor3D, true, false); // [H, r, r]
      const eye = tf.eye(g.shape[1] as number).expandDims(0);
      return tf.max(tf.abs(tf.mul(g, tf.sub(1, eye)))).dataSync()[0];
    });
    const pairs = Object.fromEntries(model.factorPairs().map((p) => [p.name, p]));
    expect(gramOffDiagonal(pairs['encoder/0/self_attn/qk'].u.read())).toBeLessThan(1e-4);
    expect(gramOffDiagonal(pairs['encoder/0/self_attn/ov'].u.read())).toBeGreaterThan(1e-3);
    model.dispose();
  });

  it('counts parameters', () => {
    setGlobalSeed(13);
    const model = new TransformerSeq2Seq(VARIANTS['shared joint-vocabulary embeddings, factorized, tied']);
    const expected = model.model.weights.reduce((n, w) => n + w.shape.reduce((a: number, b) => a * (b ?? 1), 1), 0);
    expect(model.numParameters()).toBe(expected);
    // Shared embedding: one TokenEmbedding layer, factors [13, 4] and [16, 4].
    expect(model.sourceEmbedding).toBe(model.targetEmbedding);
    expect(model.factorPairs().filter((p) => p.kind === 'embedding').map((p) => p.name)).toEqual(['embedding/shared']);
    model.dispose();
  });

  it('presets are the documented architectures and validate', () => {
    expect(transformer_small).toMatchObject({ encoderLayers: 2, decoderLayers: 2, modelDim: 256, ffnDim: 1024, numHeads: 4, dropout: 0.2, normFirst: false });
    expect(transformer_base).toMatchObject({ encoderLayers: 6, decoderLayers: 6, modelDim: 512, ffnDim: 2048, numHeads: 8, dropout: 0.1 });
    const config = seq2seqConfigFromPreset('transformer_small', { srcVocabSize: 100, tgtVocabSize: 100, padId: 1, bosId: 0, eosId: 2, attentionRankScale: 0.25 });
    expect(config.attentionRankScale).toBe(0.25);
    expect(() => seq2seqConfigFromPreset('transformer_huge', { srcVocabSize: 1, tgtVocabSize: 1, padId: 0, bosId: 0, eosId: 0 })).toThrow(/unknown model preset 'transformer_huge'/);
  });

  it('countSeq2SeqParameters gives the built model\'s countParams for every variant, without building it', () => {
    const variants = { ...VARIANTS, 'explicit rank 3, untied dense output': { ...TINY, attentionRank: 3, tieOutput: false } };
    for (const [name, overrides] of Object.entries(variants)) {
      const config = resolveSeq2SeqConfig(overrides);
      const model = new TransformerSeq2Seq(config);
      expect(countSeq2SeqParameters(config), name).toBe(model.model.countParams());
      model.dispose();
    }
    // Full rank is the dense model: the factorized variant at full rank counts as the dense one.
    const factorized = resolveSeq2SeqConfig(VARIANTS['pre-norm, learned, gelu, untied factorized output, factorized FFN + embeddings']);
    const dense = resolveSeq2SeqConfig({ ...factorized, attentionRankScale: 1, linearRankScale: null, embeddingRankScale: null });
    expect(countSeq2SeqParameters(fullRankArchitecture(factorized))).toBe(countSeq2SeqParameters(dense));
    expect(countSeq2SeqParameters(factorized)).toBeLessThan(countSeq2SeqParameters(dense));
  });

  it('an explicit attentionRank reaches the attention layers as that rank', () => {
    const model = new TransformerSeq2Seq({ ...TINY, attentionRank: 3 });
    expect(model.encoderBlocks[0].selfAttention.rank).toBe(3);
    expect(model.decoderBlocks[1].crossAttention.rank).toBe(3);
    model.dispose();
  });

  it('reads block configs of model.json files written with attentionRankScale (before attentionRank)', () => {
    const block = new TransformerEncoderBlock({ name: 'legacy', modelDim: 16, numHeads: 2, ffnDim: 24, attentionRankScale: 0.5 });
    expect(block.blockConfig.attentionRank).toBe(4);
    expect(block.getConfig()).toMatchObject({ attentionRank: 4 });
    expect(block.getConfig()).not.toHaveProperty('attentionRankScale');
  });

  it('rejects bad configs with a one-line UserError naming the key', () => {
    const bad: [Seq2SeqOverrides, RegExp][] = [
      [{ ...TINY, numHeds: 2 } as Seq2SeqOverrides, /unknown key 'numHeds'/],
      [{ ...TINY, shareEmbeddings: true }, /shareEmbeddings.*srcVocabSize 13 != tgtVocabSize 11/],
      [{ ...TINY, numHeads: 3 }, /'modelDim' 16 must be divisible by 'numHeads' 3/],
      [{ ...TINY, numHeads: 3, attentionRankScale: 0.5 }, /'modelDim' 16 must be divisible by 'numHeads' 3/],
      [{ ...TINY, dropout: 1.5 }, /'dropout' must be a number in \[0, 1\)/],
      [{ ...TINY, positions: 'rotary' } as unknown as Seq2SeqOverrides, /'positions' must be one of sinusoidal, learned/],
      [{ ...TINY, linearRankScale: 0 }, /'linearRankScale' must be a number > 0 or null/],
      [{ ...TINY, eosId: 0 }, /'eosId' must be different from padId/],
      [{ ...TINY, spectralInit: { qkv: true } } as unknown as Seq2SeqOverrides, /unknown key 'spectralInit.qkv'/],
    ];
    for (const [config, message] of bad) {
      expect(() => resolveSeq2SeqConfig(config)).toThrow(UserError);
      expect(() => resolveSeq2SeqConfig(config)).toThrow(message);
    }
  });
});
