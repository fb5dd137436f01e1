// The engine never reads a tensor synchronously (issue 12, "an async-safe engine"): on the webgpu
// backend in Node, dataSync / arraySync / bufferSync of a GPU tensor throw ("OffscreenCanvas is not
// defined"), so building, training, validating, checkpointing, resuming and decoding must all use
// `await data()`. This test needs no GPU: it makes the three synchronous reads throw for the length
// of a run and drives the real task code (model build with spectral init, Trainer with clipping,
// Frobenius decay, label smoothing, checkpoint save + resume, validation with BLEU decoding, MLM
// perplexity, beam search and greedy decoding). A tripped guard fails the test with the stack of
// the offending read, even if the caller caught the error.
import * as tf from '@tensorflow/tfjs';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fromDenseAttention } from '../src/attention/index.ts';
import { beamSearch } from '../src/decode/beam-search.ts';
import { greedyDecode } from '../src/decode/greedy.ts';
import { collectFactorPairs, factorize, frobeniusPenaltyTotal } from '../src/factorized/index.ts';
import { SeededRandom } from '../src/random.ts';
import { evaluateMlm, trainMlm } from '../src/tasks/mlm.ts';
import { evaluateTranslation, loadTranslator, sourceForModel, trainTranslation, translateLines, type TranslationTrainOptions } from '../src/tasks/translation.ts';

const SYNC_READS = ['dataSync', 'arraySync', 'bufferSync'] as const;

/** Runs `fn` with the synchronous reads of every tf.Tensor throwing; returns the stacks of any that ran. */
async function withoutSyncReads(fn: () => Promise<void>): Promise<string[]> {
  const proto = tf.Tensor.prototype as unknown as Record<string, unknown>;
  const saved = SYNC_READS.map((name) => proto[name]);
  const trips: string[] = [];
  for (const name of SYNC_READS) {
    proto[name] = function (): never {
      const err = new Error(`synchronous tensor read: ${name}() (fails on GPU backends; use await data())`);
      trips.push(err.stack ?? err.message);
      throw err;
    };
  }
  try {
    await fn();
  } finally {
    SYNC_READS.forEach((name, i) => (proto[name] = saved[i]));
  }
  return trips;
}

/** The guard itself must bite, or the tests below prove nothing. */
describe('the sync-read guard', () => {
  it('throws on dataSync, arraySync and bufferSync while active, and restores them after', async () => {
    const t = tf.tensor1d([1, 2, 3]);
    const trips = await withoutSyncReads(async () => {
      expect(() => t.dataSync()).toThrow(/synchronous tensor read: dataSync/);
      expect(() => t.arraySync()).toThrow(/arraySync/);
      expect(() => t.bufferSync()).toThrow(/bufferSync/);
      expect(Array.from(await t.data())).toEqual([1, 2, 3]);
    });
    expect(trips).toHaveLength(3);
    expect(Array.from(t.dataSync())).toEqual([1, 2, 3]);
    t.dispose();
  });
});

const root = mkdtempSync(join(tmpdir(), 'ft-async-engine-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const COPY = 'test/fixtures/tasks/copy';

function translationRun(out: string, train: Record<string, unknown>, resume = false): TranslationTrainOptions {
  return {
    data: COPY,
    out: join(root, out),
    sourceLang: 'xx',
    targetLang: 'yy',
    preset: 'transformer_tiny',
    progress: 'none',
    resume,
    overrides: {
      // Low-rank factors everywhere, so spectral init runs on attention, FFN and embedding pairs.
      model: { attentionRankScale: 0.5, linearRankScale: 0.5, embeddingRankScale: 0.5, spectralInit: true },
      train: { labelSmoothing: 0.1, clipNorm: 0.05, frobeniusDecay: 1e-3, updateFreq: 2, logEvery: 1, ...train },
      decode: { validBleuSamples: 4, validBeam: 2 },
    },
  };
}

function trainLosses(out: string): { step: number; loss: number; gradNorm: number }[] {
  return readFileSync(join(root, out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .filter((r) => r.type === 'train')
    .map((r) => ({ step: r.step, loss: r.loss, gradNorm: r.gradNorm }));
}

describe('translation without synchronous reads', () => {
  it('builds, trains (clip, FD, smoothing, accumulation), validates with BLEU, saves, resumes, evaluates and decodes', async () => {
    // The reference: the same 6 updates straight through, sync reads allowed.
    await trainTranslation(translationRun('straight', { maxSteps: 6, validEvery: 6, saveEvery: 6 }));

    const trips = await withoutSyncReads(async () => {
      // 4 updates (validation + checkpoints at 2 and 4), then a fresh process-like resume to 6.
      await trainTranslation(translationRun('guarded', { maxSteps: 4, validEvery: 2, saveEvery: 2 }));
      await trainTranslation(translationRun('guarded', { maxSteps: 6, validEvery: 2, saveEvery: 2 }, true));

      const translator = await loadTranslator(join(root, 'guarded', 'checkpoint_last'));
      try {
        const model = translator.model;
        const penalty = await frobeniusPenaltyTotal(model.factorPairs());
        expect(penalty).toBeGreaterThan(0);
        const lines = ['a b c', 'd e'];
        const greedy = await translateLines(translator, lines, { beam: 1 });
        const beam = await translateLines(translator, lines, { beam: 3 });
        expect(greedy).toHaveLength(2);
        expect(beam).toHaveLength(2);
        const ids = lines.map((l) => sourceForModel(translator.tokenizer.encode(l), model.eosId, model.config.maxPositions));
        const hyps = await beamSearch(model, ids, { beamSize: 2, nBest: 2, maxLenA: 1, maxLenB: 5, lenPenalty: 1 });
        const best = await greedyDecode(model, ids, { maxLenA: 1, maxLenB: 5, lenPenalty: 1 });
        expect(hyps.map((h) => h.length)).toEqual([2, 2]);
        expect(best).toHaveLength(2);
      } finally {
        translator.dispose();
      }
      const evaluation = await evaluateTranslation({ checkpoint: join(root, 'guarded'), data: COPY, split: 'valid', beam: 2, limit: 6 });
      expect(Number.isFinite(evaluation.bleu)).toBe(true);
      expect(Number.isFinite(evaluation.loss)).toBe(true);
    });
    expect(trips, trips.join('\n\n')).toEqual([]);

    // Same numbers as the unguarded straight run: the async reads changed nothing.
    const straight = trainLosses('straight');
    expect(straight.map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(trainLosses('guarded')).toEqual(straight);
    const weights = (dir: string) => readFileSync(join(root, dir, 'checkpoint_last', 'weights.bin'));
    expect(weights('guarded').equals(weights('straight'))).toBe(true);
  }, 120_000);

  it('converts dense weights to factors (factorize, fromDenseAttention) without sync reads', async () => {
    const trips = await withoutSyncReads(async () => {
      const w = () => tf.randomNormal([8, 8], 0, 0.3, 'float32', 3) as tf.Tensor2D;
      const [wq, wk, wv, wo] = [w(), w(), w(), w()];
      const { U, V, relativeError } = await factorize(wq, 8);
      expect(relativeError).toBeLessThan(1e-6);
      const { layer, relativeErrors } = await fromDenseAttention({ wq, wk, wv, wo, numHeads: 2 });
      expect(relativeErrors.qk).toBeLessThan(1e-6);
      expect(collectFactorPairs([layer])).toHaveLength(2);
      tf.dispose([wq, wk, wv, wo, U, V]);
    });
    expect(trips, trips.join('\n\n')).toEqual([]);
  });
});

describe('masked LM without synchronous reads', () => {
  it('builds (spectral init), trains, validates perplexity, saves, resumes and evaluates', async () => {
    const WORDS = 'the and of to in he god lord said light earth heaven'.split(' ');
    const rng = new SeededRandom(3);
    const make = (n: number) => Array.from({ length: n }, () => Array(4).fill(WORDS[rng.nextInt(WORDS.length)]).join(' ')).join('\n') + '\n';
    const data = join(root, 'mlm-data');
    mkdirSync(data, { recursive: true });
    for (const [split, n] of [['train', 120], ['valid', 24], ['test', 24]] as const) writeFileSync(join(data, `${split}.txt`), make(n));
    const tokenizer = join(import.meta.dirname, 'fixtures/text/wordpiece');
    const out = join(root, 'mlm');
    const trips = await withoutSyncReads(async () => {
      await trainMlm({
        data,
        tokenizer,
        out,
        preset: 'bert_tiny',
        progress: 'none',
        overrides: {
          model: { attentionRankScale: 0.5, linearRankScale: 0.5, embeddingRankScale: 0.5, spectralInit: true },
          train: { maxSteps: 2, validEvery: 2, saveEvery: 2, maxTokens: 128, labelSmoothing: 0.1, clipNorm: 0.5, frobeniusDecay: 1e-3, logEvery: 1 },
          data: { maxLength: 16 },
        },
      } as Parameters<typeof trainMlm>[0]);
      // Resume: the run keeps its stored config and tokenizer; only the budget grows.
      const summary = await trainMlm({ data, out, progress: 'none', resume: true, overrides: { train: { maxSteps: 4 } } } as Parameters<typeof trainMlm>[0]);
      expect(summary).toBeTruthy();
      const e = await evaluateMlm({ checkpoint: join(root, 'mlm'), data, split: 'test' });
      expect(Number.isFinite(e.perplexity)).toBe(true);
      expect(e.maskedTokens).toBeGreaterThan(0);
    });
    expect(trips, trips.join('\n\n')).toEqual([]);
  }, 120_000);
});
