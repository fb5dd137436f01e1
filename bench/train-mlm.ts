/**
 * `npm run bench -- train-mlm`: training tokens/s (input tokens) of bert_small (d 256, 4 heads,
 * FFN 1024, 4 layers, vocab 8000) with the masked-LM head on the default engine; one step =
 * forward, cross-entropy over 20 masked positions per sequence, backward and Adam, on 32 x 128
 * tokens (4k). PyTorch runs the same model and batch in the same run (bench/reference/train_mlm.py).
 */
import * as tf from '@tensorflow/tfjs';
import { describeBackend, softmaxCrossEntropy } from '../src/backend/index.ts';
import { bertConfigFromPreset } from '../src/models/bert-presets.ts';
import { buildBertForMaskedLM } from '../src/models/bert.ts';
import type { BertConfig } from '../src/models/bert-config.ts';
import { TrainOptimizer } from '../src/train/index.ts';
import { compared, peakRssMiB, runReference, timeMedian, type Benchmark, type BenchResult } from './common.ts';
import { engineSummary } from './train-translation.ts';
import { makeTrainStep, randomIds } from './train-step.ts';

export interface MlmBatch {
  batch: number;
  seqLen: number;
  /** Masked positions per sequence (the head gathers them before the vocabulary projection). */
  masked: number;
}

/**
 * Ours, then the PyTorch reference (bench/reference/train_mlm.py, same shape and dropout), for one
 * Adam update of the masked-LM `config` on a fixed random batch; median of `steps` after a warm-up.
 */
/** The model, batch and one-update step of an MLM benchmark (shared with bench/profile.ts). */
export function mlmTrainBench(config: BertConfig, shape: MlmBatch): { step: () => Promise<void>; dispose: () => void } {
  const { batch, seqLen, masked } = shape;
  const vocab = config.vocabSize;
  const { model } = buildBertForMaskedLM(config);
  const ids = tf.tensor2d(randomIds(batch * seqLen, vocab, 3), [batch, seqLen], 'int32');
  const positionValues = new Int32Array(batch * masked);
  for (let b = 0; b < batch; b++) for (let j = 0; j < masked; j++) positionValues[b * masked + j] = (b * 7 + j * 6) % seqLen;
  const positions = tf.tensor2d(positionValues, [batch, masked], 'int32');
  const labels = tf.tensor2d(randomIds(batch * masked, vocab, 4), [batch, masked], 'int32');
  const optimizer = new TrainOptimizer(
    { name: 'adam' },
    model.trainableWeights.map((w) => ({ name: w.originalName, variable: w.read() as tf.Variable, decay: true })),
  );
  const flatLabels = labels.reshape([-1]) as tf.Tensor1D;
  const step = makeTrainStep(model.trainableWeights, optimizer, () => {
    const logits = (model.apply([ids, positions], { training: true }) as tf.Tensor).reshape([batch * masked, vocab]) as tf.Tensor2D;
    return { loss: softmaxCrossEntropy(logits, flatLabels, { smoothing: 0, padId: 0 }).loss, numTokens: batch * masked };
  });
  const dispose = () => {
    tf.dispose([ids, positions, labels, flatLabels]);
    optimizer.dispose();
    model.dispose();
  };
  return { step, dispose };
}

/**
 * Ours, then the PyTorch reference (bench/reference/train_mlm.py, same shape and dropout), for one
 * Adam update of the masked-LM `config` on a fixed random batch; median of `steps` after a warm-up.
 */
export async function mlmTrainResult(name: string, label: string, config: BertConfig, shape: MlmBatch, steps: number): Promise<BenchResult> {
  const { batch, seqLen, masked } = shape;
  const vocab = config.vocabSize;
  const { step, dispose } = mlmTrainBench(config, shape);
  const ms = await timeMedian(step, steps, 1);
  const ours = (batch * seqLen) / (ms / 1000);
  const extra = {
    model: label,
    batch: `${batch}x${seqLen} tokens, ${masked} masked per sequence, vocab ${vocab}, dropout ${config.dropout}`,
    msPerStep: ms,
    peakRssMiB: peakRssMiB(),
    numTensors: tf.memory().numTensors,
    engine: engineSummary(),
    loss: 'softmaxCrossEntropy (src/backend: one-pass gradient kernel)',
  };
  dispose();
  const ref = await runReference('train_mlm.py', {
    vocab,
    batch,
    'seq-len': seqLen,
    masked,
    dropout: config.dropout,
    steps,
    warmup: 1,
    threads: describeBackend().threads,
  });
  return compared(name, ours, 'tokens/s', ref, 'tokens_per_s', extra);
}

export const run: Benchmark = async ({ quick }) => {
  const config = bertConfigFromPreset('bert_small', { vocabSize: 8000, padId: 0 });
  return [await mlmTrainResult('train-mlm', 'bert_small', config, { batch: quick ? 8 : 32, seqLen: 128, masked: 20 }, quick ? 2 : 3)];
};
