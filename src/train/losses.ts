/**
 * Label-smoothed cross-entropy over a padded batch of token targets.
 *
 * Computed by the engine's `softmaxCrossEntropy` (logsumexp + a gather of the target column, so it
 * never builds a one-hot or a full log-probability copy of the [B, T, V] logits): per token,
 *   −log p(t)          = lse − logit[t]
 *   mean_v(−log p(v))  = lse − mean_v(logit[v])
 *   loss = (1 − ε)·nll + ε·mean_v(−log p)        (= (1−ε)·nll + ε/V·Σ_v(−log p), fairseq/torch style)
 */
import * as tf from '@tensorflow/tfjs';
import { InternalError, UserError } from '../errors.ts';
import { softmaxCrossEntropy } from '../backend/kernels/crossEntropy.ts';

export interface LabelSmoothingOptions {
  /** ε in [0, 1). 0 = plain cross-entropy. */
  smoothing: number;
  /** Target id that marks padding; those positions contribute nothing. */
  padId: number;
  /**
   * The targets' values on the host, row-major (the batch's own id array). Tokens are counted and
   * ids checked from it, so the targets tensor is never read back; GPU backends cannot read
   * synchronously, so pass it on every training and evaluation path. Without it the ids are read
   * with `dataSync()` (fine on cpu/wasm/tfjs-node only).
   */
  targetIds?: ArrayLike<number>;
}

export interface CrossEntropyResult {
  /** Label-smoothed loss, summed over the non-pad tokens. */
  loss: tf.Scalar;
  /** Negative log-likelihood, summed over the non-pad tokens (for perplexity). */
  nllLoss: tf.Scalar;
  /** Number of non-pad target tokens. */
  numTokens: number;
}

export function labelSmoothedCrossEntropy(
  logits: tf.Tensor,
  targets: tf.Tensor,
  options: LabelSmoothingOptions,
): CrossEntropyResult {
  const { smoothing, padId } = options;
  if (!(smoothing >= 0 && smoothing < 1)) {
    throw new UserError(`labelSmoothing: expected a number in [0, 1), got ${smoothing}`);
  }
  const vocab = logits.shape[logits.shape.length - 1];
  if (logits.shape.length !== targets.shape.length + 1 || targets.shape.some((d, i) => d !== logits.shape[i])) {
    throw new InternalError(
      `labelSmoothedCrossEntropy: logits [${logits.shape}] must be targets [${targets.shape}] plus a vocabulary axis`,
    );
  }
  if (targets.dtype !== 'int32') throw new InternalError(`labelSmoothedCrossEntropy: targets must be int32, got ${targets.dtype}`);
  // Counting on the host, from the batch's own ids when given (targets are built from host arrays).
  const targetIds = options.targetIds ?? targets.dataSync();
  if (targetIds.length !== targets.size) {
    throw new InternalError(`labelSmoothedCrossEntropy: targetIds has ${targetIds.length} values, targets [${targets.shape}] ${targets.size}`);
  }
  let numTokens = 0;
  for (let i = 0; i < targetIds.length; i++) {
    const id = targetIds[i];
    if (id === padId) continue;
    if (id < 0 || id >= vocab) throw new InternalError(`labelSmoothedCrossEntropy: target id ${id} outside vocabulary [0, ${vocab})`);
    numTokens++;
  }
  // The engine's fused kernel: one pass for the value, and a single [n, V] gradient tensor
  // (the op-by-op version keeps several [n, V] intermediates alive for the backward pass, which
  // overflows the 4 GB wasm heap at ~4k-token batches with an 8k vocabulary).
  const { loss, nll: nllLoss } = tf.tidy(() => {
    const n = targetIds.length;
    const result = softmaxCrossEntropy(tf.reshape(logits, [n, vocab]) as tf.Tensor2D, tf.reshape(targets, [n]) as tf.Tensor1D, {
      smoothing,
      padId,
    });
    return { loss: result.loss, nll: result.nll };
  });
  return { loss, nllLoss, numTokens };
}
