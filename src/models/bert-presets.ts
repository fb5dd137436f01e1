/**
 * Named BERT architectures, each a partial override of BERT_DEFAULTS. A preset fixes everything
 * but the vocabulary; the MLM task adds the vocabulary size and pad id from its tokenizer
 * (`bertConfigFromPreset`).
 */
import { UserError } from '../errors.ts';
import { BERT_DEFAULTS, resolveBertConfig } from './bert-config.ts';
import type { BertArchitecture, BertConfig, BertConfigInput } from './bert-config.ts';

/**
 * A small BERT (Turc et al.'s BERT-Small shape: 4 layers, d 256, 4 heads, FFN 1024), post-norm with
 * GELU as in BERT, sequences up to 128 tokens (the length BERT pretrains most steps at).
 */
export const bert_small: BertArchitecture = { ...BERT_DEFAULTS, maxPositions: 128 };

/** BERT-Base (Devlin et al.): 12 layers, d 768, 12 heads, FFN 3072, 512 positions, 2 segment types. */
export const bert_base: BertArchitecture = {
  ...BERT_DEFAULTS,
  modelDim: 768,
  numHeads: 12,
  ffnDim: 3072,
  numLayers: 12,
  maxPositions: 512,
  typeVocabSize: 2,
};

export const bertPresets: Record<string, BertArchitecture> = { bert_small, bert_base };

/** A full, validated config: the preset's architecture, then `overrides` (vocabulary, pad id, any knob). */
export function bertConfigFromPreset(name: string, overrides: BertConfigInput): BertConfig {
  const preset = bertPresets[name];
  if (!preset) throw new UserError(`unknown model preset '${name}'; expected one of ${Object.keys(bertPresets).join(', ')}`);
  return resolveBertConfig({ ...preset, ...overrides });
}
