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

/**
 * Σ‖g‖² over all gradients as a float32 scalar tensor, not read back (NaN/Inf if any gradient is).
 * The trainer reads it together with the step's losses in one `await data()`: a per-op read would
 * stall a GPU backend once per op, and GPU backends cannot read synchronously at all.
 */
export function sumOfSquares(grads: GradMap): tf.Scalar {
  const values = Object.values(grads);
  if (values.length === 0) return tf.scalar(0);
  return tf.tidy(() => tf.addN(values.map((g) => tf.sum(tf.square(g))))) as tf.Scalar;
}

/** √(Σ‖g‖²) over all gradients, read back to the host (NaN/Inf if any gradient is). */
export async function globalNorm(grads: GradMap): Promise<number> {
  const sq = sumOfSquares(grads);
  const total = (await sq.data())[0];
  sq.dispose();
  return Math.sqrt(total);
}

/**
 * Clips by global norm as torch/fairseq do: coefficient maxNorm / (norm + 1e-6), capped at 1.
 * Returns the coefficient applied (1 = unchanged). maxNorm 0 turns clipping off.
 * `norm` is the host number the trainer already read (√ of `sumOfSquares`), so clipping itself
 * reads nothing back; the coefficient is computed in Float64 as before, which keeps runs bit-identical.
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
