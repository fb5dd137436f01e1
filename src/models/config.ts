/**
 * The encoder–decoder Transformer's configuration: one zod schema declares every architecture and
 * factorization knob (the TypeScript types are inferred from it), one object holds the defaults,
 * and `resolveSeq2SeqConfig` validates with errors that name the key (docs/ARCHITECTURE.md §5).
 * The translation task's `model` section is `seq2seqArchitectureSchema` itself.
 */
import { z } from 'zod';
import { UserError } from '../errors.ts';
import { attentionRankOf, TRANSFORMER_DEFAULTS, transformerFields } from './architecture.ts';
import { DEFAULT_SPECTRAL_INIT, nonNegativeInt, oneOf, positiveInt, spectralInitChoice, spectralInitSchema, validateConfig } from './schema.ts';

export { DEFAULT_SPECTRAL_INIT };
export type { SpectralInitChoice } from './schema.ts';
export type { Activation } from './architecture.ts';

export const positionKindSchema = oneOf(['sinusoidal', 'learned']);
export type PositionKind = z.infer<typeof positionKindSchema>;

/** Everything but the vocabulary: what a preset fixes and a task config's `model` section holds. */
export const seq2seqArchitectureSchema = z.strictObject({
  ...transformerFields,
  encoderLayers: positiveInt,
  decoderLayers: positiveInt,
  positions: positionKindSchema,
  /** One embedding matrix for source and target (joint vocabulary; needs equal vocab sizes). */
  shareEmbeddings: z.boolean(),
  /** Output projection = target embedding transposed. */
  tieOutput: z.boolean(),
  /** Multiply token embeddings by √d (fairseq's default). */
  scaleEmbedding: z.boolean(),
});
/** The architecture as a config file states it (`spectralInit` may be a boolean or partial). */
export type Seq2SeqArchitectureSettings = z.infer<typeof seq2seqArchitectureSchema>;

/** The resolved config: vocabulary and special ids added, `spectralInit` spelled out per pair type. */
const seq2seqConfigSchema = seq2seqArchitectureSchema.extend({
  srcVocabSize: positiveInt,
  tgtVocabSize: positiveInt,
  padId: nonNegativeInt,
  bosId: nonNegativeInt,
  eosId: nonNegativeInt,
  spectralInit: spectralInitSchema.transform(spectralInitChoice),
});
export type Seq2SeqConfig = z.infer<typeof seq2seqConfigSchema>;
export type Seq2SeqArchitecture = Omit<Seq2SeqConfig, 'srcVocabSize' | 'tgtVocabSize' | 'padId' | 'bosId' | 'eosId'>;
/** What `resolveSeq2SeqConfig` accepts: any subset of the keys (defaults fill the rest). */
export type Seq2SeqOverrides = Partial<z.input<typeof seq2seqConfigSchema>>;

/** Defaults for everything optional; vocabulary and special ids have none. */
export const SEQ2SEQ_DEFAULTS: Seq2SeqArchitecture = {
  ...TRANSFORMER_DEFAULTS,
  encoderLayers: 2,
  decoderLayers: 2,
  positions: 'sinusoidal',
  shareEmbeddings: false,
  tieOutput: true,
  scaleEmbedding: true,
};

/**
 * Fills defaults and checks every key; unknown keys and bad values throw a UserError naming the key.
 * `spectralInit` may be a boolean (all pair types) or a partial per-type record.
 */
export function resolveSeq2SeqConfig(input: Seq2SeqOverrides): Seq2SeqConfig {
  if (input == null || typeof input !== 'object') throw new UserError('model config: expected an object');
  const where = 'model config';
  const c = validateConfig(seq2seqConfigSchema, { ...SEQ2SEQ_DEFAULTS, ...input }, where);
  attentionRankOf(c, where);
  for (const k of ['padId', 'bosId', 'eosId'] as const) {
    if (c[k] >= c.tgtVocabSize) throw new UserError(`${where}: '${k}' must be < tgtVocabSize (${c.tgtVocabSize}); got ${c[k]}`);
    if (c[k] === c.padId && k !== 'padId') throw new UserError(`${where}: '${k}' must be different from padId (${c.padId}); got ${c[k]}`);
  }
  if (c.padId >= c.srcVocabSize) throw new UserError(`${where}: 'padId' must be < srcVocabSize (${c.srcVocabSize}); got ${c.padId}`);
  if (c.shareEmbeddings && c.srcVocabSize !== c.tgtVocabSize) {
    throw new UserError(`${where}: 'shareEmbeddings' needs a joint vocabulary, but srcVocabSize ${c.srcVocabSize} != tgtVocabSize ${c.tgtVocabSize}`);
  }
  return c;
}
