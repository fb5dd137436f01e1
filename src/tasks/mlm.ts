/**
 * The masked-LM task: configuration (preset ← config file ← flags), data (sentences → packed
 * sequences → dynamically masked batches), training with the shared trainer, and evaluation
 * (masked-token perplexity and accuracy beside the unigram no-context baseline).
 *
 * Data layout: DIR/{train,valid,test}.txt, one sentence per line, consecutive sentences in
 * running order (they are packed into sequences of up to `data.maxLength` tokens).
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { UserError } from '../errors.ts';
import { loadTokenizer, type Tokenizer } from '../text/tokenizer.ts';
import { ensureDefaultMlmCorpus } from '../text/defaults.ts';
import { decodeUtf8File } from '../text/lines.ts';
import {
  TokenMasker,
  UnigramModel,
  makeMaskedLmBatch,
  maskingRandom,
  packSentences,
  wordStartTable,
  type MaskedLmBatch,
} from '../text/masking.ts';
import { SeededRandom, setGlobalSeed } from '../random.ts';
import { buildBertForMaskedLM, disposeBertModel, resolveBertConfig, type BertConfig } from '../models/bert.ts';
import { bertPresets } from '../models/bert-presets.ts';
import { scoreMaskedPredictions } from '../models/mlm-head.ts';
import { findCheckpointFolder, loadCheckpoint, locateCheckpoint } from '../train/checkpoint.ts';
import { labelSmoothedCrossEntropy } from '../train/losses.ts';
import { Trainer, type BatchSource } from '../train/trainer.ts';
import type { ProgressMode } from '../train/progress.ts';
import { perplexity as perplexityOf } from '../metrics/perplexity.ts';
import {
  deepPartialSchema,
  mergeConfig,
  parseSetOverrides,
  pruneUndefined,
  readConfigFile,
  trainSectionSchema,
  trainerOptionsFromSection,
  validateConfig,
  type DeepPartial,
} from './config.ts';
import { checkResumeTokenizer, checkSameRunData, describeRunData, readRunData, writeRunData } from './run-data.ts';

// ---------------------------------------------------------------------------------------------
// Configuration

const positiveInt = z.number().int().positive();
const rate = z.number().min(0).max(0.99);
const probability = z.number().min(0).max(1);

/** The BERT architecture keys of src/models/bert.ts (BertArchitecture). */
export const bertModelSchema = z.strictObject({
  modelDim: positiveInt,
  numHeads: positiveInt,
  ffnDim: positiveInt,
  numLayers: positiveInt,
  maxPositions: positiveInt,
  typeVocabSize: z.number().int().nonnegative(),
  dropout: rate,
  attentionDropout: rate,
  activationDropout: rate,
  activation: z.enum(['gelu', 'relu']),
  normFirst: z.boolean(),
  attentionRankScale: z.number().positive(),
  linearRankScale: z.number().positive().nullable(),
  embeddingRankScale: z.number().positive().nullable(),
  spectralInit: z.union([z.boolean(), z.strictObject({ qk: z.boolean(), ov: z.boolean(), linear: z.boolean(), embedding: z.boolean() }).partial()]),
  attentionBias: z.boolean(),
});

export const mlmDataSchema = z.strictObject({
  /** Tokens per packed sequence, including [CLS] and the [SEP] after each sentence. */
  maxLength: z.number().int().min(8),
  /** Fraction of (non-special) tokens predicted. */
  maskProbability: probability,
  /** Of the predicted tokens: replaced by the mask token / by a random token (the rest stay). */
  maskTokenProbability: probability,
  randomTokenProbability: probability,
  /** Mask whole words (WordPiece `##` / SentencePiece `▁` boundaries) instead of single pieces. */
  wholeWordMasking: z.boolean(),
  /** The masking seed of validation and `evaluate mlm`: fixed so numbers compare between runs. */
  evalMaskingSeed: z.number().int().nonnegative(),
  /** Start the head's vocabulary bias at the train split's log unigram probabilities (fresh runs only). */
  unigramOutputBias: z.boolean(),
});

export const mlmConfigSchema = z.strictObject({
  task: z.literal('mlm'),
  preset: z.string(),
  model: bertModelSchema,
  train: trainSectionSchema,
  data: mlmDataSchema,
});
export type MlmConfig = z.infer<typeof mlmConfigSchema>;
export type MlmConfigOverrides = DeepPartial<MlmConfig>;
export const mlmConfigFileSchema = deepPartialSchema(mlmConfigSchema) as unknown as z.ZodType<MlmConfigOverrides>;

/**
 * BERT's recipe: AdamW (with RoBERTa's β2 = 0.98, steadier on small batches), linear warm-up then
 * linear decay, weight decay 0.01 on non-factor weights, clip-norm 1; Frobenius decay on the factors.
 */
const DEFAULT_TRAIN: MlmConfig['train'] = {
  optimizer: 'adamw',
  lr: 1e-3,
  betas: [0.9, 0.98],
  schedule: 'linear',
  warmupUpdates: 100,
  warmupInitLr: 0,
  clipNorm: 1,
  updateFreq: 1,
  frobeniusDecay: 1e-5,
  weightDecay: 0.01,
  labelSmoothing: 0,
  maxTokens: 4096,
  maxSteps: null,
  maxEpochs: null,
  maxTimeMinutes: null,
  validEvery: 200,
  saveEvery: 1000,
  logEvery: 20,
  earlyStopPatience: null,
  seed: 1,
  nanPolicy: 'stop',
};

const DEFAULT_DATA: MlmConfig['data'] = {
  maxLength: 128,
  maskProbability: 0.15,
  maskTokenProbability: 0.8,
  randomTokenProbability: 0.1,
  wholeWordMasking: false,
  evalMaskingSeed: 12345,
  unigramOutputBias: true,
};

type PresetBody = Omit<MlmConfig, 'task' | 'preset'>;

function modelSection(name: string): MlmConfig['model'] {
  const { spectralInit, ...rest } = bertPresets[name];
  return { ...rest, spectralInit: { ...spectralInit } };
}

/** Task presets: the model shape (src/models/bert-presets.ts) plus its training recipe. */
export const MLM_PRESETS: Record<string, PresetBody> = {
  /** For tests and smoke runs. */
  bert_tiny: {
    model: { ...modelSection('bert_small'), modelDim: 32, numHeads: 2, ffnDim: 64, numLayers: 1, maxPositions: 64, dropout: 0, attentionDropout: 0 },
    train: { ...DEFAULT_TRAIN, lr: 3e-3, warmupUpdates: 10, maxTokens: 512, validEvery: 50, saveEvery: 100, logEvery: 10 },
    data: { ...DEFAULT_DATA, maxLength: 32 },
  },
  /**
   * BERT-Small's shape with a recipe for minutes, not days, of CPU: no dropout (a short run is far
   * from overfitting, and dropout both slows learning and costs ~20 % of a wasm step), and batches
   * of 2048 tokens, so that a 10-minute budget still gives a few hundred updates.
   */
  bert_small: {
    model: { ...modelSection('bert_small'), dropout: 0, attentionDropout: 0 },
    train: { ...DEFAULT_TRAIN, maxTokens: 2048, warmupUpdates: 50, validEvery: 100 },
    data: DEFAULT_DATA,
  },
  bert_base: {
    model: modelSection('bert_base'),
    train: { ...DEFAULT_TRAIN, lr: 1e-4, warmupUpdates: 10000, maxTokens: 32768, validEvery: 2000, saveEvery: 2000 },
    data: { ...DEFAULT_DATA, maxLength: 512 },
  },
};

export interface ResolveMlmConfigOptions {
  preset?: string;
  configFile?: string;
  flags?: MlmConfigOverrides;
  set?: string[];
}

/** Resolves preset ← config file ← flags into a complete, validated config. */
export function resolveMlmConfig(opts: ResolveMlmConfigOptions): MlmConfig {
  const fromFile = opts.configFile ? readConfigFile(opts.configFile, mlmConfigFileSchema) : {};
  const fromFlags = validateConfig(mlmConfigFileSchema, pruneUndefined(mergeConfig({}, opts.flags ?? {}, parseSetOverrides(opts.set ?? []))), 'command line');
  const presetName = opts.preset ?? fromFlags.preset ?? fromFile.preset ?? 'bert_small';
  const preset = MLM_PRESETS[presetName];
  if (!preset) throw new UserError(`--preset: unknown preset '${presetName}'; expected one of ${Object.keys(MLM_PRESETS).join(', ')}`);
  if (fromFile.task !== undefined && fromFile.task !== 'mlm') throw new UserError(`${opts.configFile}: 'task' is '${fromFile.task}', expected 'mlm'`);
  const merged = mergeConfig({ task: 'mlm', preset: presetName, ...preset }, fromFile, fromFlags, { preset: presetName });
  const where = opts.configFile ?? 'command line';
  const config = validateConfig(mlmConfigSchema, merged, where);
  checkMlmConfig(config, where);
  return config;
}

/** Cross-key checks that a per-key schema cannot express. */
export function checkMlmConfig(config: MlmConfig, where: string): void {
  const { model, data, train } = config;
  if (model.modelDim % model.numHeads !== 0) {
    throw new UserError(`${where}: 'model.modelDim' ${model.modelDim} must be divisible by 'model.numHeads' ${model.numHeads}`);
  }
  if (data.maxLength > model.maxPositions) {
    throw new UserError(`${where}: 'data.maxLength' ${data.maxLength} exceeds 'model.maxPositions' ${model.maxPositions}`);
  }
  if (data.maskTokenProbability + data.randomTokenProbability > 1) {
    throw new UserError(`${where}: 'data.maskTokenProbability' + 'data.randomTokenProbability' must be ≤ 1`);
  }
  if (train.maxTokens < data.maxLength) {
    throw new UserError(`${where}: 'train.maxTokens' ${train.maxTokens} is smaller than one sequence ('data.maxLength' ${data.maxLength})`);
  }
}

/** Reads a checkpoint's config.json (written by trainMlm) and validates it. */
export function parseStoredMlmConfig(value: unknown, file: string): MlmConfig {
  if (typeof value === 'object' && value !== null && (value as { task?: unknown }).task !== 'mlm') {
    throw new UserError(`${file}: this checkpoint is for task '${String((value as { task?: unknown }).task)}', not mlm`);
  }
  return validateConfig(mlmConfigSchema, value, file);
}

/** The model config for a tokenizer: the task's architecture plus vocabulary and pad id. */
export function bertConfigFor(config: MlmConfig, tokenizer: Pick<Tokenizer, 'vocabSize' | 'padId'>): BertConfig {
  return resolveBertConfig({ ...config.model, vocabSize: tokenizer.vocabSize, padId: tokenizer.padId });
}

// ---------------------------------------------------------------------------------------------
// Data

export type MlmSplit = 'train' | 'valid' | 'test';

/** The ids masking must leave alone: pad, unk, bos/[CLS], eos/[SEP] and the mask token. */
export function specialIdsOf(tokenizer: Tokenizer): number[] {
  return [tokenizer.padId, tokenizer.unkId, tokenizer.bosId, tokenizer.eosId, tokenizer.maskId ?? -1].filter((id) => id >= 0);
}

/**
 * Reads DIR/SPLIT.txt (one sentence per line), with errors that name the file, by the rule of
 * every corpus reader (src/text/lines.ts): strict UTF-8 (a binary or Latin-1 file is an error
 * naming file and line, never trained on), CRLF line ends and a leading BOM dropped.
 */
export function readSentences(dir: string, split: MlmSplit): string[] {
  const file = join(dir, `${split}.txt`);
  if (!existsSync(file)) throw new UserError(`--data: ${file} does not exist (expected DIR/{train,valid,test}.txt, one sentence per line)`);
  if (!statSync(file).isFile()) throw new UserError(`--data: ${file} is not a file (expected DIR/{train,valid,test}.txt, one sentence per line)`);
  const lines = decodeUtf8File(readFileSync(file), file).replace(/^\uFEFF/, '').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const sentences = lines.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l).trim());
  if (!sentences.some((s) => s.length > 0)) throw new UserError(`${file}: no sentences (the file is empty)`);
  return sentences;
}

/** Tokenizes one split and packs it into sequences of at most `maxLength` tokens. */
export function loadPackedSplit(dir: string, split: MlmSplit, tokenizer: Tokenizer, maxLength: number): Int32Array[] {
  const sentences = readSentences(dir, split).map((s) => Int32Array.from(tokenizer.encode(s)));
  return packSentences(sentences, { maxLength, clsId: tokenizer.bosId, sepId: tokenizer.eosId });
}

/**
 * The masker of validation and `evaluate mlm`: always BERT's standard 15 % with 80/10/10 on single
 * tokens, whatever masking the run trained with, so that perplexities compare between runs.
 */
export function evaluationMasker(tokenizer: Tokenizer, where = 'tokenizer'): TokenMasker {
  return maskerFor(tokenizer, { ...DEFAULT_DATA, wholeWordMasking: false }, where);
}

/** Builds the masker for a tokenizer, failing clearly when it has no mask token. */
export function maskerFor(tokenizer: Tokenizer, data: MlmConfig['data'], where = 'tokenizer'): TokenMasker {
  if (tokenizer.maskId === undefined) {
    throw new UserError(`${where}: the tokenizer has no mask token (<mask> or [MASK]); masked-LM needs one`);
  }
  return new TokenMasker({
    maskId: tokenizer.maskId,
    vocabSize: tokenizer.vocabSize,
    specialIds: specialIdsOf(tokenizer),
    selectProbability: data.maskProbability,
    maskTokenProbability: data.maskTokenProbability,
    randomTokenProbability: data.randomTokenProbability,
    wordStarts: data.wholeWordMasking ? wordStartTable(tokenizer) : undefined,
  });
}

/** The unigram log-probabilities as an output bias; specials (never predicted) get the smallest value. */
export function unigramBias(unigram: UnigramModel): Float32Array {
  let floor = 0;
  for (const v of unigram.logProbs) if (Number.isFinite(v)) floor = Math.min(floor, v);
  return Float32Array.from(unigram.logProbs, (v) => (Number.isFinite(v) ? v : floor));
}

/** Consecutive groups of sequence indices with at most `maxTokens` padded tokens each. */
export function batchIndices(sequences: readonly Int32Array[], maxTokens: number, order?: number[]): number[][] {
  const indices = order ?? sequences.map((_, i) => i);
  const batches: number[][] = [];
  let current: number[] = [];
  let longest = 0;
  for (const i of indices) {
    const len = sequences[i].length;
    if (current.length > 0 && Math.max(longest, len) * (current.length + 1) > maxTokens) {
      batches.push(current);
      current = [];
      longest = 0;
    }
    current.push(i);
    longest = Math.max(longest, len);
  }
  if (current.length) batches.push(current);
  return batches;
}

/** Masks the listed sequences for `epoch` (dynamic masking: a fresh draw per epoch) and pads them. */
export function maskedBatch(
  sequences: readonly Int32Array[],
  indices: readonly number[],
  masker: TokenMasker,
  seed: number,
  epoch: number,
  padId: number,
): MaskedLmBatch {
  return makeMaskedLmBatch(
    indices.map((i) => masker.mask(sequences[i], maskingRandom(seed, epoch, i))),
    padId,
  );
}

/** The tensors a batch feeds the MLM model, in the model's input order. */
export function batchInputs(batch: MaskedLmBatch, bert: { config: BertConfig }): tf.Tensor[] {
  const tokens = tf.tensor2d(batch.tokens, batch.tokensShape, 'int32');
  const inputs: tf.Tensor[] = [tokens];
  if (bert.config.typeVocabSize > 0) inputs.push(tf.zeros(batch.tokensShape, 'int32'));
  inputs.push(tf.tensor2d(batch.positions, batch.positionsShape, 'int32'));
  return inputs;
}

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

/**
 * Where the data and tokenizer come from. Data: `--data`, or the embedded Moby-Dick corpus.
 * Tokenizer: `--tokenizer`, else the data folder's `tokenizer.json` or single `*.model`, else the
 * English SentencePiece model shipped with the embedded corpus (it has a `<mask>` piece).
 */
export async function resolveMlmData(
  dataDir?: string,
  tokenizerPath?: string,
  log: (line: string) => void = () => {},
): Promise<{ dataDir: string; tokenizerPath: string }> {
  if (dataDir !== undefined && !(existsSync(dataDir) && statSync(dataDir).isDirectory())) {
    throw new UserError(`--data: folder ${dataDir} does not exist`);
  }
  const corpus = dataDir === undefined || tokenizerPath === undefined ? await ensureDefaultMlmCorpus() : null;
  if (tokenizerPath === undefined && dataDir !== undefined) {
    const models = readdirSync(dataDir).filter((f) => f.endsWith('.model'));
    if (existsSync(join(dataDir, 'tokenizer.json')) || models.length === 1) tokenizerPath = dataDir;
    else {
      tokenizerPath = corpus!.tokenizerPath;
      log(`mlm: ${dataDir} has no tokenizer.json or *.model; using the shipped English SentencePiece model ${tokenizerPath}`);
    }
  }
  return { dataDir: dataDir ?? corpus!.dir, tokenizerPath: tokenizerPath ?? corpus!.tokenizerPath };
}

// ---------------------------------------------------------------------------------------------
// Training

/**
 * Training batches by (epoch, index): each epoch shuffles the sequence order (seeded) and re-draws
 * the masks (dynamic masking), both functions of (seed, epoch), so a resumed run reads exactly
 * the batches an uninterrupted one would.
 */
export class MaskedLmBatchSource implements BatchSource<MaskedLmBatch> {
  private cachedEpoch = -1;
  private cachedBatches: number[][] = [];

  constructor(
    private readonly sequences: readonly Int32Array[],
    private readonly masker: TokenMasker,
    private readonly opts: { seed: number; maxTokens: number; padId: number },
  ) {
    if (sequences.length === 0) throw new UserError('training data: the train split has no sequences');
  }

  private epochBatches(epoch: number): number[][] {
    if (epoch !== this.cachedEpoch) {
      const order = new SeededRandom(maskingRandom(this.opts.seed, epoch, -1).nextSeed()).shuffle(this.sequences.map((_, i) => i));
      this.cachedBatches = batchIndices(this.sequences, this.opts.maxTokens, order);
      this.cachedEpoch = epoch;
    }
    return this.cachedBatches;
  }

  numBatches(epoch: number): number {
    return this.epochBatches(epoch).length;
  }

  *batches(epoch: number, startIndex: number): Iterable<MaskedLmBatch> {
    const batches = this.epochBatches(epoch);
    for (let b = startIndex; b < batches.length; b++) {
      yield maskedBatch(this.sequences, batches[b], this.masker, this.opts.seed, epoch, this.opts.padId);
    }
  }
}

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

export interface MlmTrainSummary {
  outDir: string;
  steps: number;
  /** Validation loss (mean masked NLL) at the end of training. */
  finalValidLoss: number;
  /** Best validation perplexity. */
  bestScore?: number;
  wallSeconds: number;
  numParameters: number;
  /** The last validation: perplexity, accuracy, unigramPerplexity. */
  validation: Record<string, number> | null;
  stopReason: string;
  /** The signal that interrupted the run (stopReason 'interrupted'; checkpoint_last was saved). */
  signal?: NodeJS.Signals;
}

/** Budget keys a resumed run may change (its config.json wins for everything else). */
const RESUMABLE_KEYS = ['maxSteps', 'maxEpochs', 'maxTimeMinutes', 'validEvery', 'saveEvery', 'logEvery'] as const;

/** A JSON file of a checkpoint, with errors that name it. */
function readStoredJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new UserError(`${file}: not valid JSON (${String((err as Error).message).split('\n')[0]}); the checkpoint is damaged`);
  }
}

/** Trains a BERT masked-LM with the shared trainer; checkpoints and metrics.jsonl go to `out`. */
export async function trainMlm(opts: MlmTrainOptions): Promise<MlmTrainSummary> {
  const log = opts.log ?? (() => {});
  const lastDir = join(opts.out, 'checkpoint_last');
  // A kill between the two renames of a save leaves checkpoint_last aside: put it back first.
  locateCheckpoint(lastDir);
  const resuming = opts.resume === true && existsSync(join(lastDir, 'config.json'));
  let config: MlmConfig;
  let tokenizerPath: string;
  let dataDir: string;
  if (resuming) {
    const stored = parseStoredMlmConfig(readStoredJson(join(lastDir, 'config.json')), join(lastDir, 'config.json'));
    const budget: Record<string, unknown> = {};
    const flagTrain = (opts.overrides?.train ?? {}) as Record<string, unknown>;
    for (const key of RESUMABLE_KEYS) if (flagTrain[key] !== undefined) budget[key] = flagTrain[key];
    config = validateConfig(mlmConfigSchema, mergeConfig(stored, { train: budget }), 'command line');
    // Without --data, the data the run was started on (not the embedded corpus).
    ({ dataDir } = await resolveMlmData(opts.data ?? readRunData(opts.out)?.data, lastDir));
    tokenizerPath = lastDir;
  } else {
    config = resolveMlmConfig({ preset: opts.preset, configFile: opts.configFile, flags: opts.overrides, set: opts.set });
    ({ dataDir, tokenizerPath } = await resolveMlmData(opts.data, opts.tokenizer, log));
  }
  const t = config.train;
  if (t.maxSteps === null && t.maxEpochs === null && t.maxTimeMinutes === null) {
    throw new UserError('no stopping rule; set --max-steps, --max-epochs or --max-time');
  }
  // A linear decay must know where it ends; a time budget alone does not say. Rather than refuse
  // `--max-time` alone, decay as 1/√step after the warm-up (and say so).
  let schedule = t.schedule;
  if (schedule === 'linear' && t.maxSteps === null && t.maxEpochs === null) {
    schedule = 'inverse_sqrt';
    log('mlm: linear decay needs --max-steps or --max-epochs; with --max-time alone the rate decays as 1/sqrt(step) after warm-up');
  }
  // A warm-up longer than the whole run (a quick `--max-steps 20` with the preset's 50) would never
  // reach the peak rate; shorten it to a tenth of the run, and say so.
  let warmupUpdates = t.warmupUpdates;
  if (t.maxSteps !== null && warmupUpdates >= t.maxSteps) {
    warmupUpdates = Math.max(1, Math.floor(t.maxSteps / 10));
    log(`mlm: warm-up of ${t.warmupUpdates} updates is not shorter than --max-steps ${t.maxSteps}; using ${warmupUpdates} (set --warmup to choose)`);
  }
  // A resumed run must read the same training data it started on (see run-data.ts).
  const trainFile = join(dataDir, 'train.txt');
  const runData = existsSync(trainFile) ? await describeRunData(dataDir, [trainFile]) : null;
  if (resuming && runData) checkSameRunData(opts.out, readRunData(opts.out), runData, '--data');
  const tokenizer = await loadTokenizer(tokenizerPath);
  if (resuming && opts.tokenizer !== undefined) await checkResumeTokenizer(opts.tokenizer, tokenizer, opts.out);
  const masker = maskerFor(tokenizer, config.data, `--tokenizer ${tokenizerPath}`);
  const validMasker = evaluationMasker(tokenizer);
  const train = loadPackedSplit(dataDir, 'train', tokenizer, config.data.maxLength);
  const valid = loadPackedSplit(dataDir, 'valid', tokenizer, config.data.maxLength);
  const unigram = UnigramModel.fromSequences(train, tokenizer.vocabSize, (id) => masker.isSpecial(id));
  log(`mlm: ${train.length} train / ${valid.length} valid sequences of ≤ ${config.data.maxLength} tokens from ${dataDir}; tokenizer ${tokenizerPath} (${tokenizer.vocabSize} pieces)`);

  // Seed before building, so the initial weights are a function of the seed.
  setGlobalSeed(t.seed);
  const bert = buildBertForMaskedLM(bertConfigFor(config, tokenizer));
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
    return {
      outDir: opts.out,
      steps: result.steps,
      finalValidLoss: result.lastValidation?.loss ?? NaN,
      bestScore: result.bestScore ?? undefined,
      wallSeconds: result.elapsedSeconds,
      numParameters,
      validation: result.lastValidation,
      stopReason: result.stopReason,
      ...(result.signal ? { signal: result.signal } : {}),
    };
  } finally {
    trainer.dispose();
    disposeBertModel(bert.model);
  }
}

// ---------------------------------------------------------------------------------------------
// Evaluation of a checkpoint

/** A run folder (checkpoints/NAME) means its checkpoint_best, else checkpoint_last; a checkpoint folder means itself. */
export function resolveCheckpointDir(dir: string): string {
  // findCheckpointFolder also finds a checkpoint a kill left aside between its two renames.
  const found = findCheckpointFolder(dir);
  if (found !== null) return found;
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UserError(`--checkpoint: folder ${dir} does not exist`);
  throw new UserError(`--checkpoint ${dir}: no model.json, checkpoint_best or checkpoint_last inside`);
}

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
  const ckpt = await loadCheckpoint(dir);
  if (ckpt.config === null) throw new UserError(`${join(dir, 'config.json')}: missing (not a checkpoint written by train mlm)`);
  const config = parseStoredMlmConfig(ckpt.config, join(dir, 'config.json'));
  const split = opts.split ?? 'test';
  if (!['train', 'valid', 'test'].includes(split)) throw new UserError(`--split: expected train, valid or test, got '${split}'`);
  const tokenizer = await loadTokenizer(dir);
  const { dataDir } = await resolveMlmData(opts.data, dir);
  const masker = evaluationMasker(tokenizer, `${dir} tokenizer`);
  const sequences = loadPackedSplit(dataDir, split, tokenizer, config.data.maxLength);
  const train = split === 'train' ? sequences : loadPackedSplit(dataDir, 'train', tokenizer, config.data.maxLength);
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

