/**
 * Frobenius decay (docs/ARCHITECTURE.md §1.4): penalize ½‖U Vᵀ‖² per factor pair instead of
 * ½(‖U‖² + ‖V‖²), with closed-form gradients that never form the product U Vᵀ.
 */
import * as tf from '@tensorflow/tfjs';
import { InternalError, UserError } from '../errors.ts';

export type FactorPairKind = 'qk' | 'ov' | 'linear' | 'embedding';

/** Every factor pair a layer owns; layers that own factors implement `factorPairs(): FactorPair[]`. */
export interface FactorPair {
  /** e.g. 'encoder/layer0/self_attn/qk' (the owning layer's name + '/' + kind). */
  name: string;
  kind: FactorPairKind;
  /** [H, m, r] or [m, r]. */
  u: tf.LayerVariable;
  /** [H, n, r] or [n, r] — or [H, r, n] / [r, n] when `vTransposed`. */
  v: tf.LayerVariable;
  /** True when `v` is stored transposed (OV: the pair is (valueFactor, outputFactorᵀ)). */
  vTransposed: boolean;
}

/** Which pair kinds get Frobenius decay (the paper's --wd2fd-quekey / --wd2fd-outval / --wd2fd). */
export interface FrobeniusDecayPairs {
  qk: boolean;
  ov: boolean;
  linear: boolean;
  embedding: boolean;
}

export const ALL_FACTOR_PAIRS: FrobeniusDecayPairs = { qk: true, ov: true, linear: true, embedding: true };

function checkPair(U: tf.Tensor, V: tf.Tensor, what: string): void {
  if (U.rank !== V.rank || (U.rank !== 2 && U.rank !== 3) || U.shape[U.rank - 1] !== V.shape[V.rank - 1] || (U.rank === 3 && U.shape[0] !== V.shape[0])) {
    throw new InternalError(`${what}: expected U [H?, m, r] and V [H?, n, r] with equal H and r; got [${U.shape}] and [${V.shape}]`);
  }
}

/** Gram matrices UᵀU per leading index: [H?, r, r]. */
function gram(X: tf.Tensor): tf.Tensor {
  return tf.matMul(X as tf.Tensor3D, X as tf.Tensor3D, true, false);
}

/** ½ Σ_h ‖U_h V_hᵀ‖²_F = ½ Σ_h tr((U_hᵀU_h)(V_hᵀV_h)) for `U [H?, m, r]`, `V [H?, n, r]`. */
export function frobeniusPenalty(U: tf.Tensor, V: tf.Tensor): tf.Scalar {
  checkPair(U, V, 'frobeniusPenalty');
  return tf.tidy(() => tf.mul(0.5, tf.sum(tf.mul(gram(U), gram(V)))) as tf.Scalar);
}

/** Gradients of `coef · frobeniusPenalty(U, V)`: dU = coef·U(VᵀV), dV = coef·V(UᵀU). */
export function frobeniusDecayGrads(U: tf.Tensor, V: tf.Tensor, coef: number): { dU: tf.Tensor; dV: tf.Tensor } {
  checkPair(U, V, 'frobeniusDecayGrads');
  return tf.tidy(() => {
    // coef scales the small r × r Gram matrices, not the [m, r] results.
    const dU = tf.matMul(U as tf.Tensor3D, tf.mul(gram(V), coef) as tf.Tensor3D);
    const dV = tf.matMul(V as tf.Tensor3D, tf.mul(gram(U), coef) as tf.Tensor3D);
    return { dU, dV };
  });
}

/**
 * FD gradients for a pair as stored, i.e. with `v` possibly transposed ([H?, r, n]):
 * then VᵀV = V_s V_sᵀ and d(V_s) = (coef·V(UᵀU))ᵀ = coef·(UᵀU)V_s (UᵀU is symmetric).
 */
export function pairDecayGrads(pair: FactorPair, coef: number): { dU: tf.Tensor; dV: tf.Tensor } {
  if (!pair.vTransposed) return frobeniusDecayGrads(pair.u.read(), pair.v.read(), coef);
  return tf.tidy(() => {
    const U = pair.u.read() as tf.Tensor3D;
    const Vs = pair.v.read() as tf.Tensor3D;
    const vtv = tf.mul(tf.matMul(Vs, Vs, false, true), coef) as tf.Tensor3D;
    const utu = tf.mul(gram(U), coef) as tf.Tensor3D;
    return { dU: tf.matMul(U, vtv), dV: tf.matMul(utu, Vs) };
  });
}

/** ½‖U Vᵀ‖² of a pair as stored (handles `vTransposed`). */
export function pairPenalty(pair: FactorPair): tf.Scalar {
  return tf.tidy(() => {
    const U = pair.u.read();
    const Vs = pair.v.read() as tf.Tensor3D;
    const vtv = pair.vTransposed ? tf.matMul(Vs, Vs, false, true) : gram(Vs);
    return tf.mul(0.5, tf.sum(tf.mul(gram(U), vtv))) as tf.Scalar;
  });
}

/**
 * Returns `grads` (keyed by variable name, as `tf.variableGrads` / `optimizer.computeGradients`
 * key them: `LayerVariable.name`) with coef · ∂(½‖UVᵀ‖²) added for every enabled pair.
 * Entries it replaces are disposed; other entries are passed through untouched; pairs whose
 * variables have no entry in `grads` (not being trained) are skipped. coef = 0 is a no-op.
 */
export function addFrobeniusDecayGrads(
  grads: Record<string, tf.Tensor>,
  pairs: FactorPair[],
  coef: number,
  enabled: FrobeniusDecayPairs = ALL_FACTOR_PAIRS,
): Record<string, tf.Tensor> {
  if (!Number.isFinite(coef) || coef < 0) throw new UserError(`\`frobeniusDecay\` must be a finite number >= 0; got ${coef}`);
  const out: Record<string, tf.Tensor> = { ...grads };
  if (coef === 0) return out;
  for (const pair of pairs) {
    if (!enabled[pair.kind]) continue;
    const gu = out[pair.u.name];
    const gv = out[pair.v.name];
    if (gu === undefined && gv === undefined) continue;
    const { dU, dV } = pairDecayGrads(pair, coef);
    if (gu !== undefined) {
      out[pair.u.name] = tf.add(gu, dU);
      gu.dispose();
    }
    if (gv !== undefined) {
      out[pair.v.name] = tf.add(gv, dV);
      gv.dispose();
    }
    dU.dispose();
    dV.dispose();
  }
  return out;
}

/**
 * Total ½ Σ ‖UVᵀ‖² over the enabled pairs, as a number (for logging the regularizer). One
 * `await data()` for all pairs (GPU backends cannot read synchronously); summed on the host in
 * Float64, pair by pair.
 */
export async function frobeniusPenaltyTotal(pairs: FactorPair[], enabled: FrobeniusDecayPairs = ALL_FACTOR_PAIRS): Promise<number> {
  const used = pairs.filter((pair) => enabled[pair.kind]);
  if (used.length === 0) return 0;
  const stacked = tf.tidy(() => tf.stack(used.map((pair) => pairPenalty(pair))));
  const values = await stacked.data();
  stacked.dispose();
  let total = 0;
  for (const v of values) total += v;
  return total;
}

/** Names of all factor variables (to exclude them from plain weight decay). */
export function factorVariableNames(pairs: FactorPair[]): Set<string> {
  const names = new Set<string>();
  for (const p of pairs) {
    names.add(p.u.name);
    names.add(p.v.name);
  }
  return names;
}

interface HasFactorPairs {
  factorPairs(): FactorPair[];
}
function hasFactorPairs(x: unknown): x is HasFactorPairs {
  return typeof (x as HasFactorPairs).factorPairs === 'function';
}

/**
 * Walks layers (and nested models / layers exposing `.layers`) and gathers their factor pairs,
 * each once even when a layer is shared (deduplicated by the `u` variable).
 */
export function collectFactorPairs(layers: tf.layers.Layer[]): FactorPair[] {
  const seenLayers = new Set<unknown>();
  const seenVars = new Set<string>();
  const out: FactorPair[] = [];
  const visit = (layer: unknown): void => {
    if (layer == null || seenLayers.has(layer)) return;
    seenLayers.add(layer);
    if (hasFactorPairs(layer)) {
      for (const p of layer.factorPairs()) {
        if (seenVars.has(p.u.name)) continue;
        seenVars.add(p.u.name);
        out.push(p);
      }
    }
    const nested = (layer as { layers?: unknown }).layers;
    if (Array.isArray(nested)) for (const l of nested) visit(l);
  };
  for (const l of layers) visit(l);
  return out;
}
