/** Gradient bookkeeping for one update: accumulation, scaling, global norm and clipping. */
import * as tf from '@tensorflow/tfjs';

export type GradMap = Record<string, tf.Tensor>;

/** acc += grads, disposing what is replaced; grads are consumed (moved into acc or disposed). */
export function accumulateInto(acc: GradMap, grads: GradMap): void {
  for (const [name, g] of Object.entries(grads)) {
    const prev = acc[name];
    if (!prev) {
      acc[name] = g;
      continue;
    }
    acc[name] = tf.add(prev, g);
    prev.dispose();
    g.dispose();
  }
}

/** Multiplies every gradient by `factor` in place of the map (old tensors disposed). */
export function scaleGrads(grads: GradMap, factor: number): void {
  if (factor === 1) return;
  for (const name of Object.keys(grads)) {
    const prev = grads[name];
    grads[name] = tf.mul(prev, factor);
    prev.dispose();
  }
}

/** √(Σ‖g‖²) over all gradients, read back to the host (NaN/Inf if any gradient is). */
export function globalNorm(grads: GradMap): number {
  const values = Object.values(grads);
  if (values.length === 0) return 0;
  const sq = tf.tidy(() => tf.addN(values.map((g) => tf.sum(tf.square(g)))));
  const total = sq.dataSync()[0];
  sq.dispose();
  return Math.sqrt(total);
}

/**
 * Clips by global norm as torch/fairseq do: coefficient maxNorm / (norm + 1e-6), capped at 1.
 * Returns the coefficient applied (1 = unchanged). maxNorm 0 turns clipping off.
 */
export function clipByGlobalNorm(grads: GradMap, norm: number, maxNorm: number): number {
  if (maxNorm <= 0 || !Number.isFinite(norm)) return 1;
  const coef = Math.min(1, maxNorm / (norm + 1e-6));
  if (coef < 1) scaleGrads(grads, coef);
  return coef;
}

export function disposeGrads(grads: GradMap): void {
  for (const g of Object.values(grads)) g.dispose();
}
