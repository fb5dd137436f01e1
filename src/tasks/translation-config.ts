/**
 * The translation task's configuration: schema, presets and resolution
 * (preset ← config file ← command-line flags). The resolved config is stored as `config.json`
 * in every checkpoint, and `--resume` / `evaluate` / `translate` read it back from there.
 */
import { z } from 'zod';
import { UserError } from '../errors.ts';
import {
  deepPartialSchema,
  mergeConfig,
  parseSetOverrides,
  pruneUndefined,
  readConfigFile,
  resolveAttentionRank,
  trainSectionSchema,
  validateConfig,
  type DeepPartial,
} from './config.ts';
import { presets as modelPresets } from '../models/presets.ts';
import { resolveSeq2SeqConfig, type Seq2SeqArchitecture, type Seq2SeqConfig } from '../models/config.ts';

const positiveInt = z.number().int().positive();
const probability = z.number().min(0).max(0.99);

/**
 * Shape of the encoder-decoder Transformer: the keys of src/models' Seq2SeqArchitecture (see
 * src/models/config.ts for their meaning), plus `attentionRank`, an explicit per-head rank that
 * overrides `attentionRankScale`.
 */
export const seq2seqModelSchema = z.strictObject({
  modelDim: positiveInt,
  numHeads: positiveInt,
  ffnDim: positiveInt,
  encoderLayers: positiveInt,
  decoderLayers: positiveInt,
  dropout: probability,
  attentionDropout: probability,
  activationDropout: probability,
  activation: z.enum(['relu', 'gelu']),
  positions: z.enum(['sinusoidal', 'learned']),
  maxPositions: positiveInt,
  normFirst: z.boolean(),
  shareEmbeddings: z.boolean(),
  tieOutput: z.boolean(),
  /** Per-head rank r = max(1, floor(attentionRankScale · d / H)) unless attentionRank is set. */
  attentionRankScale: z.number().positive(),
  attentionRank: positiveInt.nullable(),
  linearRankScale: z.number().positive().nullable(),
  embeddingRankScale: z.number().positive().nullable(),
  spectralInit: z.union([z.boolean(), z.strictObject({ qk: z.boolean(), ov: z.boolean(), linear: z.boolean(), embedding: z.boolean() }).partial()]),
  scaleEmbedding: z.boolean(),
  attentionBias: z.boolean(),
});
export type Seq2SeqModelSection = z.infer<typeof seq2seqModelSchema>;

export const translationDataSchema = z.strictObject({
  /** Vocabulary size when a SentencePiece model has to be trained on the train split. */
  vocabSize: positiveInt,
  tokenizerModelType: z.enum(['unigram', 'bpe']),
  /** Longest sentence (in tokens, either side, before BOS/EOS) used for training. */
  maxLength: positiveInt,
  /** What to do with a training pair longer than maxLength: drop it (and report the count) or stop. */
  longLines: z.enum(['skip', 'error']),
});
export type TranslationDataSection = z.infer<typeof translationDataSchema>;

export const decodeSchema = z.strictObject({
  beam: positiveInt,
  lenPenalty: z.number(),
  /** Output length limit: maxLenA · sourceLength + maxLenB tokens (fairseq's max_len_a/b). */
  maxLenA: z.number().nonnegative(),
  maxLenB: z.number().int().nonnegative(),
  /** Validation: BLEU on the first N valid sentences (0 = loss and perplexity only). */
  validBleuSamples: z.number().int().nonnegative(),
  /** Validation decodes with this beam (1 = greedy, fast). */
  validBeam: positiveInt,
});
export type DecodeSection = z.infer<typeof decodeSchema>;

export const translationConfigSchema = z.strictObject({
  task: z.literal('translation'),
  preset: z.string(),
  sourceLang: z.string().min(1),
  targetLang: z.string().min(1),
  model: seq2seqModelSchema,
  train: trainSectionSchema,
  data: translationDataSchema,
  decode: decodeSchema,
});
export type TranslationConfig = z.infer<typeof translationConfigSchema>;
export type TranslationConfigOverrides = DeepPartial<TranslationConfig>;

/** What a config file (or a set of flags) may hold: any subset of the keys, nothing else. */
export const translationConfigFileSchema = deepPartialSchema(translationConfigSchema) as unknown as z.ZodType<TranslationConfigOverrides>;

const DEFAULT_TRAIN: TranslationConfig['train'] = {
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

const DEFAULT_DATA: TranslationConfig['data'] = { vocabSize: 8000, tokenizerModelType: 'unigram', maxLength: 128, longLines: 'skip' };
const DEFAULT_DECODE: TranslationConfig['decode'] = { beam: 5, lenPenalty: 1, maxLenA: 1.2, maxLenB: 10, validBleuSamples: 200, validBeam: 1 };

type PresetBody = Omit<TranslationConfig, 'task' | 'preset' | 'sourceLang' | 'targetLang'>;

/** A model section from one of src/models' architecture presets; one SentencePiece model serves both sides, so embeddings are shared. */
function modelFromArchitecture(arch: Seq2SeqArchitecture): Seq2SeqModelSection {
  const { spectralInit, ...rest } = arch;
  return { ...rest, spectralInit: { ...spectralInit }, attentionRank: null, shareEmbeddings: true };
}

/**
 * Task presets: model shape plus the training recipe that goes with it.
 * transformer_small is Khodak et al.'s small-Transformer recipe (2+2 layers, d 256, FFN 1024,
 * 4 heads, dropout 0.2, label smoothing 0.1, inverse-sqrt with 4000 warmup, clip-norm 0.1, beam 5);
 * transformer_base is Vaswani et al.'s base; transformer_tiny is for tests and smoke runs.
 */
export const TRANSLATION_PRESETS: Record<string, PresetBody> = {
  transformer_tiny: {
    model: {
      ...modelFromArchitecture(modelPresets.transformer_small),
      encoderLayers: 1,
      decoderLayers: 1,
      modelDim: 32,
      ffnDim: 64,
      numHeads: 2,
      dropout: 0,
      maxPositions: 64,
    },
    train: { ...DEFAULT_TRAIN, lr: 3e-3, warmupUpdates: 20, labelSmoothing: 0, clipNorm: 1, maxTokens: 512, validEvery: 100, saveEvery: 100, logEvery: 10 },
    data: { ...DEFAULT_DATA, vocabSize: 64, maxLength: 48 },
    decode: { ...DEFAULT_DECODE, beam: 2, validBleuSamples: 16 },
  },
  transformer_small: {
    model: modelFromArchitecture(modelPresets.transformer_small),
    train: DEFAULT_TRAIN,
    data: DEFAULT_DATA,
    decode: DEFAULT_DECODE,
  },
  /**
   * transformer_small's shape (2+2 layers, 4 heads, FFN 4·d, factorized attention, SI + FD) at half
   * width (d 128), for a budget of minutes to an hour on a CPU: pre-norm, no dropout, a higher peak
   * rate (2e-3, 60 warm-up updates), batches of ≤512 tokens (more updates per minute) and a
   * 4,000-piece SentencePiece vocabulary when one has to be trained. Chosen by a measured sweep of
   * 60+ recipes at equal CPU time (docs/quickstart-recipe.md): at 8 minutes it reached test BLEU
   * ~6 on the default corpus where transformer_small's own recipe reached ~0.6.
   */
  transformer_small_cpu: {
    model: { ...modelFromArchitecture(modelPresets.transformer_small), modelDim: 128, ffnDim: 512, normFirst: true, dropout: 0 },
    train: { ...DEFAULT_TRAIN, lr: 2e-3, warmupUpdates: 60, maxTokens: 512, validEvery: 500, saveEvery: 100, logEvery: 10 },
    data: { ...DEFAULT_DATA, vocabSize: 4000 },
    decode: { ...DEFAULT_DECODE, validBleuSamples: 32 },
  },
  transformer_base: {
    model: modelFromArchitecture(modelPresets.transformer_base),
    train: { ...DEFAULT_TRAIN, lr: 7e-4, clipNorm: 0, maxTokens: 8192 },
    data: { ...DEFAULT_DATA, vocabSize: 32000 },
    decode: DEFAULT_DECODE,
  },
};

export interface ResolveTranslationConfigOptions {
  preset?: string;
  /** JSON config file (any subset of the keys). */
  configFile?: string;
  /** Values from dedicated command-line flags (undefined = not given). */
  flags?: TranslationConfigOverrides;
  /** `--set key=value` assignments. */
  set?: string[];
  sourceLang?: string;
  targetLang?: string;
}

/** Resolves preset ← config file ← flags into a complete, validated config. */
export function resolveTranslationConfig(opts: ResolveTranslationConfigOptions): TranslationConfig {
  const fromFile = opts.configFile ? readConfigFile(opts.configFile, translationConfigFileSchema) : {};
  const fromFlags = validateConfig(
    translationConfigFileSchema,
    pruneUndefined(mergeConfig({}, opts.flags ?? {}, parseSetOverrides(opts.set ?? []))),
    'command line',
  );
  const presetName = opts.preset ?? fromFlags.preset ?? fromFile.preset ?? 'transformer_small';
  const preset = TRANSLATION_PRESETS[presetName];
  if (!preset) {
    throw new UserError(`--preset: unknown preset '${presetName}'; expected one of ${Object.keys(TRANSLATION_PRESETS).join(', ')}`);
  }
  const sourceLang = opts.sourceLang ?? fromFlags.sourceLang ?? fromFile.sourceLang;
  const targetLang = opts.targetLang ?? fromFlags.targetLang ?? fromFile.targetLang;
  if (!sourceLang) throw new UserError('--source-lang: required (the suffix of the source files, e.g. en for train.en)');
  if (!targetLang) throw new UserError('--target-lang: required (the suffix of the target files, e.g. es for train.es)');
  const merged = mergeConfig({ task: 'translation', preset: presetName, sourceLang, targetLang, ...preset }, fromFile, fromFlags, {
    preset: presetName,
    sourceLang,
    targetLang,
  });
  const config = validateConfig(translationConfigSchema, merged, opts.configFile ?? 'command line');
  checkTranslationConfig(config, configBlame(presetName, opts.configFile, fromFile, fromFlags));
  return config;
}

/** Where a cross-key problem comes from: the last layer that set any of its keys. */
export type Blame = string | ((keys: string[]) => string);

/**
 * The layer to blame for a problem among `keys` ('model.modelDim', ...): the command line if it set
 * one of them, else the config file if it did, else the preset (so `--set model.modelDim=33` is
 * reported as the command line's, not the preset's).
 */
export function configBlame(presetName: string, configFile: string | undefined, fromFile: unknown, fromFlags: unknown): (keys: string[]) => string {
  const sets = (layer: unknown, key: string): boolean => {
    let node = layer;
    for (const part of key.split('.')) {
      if (typeof node !== 'object' || node === null || !(part in node)) return false;
      node = (node as Record<string, unknown>)[part];
    }
    return node !== undefined;
  };
  return (keys) => {
    if (keys.some((k) => sets(fromFlags, k))) return 'command line';
    if (configFile !== undefined && keys.some((k) => sets(fromFile, k))) return configFile;
    return `preset ${presetName}`;
  };
}

/** Cross-key checks that a per-key schema cannot express. */
export function checkTranslationConfig(config: TranslationConfig, where: Blame): void {
  const blame = (...keys: string[]): string => (typeof where === 'string' ? where : where(keys));
  resolveAttentionRank(
    { modelDim: config.model.modelDim, numHeads: config.model.numHeads, rank: config.model.attentionRank, rankScale: config.model.attentionRankScale },
    blame('model.modelDim', 'model.numHeads', 'model.attentionRank', 'model.attentionRankScale'),
  );
  if (config.data.maxLength + 2 > config.model.maxPositions) {
    throw new UserError(
      `${blame('data.maxLength', 'model.maxPositions')}: 'data.maxLength' ${config.data.maxLength} plus BOS/EOS exceeds 'model.maxPositions' ${config.model.maxPositions}`,
    );
  }
  if (config.data.maxLength + 1 > config.train.maxTokens) {
    throw new UserError(
      `${blame('data.maxLength', 'train.maxTokens')}: 'train.maxTokens' ${config.train.maxTokens} cannot hold one sentence of 'data.maxLength' ${config.data.maxLength} tokens plus EOS`,
    );
  }
  if (config.train.maxSteps === null && config.train.maxEpochs === null && config.train.maxTimeMinutes === null) {
    throw new UserError(`${blame('train.maxSteps', 'train.maxEpochs', 'train.maxTimeMinutes')}: no stopping rule; set --max-steps, --max-epochs or --max-time`);
  }
}

/** Reads a checkpoint's config.json (written by trainTranslation) and validates it. */
export function parseStoredTranslationConfig(value: unknown, file: string): TranslationConfig {
  if (typeof value === 'object' && value !== null && (value as { task?: unknown }).task !== 'translation') {
    const task = (value as { task?: unknown }).task;
    throw new UserError(`${file}: this checkpoint is for task '${String(task)}', not translation`);
  }
  return validateConfig(translationConfigSchema, value, file);
}

/**
 * The src/models config for a resolved task config and a tokenizer's vocabulary. An explicit
 * attentionRank becomes the rank scale (rank + ½)·H/d, whose floor(scale·d/H) is exactly `rank`
 * whatever the floating-point rounding.
 */
export function seq2seqModelConfig(
  config: TranslationConfig,
  vocab: { vocabSize: number; padId: number; bosId: number; eosId: number },
): Seq2SeqConfig {
  const { attentionRank, ...model } = config.model;
  const attentionRankScale = attentionRank != null ? ((attentionRank + 0.5) * model.numHeads) / model.modelDim : model.attentionRankScale;
  return resolveSeq2SeqConfig({
    ...model,
    attentionRankScale,
    srcVocabSize: vocab.vocabSize,
    tgtVocabSize: vocab.vocabSize,
    padId: vocab.padId,
    bosId: vocab.bosId,
    eosId: vocab.eosId,
  });
}
