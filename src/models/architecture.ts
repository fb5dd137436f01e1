/**
 * The settings every Transformer of this package shares (width, heads, dropout, norm placement,
 * factorization), declared once for the encoder–decoder (config.ts) and BERT (bert-config.ts),
 * and the cross-key rule of factorized attention (the per-head rank), checked in one place.
 */
import { z } from 'zod';
import { UserError } from '../errors.ts';
import { DEFAULT_SPECTRAL_INIT, oneOf, optionalRankScale, positiveInt, rankScale, rate, spectralInitSchema, type SpectralInitChoice } from './schema.ts';

export const activationSchema = oneOf(['relu', 'gelu']);
export type Activation = z.infer<typeof activationSchema>;

/** Fields of both architectures (zod shapes, spread into each architecture's strict object). */
export const transformerFields = {
  modelDim: positiveInt,
  numHeads: positiveInt,
  ffnDim: positiveInt,
  /** Residual and embedding dropout. */
  dropout: rate,
  /** Dropout on attention probabilities. */
  attentionDropout: rate,
  /** Dropout after the FFN activation. */
  activationDropout: rate,
  activation: activationSchema,
  /** Longest sequence (including specials) the model accepts. */
  maxPositions: positiveInt,
  /** Pre-norm (LayerNorm before each sublayer, plus a final LayerNorm) instead of post-norm. */
  normFirst: z.boolean(),
  /** Per-head attention rank r = max(1, floor(attentionRankScale · d / H)) unless attentionRank is set; 1 = full rank. */
  attentionRankScale: rankScale,
  /** An explicit per-head attention rank r (overrides attentionRankScale); null = from the scale. */
  attentionRank: positiveInt.nullable(),
  /** Rank scale of the FFN (and untied output projection): rank = max(1, floor(scale · min(in, out))); null = dense. */
  linearRankScale: optionalRankScale,
  /** Rank scale of the token embeddings (rank = max(1, floor(scale · min(V, d)))); null = dense. */
  embeddingRankScale: optionalRankScale,
  /** Spectral initialization of the factor pairs: all, none, or per pair type. */
  spectralInit: spectralInitSchema,
  /** Biases in the attention projections. */
  attentionBias: z.boolean(),
};

/** The shared fields' types (as a config file states them). */
export type TransformerFields = z.infer<z.ZodObject<typeof transformerFields>>;

/**
 * Defaults of the shared fields: the small Transformer's shape (d 256, 4 heads, FFN 1024),
 * post-norm, dense layers, spectral initialization on. Each architecture's defaults override
 * what differs (BERT: GELU, attention dropout, 512 positions).
 */
export const TRANSFORMER_DEFAULTS: Omit<TransformerFields, 'spectralInit'> & { spectralInit: SpectralInitChoice } = {
  modelDim: 256,
  numHeads: 4,
  ffnDim: 1024,
  dropout: 0.1,
  attentionDropout: 0,
  activationDropout: 0,
  activation: 'relu',
  maxPositions: 1024,
  normFirst: false,
  attentionRankScale: 1,
  attentionRank: null,
  linearRankScale: null,
  embeddingRankScale: null,
  spectralInit: DEFAULT_SPECTRAL_INIT,
  attentionBias: true,
};

/** What the attention rank rule reads. */
export interface AttentionShape {
  modelDim: number;
  numHeads: number;
  attentionRank: number | null;
  attentionRankScale: number;
}

/**
 * The per-head rank r of factorized attention: `attentionRank` if set, else
 * max(1, floor(attentionRankScale · d / H)) (docs/ARCHITECTURE.md §1.1). The one rule for every
 * architecture and every rank: d must be divisible by H (the initialization scale and the full
 * rank d/H assume it) and r at most d. Errors start with `where` and name the keys as
 * `prefix + key` (a task config says 'model.modelDim').
 */
export function attentionRankOf(m: AttentionShape, where = 'model config', prefix = ''): number {
  if (m.modelDim % m.numHeads !== 0) {
    throw new UserError(`${where}: '${prefix}modelDim' ${m.modelDim} must be divisible by '${prefix}numHeads' ${m.numHeads}`);
  }
  const rank = m.attentionRank ?? Math.max(1, Math.floor((m.attentionRankScale * m.modelDim) / m.numHeads));
  if (rank > m.modelDim) {
    const what =
      m.attentionRank != null
        ? `'${prefix}attentionRank' ${rank}`
        : `'${prefix}attentionRankScale' ${m.attentionRankScale} gives rank ${rank}, which`;
    throw new UserError(`${where}: ${what} is larger than the model dimension ${m.modelDim}`);
  }
  return rank;
}
