/**
 * `npm run bench -- memory` (issue 8): a 2,000-step training run of a tiny transformer must keep
 * `tf.memory().numTensors` flat and the resident set within 10 % of its value at step 200.
 * Prints both (value = growth since step 200; the targets are in `extra`).
 */
import * as tf from '@tensorflow/tfjs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { seq2seqConfigFromPreset, TransformerSeq2Seq } from '../src/models/index.ts';
import { labelSmoothedCrossEntropy, TrainOptimizer } from '../src/train/index.ts';
import { peakRssMiB, type Benchmark } from './common.ts';
import { engineSummary } from './train-translation.ts';
import { makeTrainStep, randomIds } from './train-step.ts';

/**
 * V8 collects old-generation garbage lazily, so the resident set saw-tooths by tens of MB between
 * major collections even without a leak. Sample points therefore force a full collection first
 * (the leak measure); the largest un-collected reading is reported too.
 */
function fullGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

export const run: Benchmark = async ({ quick }) => {
  const gc = fullGc();
  const steps = quick ? 300 : 2000;
  const checkpoint = quick ? 100 : 200;
  const vocab = 200;
  const [batch, len] = [8, 12];
  const config = seq2seqConfigFromPreset('transformer_small', {
    srcVocabSize: vocab,
    tgtVocabSize: vocab,
    padId: 0,
    bosId: 1,
    eosId: 2,
    modelDim: 32,
    numHeads: 2,
    ffnDim: 64,
    encoderLayers: 1,
    decoderLayers: 1,
  });
  const model = new TransformerSeq2Seq(config);
  const optimizer = new TrainOptimizer(
    { name: 'adam' },
    model.trainableWeights.map((w) => ({ name: w.originalName, variable: w.read() as tf.Variable, decay: true })),
  );
  let source: tf.Tensor2D | undefined;
  let targetIn: tf.Tensor2D | undefined;
  let targetOut: tf.Tensor2D | undefined;
  const step = makeTrainStep(model.trainableWeights, optimizer, () =>
    labelSmoothedCrossEntropy(model.forward(source!, targetIn!, true), targetOut!, { smoothing: 0.1, padId: 0 }),
  );
  let tensorsAt = 0;
  let rssAt = 0;
  let maxTensors = 0;
  let maxRss = 0;
  let maxRawRss = 0;
  const rssTrace: Record<number, number> = {};
  const t0 = performance.now();
  for (let i = 1; i <= steps; i++) {
    // A fresh batch every step, as a real data loader gives.
    source = tf.tensor2d(randomIds(batch * len, vocab, 3 * i), [batch, len], 'int32');
    targetIn = tf.tensor2d(randomIds(batch * len, vocab, 3 * i + 1), [batch, len], 'int32');
    targetOut = tf.tensor2d(randomIds(batch * len, vocab, 3 * i + 2), [batch, len], 'int32');
    await step();
    tf.dispose([source, targetIn, targetOut]);
    const tensors = tf.memory().numTensors;
    const rawRss = process.memoryUsage().rss / 2 ** 20;
    if (i >= checkpoint) [maxTensors, maxRawRss] = [Math.max(maxTensors, tensors), Math.max(maxRawRss, rawRss)];
    const sample = i === checkpoint || (i > checkpoint && i % Math.max(1, Math.floor(steps / 20)) === 0) || i === steps;
    if (!sample) continue;
    gc();
    const rss = process.memoryUsage().rss / 2 ** 20;
    rssTrace[i] = Math.round(rss);
    if (i === checkpoint) [tensorsAt, rssAt] = [tensors, rss];
    if (i >= checkpoint) maxRss = Math.max(maxRss, rss);
  }
  const seconds = (performance.now() - t0) / 1000;
  const finalTensors = tf.memory().numTensors;
  const finalRss = process.memoryUsage().rss / 2 ** 20;
  optimizer.dispose();
  model.dispose();
  const growth = (100 * (maxRss - rssAt)) / rssAt;
  const common = { steps, checkpointStep: checkpoint, seconds, engine: engineSummary(), peakRssMiB: peakRssMiB() };
  return [
    {
      name: 'memory: RSS growth after warm-up (step 200)',
      value: growth,
      unit: '%',
      baseline: null,
      ratio: null,
      extra: {
        ...common,
        rssAtCheckpointMiB: rssAt,
        maxRssAfterMiB: maxRss,
        maxRssBeforeGcMiB: maxRawRss,
        finalRssMiB: finalRss,
        finalGrowthPercent: (100 * (finalRss - rssAt)) / rssAt,
        rssTraceMiB: rssTrace,
        target: '<= 10 % at every sample after the checkpoint (after a full GC)',
        pass: growth <= 10,
      },
    },
    {
      name: 'memory: tensor count growth after warm-up (step 200)',
      value: maxTensors - tensorsAt,
      unit: 'tensors',
      baseline: null,
      ratio: null,
      extra: { ...common, tensorsAtCheckpoint: tensorsAt, maxTensorsAfter: maxTensors, finalTensors, target: '0', pass: maxTensors === tensorsAt },
    },
  ];
};
