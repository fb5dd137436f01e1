/**
 * The training section of every task config: one zod schema (the type is inferred from it), one
 * default recipe that task presets override in part, and the mapping onto the Trainer's options.
 */
import { z } from 'zod';
import { positiveInt } from '../models/schema.ts';
import type { TrainerOptions } from './trainer.ts';

const nonNegative = z.number().nonnegative();

/** The training recipe (trainer options). */
export const trainSectionSchema = z.strictObject({
  optimizer: z.enum(['adam', 'adamw', 'nag']),
  lr: z.number().positive(),
  betas: z.tuple([z.number().min(0).max(1), z.number().min(0).max(1)]),
  schedule: z.enum(['inverse_sqrt', 'linear', 'constant']),
  warmupUpdates: z.number().int().nonnegative(),
  warmupInitLr: nonNegative,
  clipNorm: nonNegative,
  updateFreq: positiveInt,
  frobeniusDecay: nonNegative,
  weightDecay: nonNegative,
  labelSmoothing: z.number().min(0).max(0.99),
  maxTokens: positiveInt,
  maxSteps: positiveInt.nullable(),
  maxEpochs: positiveInt.nullable(),
  maxTimeMinutes: z.number().positive().nullable(),
  validEvery: positiveInt,
  saveEvery: positiveInt,
  logEvery: positiveInt,
  /** Also keep checkpoint_<step> folders, the last N (for average-checkpoints); default 1 = checkpoint_last only. */
  keepLast: positiveInt.optional(),
  earlyStopPatience: positiveInt.nullable(),
  seed: z.number().int().nonnegative(),
  nanPolicy: z.enum(['stop', 'skip']),
});
export type TrainSection = z.infer<typeof trainSectionSchema>;

/**
 * The default recipe: fairseq's for the small Transformer (Adam β = (0.9, 0.98), inverse-sqrt
 * decay after 4000 warm-up updates, clip-norm 0.1, label smoothing 0.1) with Frobenius decay on
 * the factors. Task presets state only what they change; no budget, so a run must set one.
 */
export const TRAIN_DEFAULTS: TrainSection = {
  optimizer: 'adam',
  lr: 5e-4,
  betas: [0.9, 0.98],
  schedule: 'inverse_sqrt',
  warmupUpdates: 4000,
  warmupInitLr: 1e-7,
  clipNorm: 0.1,
  updateFreq: 1,
  frobeniusDecay: 1e-4,
  weightDecay: 0,
  labelSmoothing: 0.1,
  maxTokens: 4096,
  maxSteps: null,
  maxEpochs: null,
  maxTimeMinutes: null,
  validEvery: 1000,
  saveEvery: 1000,
  logEvery: 50,
  earlyStopPatience: null,
  seed: 1,
  nanPolicy: 'stop',
};

/** The budget keys: a run needs one of them, and a resumed run may change them. */
export const BUDGET_KEYS = ['maxSteps', 'maxEpochs', 'maxTimeMinutes'] as const;

/** True when the section sets no budget (the run would never stop). */
export function hasNoBudget(t: TrainSection): boolean {
  return BUDGET_KEYS.every((k) => t[k] === null);
}

/**
 * The trainer options that come straight from a task's `train` section (the Trainer's own names;
 * null budgets become undefined). Tasks add their model, loss, data, validation and metric.
 */
export function trainerOptionsFromSection(t: TrainSection): Pick<
  TrainerOptions<unknown>,
  | 'optimizer' | 'lr' | 'betas' | 'schedule' | 'warmupUpdates' | 'warmupInitLr' | 'clipNorm' | 'updateFreq'
  | 'weightDecay' | 'frobeniusDecay' | 'maxSteps' | 'maxEpochs' | 'maxTimeMinutes' | 'validEvery' | 'saveEvery'
  | 'logEvery' | 'keepLast' | 'earlyStopPatience' | 'seed' | 'nanPolicy'
> {
  // Budgets and patience: null in a config file, undefined (= none) for the Trainer. The loss
  // (labelSmoothing) and the batching (maxTokens) are the task's, not the Trainer's.
  const { maxSteps, maxEpochs, maxTimeMinutes, earlyStopPatience, labelSmoothing: _loss, maxTokens: _batching, ...same } = t;
  return {
    ...same,
    maxSteps: maxSteps ?? undefined,
    maxEpochs: maxEpochs ?? undefined,
    maxTimeMinutes: maxTimeMinutes ?? undefined,
    earlyStopPatience: earlyStopPatience ?? undefined,
  };
}
