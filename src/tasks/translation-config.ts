/**
 * The translation task's configuration: its sections (the model section is src/models'
 * seq2seq architecture schema, the training section src/train's), presets as partial overrides
 * of one default, and resolution (preset ← config file ← command-line values). The resolved config
 * is stored as `config.json` in every checkpoint, and `resume` / `evaluate` / `translate` read it
 * back from there.
 */
import { DECODE_ENGINES } from '../decode/engine.ts';
import { z } from 'zod';
import { UserError } from '../errors.ts';
import { attentionRankOf } from '../models/architecture.ts';
import { resolveSeq2SeqConfig, seq2seqArchitectureSchema, type Seq2SeqConfig } from '../models/config.ts';
import { transformer_base, transformer_small } from '../models/presets.ts';
import { deepPartialSchema, positiveInt, validateConfig, type DeepPartial } from '../models/schema.ts';
import { hasNoBudget, TRAIN_DEFAULTS, trainSectionSchema } from '../train/config.ts';
import { blameFor, mergeConfig, presetsFrom, readConfigLayers, type Blame, type ConfigLayersOptions } from './config.ts';

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
  /** Inference engine of translate, evaluate and validation BLEU (src/decode/engine.ts); absent in older config files = auto. */
  engine: z.enum(DECODE_ENGINES).default('auto'),
});
export type DecodeSection = z.infer<typeof decodeSchema>;

export const translationConfigSchema = z.strictObject({
  task: z.literal('translation'),
  preset: z.string(),
  sourceLang: z.string().min(1),
  targetLang: z.string().min(1),
  model: seq2seqArchitectureSchema,
  train: trainSectionSchema,
  data: translationDataSchema,
  decode: decodeSchema,
  /**
   * The checkpoint folder the run's initial weights came from (`train translation --init-from`),
   * absolute; absent for a run from a random initialization. Provenance only: set by the task from
   * its `initFrom` option, never by a config file or `set` (the file schema leaves it out).
   */
  initFrom: z.string().min(1).optional(),
});
export type TranslationConfig = z.infer<typeof translationConfigSchema>;
export type TranslationConfigOverrides = DeepPartial<TranslationConfig>;
export type Seq2SeqModelSection = TranslationConfig['model'];

/** What a config file (or a set of flags) may hold: any subset of the keys, nothing else. */
export const translationConfigFileSchema = deepPartialSchema(translationConfigSchema.omit({ initFrom: true })) as unknown as z.ZodType<TranslationConfigOverrides>;

type PresetBody = Omit<TranslationConfig, 'task' | 'preset' | 'sourceLang' | 'targetLang' | 'initFrom'>;

/**
 * The default every preset overrides: transformer_small (src/models/presets.ts) with shared
 * embeddings (one SentencePiece model serves both sides), the default training recipe
 * (src/train/config.ts), and fairseq's decoding (beam 5, max length 1.2·n + 10).
 */
const TRANSLATION_DEFAULTS: PresetBody = {
  model: { ...transformer_small, shareEmbeddings: true },
  train: TRAIN_DEFAULTS,
  data: { vocabSize: 8000, tokenizerModelType: 'unigram', maxLength: 128, longLines: 'skip' },
  decode: { beam: 5, lenPenalty: 1, maxLenA: 1.2, maxLenB: 10, validBleuSamples: 200, validBeam: 1, engine: 'auto' },
};

/** Each preset: what it changes in TRANSLATION_DEFAULTS. */
const PRESET_CHANGES: Record<string, DeepPartial<PresetBody>> = {
  /** For tests and smoke runs. */
  transformer_tiny: {
    model: { encoderLayers: 1, decoderLayers: 1, modelDim: 32, ffnDim: 64, numHeads: 2, dropout: 0, maxPositions: 64 },
    train: { lr: 3e-3, warmupUpdates: 20, labelSmoothing: 0, clipNorm: 1, maxTokens: 512, validEvery: 100, saveEvery: 100, logEvery: 10 },
    data: { vocabSize: 64, maxLength: 48 },
    decode: { beam: 2, validBleuSamples: 16 },
  },
  /**
   * Khodak et al.'s small-Transformer recipe (2+2 layers, d 256, FFN 1024, 4 heads, dropout 0.2,
   * label smoothing 0.1, inverse-sqrt with 4000 warmup, clip-norm 0.1, beam 5): the defaults.
   */
  transformer_small: {},
  /**
   * transformer_small's shape (2+2 layers, 4 heads, FFN 4·d, factorized attention, SI + FD) at half
   * width (d 128), for a budget of minutes to an hour on a CPU: pre-norm, no dropout, a higher peak
   * rate (2e-3, 60 warm-up updates), batches of ≤512 tokens (more updates per minute) and a
   * 4,000-piece SentencePiece vocabulary when one has to be trained. Chosen by a measured sweep of
   * 60+ recipes at equal CPU time (docs/quickstart-recipe.md): at 8 minutes it reached test BLEU
   * ~6 on the default corpus where transformer_small's own recipe reached ~0.6.
   */
  transformer_small_cpu: {
    model: { modelDim: 128, ffnDim: 512, normFirst: true, dropout: 0 },
    train: { lr: 2e-3, warmupUpdates: 60, maxTokens: 512, validEvery: 500, saveEvery: 100, logEvery: 10 },
    data: { vocabSize: 4000 },
    decode: { validBleuSamples: 32 },
  },
  /** Vaswani et al.'s base model and recipe. */
  transformer_base: {
    model: { ...transformer_base, shareEmbeddings: true },
    train: { lr: 7e-4, clipNorm: 0, maxTokens: 8192 },
    data: { vocabSize: 32000 },
  },
};

/** Task presets: model shape plus the training recipe that goes with it. */
export const TRANSLATION_PRESETS: Record<string, PresetBody> = presetsFrom(TRANSLATION_DEFAULTS, PRESET_CHANGES);

export interface ResolveTranslationConfigOptions extends ConfigLayersOptions<TranslationConfigOverrides> {
  sourceLang?: string;
  targetLang?: string;
}

/** Resolves preset ← config file ← flags into a complete, validated config. */
export function resolveTranslationConfig(opts: ResolveTranslationConfigOptions): TranslationConfig {
  const { fromFile, fromFlags, presetName, preset, where, blame } = readConfigLayers(translationConfigFileSchema, opts, TRANSLATION_PRESETS, 'transformer_small');
  const sourceLang = opts.sourceLang ?? fromFlags.sourceLang ?? fromFile.sourceLang;
  const targetLang = opts.targetLang ?? fromFlags.targetLang ?? fromFile.targetLang;
  if (!sourceLang) throw new UserError('`sourceLang`: required (the suffix of the source files, e.g. en for train.en)');
  if (!targetLang) throw new UserError('`targetLang`: required (the suffix of the target files, e.g. es for train.es)');
  const merged = mergeConfig({ task: 'translation', preset: presetName, sourceLang, targetLang, ...preset }, fromFile, fromFlags, {
    preset: presetName,
    sourceLang,
    targetLang,
  });
  const config = validateConfig(translationConfigSchema, merged, where);
  checkTranslationConfig(config, blame);
  return config;
}

/** Model keys a run started from a checkpoint (`initFrom`) may still set: regularization, not architecture. */
export const INIT_FROM_MODEL_KEYS: readonly string[] = ['dropout', 'attentionDropout', 'activationDropout'];

/**
 * The config of a new run whose model (architecture and weights) comes from the checkpoint
 * `initFrom` with config `source`: everything but the model resolved as for any new run, with the
 * checkpoint's preset and languages as the defaults; the model section is the checkpoint's, where
 * only the dropouts may be set. Any other model key that the config file or the command line sets
 * to another value is refused by name.
 */
export function resolveInitFromConfig(opts: ResolveTranslationConfigOptions, source: TranslationConfig, initFrom: string): TranslationConfig {
  const withDefaults = { ...opts, preset: opts.preset ?? source.preset, sourceLang: opts.sourceLang ?? source.sourceLang, targetLang: opts.targetLang ?? source.targetLang };
  const { fromFile, fromFlags, where } = readConfigLayers(translationConfigFileSchema, withDefaults, TRANSLATION_PRESETS, source.preset);
  let model = source.model;
  for (const [layer, name] of [
    [fromFile, opts.configFile ?? where],
    [fromFlags, opts.flagsSource ?? 'command line'],
  ] as const) {
    for (const [key, value] of Object.entries(layer.model ?? {})) {
      if (value === undefined) continue;
      if (INIT_FROM_MODEL_KEYS.includes(key)) model = { ...model, [key]: value };
      else if (JSON.stringify(value) !== JSON.stringify((source.model as Record<string, unknown>)[key])) {
        throw new UserError(
          `${name}: cannot set 'model.${key}' in a run started from a checkpoint: the architecture is that of \`initFrom\` ${initFrom} ` +
            `('model.${key}' ${JSON.stringify((source.model as Record<string, unknown>)[key])}); only ${INIT_FROM_MODEL_KEYS.map((k) => `'model.${k}'`).join(', ')} may change`,
        );
      }
    }
  }
  const resolved = resolveTranslationConfig(withDefaults);
  const config: TranslationConfig = { ...resolved, model, initFrom };
  checkTranslationConfig(config, where);
  return config;
}

/** Cross-key checks that a per-key schema cannot express. */
export function checkTranslationConfig(config: TranslationConfig, where: Blame): void {
  attentionRankOf(config.model, blameFor(where, 'model.modelDim', 'model.numHeads', 'model.attentionRank', 'model.attentionRankScale'), 'model.');
  if (config.data.maxLength + 2 > config.model.maxPositions) {
    throw new UserError(
      `${blameFor(where, 'data.maxLength', 'model.maxPositions')}: 'data.maxLength' ${config.data.maxLength} plus BOS/EOS exceeds 'model.maxPositions' ${config.model.maxPositions}`,
    );
  }
  if (config.data.maxLength + 1 > config.train.maxTokens) {
    throw new UserError(
      `${blameFor(where, 'data.maxLength', 'train.maxTokens')}: 'train.maxTokens' ${config.train.maxTokens} cannot hold one sentence of 'data.maxLength' ${config.data.maxLength} tokens plus EOS`,
    );
  }
  if (hasNoBudget(config.train)) {
    throw new UserError(
      `${blameFor(where, 'train.maxSteps', 'train.maxEpochs', 'train.maxTimeMinutes')}: no stopping rule; set \`maxSteps\`, \`maxEpochs\` or \`maxTimeMinutes\``,
    );
  }
}

/** A checkpoint's config.json (written by trainTranslation), validated; errors name `file`. */
export function parseStoredTranslationConfig(value: unknown, file: string): TranslationConfig {
  if (typeof value === 'object' && value !== null && (value as { task?: unknown }).task !== 'translation') {
    const task = (value as { task?: unknown }).task;
    throw new UserError(`${file}: this checkpoint is for task '${String(task)}', not translation`);
  }
  return validateConfig(translationConfigSchema, value, file);
}

/** The src/models config for a resolved task config and a tokenizer's vocabulary (one joint vocabulary). */
export function seq2seqModelConfig(
  config: TranslationConfig,
  vocab: { vocabSize: number; padId: number; bosId: number; eosId: number },
): Seq2SeqConfig {
  return resolveSeq2SeqConfig({
    ...config.model,
    srcVocabSize: vocab.vocabSize,
    tgtVocabSize: vocab.vocabSize,
    padId: vocab.padId,
    bosId: vocab.bosId,
    eosId: vocab.eosId,
  });
}
