/**
 * The real run function: one grid point → the task's train + evaluate calls (tasks/translation.ts,
 * tasks/mlm.ts). It only translates the grid's knobs into task config keys; the tasks do the work.
 *
 * Knobs per run (task config keys):
 * - model.attentionRankScale = rankScale (model.attentionRank cleared so it cannot override it),
 *   model.linearRankScale = rankScale when grid.factorizeLinear;
 * - model.spectralInit = true | false for every factor pair type (variant);
 * - train.weightDecay = regularization.weightDecay (every run),
 *   train.frobeniusDecay = regularization.frobeniusDecay in fd / si-fd, 0 otherwise;
 * - train.seed = seed; train.maxSteps / maxTimeMinutes = budget.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../errors.ts';
import { ensureDefaultMlmCorpus, ensureDefaultTranslationCorpus } from '../text/defaults.ts';
import { loadTokenizer } from '../text/tokenizer.ts';
import { TransformerSeq2Seq } from '../models/seq2seq.ts';
import { buildBertForMaskedLM } from '../models/bert.ts';
import type { ProgressMode } from '../train/progress.ts';
import { mergeConfig, validateConfig } from '../tasks/config.ts';
import {
  resolveTranslationConfig,
  seq2seqModelConfig,
  translationConfigFileSchema,
  type TranslationConfig,
  type TranslationConfigOverrides,
} from '../tasks/translation-config.ts';
import { evaluateTranslation, trainTranslation } from '../tasks/translation.ts';
import { bertConfigFor, evaluateMlm, mlmConfigFileSchema, parseStoredMlmConfig, resolveMlmConfig, trainMlm, type MlmConfigOverrides } from '../tasks/mlm.ts';
import { METRICS_JSONL, type RunContext, type RunFunction, type RunResult } from './runner.ts';
import { VARIANT_SETTINGS, type ExperimentSpec, type PlannedRun } from './spec.ts';

/** The config overrides of one run: the spec's common config, then the grid's knobs on top. */
export function runOverrides(spec: ExperimentSpec, run: Pick<PlannedRun, 'rankScale' | 'variant' | 'seed'>): Record<string, unknown> {
  const settings = VARIANT_SETTINGS[run.variant];
  const model: Record<string, unknown> = { attentionRankScale: run.rankScale, spectralInit: settings.spectralInit };
  if (spec.task === 'translation') model.attentionRank = null;
  if (spec.grid.factorizeLinear) model.linearRankScale = run.rankScale;
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
  validateConfig(schema as never, spec.config ?? {}, `${where}: 'config'`);
  for (const rankScale of spec.grid.rankScale) {
    const overrides = runOverrides(spec, { rankScale, variant: spec.grid.variants[0], seed: spec.grid.seeds[0] });
    try {
      const { train } =
        spec.task === 'translation'
          ? resolveTranslationConfig({ preset: spec.preset, flags: overrides as TranslationConfigOverrides, sourceLang: spec.data?.sourceLang ?? 'en', targetLang: spec.data?.targetLang ?? 'es' })
          : resolveMlmConfig({ preset: spec.preset, flags: overrides as MlmConfigOverrides });
      // The trainer would only find this out when the first run starts.
      if (train.schedule === 'linear' && train.maxSteps !== null && train.warmupUpdates > train.maxSteps) {
        throw new UserError(`'train.warmupUpdates' ${train.warmupUpdates} exceeds 'budget.maxSteps' ${train.maxSteps} (linear schedule)`);
      }
    } catch (err) {
      if (err instanceof UserError) throw new UserError(`${where} (rankScale ${rankScale}): ${err.message.replace(/^command line: /, '')}`);
      throw err;
    }
  }
}

/** The last validation loss and the training time (cumulative over resumes) from metrics.jsonl. */
export function lastValidation(dir: string): { loss: number; time: number } {
  const file = join(dir, METRICS_JSONL);
  if (!existsSync(file)) return { loss: NaN, time: NaN };
  let loss = NaN;
  let time = NaN;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const rec = JSON.parse(line) as { type?: string; loss?: number; time?: number };
    if (typeof rec.time === 'number') time = rec.time;
    if (rec.type === 'valid' && typeof rec.loss === 'number') loss = rec.loss;
  }
  return { loss, time };
}

/** Parameters of a model built from a config, then disposed. */
function countParameters(build: () => { numParameters(): number; dispose(): void }): number {
  const model = build();
  try {
    return model.numParameters();
  } finally {
    model.dispose();
  }
}

/** The same model with every factor at full rank (= the dense model's parameter count). */
function fullRankModel<T extends { model: Record<string, unknown> }>(config: T): T {
  const model = { ...config.model, attentionRankScale: 1, linearRankScale: null, embeddingRankScale: null };
  if ('attentionRank' in config.model) (model as Record<string, unknown>).attentionRank = null;
  return { ...config, model };
}

export interface TaskRunOptions {
  progress?: ProgressMode;
}

/** The run function that trains and evaluates with the real tasks. */
export function makeTaskRunFunction(opts: TaskRunOptions = {}): RunFunction {
  return (spec, run, ctx) => (spec.task === 'translation' ? runTranslation(spec, run, ctx, opts) : runMlm(spec, run, ctx, opts));
}

async function runTranslation(spec: ExperimentSpec, run: PlannedRun, ctx: RunContext, opts: TaskRunOptions): Promise<RunResult> {
  const corpus = spec.data
    ? { dir: spec.data.dir, sourceLang: spec.data.sourceLang, targetLang: spec.data.targetLang, tokenizerPath: spec.data.tokenizer }
    : await ensureDefaultTranslationCorpus();
  const started = performance.now();
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
  const trainSeconds = (performance.now() - started) / 1000;
  const tokenizer = await loadTokenizer(join(ctx.dir, 'checkpoint_last'));
  const config: TranslationConfig = summary.config;
  const fullRankParameters = countParameters(() => new TransformerSeq2Seq(seq2seqModelConfig(fullRankModel(config), tokenizer)));
  const fromMetrics = lastValidation(ctx.dir);

  const evalStarted = performance.now();
  let test: Record<string, number> | null = null;
  const notes: Record<string, string> = { stopReason: summary.stopReason };
  if (spec.evaluate !== false) {
    const e = spec.evaluate ?? {};
    const result = await evaluateTranslation({ checkpoint: ctx.dir, data: corpus.dir, split: e.split ?? 'test', beam: e.beam, limit: e.limit, log: ctx.log });
    test = { bleu: result.bleu, chrf: result.chrf, perplexity: result.perplexity, loss: result.loss, sentences: result.numSentences, beam: result.beam };
    notes.bleuSignature = result.signature;
    notes.split = result.split;
  }
  return {
    steps: summary.steps,
    finalValidLoss: Number.isFinite(summary.finalValidLoss) ? summary.finalValidLoss : fromMetrics.loss,
    numParameters: summary.numParameters,
    fullRankParameters,
    // The trainer's clock (metrics.jsonl `time`) adds up the sessions of a resumed run.
    trainWallSeconds: Number.isFinite(fromMetrics.time) ? fromMetrics.time : trainSeconds,
    evalWallSeconds: (performance.now() - evalStarted) / 1000,
    test,
    notes,
  };
}

async function runMlm(spec: ExperimentSpec, run: PlannedRun, ctx: RunContext, opts: TaskRunOptions): Promise<RunResult> {
  const data = spec.data ? { dir: spec.data.dir, tokenizer: spec.data.tokenizer } : { dir: (await ensureDefaultMlmCorpus()).dir, tokenizer: undefined };
  const started = performance.now();
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
  const trainSeconds = (performance.now() - started) / 1000;
  const last = join(ctx.dir, 'checkpoint_last');
  const config = parseStoredMlmConfig(JSON.parse(readFileSync(join(last, 'config.json'), 'utf8')), join(last, 'config.json'));
  const tokenizer = await loadTokenizer(last);
  const fullRankParameters = countParameters(() => {
    const bert = buildBertForMaskedLM(bertConfigFor(fullRankModel(config), tokenizer));
    return { numParameters: () => bert.model.countParams(), dispose: () => bert.model.dispose() };
  });
  const fromMetrics = lastValidation(ctx.dir);

  const evalStarted = performance.now();
  let test: Record<string, number> | null = null;
  const notes: Record<string, string> = {};
  if (spec.evaluate !== false) {
    const split = (spec.evaluate?.split ?? 'test') as 'train' | 'valid' | 'test';
    const result = await evaluateMlm({ checkpoint: ctx.dir, data: data.dir, split, log: ctx.log });
    test = { perplexity: result.perplexity, accuracy: result.accuracy, loss: result.loss, unigramPerplexity: result.unigramPerplexity };
    notes.split = result.split;
  }
  return {
    steps: summary.steps,
    finalValidLoss: Number.isFinite(summary.finalValidLoss) ? summary.finalValidLoss : fromMetrics.loss,
    numParameters: summary.numParameters,
    fullRankParameters,
    // The trainer's clock (metrics.jsonl `time`) adds up the sessions of a resumed run.
    trainWallSeconds: Number.isFinite(fromMetrics.time) ? fromMetrics.time : trainSeconds,
    evalWallSeconds: (performance.now() - evalStarted) / 1000,
    test,
    notes,
  };
}
