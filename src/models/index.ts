/** Models: the encoder–decoder Transformer, its building blocks and presets. */
export { TransformerSeq2Seq } from './seq2seq.ts';
export type { EncoderOutput, DecoderState } from './seq2seq.ts';
export { TransformerEncoderBlock, TransformerDecoderBlock } from './blocks.ts';
export type { BlockConfig, DecoderBlockCache } from './blocks.ts';
export { TokenEmbedding, sinusoidalTable } from './embedding.ts';
export type { TokenEmbeddingConfig, PositionEncoding } from './embedding.ts';
export { resolveSeq2SeqConfig, seq2seqArchitectureSchema, SEQ2SEQ_DEFAULTS, DEFAULT_SPECTRAL_INIT } from './config.ts';
export type { Seq2SeqConfig, Seq2SeqArchitecture, Seq2SeqArchitectureSettings, Seq2SeqOverrides, SpectralInitChoice, PositionKind, Activation } from './config.ts';
export { attentionRankOf } from './architecture.ts';
export { countSeq2SeqParameters, countBertParameters, fullRankArchitecture } from './parameters.ts';
export { presets, transformer_small, transformer_base, seq2seqConfigFromPreset } from './presets.ts';
export { activate, paddingMask, buildSublayer, layerNorm, projection } from './sublayers.ts';
export { LayerNorm } from './layer-norm.ts';
export type { LayerNormConfig } from './layer-norm.ts';
