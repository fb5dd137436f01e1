/**
 * Named Transformer architectures, each a partial override of SEQ2SEQ_DEFAULTS. A preset fixes
 * everything but the vocabulary; the task adds vocab sizes and special ids from its tokenizer
 * (`seq2seqConfigFromPreset`). (BERT presets live in bert-presets.ts, owned with the MLM model.)
 */
import { UserError } from '../errors.ts';
import { SEQ2SEQ_DEFAULTS, resolveSeq2SeqConfig } from './config.ts';
import type { Seq2SeqArchitecture, Seq2SeqConfig, Seq2SeqOverrides } from './config.ts';

export type { Seq2SeqOverrides };

/**
 * The small Transformer of Khodak et al. (ICLR 2021), built on fairseq's transformer_iwslt_de_en
 * recipe: 2 encoder + 2 decoder layers, d 256, FFN 1024, 4 heads, dropout 0.2, post-norm (fairseq's
 * default), sinusoidal positions, √d embedding scale, decoder input/output embeddings tied
 * (--share-decoder-input-output-embed). Source/target embeddings are separate by default; a task
 * with a joint SentencePiece vocabulary may set shareEmbeddings. The defaults are this shape.
 */
export const transformer_small: Seq2SeqArchitecture = { ...SEQ2SEQ_DEFAULTS, dropout: 0.2 };

/** Vaswani et al.'s base model (fairseq transformer_wmt_en_de): 6+6 layers, d 512, FFN 2048, 8 heads. */
export const transformer_base: Seq2SeqArchitecture = {
  ...SEQ2SEQ_DEFAULTS,
  modelDim: 512,
  numHeads: 8,
  ffnDim: 2048,
  encoderLayers: 6,
  decoderLayers: 6,
};

export const presets: Record<string, Seq2SeqArchitecture> = { transformer_small, transformer_base };

/** A full, validated config: the preset's architecture, then `overrides` (vocab, ids, any knob). */
export function seq2seqConfigFromPreset(name: string, overrides: Seq2SeqOverrides): Seq2SeqConfig {
  const preset = presets[name];
  if (!preset) throw new UserError(`unknown model preset '${name}'; expected one of ${Object.keys(presets).join(', ')}`);
  return resolveSeq2SeqConfig({ ...preset, ...overrides });
}
