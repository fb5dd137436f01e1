/**
 * Spectral initialization and dense-to-factor conversion (docs/ARCHITECTURE.md §1.3, §1.6).
 *
 * Both run once at init/conversion time, on the host in Float64 (see linalg.ts for why). The
 * host-array cores (`spectralInitValues`, `balanceStoredPair`, `factorizeArray`) are what layers
 * use while they build: layers draw their random factors on the host (host-random.ts), so building
 * a model never reads a tensor back — a synchronous read throws on GPU backends (webgpu in Node).
 * The tensor entry points (`spectralInit`, `factorize`) read their inputs with `await data()`.
 */
import * as tf from '@tensorflow/tfjs';
import { InternalError } from '../errors.ts';
import { balancedFactors, fromArray, gramOfColumns, svd, symmetricEigen } from './linalg.ts';

/**
 * What spectral initialization does to a FactorizedDense / FactorizedEmbedding / TokenEmbedding
 * factor pair (attention pairs take a plain boolean: re-balancing is what the paper does there):
 * - `true`: the paper's SI (frob.py `spectral_init(linear.weight, rank)`): draw the full matrix
 *   as the unfactorized layer would be initialized, take its truncated rank-r SVD W ≈ A S Bᵀ and
 *   set the factors to A√S and √S Bᵀ (`svdStoredPair`);
 * - `'rebalance'`: draw two random factors and re-balance their product (`balanceStoredPair`),
 *   which keeps the product a product of two random rank-r matrices (what `true` meant before);
 * - `false`: the two random factors as drawn.
 */
export type FactorSpectralInit = boolean | 'rebalance';
export const FACTOR_SPECTRAL_INIT_CHOICES: readonly FactorSpectralInit[] = [true, false, 'rebalance'];

/**
 * Balances a factor pair: for each leading index h, with P_h = U_h V_hᵀ = A diag(s) Bᵀ (top r),
 * returns U_h = A √s, V_h = B √s. The products are unchanged (their rank is ≤ r by construction)
 * and UᵀU = VᵀV = diag(s). `U [H?, m, r]`, `V [H?, n, r]`; returns new tensors (inputs untouched).
 */
export async function spectralInit(U: tf.Tensor, V: tf.Tensor): Promise<{ U: tf.Tensor; V: tf.Tensor }> {
  if (U.rank !== V.rank || (U.rank !== 2 && U.rank !== 3)) {
    throw new InternalError(`spectralInit: U and V must both be [m, r] or [H, m, r]; got shapes [${U.shape}] and [${V.shape}]`);
  }
  const batched = U.rank === 3;
  const heads = batched ? U.shape[0] : 1;
  const [m, r] = U.shape.slice(-2);
  const [n, rv] = V.shape.slice(-2);
  if (r !== rv || (batched && V.shape[0] !== heads)) {
    throw new InternalError(`spectralInit: U [${U.shape}] and V [${V.shape}] must share the head count and rank`);
  }
  const [uData, vData] = await Promise.all([U.data(), V.data()]);
  const out = spectralInitValues(uData, vData, heads, m, n, r);
  return { U: tf.tensor(out.u, U.shape), V: tf.tensor(out.v, V.shape) };
}

/** Host core of `spectralInit`: `u` [heads, m, r] and `v` [heads, n, r], row-major. */
export function spectralInitValues(
  u: ArrayLike<number>,
  v: ArrayLike<number>,
  heads: number,
  m: number,
  n: number,
  r: number,
): { u: Float32Array; v: Float32Array } {
  const outU = new Float32Array(heads * m * r);
  const outV = new Float32Array(heads * n * r);
  for (let h = 0; h < heads; h++) {
    const res = balancedFactors(fromArray(m, r, u, h * m * r), fromArray(n, r, v, h * n * r), r);
    outU.set(res.u.data, h * m * r);
    outV.set(res.v.data, h * n * r);
  }
  return { u: outU, v: outV };
}

/** Swaps the last two axes of `heads` row-major [rows, cols] blocks. */
function transposeBlocks(x: ArrayLike<number>, heads: number, rows: number, cols: number): Float32Array {
  const out = new Float32Array(heads * rows * cols);
  for (let h = 0; h < heads; h++) {
    const base = h * rows * cols;
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[base + j * rows + i] = x[base + i * cols + j];
  }
  return out;
}

/**
 * Spectral initialization of a pair as a layer stores it: `u` [heads, m, r] and `vStored`
 * [heads, n, r], or [heads, r, n] when `vTransposed` (returned in the same layout).
 */
export function balanceStoredPair(
  u: ArrayLike<number>,
  vStored: ArrayLike<number>,
  dims: { heads: number; m: number; n: number; r: number; vTransposed: boolean },
): { u: Float32Array; v: Float32Array } {
  const { heads, m, n, r, vTransposed } = dims;
  const v = vTransposed ? transposeBlocks(vStored, heads, r, n) : vStored;
  const out = spectralInitValues(u, v, heads, m, n, r);
  return { u: out.u, v: vTransposed ? transposeBlocks(out.v, heads, n, r) : out.v };
}

/**
 * Best rank-`rank` factorization W ≈ U Vᵀ (truncated SVD, balanced: U = A√s, V = B√s), with the
 * relative Frobenius error ‖W − U Vᵀ‖ / ‖W‖ (0 for W = 0). `W [m, n]` → `U [m, rank]`, `V [n, rank]`.
 * Ranks above min(m, n) pad with zero columns. Cost: one Jacobi SVD of W, O(min(m, n)³) per sweep
 * (see linalg.svd for measured times): fine up to a few hundred, slow (minutes) at 1024.
 */
export async function factorize(W: tf.Tensor2D, rank: number): Promise<{ U: tf.Tensor2D; V: tf.Tensor2D; relativeError: number }> {
  if (W.rank !== 2) throw new InternalError(`factorize: W must be a matrix [m, n]; got shape [${W.shape}]`);
  if (!Number.isInteger(rank) || rank < 1) throw new InternalError(`factorize: rank must be a positive integer; got ${rank}`);
  const [m, n] = W.shape;
  const res = factorizeArray(await W.data(), m, n, rank);
  return { U: tf.tensor2d(Float32Array.from(res.u), [m, rank]), V: tf.tensor2d(Float32Array.from(res.v), [n, rank]), relativeError: res.relativeError };
}

/** Host-side core of `factorize` on a row-major [m, n] array. */
export function factorizeArray(
  values: ArrayLike<number>,
  m: number,
  n: number,
  rank: number,
): { u: Float64Array; v: Float64Array; relativeError: number } {
  const { u, s, v } = svd(fromArray(m, n, values));
  const p = s.length;
  const outU = new Float64Array(m * rank);
  const outV = new Float64Array(n * rank);
  for (let c = 0; c < Math.min(rank, p); c++) {
    const root = Math.sqrt(s[c]);
    for (let i = 0; i < m; i++) outU[i * rank + c] = u.data[i * p + c] * root;
    for (let i = 0; i < n; i++) outV[i * rank + c] = v.data[i * p + c] * root;
  }
  let total = 0;
  let dropped = 0;
  for (let c = 0; c < p; c++) {
    total += s[c] * s[c];
    if (c >= rank) dropped += s[c] * s[c];
  }
  return { u: outU, v: outV, relativeError: total > 0 ? Math.sqrt(dropped / total) : 0 };
}

/**
 * The paper's spectral initialization of one pair as a layer stores it: the truncated rank-`r` SVD
 * of the full matrix `w` [m, n] (row-major), W ≈ A S Bᵀ, as `u` = A√S [m, r] and `v` = √S Bᵀ
 * [r, n] when `vTransposed`, else B√S [n, r]. Ranks above min(m, n) get zero columns (as frob.py).
 * See `truncatedSvdFactors` for the method and its cost.
 */
export function svdStoredPair(w: ArrayLike<number>, dims: { m: number; n: number; r: number; vTransposed: boolean }): { u: Float32Array; v: Float32Array } {
  const { m, n, r, vTransposed } = dims;
  const { u, vt } = truncatedSvdFactors(w, m, n, r);
  return { u, v: vTransposed ? vt : transposeBlocks(vt, 1, r, n) };
}

/**
 * Truncated SVD of w [m, n] (row-major) as balanced factors: `u` = A√S [m, r], `vt` = √S Bᵀ [r, n],
 * `s` the top min(r, m, n) singular values, descending.
 *
 * By the eigendecomposition of the smaller Gram matrix (WᵀW for a tall W) in Float64, not a full
 * SVD: O(m n²) for the Gram product plus ~9 n³ for the eigenvectors B, then A√S = W B / √S
 * (O(m n r)), with S read off as ‖W b_k‖ — so the product A S Bᵀ = W B Bᵀ is W projected on the top
 * eigenvectors, whatever the rounding in B. Squaring W costs accuracy only in the directions of
 * singular values below √ε · ‖W‖, irrelevant for the default-initialized (well-conditioned)
 * matrices this initializes. Measured: seconds for 8000 × 512 (see test/spectral-init-dense.test.ts).
 */
export function truncatedSvdFactors(w: ArrayLike<number>, m: number, n: number, r: number): { u: Float32Array; vt: Float32Array; s: Float64Array } {
  if (w.length !== m * n) throw new InternalError(`truncatedSvdFactors: expected ${m * n} values for [${m}, ${n}], got ${w.length}`);
  if (m >= n) return tallSvdFactors(w, m, n, r);
  // W = (Wᵀ)ᵀ: factor the tall transpose Wᵀ ≈ A' B'ᵀ, then W ≈ B' A'ᵀ.
  const t = transposeBlocks(w, 1, m, n);
  const f = tallSvdFactors(t, n, m, r);
  return { u: transposeBlocks(f.vt, 1, r, m), vt: transposeBlocks(f.u, 1, n, r), s: f.s };
}

/** `truncatedSvdFactors` for m ≥ n. */
function tallSvdFactors(w: ArrayLike<number>, m: number, n: number, r: number): { u: Float32Array; vt: Float32Array; s: Float64Array } {
  const { vectors } = symmetricEigen(gramOfColumns(w, m, n));
  const k = Math.min(r, n);
  const z = vectors.data; // row c: the c-th right singular vector b_c
  // W B for the top k vectors: row i of W against each b_c.
  const wb = new Float64Array(m * k);
  for (let i = 0; i < m; i++) {
    const wi = i * n;
    for (let c = 0; c < k; c++) {
      const zc = c * n;
      let acc = 0;
      for (let j = 0; j < n; j++) acc += w[wi + j] * z[zc + j];
      wb[i * k + c] = acc;
    }
  }
  const s = new Float64Array(k);
  const u = new Float32Array(m * r);
  const vt = new Float32Array(r * n);
  for (let c = 0; c < k; c++) {
    let ss = 0;
    for (let i = 0; i < m; i++) ss += wb[i * k + c] * wb[i * k + c];
    s[c] = Math.sqrt(ss);
    if (s[c] === 0) continue; // W b_c = 0: the direction adds nothing to the product; both factors stay zero
    const root = Math.sqrt(s[c]);
    for (let i = 0; i < m; i++) u[i * r + c] = wb[i * k + c] / root;
    for (let j = 0; j < n; j++) vt[c * n + j] = z[c * n + j] * root;
  }
  return { u, vt, s };
}
