/**
 * The ONNX export (src/onnx/export.ts) run by ONNX Runtime (src/onnx/runtime.ts) computes what the
 * tfjs model computes: encoder output and step log-probs to 1e-4, and beamSearch gives the same
 * hypotheses on both, for several architectures. Skipped where onnxruntime-node is not installed
 * (it is an optional peer dependency).
 */
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { beamSearch } from '../src/decode/index.ts';
import { TransformerSeq2Seq } from '../src/models/index.ts';
import type { Seq2SeqOverrides } from '../src/models/index.ts';
import { UserError } from '../src/errors.ts';
import type { OrtSeq2SeqDecoder } from '../src/onnx/runtime.ts';

function ortInstalled(): boolean {
  try {
    createRequire(import.meta.url).resolve('onnxruntime-node');
    return true;
  } catch {
    return false;
  }
}
const SKIP_REASON = 'onnxruntime-node is not installed (optional peer dependency)';
const hasOrt = ortInstalled();

const BASE: Seq2SeqOverrides = {
  srcVocabSize: 23,
  tgtVocabSize: 23,
  padId: 0,
  bosId: 1,
  eosId: 2,
  modelDim: 16,
  numHeads: 2,
  ffnDim: 32,
  maxPositions: 40,
  dropout: 0,
};

const CONFIGS: [string, Seq2SeqOverrides][] = [
  ['post-norm, full rank, tied, sinusoidal, relu', {}],
  ['pre-norm, rank 3 < d/H, untied dense output, learned positions, gelu', { normFirst: true, attentionRank: 3, tieOutput: false, positions: 'learned', activation: 'gelu' }],
  [
    'pre-norm, shared factorized embeddings (tied), factorized FFN, no attention bias',
    { normFirst: true, shareEmbeddings: true, embeddingRankScale: 0.5, linearRankScale: 0.5, attentionBias: false },
  ],
  ['post-norm, rank 5, untied factorized output, no embedding scale, 3 decoder layers', { attentionRank: 5, tieOutput: false, linearRankScale: 0.25, scaleEmbedding: false, decoderLayers: 3 }],
];

/** Sources of different lengths, so the pad mask matters. */
const SOURCES = [
  [5, 6, 7, 8, 9, 10, 11],
  [12, 13, 14],
  [15, 4, 16, 17, 18],
];

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

describe.skipIf(!hasOrt)(`ONNX export run by ONNX Runtime${hasOrt ? '' : ` (skipped: ${SKIP_REASON})`}`, () => {
  let OrtDecoder: typeof OrtSeq2SeqDecoder;
  beforeAll(async () => {
    ({ OrtSeq2SeqDecoder: OrtDecoder } = await import('../src/onnx/runtime.ts'));
  });

  describe.each(CONFIGS)('%s', (_name, overrides) => {
    let model: TransformerSeq2Seq;
    let ort: OrtSeq2SeqDecoder;
    beforeAll(async () => {
      model = new TransformerSeq2Seq({ ...BASE, ...overrides });
      ort = await OrtDecoder.create(model, { threads: 1 });
    });
    afterAll(async () => {
      await ort.dispose();
      model.dispose();
    });

    it('encodes as model.encode does', async () => {
      const S = Math.max(...SOURCES.map((s) => s.length));
      const flat = new Int32Array(SOURCES.length * S).fill(BASE.padId!);
      SOURCES.forEach((s, i) => flat.set(s, i * S));
      const ids = tf.tensor2d(flat, [SOURCES.length, S], 'int32');
      const expected = model.encode(ids);
      const got = await ort.encode(flat, SOURCES.length, S);
      const memory = tf.tensor3d(got.memory, [SOURCES.length, S, model.config.modelDim]);
      const pad = tf.tensor2d(got.sourcePadMask, [SOURCES.length, S]);
      expect(maxAbsDiff(memory, expected.memory)).toBeLessThan(1e-4);
      expect(maxAbsDiff(pad, expected.sourcePadMask)).toBe(0);
      tf.dispose([ids, expected.memory, expected.sourcePadMask, memory, pad]);
    });

    it('gives the same step log-probs, through beam reorders and a batch shrink', async () => {
      const copies = 2;
      const tfState = model.startDecoding(SOURCES, copies);
      const ortState = await ort.startDecoding(SOURCES, copies);
      let rows = SOURCES.length * copies;
      let tokens = new Int32Array(rows).fill(model.bosId);
      for (let step = 0; step < 5; step++) {
        const a = model.decodeStep(tfState, tokens);
        const b = await ort.decodeStep(ortState, tokens);
        expect(b.shape).toEqual([rows, model.config.tgtVocabSize]);
        expect(maxAbsDiff(a, b), `step ${step}`).toBeLessThan(1e-4);
        tf.dispose([a, b]);
        if (step === 1) {
          // A beam reorder: each row copies a row of its own sentence (duplicates allowed).
          const parents = Int32Array.from({ length: rows }, (_, i) => i - (i % copies) + ((i + step) % copies === 0 ? 0 : 1));
          model.reorderDecoderState(tfState, parents, true);
          ort.reorderDecoderState(ortState, parents, true);
        } else if (step === 3) {
          // Sentence 1 finished: its rows leave, the others move up (sameSource false).
          const keep = Int32Array.from([0, 1, 4, 5]);
          model.reorderDecoderState(tfState, keep, false);
          ort.reorderDecoderState(ortState, keep, false);
          rows = keep.length;
        }
        tokens = Int32Array.from({ length: rows }, (_, i) => 3 + ((i * 7 + step * 5) % 20));
      }
      model.disposeDecoderState(tfState);
      ort.disposeDecoderState(ortState);
    });

    it('beamSearch gives the same hypotheses on both, and leaks no tensors', async () => {
      const opts = { beamSize: 4, nBest: 2, maxLenA: 0, maxLenB: 12 };
      const expected = await beamSearch(model, SOURCES, opts);
      const before = tf.memory().numTensors;
      const got = await beamSearch(ort, SOURCES, opts);
      expect(tf.memory().numTensors).toBe(before);
      expect(got.map((hyps) => hyps.map((h) => h.tokens))).toEqual(expected.map((hyps) => hyps.map((h) => h.tokens)));
      got.forEach((hyps, i) =>
        hyps.forEach((h, k) => {
          expect(Math.abs(h.score - expected[i][k].score)).toBeLessThan(1e-4);
          h.positionalScores.forEach((p, t) => expect(Math.abs(p - expected[i][k].positionalScores[t])).toBeLessThan(1e-4));
        }),
      );
      // Not a trivial search: some hypothesis is longer than one token.
      expect(Math.max(...got.flat().map((h) => h.tokens.length))).toBeGreaterThan(1);
    });
  });

  it('rejects bad input with a UserError', async () => {
    const model = new TransformerSeq2Seq(BASE);
    const ort = await OrtDecoder.create(model, { threads: 1 });
    try {
      await expect(ort.startDecoding([[5, 99]], 1)).rejects.toThrow(UserError);
      const state = await ort.startDecoding([[5, 6]], 1);
      await expect(ort.decodeStep(state, [1, 1])).rejects.toThrow(/got 2 tokens for 1 rows/);
      await expect(OrtDecoder.create(model, { threads: 0 })).rejects.toThrow(UserError);
      await ort.dispose();
      await expect(ort.startDecoding([[5, 6]], 1)).rejects.toThrow(/disposed/);
    } finally {
      await ort.dispose();
      model.dispose();
    }
  });
});
