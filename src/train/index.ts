/** The training side of the package: loop, optimizers, schedules, losses, checkpoints, progress. */
export { Trainer, NonFiniteLossError } from './trainer.ts';
export type { TrainerOptions, TrainableModel, LossFn, LossOutput, BatchSource, StepInfo, StopReason, TrainResult } from './trainer.ts';
export { labelSmoothedCrossEntropy } from './losses.ts';
export type { LabelSmoothingOptions, CrossEntropyResult } from './losses.ts';
export { TrainOptimizer } from './optimizers.ts';
export type { OptimizerName, OptimizerConfig, OptimizedParam, OptimizerState, OptimizerStateMeta } from './optimizers.ts';
export { makeSchedule } from './schedules.ts';
export type { Schedule, ScheduleConfig } from './schedules.ts';
export { globalNorm, clipByGlobalNorm, accumulateInto, scaleGrads, disposeGrads } from './gradients.ts';
export type { GradMap } from './gradients.ts';
export {
  saveCheckpoint,
  loadCheckpoint,
  averageCheckpoints,
  listStepCheckpoints,
  fileIOHandler,
  recoverCheckpoint,
  writeFolderAtomic,
  durableWriter,
} from './checkpoint.ts';
export type { SaveCheckpointOptions, LoadedCheckpoint, FileWriter } from './checkpoint.ts';
export { acquireOutputLock } from './lock.ts';
export type { OutputLock } from './lock.ts';
export { ProgressReporter, MetricsWriter, formatProgressLine, formatDuration } from './progress.ts';
export type { MetricsRecord, ProgressMode, ProgressUpdate } from './progress.ts';
export type { TrainerState } from './state.ts';
