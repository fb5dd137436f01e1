export { spectralInit, factorize } from './spectral.ts';
export {
  frobeniusPenalty,
  frobeniusDecayGrads,
  pairDecayGrads,
  pairPenalty,
  addFrobeniusDecayGrads,
  frobeniusPenaltyTotal,
  factorVariableNames,
  collectFactorPairs,
  ALL_FACTOR_PAIRS,
} from './frobenius.ts';
export type { FactorPair, FactorPairKind, FrobeniusDecayPairs } from './frobenius.ts';
export { FactorizedDense } from './dense.ts';
export type { FactorizedDenseConfig } from './dense.ts';
export { FactorizedEmbedding } from './embedding.ts';
export type { FactorizedEmbeddingConfig } from './embedding.ts';
export { resolveRank } from './rank.ts';
export { fromDenseKernel, fromDenseEmbedding } from './from-dense.ts';
export { addFrobeniusDecay } from './fit.ts';
export type { FrobeniusDecayOptions } from './fit.ts';
