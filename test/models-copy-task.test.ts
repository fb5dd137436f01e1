/**
 * End to end on a tiny task: the Trainer teaches a small factorized Transformer to copy its
 * source, and greedy and beam search then reproduce unseen sequences.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { TransformerSeq2Seq } from '../src/models/index.ts';
import { beamSearch, greedyDecode } from '../src/decode/index.ts';
import { Trainer, labelSmoothedCrossEntropy } from '../src/train/index.ts';
import type { BatchSource } from '../src/train/index.ts';
import { SeededRandom, setGlobalSeed } from '../src/random.ts';

const PAD = 0;
const BOS = 1;
const EOS = 2;
const FIRST_SYMBOL = 3;
const VOCAB = 10;

interface CopyBatch {
  source: number[][];
  targetIn: number[][];
  targetOut: number[][];
}

function randomSequence(rng: SeededRandom): number[] {
  const length = 2 + rng.nextInt(3); // 2..4 symbols
  return Array.from({ length }, () => FIRST_SYMBOL + rng.nextInt(VOCAB - FIRST_SYMBOL));
}

function pad(rows: number[][]): tf.Tensor2D {
  const T = Math.max(...rows.map((r) => r.length));
  return tf.tensor2d(rows.map((r) => [...r, ...Array(T - r.length).fill(PAD)]), [rows.length, T], 'int32');
}

/** Deterministic batches: batch (epoch, i) is drawn from its own seed. */
const copyData: BatchSource<CopyBatch> = {
  numBatches: () => 1000,
  *batches(epoch: number, start: number) {
    for (let i = start; i < 1000; i++) {
      const rng = new SeededRandom(epoch * 100_003 + i + 1);
      const seqs = Array.from({ length: 64 }, () => randomSequence(rng));
      yield { source: seqs.map((s) => [...s, EOS]), targetIn: seqs.map((s) => [BOS, ...s]), targetOut: seqs.map((s) => [...s, EOS]) };
    }
  },
};

describe('copy task', () => {
  it('a small factorized Transformer learns to copy, and both searches decode it', async () => {
    setGlobalSeed(17);
    const model = new TransformerSeq2Seq({
      srcVocabSize: VOCAB,
      tgtVocabSize: VOCAB,
      padId: PAD,
      bosId: BOS,
      eosId: EOS,
      modelDim: 32,
      numHeads: 2,
      ffnDim: 64,
      encoderLayers: 1,
      decoderLayers: 1,
      dropout: 0,
      maxPositions: 16,
      shareEmbeddings: true,
      attentionRankScale: 0.5,
    });
    const losses: number[] = [];
    const trainer = new Trainer<CopyBatch>({
      model,
      data: copyData,
      lossFn: (batch, { training }) => {
        const logits = model.forward(pad(batch.source), pad(batch.targetIn), training);
        const { loss, nllLoss, numTokens } = labelSmoothedCrossEntropy(logits, pad(batch.targetOut), { smoothing: 0, padId: PAD });
        return { loss, nllLoss, numTokens };
      },
      optimizer: 'adam',
      lr: 0.01,
      schedule: 'linear',
      warmupUpdates: 10,
      clipNorm: 1,
      maxSteps: 120,
      progress: 'none',
      seed: 17,
      onStep: (info) => losses.push(info.loss),
    });
    const result = await trainer.train();
    expect(result.steps).toBe(120);
    const lastTen = losses.slice(-10).reduce((a, b) => a + b, 0) / 10;
    expect(lastTen).toBeLessThan(0.2); // from ln(7) ≈ 1.95 for a uniform guess over the symbols

    const rng = new SeededRandom(987654);
    const tests = Array.from({ length: 24 }, () => randomSequence(rng));
    const sources = tests.map((s) => [...s, EOS]);
    const greedy = await greedyDecode(model, sources, { maxLenA: 1, maxLenB: 2 });
    const beam = await beamSearch(model, sources, { beamSize: 3, maxLenA: 1, maxLenB: 2 });
    const greedyExact = greedy.filter((h, i) => h.tokens.join() === tests[i].join()).length;
    const beamExact = beam.filter(([h], i) => h.tokens.join() === tests[i].join()).length;
    expect(greedyExact).toBeGreaterThanOrEqual(22);
    expect(beamExact).toBeGreaterThanOrEqual(22);
    model.dispose();
  });
});
