/** What trainer-state.json holds: everything besides weights and optimizer slots needed to resume. */
import type { RandomState } from '../random.ts';

export interface TrainerState {
  format: 'factorized-transformer/trainer-state@1';
  /** Optimizer updates done. */
  step: number;
  /** Data position of the next batch to read. */
  epoch: number;
  batchIndex: number;
  /** The process-wide random stream (dropout), as `globalRandom.getState()`. */
  rng: RandomState;
  seed: number;
  /** Seconds of training so far, summed across resumes (for maxTimeMinutes). */
  elapsedSeconds: number;
  /** Target tokens trained on so far. */
  tokensSeen: number;
  /** Multiplier on the scheduled lr; halved after each skipped non-finite update (nanPolicy 'skip'). */
  lrScale: number;
  nanSkips: number;
  consecutiveNanSkips: number;
  bestMetric: string;
  bestScore: number | null;
  bestStep: number | null;
  validationsWithoutImprovement: number;
  lastValidation: Record<string, number> | null;
  /** Sums since the last logged train record (loss, nll, target tokens). */
  logWindow: { loss: number; nll: number; tokens: number };
  /**
   * The step whose validation was due when this state was saved: checkpoint_last is written before
   * validating, so a validation that fails or is killed costs no progress; a resumed run runs it
   * first. Null/absent when none is pending (and in states written before this field existed).
   */
  pendingValidation?: number | null;
}
