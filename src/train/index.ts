/**
 * The training side of the package: loop, optimizers, schedules, losses, checkpoints, progress.
 *
 * ```ts
 * const trainer = new Trainer({
 *   model: { model: net.model, factorPairs: () => net.factorPairs() },
 *   lossFn: (batch, { training }) => {
 *     const logits = net.model.apply(inputsOf(batch), { training }) as tf.Tensor;
 *     // targetIds: the batch's host ids, so no tensor is read back (GPU backends cannot read synchronously)
 *     return labelSmoothedCrossEntropy(logits, targetsOf(batch), { smoothing: 0.1, padId, targetIds: batch.targets }); // sums + numTokens
 *   },
 *   data,                       // { numBatches(epoch), batches(epoch, startIndex) }
 *   validate: async () => ({ loss, perplexity, bleu }),
 *   outDir: 'checkpoints/run1', config, tokenizerFiles: tokenizer.files(),
 *   optimizer: 'adamw', lr: 5e-4, schedule: 'inverse_sqrt', warmupUpdates: 4000, warmupInitLr: 1e-7,
 *   clipNorm: 0.1, frobeniusDecay: 1e-4, weightDecay: 0, maxSteps: 50_000, validEvery: 1000,
 *   bestMetric: 'bleu', bestMode: 'max', resume: true,
 * });
 * const result = await trainer.train();
 * trainer.dispose();
 * ```
 */
export { Trainer, NonFiniteLossError } from './trainer.ts';
export type { TrainerOptions, TrainableModel, LossFn, LossOutput, BatchSource, StepInfo, StopReason, TrainResult } from './trainer.ts';
export { labelSmoothedCrossEntropy } from './losses.ts';
export type { LabelSmoothingOptions, CrossEntropyResult } from './losses.ts';
export { TrainOptimizer } from './optimizers.ts';
export type { OptimizerName, OptimizerConfig, OptimizedParam, OptimizerState, OptimizerStateMeta } from './optimizers.ts';
export { makeSchedule } from './schedules.ts';
export type { Schedule, ScheduleConfig } from './schedules.ts';
export { globalNorm, sumOfSquares, clipByGlobalNorm, accumulateInto, scaleGrads, disposeGrads } from './gradients.ts';
export type { GradMap } from './gradients.ts';
export {
  saveCheckpoint,
  loadCheckpoint,
  averageCheckpoints,
  listStepCheckpoints,
  fileIOHandler,
  recoverCheckpoint,
  locateCheckpoint,
  findCheckpointFolder,
  verifyCheckpointFiles,
  CHECKSUMS_FILE,
  writeFolderAtomic,
  durableWriter,
} from './checkpoint.ts';
export type { SaveCheckpointOptions, LoadedCheckpoint, FileWriter } from './checkpoint.ts';
export { acquireOutputLock, isOutputLocked } from './lock.ts';
export type { OutputLock } from './lock.ts';
export { enableSignalHandling, signalHandlingEnabled } from './signals.ts';
export { ProgressReporter, MetricsWriter, formatProgressLine, formatDuration } from './progress.ts';
export type { MetricsRecord, ProgressMode, ProgressUpdate } from './progress.ts';
export type { TrainerState } from './state.ts';
