/**
 * The masked-LM task: training a BERT encoder with the shared trainer on the data of
 * ./mlm-data.ts under the config of ./mlm-config.ts, and evaluation (masked-token perplexity and
 * accuracy beside the unigram no-context baseline), during training and of a checkpoint.
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../errors.ts';
import { setGlobalSeed } from '../random.ts';
import { buildBertForMaskedLM, disposeBertModel } from '../models/bert.ts';
import type { BertConfig } from '../models/bert-config.ts';
import { scoreMaskedPredictions } from '../models/mlm-head.ts';
import { countBertParameters, fullRankArchitecture } from '../models/parameters.ts';
import { perplexity as perplexityOf } from '../metrics/perplexity.ts';
import { UnigramModel, type MaskedLmBatch, type TokenMasker } from '../text/masking.ts';
import { loadTokenizer } from '../text/tokenizer.ts';
import { loadCheckpoint } from '../train/checkpoint.ts';
import { trainerOptionsFromSection } from '../train/config.ts';
import { labelSmoothedCrossEntropy } from '../train/losses.ts';
import type { ProgressMode } from '../train/progress.ts';
import { Trainer } from '../train/trainer.ts';
import { commandLineLayer } from './config.ts';
import {
  bertConfigFor,
  checkMlmBudget,
  checkMlmConfig,
  mlmConfigFileSchema,
  parseStoredMlmConfig,
  resolveMlmConfig,
  type MlmConfig,
  type MlmConfigOverrides,
} from './mlm-config.ts';
import {
  batchIndices,
  batchInputs,
  evaluationMasker,
  loadPackedSplit,
  maskedBatch,
  MaskedLmBatchSource,
  maskerFor,
  resolveMlmData,
  unigramBias,
  type MlmSplit,
} from './mlm-data.ts';
import { loadCheckpointTokenizer, openRunFolder, readCheckpointConfig, resolveCheckpointDir, resumedConfig, runSummary, type RunSummary } from './run.ts';
import { checkResumeTokenizer, checkSameRunData, describeRunData, readRunData, writeRunData } from './run-data.ts';

// ---------------------------------------------------------------------------------------------
// Evaluation

export interface MlmScores {
  /** exp(mean NLL over the masked positions). */
  perplexity: number;
  /** Mean NLL (nats) over the masked positions. */
  loss: number;
  /** Fraction of masked positions whose arg-max prediction is the original token. */
  accuracy: number;
  /** Perplexity of the same masked tokens under the train split's unigram frequencies. */
  unigramPerplexity: number;
  /** perplexity / unigramPerplexity (< 1: the model uses context). */
  ratioToUnigram: number;
  maskedTokens: number;
  sequences: number;
}

/**
 * Scores `model` on masked copies of `sequences` drawn with the fixed `maskingSeed` (epoch 0), so
 * two runs (or two models) are scored on the very same masks.
 */
export async function scoreMaskedLm(
  model: tf.LayersModel,
  bert: { config: BertConfig },
  sequences: readonly Int32Array[],
  masker: TokenMasker,
  unigram: UnigramModel,
  opts: { maskingSeed: number; maxTokens: number; padId: number },
): Promise<MlmScores> {
  let sumNll = 0;
  let count = 0;
  let correct = 0;
  let unigramNll = 0;
  for (const indices of batchIndices(sequences, opts.maxTokens)) {
    const batch = maskedBatch(sequences, indices, masker, opts.maskingSeed, 0, opts.padId);
    const inputs = batchInputs(batch, bert);
    const logits = model.predict(inputs) as tf.Tensor;
    const scores = await scoreMaskedPredictions(logits, batch.labels, opts.padId);
    tf.dispose([logits, ...inputs]);
    sumNll += scores.sumNll;
    count += scores.count;
    correct += scores.correct;
    unigramNll += unigram.negativeLogLikelihood(batch.labels.filter((_, k) => batch.labelWeights[k] > 0));
  }
  if (count === 0) throw new UserError('evaluation: no tokens to mask (the split holds only special tokens)');
  const perplexity = perplexityOf(sumNll, count);
  const unigramPerplexity = perplexityOf(unigramNll, count);
  return {
    perplexity,
    loss: sumNll / count,
    accuracy: correct / count,
    unigramPerplexity,
    ratioToUnigram: perplexity / unigramPerplexity,
    maskedTokens: count,
    sequences: sequences.length,
  };
}

// ---------------------------------------------------------------------------------------------
// Training

export interface MlmTrainOptions {
  /** Corpus folder with {train,valid}.txt; default: the embedded Moby-Dick corpus. */
  data?: string;
  /** SentencePiece .model or tokenizer.json (file or folder); default: the data folder's, or the embedded one. */
  tokenizer?: string;
  out: string;
  preset?: string;
  configFile?: string;
  overrides?: MlmConfigOverrides;
  set?: string[];
  resume?: boolean;
  progress?: ProgressMode;
  progressStream?: NodeJS.WritableStream;
  log?: (line: string) => void;
}

export interface MlmTrainSummary extends RunSummary<MlmConfig> {
  /** The last validation: loss, perplexity, accuracy, unigramPerplexity (bestScore: the best perplexity). */
  validation: Record<string, number> | null;
}

/** The config of a resumed run: the stored one, where only the resume policy's keys may change (run.ts). */
function resumeMlmConfig(lastDir: string, opts: MlmTrainOptions): MlmConfig {
  const stored = readCheckpointConfig(lastDir, parseStoredMlmConfig);
  if (opts.configFile) throw new UserError('`resume`: `configFile` cannot be combined with `resume` (the run keeps its stored config)');
  if (opts.preset && opts.preset !== stored.preset) throw new UserError(`\`resume\`: the run in '${opts.out}' uses preset '${stored.preset}', not '${opts.preset}'`);
  const config = resumedConfig(stored, commandLineLayer(mlmConfigFileSchema, opts.overrides, opts.set), opts.out);
  checkMlmConfig(config, 'command line');
  return config;
}

/** Trains a BERT masked-LM with the shared trainer; checkpoints and metrics.jsonl go to `out`. */
export async function trainMlm(opts: MlmTrainOptions): Promise<MlmTrainSummary> {
  const log = opts.log ?? (() => {});
  const { resume: resuming, lastDir } = openRunFolder(opts.out, opts.resume, log);
  let config: MlmConfig;
  let tokenizerPath: string | null;
  let dataDir: string;
  if (resuming) {
    config = resumeMlmConfig(lastDir, opts);
    // Without `data`, the data the run was started on (not the embedded corpus).
    ({ dataDir } = await resolveMlmData(opts.data ?? readRunData(opts.out)?.data, lastDir));
    tokenizerPath = null;
  } else {
    config = resolveMlmConfig({ preset: opts.preset, configFile: opts.configFile, flags: opts.overrides, set: opts.set });
    ({ dataDir, tokenizerPath } = await resolveMlmData(opts.data, opts.tokenizer, log));
  }
  checkMlmBudget(config);
  const t = config.train;
  // A linear decay must know where it ends; a time budget alone does not say. Rather than refuse
  // `maxTimeMinutes` alone, decay as 1/√step after the warm-up (and say so).
  let schedule = t.schedule;
  if (schedule === 'linear' && t.maxSteps === null && t.maxEpochs === null) {
    schedule = 'inverse_sqrt';
    log('mlm: linear decay needs `maxSteps` or `maxEpochs`; with `maxTimeMinutes` alone the rate decays as 1/sqrt(step) after warm-up');
  }
  // A warm-up longer than the whole run (a quick `maxSteps` 20 with the preset's 50) would never
  // reach the peak rate; shorten it to a tenth of the run, and say so.
  let warmupUpdates = t.warmupUpdates;
  if (t.maxSteps !== null && warmupUpdates >= t.maxSteps) {
    warmupUpdates = Math.max(1, Math.floor(t.maxSteps / 10));
    log(`mlm: warm-up of ${t.warmupUpdates} updates is not shorter than \`maxSteps\` ${t.maxSteps}; using ${warmupUpdates} (set \`warmupUpdates\` to choose)`);
  }
  // A resumed run must read the same training data it started on (see run-data.ts).
  const trainFile = join(dataDir, 'train.txt');
  const runData = existsSync(trainFile) ? await describeRunData(dataDir, [trainFile]) : null;
  if (resuming && runData) checkSameRunData(opts.out, readRunData(opts.out), runData, 'data');
  const tokenizer = tokenizerPath === null ? await loadCheckpointTokenizer(lastDir) : await loadTokenizer(tokenizerPath);
  const tokenizerSource = tokenizerPath ?? lastDir;
  if (resuming && opts.tokenizer !== undefined) await checkResumeTokenizer(opts.tokenizer, tokenizer, opts.out);
  const masker = maskerFor(tokenizer, config.data, `\`tokenizer\` ${tokenizerSource}`);
  const validMasker = evaluationMasker(tokenizer);
  const train = await loadPackedSplit(dataDir, 'train', tokenizer, config.data.maxLength);
  const valid = await loadPackedSplit(dataDir, 'valid', tokenizer, config.data.maxLength);
  const unigram = UnigramModel.fromSequences(train, tokenizer.vocabSize, (id) => masker.isSpecial(id));
  log(`mlm: ${train.length} train / ${valid.length} valid sequences of ≤ ${config.data.maxLength} tokens from ${dataDir}; tokenizer ${tokenizerSource} (${tokenizer.vocabSize} pieces)`);

  // Seed before building, so the initial weights are a function of the seed.
  setGlobalSeed(t.seed);
  const bertConfig = bertConfigFor(config, tokenizer);
  const bert = buildBertForMaskedLM(bertConfig);
  if (!resuming && config.data.unigramOutputBias) bert.head.setOutputBias(unigramBias(unigram));
  const numParameters = bert.model.countParams();
  log(`mlm: ${config.preset} with ${numParameters.toLocaleString('en-US')} parameters, ${bert.factorPairs().length} factor pairs`);
  const padId = tokenizer.padId;
  const source = new MaskedLmBatchSource(train, masker, { seed: t.seed, maxTokens: t.maxTokens, padId });

  const lossFn = (batch: MaskedLmBatch, ctx: { training: boolean }) => {
    const inputs = batchInputs(batch, bert);
    const logits = bert.model.apply(inputs, { training: ctx.training }) as tf.Tensor;
    const labels = tf.tensor2d(batch.labels, batch.positionsShape, 'int32');
    const out = labelSmoothedCrossEntropy(logits, labels, { smoothing: t.labelSmoothing, padId, targetIds: batch.labels });
    return { loss: out.loss, nllLoss: out.nllLoss, numTokens: out.numTokens };
  };
  const validate = async () => {
    const s = await scoreMaskedLm(bert.model, bert, valid, validMasker, unigram, { maskingSeed: config.data.evalMaskingSeed, maxTokens: t.maxTokens, padId });
    return { loss: s.loss, perplexity: s.perplexity, accuracy: s.accuracy, unigramPerplexity: s.unigramPerplexity };
  };
  const trainer = new Trainer<MaskedLmBatch>({
    model: { model: bert.model, factorPairs: () => bert.factorPairs() },
    lossFn,
    data: source,
    validate,
    outDir: opts.out,
    config,
    tokenizerFiles: tokenizer.files(),
    ...trainerOptionsFromSection(t),
    // The MLM recipe may shorten the schedule to fit the budget (see above).
    schedule,
    warmupUpdates,
    bestMetric: 'perplexity',
    bestMode: 'min',
    resume: resuming,
    progress: opts.progress,
    progressStream: opts.progressStream,
  });
  if (!resuming && runData) {
    mkdirSync(opts.out, { recursive: true });
    writeRunData(opts.out, runData);
  }
  try {
    const result = await trainer.train();
    const parameters = { numParameters, fullRankParameters: countBertParameters(fullRankArchitecture(bertConfig)) };
    return { ...runSummary(opts.out, result, parameters, config), validation: result.lastValidation };
  } finally {
    trainer.dispose();
    disposeBertModel(bert.model);
  }
}

// ---------------------------------------------------------------------------------------------
// Evaluation of a checkpoint

export interface MlmEvaluateOptions {
  checkpoint: string;
  /** Corpus folder; default: the embedded Moby-Dick corpus. */
  data?: string;
  split?: MlmSplit;
  /** Masking seed; default: the checkpoint's data.evalMaskingSeed (the one validation used). */
  seed?: number;
  log?: (line: string) => void;
}

export interface MlmEvaluation extends MlmScores {
  checkpoint: string;
  split: MlmSplit;
  maskingSeed: number;
}

/**
 * Masked-token perplexity, accuracy and the unigram baseline of a checkpoint on a split, with a
 * fixed masking seed so that numbers compare between runs and models.
 */
export async function evaluateMlm(opts: MlmEvaluateOptions): Promise<MlmEvaluation> {
  const dir = resolveCheckpointDir(opts.checkpoint);
  // Checksums first (loadCheckpoint), so that damage is reported as such.
  const ckpt = await loadCheckpoint(dir);
  const config = readCheckpointConfig(dir, parseStoredMlmConfig);
  const split = opts.split ?? 'test';
  if (!['train', 'valid', 'test'].includes(split)) throw new UserError(`\`split\`: expected train, valid or test, got '${split}'`);
  const tokenizer = await loadCheckpointTokenizer(dir);
  const { dataDir } = await resolveMlmData(opts.data, dir);
  const masker = evaluationMasker(tokenizer, `${dir} tokenizer`);
  const sequences = await loadPackedSplit(dataDir, split, tokenizer, config.data.maxLength);
  const train = split === 'train' ? sequences : await loadPackedSplit(dataDir, 'train', tokenizer, config.data.maxLength);
  const unigram = UnigramModel.fromSequences(train, tokenizer.vocabSize, (id) => masker.isSpecial(id));
  const model = await ckpt.loadModel();
  try {
    const bertConfig = bertConfigFor(config, tokenizer);
    if (model.outputs[0].shape[2] !== tokenizer.vocabSize) {
      throw new UserError(`${dir}: the model predicts ${model.outputs[0].shape[2]} tokens but its tokenizer has ${tokenizer.vocabSize}`);
    }
    const maskingSeed = opts.seed ?? config.data.evalMaskingSeed;
    const scores = await scoreMaskedLm(model, { config: bertConfig }, sequences, masker, unigram, {
      maskingSeed,
      maxTokens: config.train.maxTokens,
      padId: tokenizer.padId,
    });
    opts.log?.(`mlm: scored ${scores.maskedTokens} masked tokens in ${scores.sequences} sequences of ${join(dataDir, `${split}.txt`)}`);
    return { checkpoint: dir, split, maskingSeed, ...scores };
  } finally {
    disposeBertModel(model);
  }
}

/** One human-readable line per number. */
export function formatMlmEvaluation(e: MlmEvaluation): string {
  return [
    `checkpoint ${e.checkpoint}, split ${e.split}, masking seed ${e.maskingSeed}, ${e.maskedTokens} masked tokens`,
    `masked-token perplexity ${e.perplexity.toFixed(2)} (loss ${e.loss.toFixed(4)} nats)`,
    `unigram perplexity      ${e.unigramPerplexity.toFixed(2)} (no context, train-split frequencies)`,
    `ratio to unigram        ${e.ratioToUnigram.toFixed(3)}`,
    `masked-token accuracy   ${(100 * e.accuracy).toFixed(2)} %`,
  ].join('\n');
}

