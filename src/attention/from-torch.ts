/**
 * fromTorchAttention: fromDenseAttention for weights in PyTorch's layout. `nn.Linear` (and so a
 * Hugging Face BERT attention) stores `weight` as [out, in] and computes x · weightᵀ + bias;
 * `nn.MultiheadAttention` packs the three input projections into one `in_proj_weight` [3E, d]
 * (rows: query, key, value). Both split heads as contiguous blocks of E = H · dh features and
 * scale logits by 1/√dh — the convention fromDenseAttention expects once the weights are
 * transposed.
 */
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors.ts';
import { fromDenseAttention } from './from-dense.ts';
import type { FactorizedMultiHeadAttention } from './factorized-attention.ts';

/**
 * A weight as a tf tensor, nested number arrays (`weight.tolist()`), or flat values with their
 * shape (`{ data: Float32Array, shape: [out, in] }`, e.g. from a safetensors buffer). A bare
 * typed array is accepted for 1-D biases only (a matrix needs its shape).
 */
export type TorchWeight = tf.Tensor | number[] | number[][] | Float32Array | { data: ArrayLike<number>; shape: number[] };

export interface TorchAttentionWeights {
  /**
   * Separate projections, [E, d] each (`nn.Linear.weight`): Hugging Face BERT's
   * `attention.self.query.weight`, `.key.weight`, `.value.weight`. Exclusive with inProjWeight.
   */
  qWeight?: TorchWeight;
  kWeight?: TorchWeight;
  vWeight?: TorchWeight;
  /** [E] each: `attention.self.query.bias`, … */
  qBias?: TorchWeight;
  kBias?: TorchWeight;
  vBias?: TorchWeight;
  /** Packed projections [3E, d], rows query | key | value: `nn.MultiheadAttention.in_proj_weight`. */
  inProjWeight?: TorchWeight;
  /** [3E]: `nn.MultiheadAttention.in_proj_bias`. */
  inProjBias?: TorchWeight;
  /** Output projection [d, E]: BERT's `attention.output.dense.weight`, MHA's `out_proj.weight`. */
  outWeight: TorchWeight;
  /** [d]: `attention.output.dense.bias`, `out_proj.bias`. */
  outBias?: TorchWeight;
  numHeads: number;
  /** Per-head rank r of the factorized layer; default the head dim dh = E / numHeads. */
  rank?: number;
  /** Layer name. */
  name?: string;
  causal?: boolean;
  /** Dropout rate on the attention probabilities (training only). */
  dropout?: number;
}

/** `weight` as a float32 tensor of rank `rank` (a new tensor the caller disposes). */
function toTensor(name: string, weight: TorchWeight, rank: 1 | 2): tf.Tensor {
  let t: tf.Tensor;
  if (weight instanceof tf.Tensor) {
    t = tf.cast(weight, 'float32'); // a copy, so the caller's tensor is never disposed here
  } else if (ArrayBuffer.isView(weight)) {
    if (rank !== 1) throw new UserError(`fromTorchAttention: ${name} is a flat array; give { data, shape } for a matrix`);
    t = tf.tensor1d(weight as Float32Array, 'float32');
  } else if (Array.isArray(weight)) {
    t = tf.tensor(weight as number[][], undefined, 'float32');
  } else if (weight != null && typeof weight === 'object' && 'data' in weight && Array.isArray(weight.shape)) {
    const size = weight.shape.reduce((a, b) => a * b, 1);
    if (weight.data.length !== size) {
      throw new UserError(`fromTorchAttention: ${name} has ${weight.data.length} values, shape [${weight.shape}] needs ${size}`);
    }
    t = tf.tensor(Float32Array.from(weight.data), weight.shape, 'float32');
  } else {
    throw new UserError(`fromTorchAttention: ${name} must be a tensor, nested arrays or { data, shape }; got ${String(weight)}`);
  }
  if (t.rank !== rank) {
    const shape = t.shape;
    t.dispose();
    throw new UserError(`fromTorchAttention: ${name} must be ${rank === 2 ? '[out, in]' : '[out]'}; got shape [${shape}]`);
  }
  return t;
}

/**
 * Builds a FactorizedMultiHeadAttention from a PyTorch / Hugging Face attention's weights, given
 * either as separate `qWeight`/`kWeight`/`vWeight` (+ biases) or as the packed `inProjWeight`
 * (+ `inProjBias`), plus `outWeight` (+ `outBias`). Exact at rank ≥ dh; below, each head's QK and
 * OV products are truncated to their best rank-r approximation, and `relativeErrors` are
 * ‖P − P_r‖_F / ‖P‖_F over all heads of each kind (P including the bias row): see
 * fromDenseAttention. Biases are optional; when some are given, the missing ones are zero (e.g.
 * BEiT's key projection has none).
 *
 * Not covered: `nn.MultiheadAttention` with kdim/vdim ≠ embed_dim, add_bias_kv or add_zero_attn
 * (the layer's key and value inputs have the query's width and no extra key).
 */
export async function fromTorchAttention(weights: TorchAttentionWeights): Promise<{
  layer: FactorizedMultiHeadAttention;
  relativeErrors: { qk: number; ov: number };
}> {
  if (weights == null) throw new UserError('fromTorchAttention: weights are required');
  const separate = [weights.qWeight, weights.kWeight, weights.vWeight];
  const separateGiven = separate.filter((w) => w != null).length;
  const packed = weights.inProjWeight != null;
  if (packed && (separateGiven > 0 || weights.qBias != null || weights.kBias != null || weights.vBias != null)) {
    throw new UserError('fromTorchAttention: give either inProjWeight (+ inProjBias) or qWeight, kWeight, vWeight (+ biases), not both');
  }
  if (!packed && separateGiven !== 3) throw new UserError('fromTorchAttention: give qWeight, kWeight and vWeight, or inProjWeight');
  if (!packed && weights.inProjBias != null) throw new UserError('fromTorchAttention: inProjBias goes with inProjWeight');
  if (weights.outWeight == null) throw new UserError('fromTorchAttention: outWeight is required');

  const owned: tf.Tensor[] = [];
  const own = <T extends tf.Tensor>(t: T): T => {
    owned.push(t);
    return t;
  };
  try {
    let wq: tf.Tensor2D, wk: tf.Tensor2D, wv: tf.Tensor2D;
    let bq: tf.Tensor1D | null = null, bk: tf.Tensor1D | null = null, bv: tf.Tensor1D | null = null;
    if (packed) {
      const w = own(toTensor('inProjWeight', weights.inProjWeight!, 2)) as tf.Tensor2D;
      if (w.shape[0] % 3 !== 0) throw new UserError(`fromTorchAttention: inProjWeight must be [3E, d]; got shape [${w.shape}]`);
      [wq, wk, wv] = tf.split(w, 3, 0).map(own) as tf.Tensor2D[];
      if (weights.inProjBias != null) {
        const b = own(toTensor('inProjBias', weights.inProjBias, 1)) as tf.Tensor1D;
        if (b.shape[0] !== w.shape[0]) throw new UserError(`fromTorchAttention: inProjBias must be [${w.shape[0]}]; got shape [${b.shape}]`);
        [bq, bk, bv] = tf.split(b, 3, 0).map(own) as tf.Tensor1D[];
      }
    } else {
      wq = own(toTensor('qWeight', weights.qWeight!, 2)) as tf.Tensor2D;
      wk = own(toTensor('kWeight', weights.kWeight!, 2)) as tf.Tensor2D;
      wv = own(toTensor('vWeight', weights.vWeight!, 2)) as tf.Tensor2D;
      const bias = (name: string, b: TorchWeight | undefined) => (b == null ? null : (own(toTensor(name, b, 1)) as tf.Tensor1D));
      [bq, bk, bv] = [bias('qBias', weights.qBias), bias('kBias', weights.kBias), bias('vBias', weights.vBias)];
    }
    const wo = own(toTensor('outWeight', weights.outWeight, 2)) as tf.Tensor2D;
    const bo = weights.outBias == null ? null : (own(toTensor('outBias', weights.outBias, 1)) as tf.Tensor1D);

    // Shapes in torch's terms before transposing, so errors name the tensors the user passed.
    const [E, d] = wq.shape;
    for (const [name, t] of [['kWeight', wk], ['vWeight', wv]] as const) {
      // (Rows of one packed matrix always agree.)
      if (t.shape[0] !== E || t.shape[1] !== d) {
        throw new UserError(`fromTorchAttention: ${name} must be [${E}, ${d}] like qWeight; got shape [${t.shape}]`);
      }
    }
    if (wo.shape[0] !== d || wo.shape[1] !== E) throw new UserError(`fromTorchAttention: outWeight must be [${d}, ${E}]; got shape [${wo.shape}]`);
    for (const [name, b, n] of [['qBias', bq, E], ['kBias', bk, E], ['vBias', bv, E], ['outBias', bo, d]] as const) {
      if (b && b.shape[0] !== n) throw new UserError(`fromTorchAttention: ${name} must be [${n}]; got shape [${b.shape}]`);
    }

    const useBias = [bq, bk, bv, bo].some((b) => b != null);
    const biasOrZero = (b: tf.Tensor1D | null, n: number) => b ?? own(tf.zeros([n]) as tf.Tensor1D);
    const T = (t: tf.Tensor2D) => own(tf.transpose(t) as tf.Tensor2D);
    return await fromDenseAttention({
      wq: T(wq),
      wk: T(wk),
      wv: T(wv),
      wo: T(wo),
      ...(useBias ? { bq: biasOrZero(bq, E), bk: biasOrZero(bk, E), bv: biasOrZero(bv, E), bo: biasOrZero(bo, d) } : {}),
      numHeads: weights.numHeads,
      rank: weights.rank,
      name: weights.name,
      causal: weights.causal,
      dropout: weights.dropout,
    });
  } finally {
    tf.dispose(owned);
  }
}
