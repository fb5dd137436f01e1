/**
 * `npm run bench -- train-translation`: training tokens/s (target tokens) of transformer_small
 * (d 256, 4 heads, FFN 1024, 2+2 layers, vocab 8000) on the default engine, one step = forward,
 * label-smoothed cross-entropy (the engine's softmaxCrossEntropy), backward and Adam on a batch of 128 x 32 target tokens (~4k);
 * PyTorch runs the same model and batch in the same run (bench/reference/train_translation.py).
 */
import * as tf from '@tensorflow/tfjs';
import { describeBackend, softmaxCrossEntropy } from '../src/backend/index.ts';
import type { Seq2SeqConfig } from '../src/models/config.ts';
import { presets, seq2seqConfigFromPreset, TransformerSeq2Seq } from '../src/models/index.ts';
import { TrainOptimizer } from '../src/train/index.ts';
import { resolveTranslationConfig, seq2seqModelConfig } from '../src/tasks/translation-config.ts';
import { compared, peakRssMiB, runReference, timeMedian, type Benchmark, type BenchResult } from './common.ts';
import { makeTrainStep, randomIds } from './train-step.ts';

export interface TranslationBatch {
  vocab: number;
  batch: number;
  srcLen: number;
  tgtLen: number;
}

/** A model of `preset`, a fixed random batch and one Adam update on it (shared with bench/gpu.ts). */
export interface TranslationTrainBench {
  /** One update; resolves when its loss has been read back. */
  step: () => Promise<void>;
  targetTokens: number;
  dispose(): void;
}

/**
 * The model config of `preset`: an architecture of src/models/presets.ts (separate source and
 * target embeddings), else a translation task preset as training builds it (transformer_small_cpu:
 * the quickstart's model, one joint vocabulary).
 */
export function benchSeq2SeqConfig(preset: string, vocab: number): Seq2SeqConfig {
  const ids = { padId: 0, bosId: 1, eosId: 2 };
  if (preset in presets) return seq2seqConfigFromPreset(preset, { srcVocabSize: vocab, tgtVocabSize: vocab, ...ids });
  const task = resolveTranslationConfig({ preset, sourceLang: 'src', targetLang: 'tgt', flags: { train: { maxSteps: 1 } } });
  return seq2seqModelConfig(task, { vocabSize: vocab, ...ids });
}

export function translationTrainBench(preset: string, shape: TranslationBatch): TranslationTrainBench {
  const { vocab, batch, srcLen, tgtLen } = shape;
  const config = benchSeq2SeqConfig(preset, vocab);
  const model = new TransformerSeq2Seq(config);
  const source = tf.tensor2d(randomIds(batch * srcLen, vocab, 1), [batch, srcLen], 'int32');
  const target = randomIds(batch * (tgtLen + 1), vocab, 2);
  const targetIn = tf.tensor2d(target.filter((_, i) => i % (tgtLen + 1) !== tgtLen), [batch, tgtLen], 'int32');
  const targetOut = tf.tensor2d(target.filter((_, i) => i % (tgtLen + 1) !== 0), [batch, tgtLen], 'int32');
  const optimizer = new TrainOptimizer(
    { name: 'adam', betas: [0.9, 0.98] },
    model.trainableWeights.map((w) => ({ name: w.originalName, variable: w.read() as tf.Variable, decay: true })),
  );
  const flatTargets = targetOut.reshape([-1]) as tf.Tensor1D;
  const step = makeTrainStep(model.trainableWeights, optimizer, () => {
    const logits = model.forward(source, targetIn, true).reshape([batch * tgtLen, vocab]) as tf.Tensor2D;
    return { loss: softmaxCrossEntropy(logits, flatTargets, { smoothing: 0.1, padId: 0 }).loss, numTokens: batch * tgtLen };
  });
  return {
    step,
    targetTokens: batch * tgtLen,
    dispose: () => {
      tf.dispose([source, targetIn, targetOut, flatTargets]);
      optimizer.dispose();
      model.dispose();
    },
  };
}

/**
 * Ours, then the PyTorch reference (newest torch ≥ 2, plus 1.x when found: common.ts runReference),
 * for one training step of `preset` on `shape`; the median of `steps` after one warm-up.
 */
export async function translationTrainResult(name: string, preset: string, shape: TranslationBatch, steps: number): Promise<BenchResult> {
  const bench = translationTrainBench(preset, shape);
  const rssBefore = peakRssMiB();
  const ms = await timeMedian(bench.step, steps, 1);
  const ours = bench.targetTokens / (ms / 1000);
  const extra = {
    model: preset,
    batch: `${shape.batch}x${shape.tgtLen} target tokens (+${shape.batch}x${shape.srcLen} source), vocab ${shape.vocab}`,
    msPerStep: ms,
    peakRssMiB: peakRssMiB(),
    peakRssBeforeStepsMiB: rssBefore,
    numTensors: tf.memory().numTensors,
    engine: engineSummary(),
    loss: 'softmaxCrossEntropy (src/backend: one-pass gradient kernel)',
  };
  bench.dispose();
  const ref = await runReference('train_translation.py', {
    model: preset,
    vocab: shape.vocab,
    batch: shape.batch,
    'src-len': shape.srcLen,
    'tgt-len': shape.tgtLen,
    steps,
    warmup: 1,
    threads: describeBackend().threads,
  });
  return compared(name, ours, 'tokens/s', ref, 'tokens_per_s', extra);
}

export const run: Benchmark = async ({ quick }) => [
  await translationTrainResult('train-translation', 'transformer_small', { vocab: 8000, batch: quick ? 16 : 128, srcLen: 32, tgtLen: 32 }, quick ? 2 : 3),
];

export function engineSummary(): string {
  const d = describeBackend();
  return `${d.active}, ${d.threads} threads, matMul ${d.matMul}${d.nativeBlas.available ? ` (${d.nativeBlas.config})` : ''}`;
}
