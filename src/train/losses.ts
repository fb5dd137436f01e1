/**
 * Label-smoothed cross-entropy over a padded batch of token targets.
 *
 * Written with logsumexp + a gather of the target column, so it never builds a one-hot or a full
 * log-probability copy of the [B, T, V] logits: per token,
 *   −log p(t)          = lse − logit[t]
 *   mean_v(−log p(v))  = lse − mean_v(logit[v])
 *   loss = (1 − ε)·nll + ε·mean_v(−log p)        (= (1−ε)·nll + ε/V·Σ_v(−log p), fairseq/torch style)
 */
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors.ts';

export interface LabelSmoothingOptions {
  /** ε in [0, 1). 0 = plain cross-entropy. */
  smoothing: number;
  /** Target id that marks padding; those positions contribute nothing. */
  padId: number;
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
    throw new Error(
      `labelSmoothedCrossEntropy: logits [${logits.shape}] must be targets [${targets.shape}] plus a vocabulary axis`,
    );
  }
  if (targets.dtype !== 'int32') throw new Error(`labelSmoothedCrossEntropy: targets must be int32, got ${targets.dtype}`);
  // Counting on the host: targets are small int tensors built from host arrays anyway.
  const targetIds = targets.dataSync();
  let numTokens = 0;
  for (let i = 0; i < targetIds.length; i++) {
    const id = targetIds[i];
    if (id === padId) continue;
    if (id < 0 || id >= vocab) throw new Error(`labelSmoothedCrossEntropy: target id ${id} outside vocabulary [0, ${vocab})`);
    numTokens++;
  }
  const [loss, nllLoss] = tf.tidy(() => {
    const n = targetIds.length;
    const flatLogits = tf.reshape(logits, [n, vocab]);
    const lse = tf.logSumExp(flatLogits, 1); // [n]
    const flatTargets = tf.reshape(targets, [n]);
    // Index of each target logit (pad ids may lie outside the vocabulary: clamp, they are masked) in the flattened [n·V] view: row·V + target.
    const flatIndex = tf.add(tf.mul(tf.range(0, n, 1, 'int32'), tf.scalar(vocab, 'int32')), tf.maximum(flatTargets, tf.scalar(0, 'int32')));
    const targetLogit = tf.gather(tf.reshape(flatLogits, [n * vocab]), flatIndex);
    const mask = tf.cast(tf.notEqual(flatTargets, tf.scalar(padId, 'int32')), 'float32');
    const nll = tf.mul(tf.sub(lse, targetLogit), mask);
    const nllSum = tf.sum(nll) as tf.Scalar;
    if (smoothing === 0) return [nllSum, tf.clone(nllSum)];
    const smooth = tf.mul(tf.sub(lse, tf.mean(flatLogits, 1)), mask);
    const total = tf.add(tf.mul(nllSum, 1 - smoothing), tf.mul(tf.sum(smooth), smoothing)) as tf.Scalar;
    return [total, nllSum];
  });
  return { loss, nllLoss, numTokens };
}
