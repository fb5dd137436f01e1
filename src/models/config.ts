/**
 * The encoder–decoder Transformer's configuration: every architecture and factorization knob,
 * with defaults and a validator that names the offending key (docs/ARCHITECTURE.md §5).
 */
import { UserError } from '../errors.ts';

export type PositionKind = 'sinusoidal' | 'learned';
export type Activation = 'relu' | 'gelu';

/** Which factor pairs get spectral initialization (only matters for factorized layers). */
export interface SpectralInitChoice {
  /** Attention query-key pairs (Wq, Wk). */
  qk: boolean;
  /** Attention output-value pairs (Wv, Woᵀ). */
  ov: boolean;
  /** Factorized FFN and output-projection layers. */
  linear: boolean;
  /** Factorized token embeddings. */
  embedding: boolean;
}

export interface Seq2SeqConfig {
  srcVocabSize: number;
  tgtVocabSize: number;
  padId: number;
  bosId: number;
  eosId: number;
  modelDim: number;
  numHeads: number;
  ffnDim: number;
  encoderLayers: number;
  decoderLayers: number;
  /** Residual and embedding dropout. */
  dropout: number;
  /** Dropout on attention probabilities. */
  attentionDropout: number;
  /** Dropout after the FFN activation. */
  activationDropout: number;
  activation: Activation;
  positions: PositionKind;
  /** Longest sequence (source or target, including BOS/EOS) the model accepts. */
  maxPositions: number;
  /** Pre-norm (LayerNorm before each sublayer, plus a final LayerNorm) instead of post-norm. */
  normFirst: boolean;
  /** One embedding matrix for source and target (joint vocabulary; needs equal vocab sizes). */
  shareEmbeddings: boolean;
  /** Output projection = target embedding transposed. */
  tieOutput: boolean;
  /** Per-head attention rank r = max(1, floor(attentionRankScale · d / H)); 1 = full rank. */
  attentionRankScale: number;
  /** Rank scale of the FFN and (untied) output projection; null = dense layers. */
  linearRankScale: number | null;
  /** Rank scale of the token embeddings (rank = max(1, floor(scale · d))); null = dense. */
  embeddingRankScale: number | null;
  spectralInit: SpectralInitChoice;
  /** Multiply token embeddings by √d (fairseq's default). */
  scaleEmbedding: boolean;
  /** Biases in the attention projections. */
  attentionBias: boolean;
}

/** Everything but the vocabulary: what a preset fixes. */
export type Seq2SeqArchitecture = Omit<Seq2SeqConfig, 'srcVocabSize' | 'tgtVocabSize' | 'padId' | 'bosId' | 'eosId'>;

export const DEFAULT_SPECTRAL_INIT: SpectralInitChoice = { qk: true, ov: true, linear: true, embedding: true };

/** Defaults for everything optional; vocabulary and special ids have none. */
export const SEQ2SEQ_DEFAULTS: Seq2SeqArchitecture = {
  modelDim: 256,
  numHeads: 4,
  ffnDim: 1024,
  encoderLayers: 2,
  decoderLayers: 2,
  dropout: 0.1,
  attentionDropout: 0,
  activationDropout: 0,
  activation: 'relu',
  positions: 'sinusoidal',
  maxPositions: 1024,
  normFirst: false,
  shareEmbeddings: false,
  tieOutput: true,
  attentionRankScale: 1,
  linearRankScale: null,
  embeddingRankScale: null,
  spectralInit: DEFAULT_SPECTRAL_INIT,
  scaleEmbedding: true,
  attentionBias: true,
};

const KEYS: readonly (keyof Seq2SeqConfig)[] = [
  'srcVocabSize', 'tgtVocabSize', 'padId', 'bosId', 'eosId',
  ...(Object.keys(SEQ2SEQ_DEFAULTS) as (keyof Seq2SeqArchitecture)[]),
];

function fail(key: string, expected: string, got: unknown): never {
  throw new UserError(`model config: '${key}' must be ${expected}; got ${JSON.stringify(got)}`);
}

function positiveInt(c: Record<string, unknown>, key: string): void {
  const v = c[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) fail(key, 'a positive integer', v);
}
function nonNegativeInt(c: Record<string, unknown>, key: string): void {
  const v = c[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) fail(key, 'an integer >= 0', v);
}
function rate(c: Record<string, unknown>, key: string): void {
  const v = c[key];
  if (typeof v !== 'number' || !(v >= 0 && v < 1)) fail(key, 'a number in [0, 1)', v);
}
function bool(c: Record<string, unknown>, key: string): void {
  if (typeof c[key] !== 'boolean') fail(key, 'true or false', c[key]);
}
function rankScale(c: Record<string, unknown>, key: string, nullable: boolean): void {
  const v = c[key];
  if (v === null && nullable) return;
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) fail(key, nullable ? 'a number > 0 or null (dense)' : 'a number > 0', v);
}
function oneOf(c: Record<string, unknown>, key: string, choices: readonly string[]): void {
  if (!choices.includes(c[key] as string)) fail(key, `one of ${choices.join(', ')}`, c[key]);
}

/**
 * Fills defaults and checks every key; unknown keys and bad values throw a UserError naming the key.
 * `spectralInit` may be a boolean (all pair types) or a partial per-type record.
 */
export function resolveSeq2SeqConfig(input: Partial<Omit<Seq2SeqConfig, 'spectralInit'>> & { spectralInit?: boolean | Partial<SpectralInitChoice> }): Seq2SeqConfig {
  if (input == null || typeof input !== 'object') throw new UserError('model config: expected an object');
  for (const key of Object.keys(input)) {
    if (!(KEYS as readonly string[]).includes(key)) {
      throw new UserError(`model config: unknown key '${key}'; expected one of ${KEYS.join(', ')}`);
    }
  }
  const si = input.spectralInit;
  let spectralInit: SpectralInitChoice;
  if (si === undefined) spectralInit = { ...DEFAULT_SPECTRAL_INIT };
  else if (typeof si === 'boolean') spectralInit = { qk: si, ov: si, linear: si, embedding: si };
  else if (typeof si === 'object' && si !== null) {
    for (const k of Object.keys(si)) {
      if (!(k in DEFAULT_SPECTRAL_INIT)) throw new UserError(`model config: unknown key 'spectralInit.${k}'; expected qk, ov, linear, embedding`);
      if (typeof (si as Record<string, unknown>)[k] !== 'boolean') fail(`spectralInit.${k}`, 'true or false', (si as Record<string, unknown>)[k]);
    }
    spectralInit = { ...DEFAULT_SPECTRAL_INIT, ...si };
  } else fail('spectralInit', 'a boolean or { qk, ov, linear, embedding }', si);

  const c = { ...SEQ2SEQ_DEFAULTS, ...input, spectralInit } as Seq2SeqConfig;
  const r = c as unknown as Record<string, unknown>;
  for (const k of ['srcVocabSize', 'tgtVocabSize', 'modelDim', 'numHeads', 'ffnDim', 'maxPositions'] as const) positiveInt(r, k);
  for (const k of ['padId', 'bosId', 'eosId', 'encoderLayers', 'decoderLayers'] as const) nonNegativeInt(r, k);
  for (const k of ['dropout', 'attentionDropout', 'activationDropout'] as const) rate(r, k);
  for (const k of ['normFirst', 'shareEmbeddings', 'tieOutput', 'scaleEmbedding', 'attentionBias'] as const) bool(r, k);
  oneOf(r, 'activation', ['relu', 'gelu']);
  oneOf(r, 'positions', ['sinusoidal', 'learned']);
  rankScale(r, 'attentionRankScale', false);
  rankScale(r, 'linearRankScale', true);
  rankScale(r, 'embeddingRankScale', true);
  if (c.encoderLayers < 1) fail('encoderLayers', 'at least 1', c.encoderLayers);
  if (c.decoderLayers < 1) fail('decoderLayers', 'at least 1', c.decoderLayers);
  if (c.attentionRankScale === 1 && c.modelDim % c.numHeads !== 0) {
    throw new UserError(`model config: 'modelDim' (${c.modelDim}) must be divisible by 'numHeads' (${c.numHeads})`);
  }
  for (const k of ['padId', 'bosId', 'eosId'] as const) {
    if (c[k] >= c.tgtVocabSize) fail(k, `< tgtVocabSize (${c.tgtVocabSize})`, c[k]);
    if (c[k] === c.padId && k !== 'padId') fail(k, `different from padId (${c.padId})`, c[k]);
  }
  if (c.padId >= c.srcVocabSize) fail('padId', `< srcVocabSize (${c.srcVocabSize})`, c.padId);
  if (c.shareEmbeddings && c.srcVocabSize !== c.tgtVocabSize) {
    throw new UserError(
      `model config: 'shareEmbeddings' needs a joint vocabulary, but srcVocabSize ${c.srcVocabSize} != tgtVocabSize ${c.tgtVocabSize}`,
    );
  }
  return c;
}
