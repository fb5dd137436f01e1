/**
 * Converts a dense (e.g. pretrained) multi-head attention into a FactorizedMultiHeadAttention:
 * exact at rank ≥ the dense head dim, the best rank-r approximation of each head's QK and OV
 * products otherwise.
 *
 * Dense convention (x · W, as tf.layers.dense): q = x wq + bq with wq [d, H·dh], head h = columns
 * h·dh … (h+1)·dh; logits_h = q_h k_hᵀ / √dh; out = concat_h(softmax · v_h) wo + bo, wo [H·dh, d].
 */
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors.ts';
import { balancedFactors, fromArray, type Matrix } from '../factorized/linalg.ts';
import { FactorizedMultiHeadAttention } from './factorized-attention.ts';

export interface DenseAttentionWeights {
  wq: tf.Tensor2D;
  wk: tf.Tensor2D;
  wv: tf.Tensor2D;
  wo: tf.Tensor2D;
  /** Biases, all four or none. */
  bq?: tf.Tensor1D;
  bk?: tf.Tensor1D;
  bv?: tf.Tensor1D;
  bo?: tf.Tensor1D;
  numHeads: number;
  /** Per-head rank r of the factorized layer; default the dense head dim. */
  rank?: number;
  /** Layer name. */
  name?: string;
  causal?: boolean;
  dropout?: number;
}

/**
 * Head h's projection as a [d (+1), dh] matrix: columns h·dh … of w, with the bias as an extra
 * last row when given — so biases factorize exactly together with the weights
 * ((x w + b) = [x 1] · [w; b]).
 */
function headColumns(w: Float32Array, b: Float32Array | null, d: number, inner: number, h: number, dh: number): Matrix {
  const rows = b ? d + 1 : d;
  const m = fromArray(rows, dh, new Float64Array(rows * dh));
  for (let i = 0; i < d; i++) for (let j = 0; j < dh; j++) m.data[i * dh + j] = w[i * inner + h * dh + j];
  if (b) for (let j = 0; j < dh; j++) m.data[d * dh + j] = b[h * dh + j];
  return m;
}

/**
 * Builds a FactorizedMultiHeadAttention (built, spectralInit off: the factors are already
 * balanced) from dense weights. Per head, QK_h = [wq_h; bq_h][wk_h; bk_h]ᵀ and
 * OV_h = [wv_h; bv_h] wo_h are factorized by thin QR + small SVD (never forming d × d products)
 * and truncated to `rank`. `relativeErrors` are ‖P − P_r‖_F / ‖P‖_F over all heads of each kind
 * (0 when rank ≥ the dense head dim); with biases, P includes the bias row.
 * Async: the dense weights are read back with `await data()` (GPU backends cannot read synchronously).
 */
export async function fromDenseAttention(weights: DenseAttentionWeights): Promise<{
  layer: FactorizedMultiHeadAttention;
  relativeErrors: { qk: number; ov: number };
}> {
  const { wq, wk, wv, wo, numHeads: H } = weights;
  if (wq.rank !== 2) throw new UserError(`fromDenseAttention: wq must be [d, H*dh]; got shape [${wq.shape}]`);
  const [d, inner] = wq.shape;
  if (!Number.isInteger(H) || H < 1 || inner % H !== 0) {
    throw new UserError(`fromDenseAttention: numHeads must be a positive integer dividing ${inner}; got ${H}`);
  }
  for (const [name, t, shape] of [
    ['wk', wk, [d, inner]],
    ['wv', wv, [d, inner]],
    ['wo', wo, [inner, d]],
  ] as const) {
    if (t.rank !== 2 || t.shape[0] !== shape[0] || t.shape[1] !== shape[1]) {
      throw new UserError(`fromDenseAttention: ${name} must be [${shape}]; got shape [${t.shape}]`);
    }
  }
  const biases = [weights.bq, weights.bk, weights.bv, weights.bo];
  const given = biases.filter((b) => b != null).length;
  if (given !== 0 && given !== 4) throw new UserError('fromDenseAttention: give all four biases bq, bk, bv, bo or none');
  const useBias = given === 4;
  if (useBias) {
    for (const [name, b, n] of [
      ['bq', weights.bq!, inner],
      ['bk', weights.bk!, inner],
      ['bv', weights.bv!, inner],
      ['bo', weights.bo!, d],
    ] as const) {
      if (b.rank !== 1 || b.shape[0] !== n) throw new UserError(`fromDenseAttention: ${name} must be [${n}]; got shape [${b.shape}]`);
    }
  }
  const dh = inner / H;
  const r = weights.rank ?? dh;
  if (!Number.isInteger(r) || r < 1) throw new UserError(`fromDenseAttention: rank must be a positive integer; got ${r}`);

  const read = (t: tf.Tensor) => t.data() as Promise<Float32Array>;
  const [wqA, wkA, wvA, woA] = await Promise.all([read(wq), read(wk), read(wv), read(wo)]);
  const [bqA, bkA, bvA] = useBias ? await Promise.all([read(weights.bq!), read(weights.bk!), read(weights.bv!)]) : [null, null, null];
  // The dense layer scales logits by 1/√dh, the factorized one by 1/√r: fold √(r/dh) into QK,
  // split evenly over both factors to keep them balanced.
  const qkScale = Math.pow(r / dh, 0.25);

  const queryFactor = new Float32Array(H * d * r);
  const keyFactor = new Float32Array(H * d * r);
  const valueFactor = new Float32Array(H * d * r);
  const outputFactor = new Float32Array(H * r * d);
  const queryBias = new Float32Array(H * r);
  const keyBias = new Float32Array(H * r);
  const valueBias = new Float32Array(H * r);
  const err = { qk: { dropped: 0, total: 0 }, ov: { dropped: 0, total: 0 } };
  const account = (acc: { dropped: number; total: number }, s: Float64Array) => {
    s.forEach((x, i) => {
      acc.total += x * x;
      if (i >= r) acc.dropped += x * x;
    });
  };

  for (let h = 0; h < H; h++) {
    const qk = balancedFactors(headColumns(wqA, bqA, d, inner, h, dh), headColumns(wkA, bkA, d, inner, h, dh), r);
    account(err.qk, qk.s);
    // Wo_h (rows h·dh … of wo) is [dh, d]; the OV pair is ([Wv_h; bv_h], Wo_hᵀ).
    const woT = fromArray(d, dh, new Float64Array(d * dh));
    for (let i = 0; i < dh; i++) for (let j = 0; j < d; j++) woT.data[j * dh + i] = woA[(h * dh + i) * d + j];
    const ov = balancedFactors(headColumns(wvA, bvA, d, inner, h, dh), woT, r);
    account(err.ov, ov.s);
    for (let i = 0; i < d; i++) {
      for (let c = 0; c < r; c++) {
        queryFactor[(h * d + i) * r + c] = qk.u.data[i * r + c] * qkScale;
        keyFactor[(h * d + i) * r + c] = qk.v.data[i * r + c] * qkScale;
        valueFactor[(h * d + i) * r + c] = ov.u.data[i * r + c];
        outputFactor[(h * r + c) * d + i] = ov.v.data[i * r + c];
      }
    }
    if (useBias) {
      for (let c = 0; c < r; c++) {
        queryBias[h * r + c] = qk.u.data[d * r + c] * qkScale;
        keyBias[h * r + c] = qk.v.data[d * r + c] * qkScale;
        valueBias[h * r + c] = ov.u.data[d * r + c];
      }
    }
  }

  const layer = new FactorizedMultiHeadAttention({
    numHeads: H,
    modelDim: d,
    rank: r,
    useBias,
    spectralInit: false, // the factors below are already balanced
    causal: weights.causal,
    dropout: weights.dropout,
    name: weights.name,
  });
  layer.build([null, null, d]);
  const values: tf.Tensor[] = [
    tf.tensor3d(queryFactor, [H, d, r]),
    tf.tensor3d(keyFactor, [H, d, r]),
    tf.tensor3d(valueFactor, [H, d, r]),
    tf.tensor3d(outputFactor, [H, r, d]),
  ];
  if (useBias) {
    values.push(tf.tensor2d(queryBias, [H, r]), tf.tensor2d(keyBias, [H, r]), tf.tensor2d(valueBias, [H, r]));
    values.push(tf.clone(weights.bo!));
  }
  layer.setWeights(values);
  tf.dispose(values);
  const rel = (a: { dropped: number; total: number }) => (a.total > 0 ? Math.sqrt(a.dropped / a.total) : 0);
  return { layer, relativeErrors: { qk: rel(err.qk), ov: rel(err.ov) } };
}
