/**
 * Incremental-decoding cache of one attention layer: the keys and values already projected per
 * head ([B, H, S, r]), so each decoding step only projects its own token.
 *
 * - self-attention (`static: false`): every `attend(step, step, { cache })` appends the step's K/V.
 * - cross-attention (`static: true`): the first call projects the memory and stores it; later
 *   calls reuse it (memory may then be passed as null).
 * The cache owns its tensors (kept out of any tf.tidy); call `disposeAttentionCache` when done.
 */
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors.ts';

export interface AttentionCache {
  /** Projected keys [B, H, S, r] (1/√r is folded into the queries, not here). */
  key?: tf.Tensor;
  /** Projected values [B, H, S, r]. */
  value?: tf.Tensor;
  static: boolean;
}

export function createAttentionCache(isStatic: boolean): AttentionCache {
  return { static: isStatic };
}

/** Keeps rows `indices` of the batch axis (e.g. beam parents); duplicates and reordering allowed. */
export function reorderAttentionCache(cache: AttentionCache, indices: tf.Tensor1D): void {
  if (indices.rank !== 1) throw new UserError(`reorderAttentionCache: indices must be 1-D; got shape [${indices.shape}]`);
  const idx = indices.dtype === 'int32' ? indices : tf.cast(indices, 'int32');
  for (const key of ['key', 'value'] as const) {
    const old = cache[key];
    if (!old) continue;
    cache[key] = tf.keep(tf.gather(old, idx, 0));
    old.dispose();
  }
  if (idx !== indices) idx.dispose();
}

export function disposeAttentionCache(cache: AttentionCache): void {
  cache.key?.dispose();
  cache.value?.dispose();
  cache.key = undefined;
  cache.value = undefined;
}

/** Number of cached key positions (0 when empty). */
export function attentionCacheLength(cache: AttentionCache): number {
  return cache.key ? (cache.key.shape[2] as number) : 0;
}
