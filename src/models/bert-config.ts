/**
 * The BERT encoder's configuration: one zod schema (types inferred from it) sharing the
 * Transformer fields of architecture.ts, one defaults object, and `resolveBertConfig`, which
 * validates with errors that name the key. The MLM task's `model` section is
 * `bertArchitectureSchema` itself.
 */
import { z } from 'zod';
import { UserError } from '../errors.ts';
import { attentionRankOf, TRANSFORMER_DEFAULTS, transformerFields } from './architecture.ts';
import { nonNegativeInt, positiveInt, spectralInitChoice, spectralInitSchema, validateConfig } from './schema.ts';

/** Everything but the vocabulary: what a preset fixes and an MLM config's `model` section holds. */
export const bertArchitectureSchema = z.strictObject({
  ...transformerFields,
  numLayers: positiveInt,
  /** Segment (token-type) vocabulary; 0 = no segment embedding and no segment input. */
  typeVocabSize: nonNegativeInt,
});
/** The architecture as a config file states it (`spectralInit` may be a boolean or partial). */
export type BertArchitectureSettings = z.infer<typeof bertArchitectureSchema>;

const bertConfigSchema = bertArchitectureSchema.extend({
  vocabSize: positiveInt,
  padId: nonNegativeInt,
  spectralInit: spectralInitSchema.transform(spectralInitChoice),
});
export type BertConfig = z.infer<typeof bertConfigSchema>;
export type BertArchitecture = Omit<BertConfig, 'vocabSize' | 'padId'>;
/** What `resolveBertConfig` accepts: any subset of the keys (defaults fill the rest). */
export type BertConfigInput = Partial<z.input<typeof bertConfigSchema>>;

/** BERT's choices where they differ from the shared defaults: GELU, attention dropout, 4 layers, 512 positions. */
export const BERT_DEFAULTS: BertArchitecture = {
  ...TRANSFORMER_DEFAULTS,
  numLayers: 4,
  maxPositions: 512,
  typeVocabSize: 0,
  attentionDropout: 0.1,
  activation: 'gelu',
};

/** Fills defaults and checks every key; unknown keys and bad values throw a UserError naming the key. */
export function resolveBertConfig(input: BertConfigInput): BertConfig {
  if (input == null || typeof input !== 'object') throw new UserError('model config: expected an object');
  const where = 'model config';
  const c = validateConfig(bertConfigSchema, { ...BERT_DEFAULTS, ...input }, where);
  attentionRankOf(c, where);
  if (c.padId >= c.vocabSize) throw new UserError(`${where}: 'padId' must be < vocabSize (${c.vocabSize}); got ${c.padId}`);
  return c;
}
