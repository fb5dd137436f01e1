/**
 * The real run function: one grid point → the task's train + evaluate calls (tasks/translation.ts,
 * tasks/mlm.ts). It only translates the grid's knobs into task config keys; the tasks do the work.
 *
 * Knobs per run (task config keys):
 * - model.attentionRankScale = rankScale (model.attentionRank cleared so it cannot override it);
 * - grid.factorize 'all': model.linearRankScale = model.embeddingRankScale = rankScale below 1,
 *   null (dense) at 1, as the paper's code; grid.factorizeLinear: model.linearRankScale = rankScale;
 * - model.spectralInit = true | false for every factor pair type (variant; true is the paper's
 *   SI: re-balanced attention pairs, truncated SVD of a default-initialized matrix for the rest);
 * - train.weightDecay = regularization.weightDecay (every run),
 *   train.frobeniusDecay = regularization.frobeniusDecay in fd / si-fd, 0 otherwise;
 * - train.seed = seed; train.maxSteps / maxTimeMinutes = budget.
 */
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors.ts';
import { validateConfig } from '../models/schema.ts';
import { ensureDefaultMlmCorpus, ensureDefaultTranslationCorpus } from '../text/defaults.ts';
import type { ProgressMode } from '../train/progress.ts';
import { mergeConfig } from '../tasks/config.ts';
import { mlmConfigFileSchema, resolveMlmConfig, type MlmConfigOverrides } from '../tasks/mlm-config.ts';
import { evaluateMlm, trainMlm } from '../tasks/mlm.ts';
import { resolveTranslationConfig, translationConfigFileSchema, type TranslationConfigOverrides } from '../tasks/translation-config.ts';
import { evaluateTranslation, trainTranslation } from '../tasks/translation.ts';
import type { RunContext, RunFunction, RunResult } from './runner.ts';
import { VARIANT_SETTINGS, type ExperimentSpec, type PlannedRun } from './spec.ts';

/** The config overrides of one run: the spec's common config, then the grid's knobs on top. */
export function runOverrides(spec: ExperimentSpec, run: Pick<PlannedRun, 'rankScale' | 'variant' | 'seed'>): Record<string, unknown> {
  const settings = VARIANT_SETTINGS[run.variant];
  const model: Record<string, unknown> = { attentionRankScale: run.rankScale, spectralInit: settings.spectralInit };
  model.attentionRank = null;
  if (spec.grid.factorizeLinear) model.linearRankScale = run.rankScale;
  if (spec.grid.factorize === 'all') {
    // The paper's code factorizes these only for 0 < rank_scale < 1 (patch_transformer).
    const scale = run.rankScale < 1 ? run.rankScale : null;
    model.linearRankScale = scale;
    model.embeddingRankScale = scale;
  }
  const train: Record<string, unknown> = {
    seed: run.seed,
    weightDecay: spec.regularization.weightDecay,
    frobeniusDecay: settings.frobeniusDecay ? spec.regularization.frobeniusDecay : 0,
  };
  if (spec.budget.maxSteps !== undefined) train.maxSteps = spec.budget.maxSteps;
  if (spec.budget.maxTimeMinutes !== undefined) train.maxTimeMinutes = spec.budget.maxTimeMinutes;
  return mergeConfig(spec.config ?? {}, { model, train });
}

/**
 * Checks, before any run starts, that the spec's config is valid for its task and that every
 * grid point resolves (e.g. a rank scale too small for the model); errors name the spec file.
 */
export function checkSpecAgainstTask(spec: ExperimentSpec, where: string): void {
  const schema = spec.task === 'translation' ? translationConfigFileSchema : mlmConfigFileSchema;
  validateConfig(schema, spec.config ?? {}, `${where}: 'config'`);
  for (const rankScale of spec.grid.rankScale) {
    const source = `${where} (rankScale ${rankScale})`;
    const train = resolvedTrainConfig(spec, { rankScale, variant: spec.grid.variants[0], seed: spec.grid.seeds[0] }, source);
    // The trainer would only find this out when the first run starts.
    if (train.schedule === 'linear' && train.maxSteps !== null && train.warmupUpdates > train.maxSteps) {
      throw new UserError(`${source}: 'train.warmupUpdates' ${train.warmupUpdates} exceeds 'budget.maxSteps' ${train.maxSteps} (linear schedule)`);
    }
  }
}

/** The training settings one grid point resolves to; the point's values stand where the command line's would, so errors name `source`. */
function resolvedTrainConfig(spec: ExperimentSpec, run: Pick<PlannedRun, 'rankScale' | 'variant' | 'seed'>, source: string) {
  const overrides = runOverrides(spec, run);
  return spec.task === 'translation'
    ? resolveTranslationConfig({
        preset: spec.preset,
        flags: overrides as TranslationConfigOverrides,
        flagsSource: source,
        sourceLang: spec.data?.sourceLang ?? 'en',
        targetLang: spec.data?.targetLang ?? 'es',
      }).train
    : resolveMlmConfig({ preset: spec.preset, flags: overrides as MlmConfigOverrides, flagsSource: source }).train;
}

/**
 * A finished run continued to a larger budget (runner.ts) trains exactly as one trained to that
 * budget from the start only when its learning rate does not depend on the budget: the linear
 * schedule's decay ends at the budget, so such a run is refused rather than silently changed.
 */
function checkExtendable(spec: ExperimentSpec, run: PlannedRun, ctx: RunContext): void {
  if (!ctx.extending) return;
  const train = resolvedTrainConfig(spec, run, run.name);
  if (train.schedule === 'linear') {
    throw new UserError(
      `${run.name}: finished at ${ctx.extending.steps} updates with the linear schedule, whose decay ends at the budget; a larger budget would not match a run trained to it from the start: choose another \`out\``,
    );
  }
}

export interface TaskRunOptions {
  progress?: ProgressMode;
}

/** The run function that trains and evaluates with the real tasks. */
export function makeTaskRunFunction(opts: TaskRunOptions = {}): RunFunction {
  return (spec, run, ctx) => (spec.task === 'translation' ? runTranslation(spec, run, ctx, opts) : runMlm(spec, run, ctx, opts));
}

/** The record of one finished run: the task's summary, plus the evaluation since `evalStarted`. */
function runResult(
  summary: Pick<RunResult, 'steps' | 'finalValidLoss' | 'numParameters' | 'fullRankParameters'> & { wallSeconds: number },
  evalStarted: number,
  test: Record<string, number> | null,
  notes: Record<string, string>,
): RunResult {
  return {
    steps: summary.steps,
    finalValidLoss: summary.finalValidLoss,
    numParameters: summary.numParameters,
    fullRankParameters: summary.fullRankParameters,
    // The trainer's clock: it adds up the sessions of a resumed run.
    trainWallSeconds: summary.wallSeconds,
    evalWallSeconds: (performance.now() - evalStarted) / 1000,
    test,
    // The tfjs backend the run trained on (the engine), for the report's provenance line.
    notes: { backend: tf.getBackend(), ...notes },
  };
}

async function runTranslation(spec: ExperimentSpec, run: PlannedRun, ctx: RunContext, opts: TaskRunOptions): Promise<RunResult> {
  checkExtendable(spec, run, ctx);
  const corpus = spec.data
    ? { dir: spec.data.dir, sourceLang: spec.data.sourceLang, targetLang: spec.data.targetLang, tokenizerPath: spec.data.tokenizer }
    : await ensureDefaultTranslationCorpus();
  const summary = await trainTranslation({
    data: corpus.dir,
    out: ctx.dir,
    sourceLang: corpus.sourceLang,
    targetLang: corpus.targetLang,
    preset: spec.preset,
    tokenizer: ctx.resume ? undefined : corpus.tokenizerPath,
    overrides: runOverrides(spec, run) as TranslationConfigOverrides,
    resume: ctx.resume,
    progress: opts.progress ?? 'none',
    log: ctx.log,
  });

  return finishTranslationRun(summary, spec.evaluate, ctx, corpus.dir);
}

/** A trained translation run's record: its summary plus the test evaluation the spec asks for (shared with the compression runner). */
export async function finishTranslationRun(
  summary: Parameters<typeof runResult>[0] & { stopReason: string },
  evaluate: ExperimentSpec['evaluate'],
  ctx: Pick<RunContext, 'dir' | 'log'>,
  dataDir: string,
): Promise<RunResult> {
  const evalStarted = performance.now();
  let test: Record<string, number> | null = null;
  const notes: Record<string, string> = { stopReason: summary.stopReason };
  if (evaluate !== false) {
    const e = evaluate ?? {};
    const result = await evaluateTranslation({ checkpoint: ctx.dir, data: dataDir, split: e.split ?? 'test', beam: e.beam, limit: e.limit, log: ctx.log });
    test = { bleu: result.bleu, chrf: result.chrf, perplexity: result.perplexity, loss: result.loss, sentences: result.numSentences, beam: result.beam };
    notes.bleuSignature = result.signature;
    notes.split = result.split;
    notes.decodeEngine = result.engine;
  }
  return runResult(summary, evalStarted, test, notes);
}

async function runMlm(spec: ExperimentSpec, run: PlannedRun, ctx: RunContext, opts: TaskRunOptions): Promise<RunResult> {
  checkExtendable(spec, run, ctx);
  const data = spec.data ? { dir: spec.data.dir, tokenizer: spec.data.tokenizer } : { dir: (await ensureDefaultMlmCorpus()).dir, tokenizer: undefined };
  const summary = await trainMlm({
    data: data.dir,
    tokenizer: data.tokenizer,
    out: ctx.dir,
    preset: spec.preset,
    overrides: runOverrides(spec, run) as MlmConfigOverrides,
    resume: ctx.resume,
    progress: opts.progress ?? 'none',
    log: ctx.log,
  });

  const evalStarted = performance.now();
  let test: Record<string, number> | null = null;
  // The stop reason, as the translation record's: a larger budget extends only runs that stopped at theirs.
  const notes: Record<string, string> = { stopReason: summary.stopReason };
  if (spec.evaluate !== false) {
    const split = (spec.evaluate?.split ?? 'test') as 'train' | 'valid' | 'test';
    const result = await evaluateMlm({ checkpoint: ctx.dir, data: data.dir, split, log: ctx.log });
    test = { perplexity: result.perplexity, accuracy: result.accuracy, loss: result.loss, unigramPerplexity: result.unigramPerplexity };
    notes.split = result.split;
  }
  return runResult(summary, evalStarted, test, notes);
}
