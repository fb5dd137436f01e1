/**
 * The masked-LM task's configuration: its sections (the model section is src/models' BERT
 * architecture schema, the training section src/train's), presets as partial overrides of one
 * default, and resolution (preset ← config file ← command-line values). The resolved config is
 * stored as `config.json` in every checkpoint; `resume` and `evaluate` read it back from there.
 */
import { z } from 'zod';
import { UserError } from '../errors.ts';
import { attentionRankOf } from '../models/architecture.ts';
import { bertArchitectureSchema, resolveBertConfig, type BertConfig } from '../models/bert-config.ts';
import { bert_base, bert_small } from '../models/bert-presets.ts';
import { deepPartialSchema, validateConfig, type DeepPartial } from '../models/schema.ts';
import type { Tokenizer } from '../text/tokenizer.ts';
import { hasNoBudget, TRAIN_DEFAULTS, trainSectionSchema } from '../train/config.ts';
import { blameFor, mergeConfig, presetsFrom, readConfigLayers, type Blame, type ConfigLayersOptions } from './config.ts';

const probability = z.number().min(0).max(1);

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
export type MlmDataSection = z.infer<typeof mlmDataSchema>;

export const mlmConfigSchema = z.strictObject({
  task: z.literal('mlm'),
  preset: z.string(),
  model: bertArchitectureSchema,
  train: trainSectionSchema,
  data: mlmDataSchema,
});
export type MlmConfig = z.infer<typeof mlmConfigSchema>;
export type MlmConfigOverrides = DeepPartial<MlmConfig>;
export const mlmConfigFileSchema = deepPartialSchema(mlmConfigSchema) as unknown as z.ZodType<MlmConfigOverrides>;

/** BERT's masking: 15 % of the tokens, of which 80 % become the mask token and 10 % a random one. */
export const MLM_DATA_DEFAULTS: MlmDataSection = {
  maxLength: 128,
  maskProbability: 0.15,
  maskTokenProbability: 0.8,
  randomTokenProbability: 0.1,
  wholeWordMasking: false,
  evalMaskingSeed: 12345,
  unigramOutputBias: true,
};

type PresetBody = Omit<MlmConfig, 'task' | 'preset'>;

/**
 * The default every preset overrides: BERT-Small's shape (src/models/bert-presets.ts) and BERT's
 * recipe: AdamW (with RoBERTa's β2 = 0.98, steadier on small batches), linear warm-up then linear
 * decay, weight decay 0.01 on non-factor weights, clip-norm 1; Frobenius decay on the factors.
 */
const MLM_DEFAULTS: PresetBody = {
  model: bert_small,
  train: mergeConfig(TRAIN_DEFAULTS, {
    optimizer: 'adamw',
    lr: 1e-3,
    schedule: 'linear',
    warmupUpdates: 100,
    warmupInitLr: 0,
    clipNorm: 1,
    frobeniusDecay: 1e-5,
    weightDecay: 0.01,
    labelSmoothing: 0,
    validEvery: 200,
    logEvery: 20,
  }),
  data: MLM_DATA_DEFAULTS,
};

/** Each preset: what it changes in MLM_DEFAULTS. */
const PRESET_CHANGES: Record<string, DeepPartial<PresetBody>> = {
  /** For tests and smoke runs. */
  bert_tiny: {
    model: { modelDim: 32, numHeads: 2, ffnDim: 64, numLayers: 1, maxPositions: 64, dropout: 0, attentionDropout: 0 },
    train: { lr: 3e-3, warmupUpdates: 10, maxTokens: 512, validEvery: 50, saveEvery: 100, logEvery: 10 },
    data: { maxLength: 32 },
  },
  /**
   * BERT-Small's shape with a recipe for minutes, not days, of CPU: no dropout (a short run is far
   * from overfitting, and dropout both slows learning and costs ~20 % of a wasm step), and batches
   * of 2048 tokens, so that a 10-minute budget still gives a few hundred updates.
   */
  bert_small: {
    model: { dropout: 0, attentionDropout: 0 },
    train: { maxTokens: 2048, warmupUpdates: 50, validEvery: 100 },
  },
  bert_base: {
    model: bert_base,
    train: { lr: 1e-4, warmupUpdates: 10000, maxTokens: 32768, validEvery: 2000, saveEvery: 2000 },
    data: { maxLength: 512 },
  },
};

/** Task presets: the model shape plus its training recipe. */
export const MLM_PRESETS: Record<string, PresetBody> = presetsFrom(MLM_DEFAULTS, PRESET_CHANGES);

export type ResolveMlmConfigOptions = ConfigLayersOptions<MlmConfigOverrides>;

/** Resolves preset ← config file ← flags into a complete, validated config. */
export function resolveMlmConfig(opts: ResolveMlmConfigOptions): MlmConfig {
  const { fromFile, fromFlags, presetName, preset, where, blame } = readConfigLayers(mlmConfigFileSchema, opts, MLM_PRESETS, 'bert_small');
  if (fromFile.task !== undefined && fromFile.task !== 'mlm') throw new UserError(`${opts.configFile}: 'task' is '${fromFile.task}', expected 'mlm'`);
  const merged = mergeConfig({ task: 'mlm', preset: presetName, ...preset }, fromFile, fromFlags, { preset: presetName });
  const config = validateConfig(mlmConfigSchema, merged, where);
  checkMlmConfig(config, blame);
  return config;
}

/** Cross-key checks that a per-key schema cannot express. */
export function checkMlmConfig(config: MlmConfig, where: Blame): void {
  const { model, data, train } = config;
  attentionRankOf(model, blameFor(where, 'model.modelDim', 'model.numHeads', 'model.attentionRank', 'model.attentionRankScale'), 'model.');
  if (data.maxLength > model.maxPositions) {
    throw new UserError(`${blameFor(where, 'data.maxLength', 'model.maxPositions')}: 'data.maxLength' ${data.maxLength} exceeds 'model.maxPositions' ${model.maxPositions}`);
  }
  if (data.maskTokenProbability + data.randomTokenProbability > 1) {
    throw new UserError(
      `${blameFor(where, 'data.maskTokenProbability', 'data.randomTokenProbability')}: 'data.maskTokenProbability' + 'data.randomTokenProbability' must be ≤ 1`,
    );
  }
  if (train.maxTokens < data.maxLength) {
    throw new UserError(
      `${blameFor(where, 'train.maxTokens', 'data.maxLength')}: 'train.maxTokens' ${train.maxTokens} is smaller than one sequence ('data.maxLength' ${data.maxLength})`,
    );
  }
}

/** A run needs a budget; checked when it starts (a config file may leave it to the command line). */
export function checkMlmBudget(config: MlmConfig): void {
  if (hasNoBudget(config.train)) throw new UserError('no stopping rule; set `maxSteps`, `maxEpochs` or `maxTimeMinutes`');
}

/**
 * Keys added to the config after runs were stored: config.json files written before say nothing
 * about them, which meant these values.
 */
const STORED_CONFIG_ADDITIONS = { model: { attentionRank: null } };

/** A checkpoint's config.json (written by trainMlm), validated; errors name `file`. */
export function parseStoredMlmConfig(value: unknown, file: string): MlmConfig {
  if (typeof value === 'object' && value !== null && (value as { task?: unknown }).task !== 'mlm') {
    throw new UserError(`${file}: this checkpoint is for task '${String((value as { task?: unknown }).task)}', not mlm`);
  }
  return validateConfig(mlmConfigSchema, mergeConfig(STORED_CONFIG_ADDITIONS, value), file);
}

/** The model config for a tokenizer: the task's architecture plus vocabulary and pad id. */
export function bertConfigFor(config: MlmConfig, tokenizer: Pick<Tokenizer, 'vocabSize' | 'padId'>): BertConfig {
  return resolveBertConfig({ ...config.model, vocabSize: tokenizer.vocabSize, padId: tokenizer.padId });
}
