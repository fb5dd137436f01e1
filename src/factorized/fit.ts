/**
 * Frobenius decay for models trained with tfjs' own `model.fit` (docs/ARCHITECTURE.md §1.4).
 *
 * Our Trainer adds the closed-form FD gradients to the task gradients (`addFrobeniusDecayGrads`).
 * `model.fit` offers no hook between gradients and the optimizer, but it does add every layer's
 * `addLoss` terms to the loss it differentiates (Container.calculateLosses). So each layer that
 * owns factor pairs gets the loss term coef · Σ ½‖U Vᵀ‖², computed through the r × r Gram
 * matrices: its autodiff gradient is exactly the closed form coef · U(VᵀV) (and coef · V(UᵀU)), at
 * the same cost, and the product U Vᵀ is never formed.
 */
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors.ts';
import { ALL_FACTOR_PAIRS, pairPenalty, type FactorPair, type FrobeniusDecayPairs } from './frobenius.ts';

export interface FrobeniusDecayOptions {
  /** λ: the penalty λ · ½‖U Vᵀ‖² is added to the (mean) loss that `fit` minimizes. */
  coef: number;
  /** Which pair kinds get the decay; default all (the paper's --wd2fd-quekey/-outval/--wd2fd). */
  pairs?: Partial<FrobeniusDecayPairs>;
}

interface OwnsFactorPairs {
  factorPairs(): FactorPair[];
  addLoss(loss: () => tf.Scalar): void;
}

function ownsFactorPairs(x: unknown): x is OwnsFactorPairs {
  return typeof (x as OwnsFactorPairs).factorPairs === 'function' && typeof (x as OwnsFactorPairs).addLoss === 'function';
}

/** Layers that already carry an FD term: a second call would silently double the decay. */
const decayed = new WeakSet<object>();

/**
 * Adds Frobenius decay to every layer of `model` (nested models included, shared layers once)
 * that owns factor pairs: `FactorizedMultiHeadAttention`, `FactorizedDense`, `FactorizedEmbedding`.
 * Call it after the model is built (the factors must exist) and before `fit`. Returns the pairs
 * that get the decay. Plain weight decay (an L2 regularizer) should not also be put on them.
 */
export function addFrobeniusDecay(model: tf.LayersModel | tf.layers.Layer, options: FrobeniusDecayOptions): FactorPair[] {
  const { coef } = options;
  if (!Number.isFinite(coef) || coef < 0) throw new UserError(`addFrobeniusDecay: coef must be a finite number >= 0; got ${coef}`);
  const enabled: FrobeniusDecayPairs = { ...ALL_FACTOR_PAIRS, ...options.pairs };
  const out: FactorPair[] = [];
  const seen = new Set<unknown>();
  const visit = (layer: unknown): void => {
    if (layer == null || seen.has(layer)) return;
    seen.add(layer);
    if (ownsFactorPairs(layer)) {
      const pairs = layer.factorPairs().filter((p) => enabled[p.kind]);
      if (pairs.length > 0 && coef > 0) {
        if (decayed.has(layer)) {
          throw new UserError(`addFrobeniusDecay: layer '${(layer as { name?: string }).name}' already has Frobenius decay; add it once per model`);
        }
        if (pairs.some((p) => p.u.read() == null)) throw new UserError('addFrobeniusDecay: build the model (call it once, or use tf.input) before adding Frobenius decay');
        decayed.add(layer);
        layer.addLoss(() => tf.tidy(() => tf.mul(coef, tf.addN(pairs.map((p) => pairPenalty(p)))) as tf.Scalar));
        out.push(...pairs);
      }
    }
    const nested = (layer as { layers?: unknown }).layers;
    if (Array.isArray(nested)) for (const l of nested) visit(l);
  };
  visit(model);
  return out;
}
