import * as tf from '@tensorflow/tfjs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildBertForMaskedLM, disposeBertModel, encoderFromMaskedLM } from '../src/models/bert.ts';
import { resolveBertConfig, type BertConfigInput } from '../src/models/bert-config.ts';
import { countBertParameters } from '../src/models/parameters.ts';
import { loadEncoder, loadPretrainedAttention } from '../src/tasks/bert-checkpoint.ts';
import { bertConfigFromPreset } from '../src/models/bert-presets.ts';
import { GatherPositions, scoreMaskedPredictions } from '../src/models/mlm-head.ts';
import { loadCheckpoint, saveCheckpoint } from '../src/train/checkpoint.ts';
import { setGlobalSeed } from '../src/random.ts';

const tmp = mkdtempSync(join(tmpdir(), 'mlm-model-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const TINY: BertConfigInput = {
  vocabSize: 40,
  padId: 0,
  modelDim: 16,
  numHeads: 2,
  ffnDim: 32,
  numLayers: 2,
  maxPositions: 12,
  dropout: 0,
  attentionDropout: 0,
};

const TOKENS = [
  [2, 5, 6, 7, 8, 3],
  [2, 9, 10, 3, 0, 0],
];
const POSITIONS = [
  [1, 3],
  [2, 0],
];

function tensors() {
  return { tokens: tf.tensor2d(TOKENS, [2, 6], 'int32'), positions: tf.tensor2d(POSITIONS, [2, 2], 'int32') };
}

describe('BertEncoder + MaskedLMHead', () => {
  it('countBertParameters gives the built model\'s countParams, without building it', () => {
    const variants: BertConfigInput[] = [
      TINY,
      { ...TINY, normFirst: true, typeVocabSize: 2, attentionBias: false },
      { ...TINY, attentionRankScale: 0.5, linearRankScale: 0.5, embeddingRankScale: 0.25 },
      { ...TINY, attentionRank: 3 },
    ];
    for (const input of variants) {
      const config = resolveBertConfig(input);
      const bert = buildBertForMaskedLM(config);
      expect(countBertParameters(config), JSON.stringify(input)).toBe(bert.model.countParams());
      disposeBertModel(bert.model);
    }
  });

  it('draws every initial weight, the head included, from the run seed', async () => {
    const weightsWith = async (seed: number) => {
      setGlobalSeed(seed);
      const bert = buildBertForMaskedLM(resolveBertConfig(TINY));
      const values = await Promise.all(bert.model.weights.map(async (w) => ({ name: w.originalName, values: Array.from(await w.read().data()) })));
      disposeBertModel(bert.model);
      return values;
    };
    const [a, b, c] = [await weightsWith(7), await weightsWith(7), await weightsWith(8)];
    const head = a.findIndex((w) => w.name.includes('mlm_head_transform/kernel'));
    expect(head).toBeGreaterThanOrEqual(0);
    expect(b).toEqual(a);
    // Another seed draws another head (not a fixed or unseeded initializer).
    expect(c[head].values).not.toEqual(a[head].values);
  });

  it('maps [token_ids, masked_positions] to logits over the vocabulary at the masked positions only', () => {
    setGlobalSeed(1);
    const bert = buildBertForMaskedLM(resolveBertConfig(TINY));
    const { tokens, positions } = tensors();
    const logits = bert.model.predict([tokens, positions]) as tf.Tensor;
    expect(logits.shape).toEqual([2, 2, 40]);
    const hidden = bert.encoder.predict(tokens) as tf.Tensor;
    expect(hidden.shape).toEqual([2, 6, 16]);
    // The head sees the hidden state of exactly the listed position of its own row.
    const gathered = new GatherPositions({}).apply([hidden, positions]) as tf.Tensor;
    const h = hidden.arraySync() as number[][][];
    const g = gathered.arraySync() as number[][][];
    expect(g[0][1]).toEqual(h[0][3]);
    expect(g[1][0]).toEqual(h[1][2]);
    tf.dispose([logits, hidden, gathered, tokens, positions]);
    disposeBertModel(bert.model);
  });

  it('ignores padding: appending pad tokens leaves the hidden states of real tokens unchanged', () => {
    setGlobalSeed(2);
    const bert = buildBertForMaskedLM(resolveBertConfig(TINY));
    const short = tf.tensor2d([[2, 5, 6, 3]], [1, 4], 'int32');
    const padded = tf.tensor2d([[2, 5, 6, 3, 0, 0, 0]], [1, 7], 'int32');
    const a = bert.encoder.predict(short) as tf.Tensor;
    const b = (bert.encoder.predict(padded) as tf.Tensor).slice([0, 0, 0], [1, 4, 16]);
    expect(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]).toBeLessThan(1e-5);
    tf.dispose([short, padded, a, b]);
    disposeBertModel(bert.model);
  });

  it('ties the output projection to the token embedding (one matrix, no separate output weights)', () => {
    setGlobalSeed(3);
    const bert = buildBertForMaskedLM(resolveBertConfig(TINY));
    const vocabSized = bert.model.weights.filter((w) => w.shape.includes(40));
    // The embedding matrix [V, d] and the head's output bias [V], nothing else of vocabulary size.
    expect(vocabSized.map((w) => w.shape)).toEqual([[40, 16], [40]]);
    disposeBertModel(bert.model);
  });

  it('can start the vocabulary bias at given log-probabilities (the unigram initialization)', () => {
    setGlobalSeed(8);
    const bert = buildBertForMaskedLM(resolveBertConfig(TINY));
    const values = Float32Array.from({ length: 40 }, (_, i) => -i / 10);
    bert.head.setOutputBias(values);
    const bias = bert.model.getLayer('mlm_head_output_bias').getWeights()[0];
    expect(Array.from(bias.dataSync())).toEqual(Array.from(values));
    expect(() => bert.head.setOutputBias(new Float32Array(3))).toThrow(/expected 40 values/);
    disposeBertModel(bert.model);
  });

  it('builds every variant: pre-norm, segments, factorized FFN and embedding, low-rank attention, per-pair SI', () => {
    setGlobalSeed(4);
    const bert = buildBertForMaskedLM(
      resolveBertConfig({
        ...TINY,
        normFirst: true,
        typeVocabSize: 2,
        linearRankScale: 0.5,
        embeddingRankScale: 0.5,
        attentionRankScale: 0.5,
        spectralInit: { qk: true, ov: false },
      }),
    );
    const kinds = bert.factorPairs().map((p) => p.kind);
    expect(kinds.filter((k) => k === 'qk')).toHaveLength(2);
    expect(kinds.filter((k) => k === 'ov')).toHaveLength(2);
    expect(kinds.filter((k) => k === 'linear')).toHaveLength(4);
    expect(kinds.filter((k) => k === 'embedding')).toHaveLength(1);
    // Attention rank floor(0.5 · 16 / 2) = 4.
    const qk = bert.factorPairs().find((p) => p.kind === 'qk')!;
    expect(qk.u.shape).toEqual([2, 16, 4]);
    const { tokens, positions } = tensors();
    const segments = tf.zerosLike(tokens);
    const logits = bert.model.predict([tokens, segments, positions]) as tf.Tensor;
    expect(logits.shape).toEqual([2, 2, 40]);
    expect(Number.isFinite(tf.sum(logits).dataSync()[0])).toBe(true);
    tf.dispose([tokens, positions, segments, logits]);
    disposeBertModel(bert.model);
  });

  it('frees every weight on disposeBertModel (the tied embedding is applied twice)', () => {
    const before = tf.memory().numTensors;
    const bert = buildBertForMaskedLM(resolveBertConfig(TINY));
    expect(tf.memory().numTensors).toBeGreaterThan(before);
    disposeBertModel(bert.model);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects bad configs with the key named', () => {
    expect(() => resolveBertConfig({ ...TINY, numHeads: 3 })).toThrow(/modelDim.*numHeads/);
    expect(() => resolveBertConfig({ ...TINY, dropuot: 0.1 } as BertConfigInput)).toThrow(/unknown key 'dropuot'/);
    expect(() => resolveBertConfig({ ...TINY, padId: 40 })).toThrow(/padId/);
    expect(() => bertConfigFromPreset('bert_huge', { vocabSize: 10, padId: 0 })).toThrow(/unknown model preset/);
    const base = bertConfigFromPreset('bert_base', { vocabSize: 30522, padId: 0 });
    expect([base.numLayers, base.modelDim, base.numHeads, base.ffnDim]).toEqual([12, 768, 12, 3072]);
    const small = bertConfigFromPreset('bert_small', { vocabSize: 8000, padId: 0 });
    expect([small.numLayers, small.modelDim, small.numHeads, small.ffnDim]).toEqual([4, 256, 4, 1024]);
  });
});

describe('scoreMaskedPredictions', () => {
  it('sums −log softmax at the labels and counts arg-max hits, skipping padding entries', async () => {
    const logits = tf.tensor3d(
      [
        [
          [2, 0, 1, -1],
          [0, 3, 0, 0],
        ],
        [
          [1, 1, 1, 1],
          [5, 5, 5, 5],
        ],
      ],
      [2, 2, 4],
    );
    const labels = Int32Array.from([2, 1, 3, 0]); // last entry is padding (padId 0)
    const s = await scoreMaskedPredictions(logits, labels, 0);
    const logSoftmax = (row: number[], k: number) => row[k] - Math.log(row.reduce((a, v) => a + Math.exp(v), 0));
    const expected = -logSoftmax([2, 0, 1, -1], 2) - logSoftmax([0, 3, 0, 0], 1) - logSoftmax([1, 1, 1, 1], 3);
    expect(s.count).toBe(3);
    expect(s.sumNll).toBeCloseTo(expected, 5);
    // Row 0 argmax 0 ≠ 2; row 1 argmax 1 = 1; row 2 ties → argmax 0 ≠ 3.
    expect(s.correct).toBe(1);
    logits.dispose();
  });
});

describe('checkpoint round trip and reuse', () => {
  it('restores the same logits, and the standalone encoder and attention layers give the same outputs', async () => {
    setGlobalSeed(5);
    const bert = buildBertForMaskedLM(resolveBertConfig(TINY));
    const dir = join(tmp, 'ckpt');
    await saveCheckpoint(dir, { model: bert.model, config: { task: 'mlm' } });
    const { tokens, positions } = tensors();
    const before = bert.model.predict([tokens, positions]) as tf.Tensor;
    const hiddenInside = encoderFromMaskedLM(bert.model).predict(tokens) as tf.Tensor;

    const restored = await (await loadCheckpoint(dir)).loadModel();
    const after = restored.predict([tokens, positions]) as tf.Tensor;
    expect(tf.max(tf.abs(tf.sub(after, before))).dataSync()[0]).toBe(0);
    tf.dispose(after);
    disposeBertModel(restored);

    const encoder = await loadEncoder(dir);
    const hiddenStandalone = encoder.predict(tokens) as tf.Tensor;
    expect(hiddenStandalone.shape).toEqual([2, 6, 16]);
    expect(tf.max(tf.abs(tf.sub(hiddenStandalone, hiddenInside))).dataSync()[0]).toBe(0);

    // The first block's attention, loaded standalone, computes what it computes inside the model.
    const [attention, second] = await loadPretrainedAttention(dir);
    expect(second).toBeDefined();
    const x = tf.randomNormal([2, 6, 16], 0, 1, 'float32', 7) as tf.Tensor3D;
    const mask = tf.tensor2d([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1]], [2, 6]);
    const inside = bert.model.getLayer('encoder_layer_0') as unknown as { selfAttention: { attend: typeof attention.attend } };
    const a = attention.attend(x, null, { keyPaddingMask: mask });
    const b = inside.selfAttention.attend(x, null, { keyPaddingMask: mask });
    expect(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]).toBeLessThan(1e-6);
    expect(attention.getWeights().length).toBe(8);

    // A different model's weights differ (the check above can fail).
    setGlobalSeed(6);
    const other = buildBertForMaskedLM(resolveBertConfig(TINY));
    const otherHidden = other.encoder.predict(tokens) as tf.Tensor;
    expect(tf.max(tf.abs(tf.sub(otherHidden, hiddenInside))).dataSync()[0]).toBeGreaterThan(1e-3);

    tf.dispose([tokens, positions, before, hiddenInside, hiddenStandalone, x, mask, a, b, otherHidden]);
    disposeBertModel(bert.model);
    disposeBertModel(other.model);
    encoder.dispose();
  });

  it('names the folder when it holds no checkpoint', async () => {
    await expect(loadEncoder(tmp)).rejects.toThrow(/no model.json/);
  });
});
