export { FactorizedMultiHeadAttention } from './factorized-attention.ts';
export type { FactorizedMultiHeadAttentionConfig, AttendOptions } from './factorized-attention.ts';
export { createAttentionCache, reorderAttentionCache, disposeAttentionCache, attentionCacheLength } from './cache.ts';
export type { AttentionCache } from './cache.ts';
export { fromDenseAttention } from './from-dense.ts';
export type { DenseAttentionWeights } from './from-dense.ts';
export { fromTorchAttention } from './from-torch.ts';
export type { TorchAttentionWeights, TorchWeight } from './from-torch.ts';
