/**
 * A task-agnostic training loop shared by translation and masked-LM (docs/ARCHITECTURE.md §6; files §4):
 * gradient accumulation, Frobenius decay + decoupled weight decay, clipping, schedules, validation,
 * best-checkpoint tracking, early stopping, budgets, crash-safe checkpoints and exact resume.
 *
 * One update = `updateFreq` micro-batches. The task's lossFn returns the *summed* loss and the token
 * count of a micro-batch; the trainer sums gradients over the micro-batches and divides by the total
 * token count (fairseq's "sum then scale"), so accumulation equals one big batch exactly.
 */
import * as tf from '@tensorflow/tfjs';
import * as path from 'node:path';
import { existsSync, rmSync } from 'node:fs';
import { InternalError, UserError } from '../errors.ts';
import { globalRandom, setGlobalSeed } from '../random.ts';
import {
  ALL_FACTOR_PAIRS,
  addFrobeniusDecayGrads,
  collectFactorPairs,
  factorVariableNames,
  type FactorPair,
  type FrobeniusDecayPairs,
} from '../factorized/index.ts';
import { TrainOptimizer, type OptimizerName } from './optimizers.ts';
import { makeSchedule, type Schedule, type ScheduleConfig } from './schedules.ts';
import { accumulateInto, clipByGlobalNorm, disposeGrads, scaleGrads, sumOfSquares, type GradMap } from './gradients.ts';
import { loadCheckpoint, recoverCheckpoint, saveCheckpoint, type FileWriter } from './checkpoint.ts';
import { RunFolder, resumeSource } from './run-folder.ts';
import { InterruptWatch, signalHandlingEnabled } from './signals.ts';
import { MetricsWriter, ProgressReporter, type MetricsRecord, type ProgressMode } from './progress.ts';
import type { TrainerState } from './state.ts';

/** A model the trainer can train: a functional tf.LayersModel plus its factor pairs. */
export interface TrainableModel {
  model: tf.LayersModel;
  /** Defaults to `collectFactorPairs(model.layers)`. */
  factorPairs?(): FactorPair[];
}

export interface LossOutput {
  /** Training loss of the micro-batch, SUMMED over its target tokens (e.g. labelSmoothedCrossEntropy().loss). */
  loss: tf.Scalar;
  /** Number of target tokens the sum runs over (> 0 unless the batch is all padding). */
  numTokens: number;
  /** Summed negative log-likelihood (without smoothing), for the logged perplexity. */
  nllLoss?: tf.Scalar;
}

export type LossFn<B> = (batch: B, context: { training: boolean }) => LossOutput;

/**
 * Batches by (epoch, index), so a resumed run reads exactly the batches an uninterrupted one would.
 * `batches(epoch, start)` yields batch `start`, `start + 1`, ... of that epoch.
 */
export interface BatchSource<B> {
  numBatches(epoch: number): number;
  batches(epoch: number, startIndex: number): Iterable<B>;
}

export interface TrainerOptions<B> {
  model: TrainableModel | tf.LayersModel;
  lossFn: LossFn<B>;
  data: BatchSource<B>;
  /** Validation results, e.g. { loss, perplexity, bleu }; called every validEvery updates and at the end. */
  validate?: () => Promise<Record<string, number>>;
  /** Output folder for checkpoints, metrics.jsonl and the lock. Omit for a run that writes nothing. */
  outDir?: string;
  /** The run's configuration, saved as config.json in every checkpoint. */
  config?: unknown;
  tokenizerFiles?: string[];

  optimizer?: OptimizerName; // default 'adamw'
  lr: number;
  betas?: [number, number];
  adamEps?: number;
  momentum?: number;
  schedule?: 'inverse_sqrt' | 'linear' | 'constant'; // default 'inverse_sqrt'
  warmupUpdates?: number; // default 0
  /** inverse_sqrt only: the lr of the first update (fairseq --warmup-init-lr). Default 0 with warmup. */
  warmupInitLr?: number;
  /** Global-norm clipping threshold; 0 = off (default). */
  clipNorm?: number;
  /** Micro-batches per update (gradient accumulation). Default 1. */
  updateFreq?: number;
  /** Decoupled weight decay on non-factor weights (and on factors of pairs excluded from FD). */
  weightDecay?: number;
  /** Frobenius decay coefficient λ on factor pairs. */
  frobeniusDecay?: number;
  /** Which pair kinds get Frobenius decay instead of weight decay (when frobeniusDecay > 0). Default all. */
  fdPairs?: Partial<FrobeniusDecayPairs>;

  maxSteps?: number;
  maxEpochs?: number;
  maxTimeMinutes?: number;
  /** Validate every N updates (0 = only at the end). */
  validEvery?: number;
  /** Save checkpoint_last every N updates (default validEvery; 0 = only at the end and with validation). */
  saveEvery?: number;
  /** Also keep checkpoint_<step> folders, the last N (1 = only checkpoint_last). */
  keepLast?: number;
  /** Log a train record every N updates. Default 10. */
  logEvery?: number;
  bestMetric?: string; // default 'loss'
  bestMode?: 'min' | 'max'; // default 'min'
  /** Stop after this many validations without improvement (0 = never). */
  earlyStopPatience?: number;
  seed?: number;
  /** Non-finite loss or gradients: 'stop' (default) or 'skip' the update and halve the lr scale. */
  nanPolicy?: 'stop' | 'skip';
  /** With 'skip': stop after this many consecutive skipped updates. Default 5. */
  maxConsecutiveNanSkips?: number;
  /** Continue from a checkpoint: true = <outDir>/checkpoint_last if it exists, or a folder path. */
  resume?: boolean | string;
  /** Start afresh even though outDir already holds checkpoint_last (which will be replaced). */
  overwrite?: boolean;
  progress?: ProgressMode;
  progressStream?: NodeJS.WritableStream;
  /** Writes checkpoint files (injectable to simulate disk faults). */
  writer?: FileWriter;
  /**
   * On SIGINT/SIGTERM finish the current update, save checkpoint_last and return with stopReason
   * 'interrupted' and the signal in `signal` (the caller exits 130/143; this library never calls
   * process.exit). A second signal is re-raised with the default action: the process dies of it at
   * once. Default: false, so a signal keeps its default action; true when outDir is set and the
   * program called `enableSignalHandling()` (signals.ts; the CLI does).
   */
  handleSignals?: boolean;
  /** Called after every applied or skipped update. */
  onStep?: (info: StepInfo) => void;
}

export interface StepInfo {
  step: number;
  epoch: number;
  /** Mean training loss per token of this update. */
  loss: number;
  nll: number;
  lr: number;
  gradNorm: number;
  numTokens: number;
  skipped: boolean;
}

/** 'interrupted': SIGINT/SIGTERM; the current update was finished and checkpoint_last saved. */
export type StopReason = 'maxSteps' | 'maxEpochs' | 'maxTime' | 'earlyStop' | 'interrupted';

export interface TrainResult {
  steps: number;
  epoch: number;
  stopReason: StopReason;
  /** Mean loss per token of the last applied update. */
  lastLoss: number;
  lastValidation: Record<string, number> | null;
  bestScore: number | null;
  bestStep: number | null;
  elapsedSeconds: number;
  nanSkips: number;
  tokensSeen: number;
  /** The signal that stopped the run (stopReason 'interrupted'), for the caller's exit code. */
  signal?: NodeJS.Signals;
}

/** Sums over the micro-batches of one update. */
interface MicroBatchSums {
  grads: GradMap;
  /** Each micro-batch's summed loss (and nll), still on the device: applyUpdate reads them all at once. */
  losses: tf.Scalar[];
  nlls: tf.Scalar[];
  /** Filled in by applyUpdate from that one read. */
  lossSum: number;
  nllSum: number;
  tokens: number;
  /** Whether the lossFn reported nllLoss (else nll/perplexity are not logged). */
  hasNll: boolean;
}

/** Training stopped because the loss or gradients became NaN/Inf (a UserError: one clean line). */
export class NonFiniteLossError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'NonFiniteLossError';
  }
}

/** Option `name` (its value or the fallback) as an integer >= `min`; 0 means "off" where min is 0. */
function integerOption(value: number | undefined, name: string, fallback: number, min: 0 | 1): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < min) throw new UserError(`\`${name}\`: expected an integer >= ${min}, got ${value}`);
  return v;
}

export class Trainer<B> {
  readonly model: tf.LayersModel;
  readonly optimizer: TrainOptimizer;
  private readonly options: TrainerOptions<B>;
  private readonly pairs: FactorPair[];
  private readonly fdPairs: FrobeniusDecayPairs;
  private readonly variables: tf.Variable[];
  private schedule: Schedule | null = null;
  private state: TrainerState;
  private readonly updateFreq: number;
  private readonly limits: { maxSteps: number; maxEpochs: number; maxTimeMinutes: number };
  private readonly every: { valid: number; save: number; log: number; keepLast: number; patience: number };
  /** The output folder while train() runs (null without outDir). */
  private run: RunFolder | null = null;
  /** SIGINT/SIGTERM listeners while train() runs, when it handles signals. */
  private interrupts: InterruptWatch | null = null;

  constructor(options: TrainerOptions<B>) {
    this.options = options;
    const trainable = options.model instanceof tf.LayersModel ? { model: options.model } : options.model;
    this.model = trainable.model;
    this.pairs = trainable.factorPairs ? trainable.factorPairs() : collectFactorPairs(this.model.layers);
    this.fdPairs = { ...ALL_FACTOR_PAIRS, ...(options.fdPairs ?? {}) };
    this.updateFreq = integerOption(options.updateFreq, 'updateFreq', 1, 1);
    this.limits = {
      maxSteps: integerOption(options.maxSteps, 'maxSteps', 0, 0),
      maxEpochs: integerOption(options.maxEpochs, 'maxEpochs', 0, 0),
      maxTimeMinutes: options.maxTimeMinutes ?? 0,
    };
    if (!(this.limits.maxTimeMinutes >= 0)) throw new UserError(`\`maxTimeMinutes\`: expected a number >= 0, got ${options.maxTimeMinutes}`);
    if (!this.limits.maxSteps && !this.limits.maxEpochs && !this.limits.maxTimeMinutes) {
      throw new UserError('training budget: set at least one of `maxSteps`, `maxEpochs`, `maxTimeMinutes`');
    }
    const valid = integerOption(options.validEvery, 'validEvery', 0, 0);
    this.every = {
      valid,
      save: integerOption(options.saveEvery, 'saveEvery', valid, 0),
      log: integerOption(options.logEvery, 'logEvery', 10, 1),
      keepLast: integerOption(options.keepLast, 'keepLast', 1, 1),
      patience: integerOption(options.earlyStopPatience, 'earlyStopPatience', 0, 0),
    };
    if (options.nanPolicy && !['stop', 'skip'].includes(options.nanPolicy)) {
      throw new UserError(`\`nanPolicy\`: expected 'stop' or 'skip', got '${options.nanPolicy}'`);
    }
    if (options.bestMode && !['min', 'max'].includes(options.bestMode)) {
      throw new UserError(`\`bestMode\`: expected 'min' or 'max', got '${options.bestMode}'`);
    }
    for (const key of ['weightDecay', 'frobeniusDecay', 'clipNorm'] as const) {
      const v = options[key];
      if (v !== undefined && !(Number.isFinite(v) && v >= 0)) throw new UserError(`\`${key}\`: expected a number >= 0, got ${v}`);
    }

    // Factor weights of pairs under Frobenius decay are excluded from plain weight decay. Without
    // Frobenius decay (λ = 0) the factors keep ordinary weight decay: that is the paper's baseline.
    const fdActive = (options.frobeniusDecay ?? 0) > 0;
    const fdNames = factorVariableNames(this.pairs.filter((p) => fdActive && this.fdPairs[p.kind]));
    const weights = this.model.trainableWeights;
    this.variables = weights.map((w) => w.read() as tf.Variable);
    this.optimizer = new TrainOptimizer(
      { name: options.optimizer ?? 'adamw', betas: options.betas, eps: options.adamEps, momentum: options.momentum, weightDecay: options.weightDecay },
      weights.map((w) => ({ name: w.originalName, variable: w.read() as tf.Variable, decay: !fdNames.has(w.name) })),
    );
    this.state = {
      format: 'factorized-transformer/trainer-state@1',
      step: 0,
      epoch: 0,
      batchIndex: 0,
      rng: globalRandom.getState(),
      seed: options.seed ?? 1,
      elapsedSeconds: 0,
      tokensSeen: 0,
      lrScale: 1,
      nanSkips: 0,
      consecutiveNanSkips: 0,
      bestMetric: options.bestMetric ?? 'loss',
      bestScore: null,
      bestStep: null,
      validationsWithoutImprovement: 0,
      lastValidation: null,
      logWindow: { loss: 0, nll: 0, tokens: 0 },
    };
  }

  /** Updates done so far. */
  get step(): number {
    return this.state.step;
  }

  /** A copy of the resumable state. */
  get trainerState(): TrainerState {
    return structuredClone(this.state);
  }

  /** Total updates the budget allows, when it can be known in advance (for the schedule and ETA). */
  private plannedUpdates(): number | null {
    const { maxSteps, maxEpochs } = this.limits;
    let fromEpochs: number | null = null;
    if (maxEpochs) {
      fromEpochs = 0;
      for (let e = 0; e < maxEpochs; e++) fromEpochs += Math.ceil(this.options.data.numBatches(e) / this.updateFreq);
    }
    if (maxSteps && fromEpochs !== null) return Math.min(maxSteps, fromEpochs);
    return maxSteps || fromEpochs;
  }

  private makeSchedule(): Schedule {
    const o = this.options;
    const kind = o.schedule ?? 'inverse_sqrt';
    const warmupUpdates = o.warmupUpdates ?? 0;
    let config: ScheduleConfig;
    if (kind === 'linear') {
      const total = this.plannedUpdates();
      if (!total) throw new UserError("`schedule` 'linear': needs `maxSteps` or `maxEpochs` to know where the decay ends");
      config = { kind, lr: o.lr, warmupUpdates, totalUpdates: total };
    } else if (kind === 'inverse_sqrt') {
      config = { kind, lr: o.lr, warmupUpdates, warmupInitLr: o.warmupInitLr };
    } else if (kind === 'constant') {
      config = { kind, lr: o.lr, warmupUpdates };
    } else {
      throw new UserError(`\`schedule\`: unknown '${kind}'; expected inverse_sqrt, linear or constant`);
    }
    return makeSchedule(config);
  }

  /** Learning rate of the next update. */
  currentLr(): number {
    this.schedule ??= this.makeSchedule();
    return this.schedule(this.state.step) * this.state.lrScale;
  }

  private async restore(dir: string, removeTemporaries: boolean): Promise<void> {
    recoverCheckpoint(dir, removeTemporaries);
    const ckpt = await loadCheckpoint(dir);
    if (!ckpt.trainerState || !ckpt.optimizerState) {
      throw new UserError(`\`resume\` ${dir}: not a training checkpoint (no trainer-state.json / optimizer.json)`);
    }
    ckpt.restoreWeightsInto(this.model);
    this.optimizer.setState(ckpt.optimizerState, path.join(dir, 'optimizer.json'));
    this.state = structuredClone(ckpt.trainerState);
    globalRandom.setState(this.state.rng);
  }

  async train(): Promise<TrainResult> {
    const o = this.options;
    let metrics: MetricsWriter | null = null;
    const progress = new ProgressReporter(o.progress ?? 'auto', (o.progressStream ?? process.stderr) as NodeJS.WriteStream);
    try {
      const run = o.outDir ? RunFolder.open(o.outDir) : null;
      this.run = run;
      const resumeDir = resumeSource(o.resume, run);
      if (resumeDir) {
        await this.restore(resumeDir, run?.holds(resumeDir) ?? false);
        progress.message(`resumed from ${resumeDir} at step ${this.state.step} (epoch ${this.state.epoch}, batch ${this.state.batchIndex})`);
      } else {
        run?.refuseToReplace(o.overwrite ?? false);
        setGlobalSeed(this.state.seed);
      }
      if (run) {
        metrics = new MetricsWriter(run.metricsFile);
        // A pending validation is re-run first (runLoop): drop any record it left before dying.
        if (this.state.step > 0) metrics.truncateAfter(this.state.step, this.state.pendingValidation === this.state.step);
        else if (!resumeDir) rmSync(metrics.file, { force: true });
      }
      return await this.loop(progress, metrics);
    } finally {
      progress.stop();
      this.run?.release();
      this.run = null;
    }
  }

  private get interrupted(): NodeJS.Signals | null {
    return this.interrupts?.signal ?? null;
  }

  private async loop(progress: ProgressReporter, metrics: MetricsWriter | null): Promise<TrainResult> {
    const handleSignals = this.options.handleSignals ?? (signalHandlingEnabled() && this.run !== null);
    this.interrupts = handleSignals
      ? new InterruptWatch((signal) => progress.message(`${signal}: finishing this update and saving checkpoint_last (${signal} again to abort at once)`))
      : null;
    try {
      return await this.runLoop(progress, metrics);
    } finally {
      this.interrupts?.stop();
    }
  }

  private async runLoop(progress: ProgressReporter, metrics: MetricsWriter | null): Promise<TrainResult> {
    const o = this.options;
    const sessionStart = performance.now();
    const elapsedAtStart = this.state.elapsedSeconds;
    const stepAtStart = this.state.step;
    const elapsed = (): number => elapsedAtStart + (performance.now() - sessionStart) / 1000;
    const planned = this.plannedUpdates();
    // The logging window's sums live in the state, so a resumed run logs the same means.
    const window = this.state.logWindow;
    let windowStart = performance.now();
    let lastLoss = NaN;
    // A resumed run whose budget is already spent does nothing.
    let stopReason: StopReason | null = this.budgetReason(elapsed());
    // checkpoint_last is saved before its step's validation; if that validation did not complete
    // (killed, or it failed), run it now, as the uninterrupted run did right after that save.
    if (this.state.pendingValidation === this.state.step && this.state.step > 0) {
      if (o.validate) {
        if (await this.validateAndTrack(progress, metrics, elapsed())) stopReason ??= 'earlyStop';
        if (stopReason !== null && this.run) await this.saveLast(this.run);
      } else this.state.pendingValidation = null;
    }

    let savedAtStep = this.state.step;

    while (stopReason === null) {
      // Also reached after a skipped (non-finite) last update of an epoch.
      stopReason = this.interrupted ? 'interrupted' : this.budgetReason(elapsed());
      if (stopReason !== null) break;
      const epoch = this.state.epoch;
      const n = o.data.numBatches(epoch);
      if (!(n > 0)) throw new UserError(`training data: epoch ${epoch} has no batches (empty corpus?)`);
      const iterator = o.data.batches(epoch, this.state.batchIndex)[Symbol.iterator]();
      try {
        let epochDone = false;
        while (!epochDone && stopReason === null) {
          const update = this.accumulate(iterator, n);
          // The saved data position is always the next batch to read: roll over at the epoch's end.
          if (this.state.batchIndex >= n) {
            this.state.epoch++;
            this.state.batchIndex = 0;
            epochDone = true;
          }
          const info = await this.applyUpdate(update);
          this.state.elapsedSeconds = elapsed();
          o.onStep?.(info);
          if (info.skipped) {
            progress.message(`step ${this.state.step + 1}: non-finite loss or gradients, update skipped; lr scale now ${this.state.lrScale}`);
            if (this.state.consecutiveNanSkips >= (o.maxConsecutiveNanSkips ?? 5)) {
              throw new NonFiniteLossError(
                `training stopped at step ${this.state.step + 1}: ${this.state.consecutiveNanSkips} consecutive updates with NaN/Inf loss or gradients (nanPolicy 'skip'); ${this.keptCheckpoint()}`,
              );
            }
            continue;
          }
          lastLoss = info.loss;
          window.loss += update.lossSum;
          window.nll += update.nllSum;
          window.tokens += update.tokens;
          const step = this.state.step;

          if (step % this.every.log === 0) {
            const seconds = (performance.now() - windowStart) / 1000;
            const tokensPerSecond = window.tokens / Math.max(seconds, 1e-9);
            const meanLoss = window.loss / Math.max(window.tokens, 1);
            const perStep = (elapsed() - elapsedAtStart) / Math.max(step - stepAtStart, 1);
            const etaSeconds = planned ? Math.max(0, planned - step) * perStep : null;
            const record: MetricsRecord = { type: 'train', step, epoch: this.state.epoch, time: elapsed(), loss: meanLoss };
            if (update.hasNll) {
              record.nll = window.nll / Math.max(window.tokens, 1);
              record.perplexity = Math.exp(record.nll);
            }
            Object.assign(record, { lr: info.lr, gradNorm: info.gradNorm, tokensPerSecond });
            metrics?.append(record);
            progress.update({ step, total: planned, loss: meanLoss, lr: info.lr, tokensPerSecond, etaSeconds });
            Object.assign(window, { loss: 0, nll: 0, tokens: 0 });
            windowStart = performance.now();
          }

          // Let the event loop run (signal handlers, the progress bar's timer) between updates.
          await new Promise<void>((resolve) => setImmediate(resolve));
          stopReason = this.interrupted ? 'interrupted' : this.budgetReason(elapsed());
          // An interrupted run saves at once; validation is for budgets that ran out.
          const validateNow =
            o.validate !== undefined && stopReason !== 'interrupted' && ((this.every.valid > 0 && step % this.every.valid === 0) || stopReason !== null);
          const saveNow = (this.every.save > 0 && step % this.every.save === 0) || validateNow || stopReason !== null;
          // Saved BEFORE validating: a validation that fails or is killed never costs the updates
          // since the last save (or blocks every --resume at the same point). The state marks this
          // step's validation as pending; a resumed run runs it first, so resume stays exact.
          if (saveNow && this.run) {
            this.state.pendingValidation = validateNow ? step : null;
            await this.saveLast(this.run);
            savedAtStep = step;
          }
          if (validateNow) {
            if (await this.validateAndTrack(progress, metrics, elapsed())) stopReason ??= 'earlyStop';
            // The run ends here: its final checkpoint_last holds this validation too.
            if (stopReason !== null && this.run) await this.saveLast(this.run);
          }
        }
      } finally {
        iterator.return?.();
      }
    }
    // Stopped at the top of the loop with unsaved progress (the last update of an epoch was skipped).
    if (this.run && this.state.step !== savedAtStep) {
      const validateNow = o.validate !== undefined && stopReason !== 'interrupted' && this.state.lastValidation?.step !== this.state.step;
      // As in the loop: save first, then validate, then save the final state.
      this.state.pendingValidation = validateNow ? this.state.step : null;
      await this.saveLast(this.run);
      if (validateNow) {
        await this.validateAndTrack(progress, metrics, elapsed());
        await this.saveLast(this.run);
      }
    }
    progress.stop();
    return {
      steps: this.state.step,
      epoch: this.state.epoch,
      stopReason,
      lastLoss,
      lastValidation: this.state.lastValidation,
      bestScore: this.state.bestScore,
      bestStep: this.state.bestStep,
      elapsedSeconds: this.state.elapsedSeconds,
      nanSkips: this.state.nanSkips,
      tokensSeen: this.state.tokensSeen,
      ...(stopReason === 'interrupted' && this.interrupted ? { signal: this.interrupted } : {}),
    };
  }

  private budgetReason(elapsedSeconds: number): StopReason | null {
    const { maxSteps, maxEpochs, maxTimeMinutes } = this.limits;
    if (maxSteps && this.state.step >= maxSteps) return 'maxSteps';
    if (maxEpochs && this.state.epoch >= maxEpochs) return 'maxEpochs';
    if (maxTimeMinutes && elapsedSeconds >= maxTimeMinutes * 60) return 'maxTime';
    return null;
  }

  /** Reads up to updateFreq micro-batches (not past the epoch's end) and sums their gradients. */
  private accumulate(iterator: Iterator<B>, numBatches: number): MicroBatchSums {
    const grads: GradMap = {};
    const losses: tf.Scalar[] = [];
    const nlls: tf.Scalar[] = [];
    let tokens = 0;
    let hasNll = false;
    for (let micro = 0; micro < this.updateFreq && this.state.batchIndex < numBatches; micro++) {
      const next = iterator.next();
      if (next.done) {
        throw new InternalError(`training data: epoch ${this.state.epoch} ended after ${this.state.batchIndex} batches, numBatches said ${numBatches}`);
      }
      let numTokens = 0;
      let nll: tf.Scalar | undefined;
      let step: { value: tf.Scalar; grads: tf.NamedTensorMap };
      try {
        step = tf.variableGrads(() => {
          const out = this.options.lossFn(next.value, { training: true });
          numTokens = out.numTokens;
          // variableGrads disposes everything but its return value; keep the extra output.
          if (out.nllLoss) nll = tf.keep(out.nllLoss);
          return out.loss;
        }, this.variables);
      } catch (err) {
        throw outOfEngineMemory(err) ?? err;
      }
      const { value, grads: g } = step;
      // No read here: the values stay on the device until applyUpdate's single read.
      losses.push(value);
      if (nll) {
        hasNll = true;
        nlls.push(nll);
      }
      tokens += numTokens;
      accumulateInto(grads, g);
      this.state.batchIndex++;
    }
    return { grads, losses, nlls, lossSum: 0, nllSum: 0, tokens, hasNll };
  }

  /**
   * Scales, adds Frobenius decay, clips and applies one update; or skips it on NaN/Inf.
   *
   * The update's only device read: the micro-batch losses, nlls and Σ‖g‖², stacked and read with
   * one `await data()` (GPU backends cannot read synchronously, and each read is a pipeline
   * stall). The sums, the norm's square root and the clip coefficient are then computed on the
   * host in Float64 exactly as before, so runs (and resumed runs) stay bit-identical.
   */
  private async applyUpdate(update: MicroBatchSums): Promise<StepInfo> {
    const o = this.options;
    const lr = this.currentLr();
    const tokens = Math.max(update.tokens, 1);
    scaleGrads(update.grads, 1 / tokens);
    // FD gradients join the loss gradient before clipping (docs/ARCHITECTURE.md §1.4, §6.1).
    const grads = addFrobeniusDecayGrads(update.grads, this.pairs, o.frobeniusDecay ?? 0, this.fdPairs);
    const k = update.losses.length;
    const readback = tf.tidy(() => tf.stack([...update.losses, ...update.nlls, sumOfSquares(grads)]));
    tf.dispose([...update.losses, ...update.nlls]);
    const values = await readback.data();
    readback.dispose();
    // Summed in micro-batch order in Float64, as the per-micro-batch reads did.
    for (let i = 0; i < k; i++) update.lossSum += values[i];
    for (let i = 0; i < update.nlls.length; i++) update.nllSum += values[k + i];
    let gradNorm = NaN;
    let finite = Number.isFinite(update.lossSum);
    if (finite) {
      gradNorm = Math.sqrt(values[values.length - 1]);
      finite = Number.isFinite(gradNorm);
    }
    const info: StepInfo = {
      step: this.state.step,
      epoch: this.state.epoch,
      loss: update.lossSum / tokens,
      nll: update.nllSum / tokens,
      lr,
      gradNorm,
      numTokens: update.tokens,
      skipped: false,
    };
    if (!finite) {
      disposeGrads(grads);
      if ((o.nanPolicy ?? 'stop') === 'stop') {
        throw new NonFiniteLossError(
          `training stopped at step ${this.state.step + 1}: ${Number.isFinite(update.lossSum) ? 'gradients are' : 'loss is'} NaN/Inf (nanPolicy 'stop'); ${this.keptCheckpoint()}`,
        );
      }
      this.state.nanSkips++;
      this.state.consecutiveNanSkips++;
      this.state.lrScale /= 2;
      info.skipped = true;
      return info;
    }
    clipByGlobalNorm(grads, gradNorm, o.clipNorm ?? 0);
    this.optimizer.step(grads, lr);
    disposeGrads(grads);
    this.state.step++;
    this.state.consecutiveNanSkips = 0;
    this.state.tokensSeen += update.tokens;
    info.step = this.state.step;
    return info;
  }

  /** What a run stopped by NaN/Inf leaves behind, for its message: only claim a checkpoint that exists. */
  private keptCheckpoint(): string {
    if (!this.run) return 'nothing was saved (no output folder)';
    return existsSync(this.run.lastCheckpoint) ? 'the last good checkpoint is kept' : 'no checkpoint was written yet';
  }

  /**
   * Runs the due validation, clears the pending mark and saves checkpoint_best on improvement.
   * Returns true when early stopping's patience has run out.
   */
  private async validateAndTrack(progress: ProgressReporter, metrics: MetricsWriter | null, time: number): Promise<boolean> {
    const improved = await this.runValidation(progress, metrics, time);
    this.state.pendingValidation = null;
    if (improved && this.run) await this.save(this.run.bestCheckpoint);
    if (this.every.patience > 0 && this.state.validationsWithoutImprovement >= this.every.patience) {
      progress.message(`early stop at step ${this.state.step}: no improvement of ${this.state.bestMetric} in ${this.every.patience} validations`);
      return true;
    }
    return false;
  }

  /** Runs the task's validation, logs it and updates the best score. Returns whether it improved. */
  private async runValidation(progress: ProgressReporter, metrics: MetricsWriter | null, time: number): Promise<boolean> {
    const results = await this.options.validate!();
    const metric = this.state.bestMetric;
    if (!(metric in results)) {
      throw new UserError(`\`bestMetric\` '${metric}': not among the validation results (${Object.keys(results).join(', ')})`);
    }
    const score = results[metric];
    const step = this.state.step;
    this.state.lastValidation = { ...results, step };
    const mode = this.options.bestMode ?? 'min';
    const best = this.state.bestScore;
    const improved = Number.isFinite(score) && (best === null || (mode === 'min' ? score < best : score > best));
    if (improved) {
      this.state.bestScore = score;
      this.state.bestStep = step;
      this.state.validationsWithoutImprovement = 0;
    } else {
      this.state.validationsWithoutImprovement++;
    }
    const record: MetricsRecord = { type: 'valid', step, epoch: this.state.epoch, time, loss: results.loss ?? NaN, ...results };
    metrics?.append(record);
    const shown = Object.entries(results)
      .map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toPrecision(5)}`)
      .join(' ');
    progress.message(`valid step ${step}: ${shown}${improved ? ' (best)' : ''}`);
    return improved;
  }

  private async save(dir: string): Promise<void> {
    this.state.rng = globalRandom.getState();
    await saveCheckpoint(dir, {
      model: this.model,
      optimizer: this.optimizer,
      trainerState: this.state,
      config: this.options.config,
      tokenizerFiles: this.options.tokenizerFiles,
      writer: this.options.writer,
    });
  }

  /** checkpoint_last, plus checkpoint_<step> copies pruned to the last keepLast. */
  private async saveLast(run: RunFolder): Promise<void> {
    await this.save(run.lastCheckpoint);
    await run.keepStepCopy(this.state.step, this.every.keepLast);
  }

  dispose(): void {
    this.optimizer.dispose();
  }
}

/**
 * The wasm engine aborts (a WebAssembly.RuntimeError "Aborted()") when a step needs more than its
 * 4 GB heap; its module is dead after that, so the run cannot go on in this process. Said as what
 * it is, with the way out; the last checkpoint on disk is untouched (written atomically before).
 */
function outOfEngineMemory(err: unknown): UserError | null {
  if (!(err instanceof WebAssembly.RuntimeError) || !/Aborted\(/.test(err.message)) return null;
  return new UserError(
    `the ${tf.getBackend()} engine ran out of memory in a training step (its heap is limited to 4 GB): lower \`train.maxTokens\` (or \`data.maxLength\`) and resume from the last checkpoint`,
  );
}
