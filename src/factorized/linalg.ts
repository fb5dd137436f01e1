/**
 * Small dense linear algebra in Float64 for initialization-time work: thin QR, SVD, symmetric eigendecomposition.
 *
 * Why by hand: tfjs has no SVD at all, and its `tf.linalg.qr` runs in float32 with one kernel
 * launch per Householder step. Spectral initialization and dense-to-factor conversion run once,
 * on small matrices (r × r, or at most d × d), where exactness matters more than speed, so plain
 * row-major Float64Array code is the simplest correct tool. Matrices are row-major `{rows, cols, data}`.
 */
import { InternalError } from '../errors.ts';

export interface Matrix {
  rows: number;
  cols: number;
  /** Row-major, length rows * cols. */
  data: Float64Array;
}

export function zeros(rows: number, cols: number): Matrix {
  return { rows, cols, data: new Float64Array(rows * cols) };
}

export function fromArray(rows: number, cols: number, values: ArrayLike<number>, offset = 0): Matrix {
  const data = new Float64Array(rows * cols);
  for (let i = 0; i < rows * cols; i++) data[i] = values[offset + i];
  return { rows, cols, data };
}

export function transpose(a: Matrix): Matrix {
  const t = zeros(a.cols, a.rows);
  for (let i = 0; i < a.rows; i++) for (let j = 0; j < a.cols; j++) t.data[j * a.rows + i] = a.data[i * a.cols + j];
  return t;
}

/** a · b, or a · bᵀ when `transposeB`. */
export function matmul(a: Matrix, b: Matrix, transposeB = false): Matrix {
  const n = transposeB ? b.rows : b.cols;
  const inner = transposeB ? b.cols : b.rows;
  if (a.cols !== inner) throw new InternalError(`matmul: inner dimensions ${a.cols} and ${inner} differ`);
  const c = zeros(a.rows, n);
  for (let i = 0; i < a.rows; i++) {
    for (let k = 0; k < inner; k++) {
      const aik = a.data[i * a.cols + k];
      if (aik === 0) continue;
      if (transposeB) {
        for (let j = 0; j < n; j++) c.data[i * n + j] += aik * b.data[j * b.cols + k];
      } else {
        for (let j = 0; j < n; j++) c.data[i * n + j] += aik * b.data[k * b.cols + j];
      }
    }
  }
  return c;
}

/**
 * Thin QR by Householder reflections: a [m, k] (m ≥ k) = q [m, k] · r [k, k], q with orthonormal
 * columns even when a is rank deficient (unlike Gram–Schmidt). Cost O(m k²).
 */
export function thinQr(a: Matrix): { q: Matrix; r: Matrix } {
  const m = a.rows;
  const k = a.cols;
  if (m < k) throw new InternalError(`thinQr: needs rows >= cols, got ${m} x ${k}`);
  const w = Float64Array.from(a.data); // becomes R in its upper triangle
  const vs: Float64Array[] = [];
  for (let j = 0; j < k; j++) {
    // Householder vector for column j below the diagonal.
    let norm = 0;
    for (let i = j; i < m; i++) norm += w[i * k + j] * w[i * k + j];
    norm = Math.sqrt(norm);
    const v = new Float64Array(m - j);
    if (norm === 0) {
      vs.push(v); // zero column: identity reflection
      continue;
    }
    const alpha = w[j * k + j] >= 0 ? -norm : norm;
    for (let i = j; i < m; i++) v[i - j] = w[i * k + j];
    v[0] -= alpha;
    let vnorm = 0;
    for (let i = 0; i < v.length; i++) vnorm += v[i] * v[i];
    vnorm = Math.sqrt(vnorm);
    if (vnorm === 0) {
      vs.push(new Float64Array(m - j));
      continue;
    }
    for (let i = 0; i < v.length; i++) v[i] /= vnorm;
    vs.push(v);
    // w[j:, j:] -= 2 v (vᵀ w[j:, j:])
    for (let c = j; c < k; c++) {
      let dot = 0;
      for (let i = j; i < m; i++) dot += v[i - j] * w[i * k + c];
      dot *= 2;
      for (let i = j; i < m; i++) w[i * k + c] -= dot * v[i - j];
    }
  }
  const r = zeros(k, k);
  for (let i = 0; i < k; i++) for (let j = i; j < k; j++) r.data[i * k + j] = w[i * k + j];
  // Q = H_0 H_1 ... H_{k-1} applied to the first k columns of the identity (backwards).
  const q = zeros(m, k);
  for (let i = 0; i < k; i++) q.data[i * k + i] = 1;
  for (let j = k - 1; j >= 0; j--) {
    const v = vs[j];
    for (let c = 0; c < k; c++) {
      let dot = 0;
      for (let i = j; i < m; i++) dot += v[i - j] * q.data[i * k + c];
      if (dot === 0) continue;
      dot *= 2;
      for (let i = j; i < m; i++) q.data[i * k + c] -= dot * v[i - j];
    }
  }
  return { q, r };
}

/**
 * Full SVD a [m, n] = u [m, p] · diag(s) · vᵀ with p = min(m, n), s descending, by one-sided
 * (Hestenes) Jacobi rotations. Accurate to working precision also for ill-conditioned and
 * rank-deficient input; singular vectors of zero singular values may be returned as zeros (callers
 * scale them by √s = 0). A tall matrix is first reduced to its n × n triangular factor by a thin
 * QR (O(m n²)), so the Jacobi sweeps cost O(n³) each (~2 n³ flops, typically 6–10 sweeps).
 * Measured on the shared 2-core dev machine under heavy load (load average ~16): 2.4 s at 256 × 256,
 * 39 s at 512 × 512; expect minutes at 1024 × 1024. Meant for one-off conversion of dense weights;
 * spectral initialization never calls it on more than r × r.
 */
export function svd(a: Matrix): { u: Matrix; s: Float64Array; v: Matrix } {
  if (a.rows < a.cols) {
    const t = svd(transpose(a));
    return { u: t.v, s: t.s, v: t.u };
  }
  if (a.rows > a.cols) {
    // A = Q R, R = Ur S Vᵀ ⇒ A = (Q Ur) S Vᵀ.
    const { q, r } = thinQr(a);
    const inner = jacobiSvd(r);
    return { u: matmul(q, inner.u), s: inner.s, v: inner.v };
  }
  return jacobiSvd(a);
}

function jacobiSvd(a: Matrix): { u: Matrix; s: Float64Array; v: Matrix } {
  const m = a.rows;
  const n = a.cols;
  // Work on columns: store Aᵀ so each column is a contiguous row.
  const cols = transpose(a).data; // [n][m]
  const vt = new Float64Array(n * n); // rows are the columns of V
  for (let i = 0; i < n; i++) vt[i * n + i] = 1;
  const sq = new Float64Array(n); // squared column norms, updated by each rotation
  const eps = 1e-15;
  for (let sweep = 0; sweep < 60; sweep++) {
    let rotated = false;
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let i = 0; i < m; i++) acc += cols[j * m + i] * cols[j * m + i];
      sq[j] = acc; // recomputed each sweep so rounding in the updates cannot accumulate
    }
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const po = p * m;
        const qo = q * m;
        let gamma = 0;
        for (let i = 0; i < m; i++) gamma += cols[po + i] * cols[qo + i];
        const alpha = sq[p];
        const beta = sq[q];
        if (gamma === 0 || Math.abs(gamma) <= eps * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let i = 0; i < m; i++) {
          const x = cols[po + i];
          const y = cols[qo + i];
          cols[po + i] = c * x - s * y;
          cols[qo + i] = s * x + c * y;
        }
        sq[p] = alpha - t * gamma;
        sq[q] = beta + t * gamma;
        const pv = p * n;
        const qv = q * n;
        for (let i = 0; i < n; i++) {
          const x = vt[pv + i];
          const y = vt[qv + i];
          vt[pv + i] = c * x - s * y;
          vt[qv + i] = s * x + c * y;
        }
      }
    }
    if (!rotated) break;
  }
  const norms = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let ss = 0;
    for (let i = 0; i < m; i++) ss += cols[j * m + i] * cols[j * m + i];
    norms[j] = Math.sqrt(ss);
  }
  const order = Array.from({ length: n }, (_, j) => j).sort((x, y) => norms[y] - norms[x]);
  const u = zeros(m, n);
  const v = zeros(n, n);
  const s = new Float64Array(n);
  const tiny = (norms[order[0]] || 0) * n * 1e-15;
  order.forEach((j, k) => {
    s[k] = norms[j];
    const inv = norms[j] > tiny ? 1 / norms[j] : 0;
    for (let i = 0; i < m; i++) u.data[i * n + k] = cols[j * m + i] * inv;
    for (let i = 0; i < n; i++) v.data[i * n + k] = vt[j * n + i];
  });
  return { u, s, v };
}

/**
 * Balanced rank-`rank` factors of the product P = U · Vᵀ without forming P:
 * U = Q1 R1, V = Q2 R2 (thin QR), SVD of the small R1 R2ᵀ = X S Yᵀ, then
 * U' = Q1 X[:, :rank] √S, V' = Q2 Y[:, :rank] √S. Cost O((m + n) k² + k³) for k = cols of U.
 * Returns the factors and the singular values of P (all k of them).
 */
export function balancedFactors(u: Matrix, v: Matrix, rank: number): { u: Matrix; v: Matrix; s: Float64Array } {
  if (u.cols !== v.cols) throw new InternalError(`balancedFactors: factor ranks ${u.cols} and ${v.cols} differ`);
  const k = u.cols;
  // A thin QR needs rows ≥ cols; a factor with fewer rows than columns gets zero rows added
  // (which adds nothing to the product) and removed again at the end.
  const pu = padRows(u, k);
  const pv = padRows(v, k);
  const { q: q1, r: r1 } = thinQr(pu);
  const { q: q2, r: r2 } = thinQr(pv);
  const small = matmul(r1, r2, true);
  const { u: x, s, v: y } = svd(small);
  const outU = zeros(u.rows, rank);
  const outV = zeros(v.rows, rank);
  for (let c = 0; c < rank; c++) {
    const root = c < k ? Math.sqrt(s[c]) : 0;
    if (root === 0) continue;
    for (let i = 0; i < u.rows; i++) {
      let acc = 0;
      for (let j = 0; j < k; j++) acc += q1.data[i * k + j] * x.data[j * k + c];
      outU.data[i * rank + c] = acc * root;
    }
    for (let i = 0; i < v.rows; i++) {
      let acc = 0;
      for (let j = 0; j < k; j++) acc += q2.data[i * k + j] * y.data[j * k + c];
      outV.data[i * rank + c] = acc * root;
    }
  }
  return { u: outU, v: outV, s };
}

function padRows(a: Matrix, minRows: number): Matrix {
  if (a.rows >= minRows) return a;
  const p = zeros(minRows, a.cols);
  p.data.set(a.data);
  return p;
}

/**
 * Eigendecomposition of a symmetric matrix a [n, n] = Z diag(values) Zᵀ, values descending,
 * `vectors` [n, n] holding the eigenvectors as *rows* (vectors.data[i·n + k] = Z[k][i]), orthonormal
 * to working precision. Householder reduction to tridiagonal form, then the implicit QL algorithm
 * (EISPACK tred2/tql2, as in JAMA). Cost about 9 n³ flops — ~1 s at n = 512 in plain JS, against
 * minutes for `svd` of the same matrix — which is what makes the paper's spectral initialization
 * of 512 × 2048 FFN kernels and 8000 × 512 embedding tables affordable (`truncatedSvdFactors`).
 * Only the lower triangle of `a` is read.
 */
export function symmetricEigen(a: Matrix): { values: Float64Array; vectors: Matrix } {
  const n = a.rows;
  if (a.cols !== n) throw new InternalError(`symmetricEigen: needs a square matrix, got ${a.rows} x ${a.cols}`);
  if (n === 0) return { values: new Float64Array(0), vectors: zeros(0, 0) };
  // v: row-major working copy (tred2 leaves the orthogonal reduction in it); d, e: the diagonal
  // and sub-diagonal of the tridiagonal matrix.
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) v[i * n + j] = v[j * n + i] = a.data[i * n + j];
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  tred2(v, d, e, n);
  // tql2 rotates pairs of eigenvector columns; on the transpose those are contiguous rows.
  const z = transpose({ rows: n, cols: n, data: v }).data;
  tql2(z, d, e, n);
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => d[y] - d[x]);
  const values = new Float64Array(n);
  const vectors = zeros(n, n);
  order.forEach((src, k) => {
    values[k] = d[src];
    vectors.data.set(z.subarray(src * n, src * n + n), k * n);
  });
  return { values, vectors };
}

/** Householder tridiagonalization of the symmetric v [n, n] (row-major, in place): d diagonal, e sub-diagonal (e[0] = 0). */
function tred2(v: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let j = 0; j < n; j++) d[j] = v[(n - 1) * n + j];
  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]);
    if (scale === 0) {
      e[i] = d[i - 1];
      for (let j = 0; j < i; j++) {
        d[j] = v[(i - 1) * n + j];
        v[i * n + j] = 0;
        v[j * n + i] = 0;
      }
    } else {
      // The Householder vector of row i, scaled against under/overflow.
      for (let k = 0; k < i; k++) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      let f = d[i - 1];
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      // The similarity transformation on the remaining columns.
      for (let j = 0; j < i; j++) {
        f = d[j];
        v[j * n + i] = f;
        g = e[j] + v[j * n + j] * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += v[k * n + j] * d[k];
          e[k] += v[k * n + j] * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] -= hh * d[j];
      for (let j = 0; j < i; j++) {
        f = d[j];
        g = e[j];
        for (let k = j; k <= i - 1; k++) v[k * n + j] -= f * e[k] + g * d[k];
        d[j] = v[(i - 1) * n + j];
        v[i * n + j] = 0;
      }
    }
    d[i] = h;
  }
  // Accumulate the transformations.
  for (let i = 0; i < n - 1; i++) {
    v[(n - 1) * n + i] = v[i * n + i];
    v[i * n + i] = 1;
    const h = d[i + 1];
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = v[k * n + i + 1] / h;
      for (let j = 0; j <= i; j++) {
        let g = 0;
        for (let k = 0; k <= i; k++) g += v[k * n + i + 1] * v[k * n + j];
        for (let k = 0; k <= i; k++) v[k * n + j] -= g * d[k];
      }
    }
    for (let k = 0; k <= i; k++) v[k * n + i + 1] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = v[(n - 1) * n + j];
    v[(n - 1) * n + j] = 0;
  }
  v[(n - 1) * n + n - 1] = 1;
  e[0] = 0;
}

/**
 * Implicit QL on the tridiagonal (d, e) from tred2: d becomes the eigenvalues (unsorted) and the
 * rows of z (the transposed reduction) the matching eigenvectors.
 */
function tql2(z: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  let f = 0;
  let tst1 = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    // Find a negligible sub-diagonal element.
    tst1 = Math.max(tst1, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n) {
      if (Math.abs(e[m]) <= eps * tst1) break;
      m++;
    }
    if (m > l) {
      let iter = 0;
      do {
        if (++iter > 60) throw new InternalError('symmetricEigen: the QL iteration did not converge');
        // The implicit shift.
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        f += h;
        // The implicit QL transformation.
        p = d[m];
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1];
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = Math.hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          // Rotate eigenvectors i and i + 1 (rows of z).
          const zi = i * n;
          const zj = (i + 1) * n;
          for (let k = 0; k < n; k++) {
            const t = z[zj + k];
            z[zj + k] = s * z[zi + k] + c * t;
            z[zi + k] = c * z[zi + k] - s * t;
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > eps * tst1);
    }
    d[l] += f;
    e[l] = 0;
  }
}

/** aᵀ a [cols, cols] for a row-major [rows, cols] array, in Float64 (columns gathered first, so each entry is one contiguous dot product). */
export function gramOfColumns(values: ArrayLike<number>, rows: number, cols: number): Matrix {
  const t = new Float64Array(rows * cols); // column j of a = row j of t
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = values[i * cols + j];
  const g = zeros(cols, cols);
  const set = (j: number, k: number, x: number) => (g.data[j * cols + k] = g.data[k * cols + j] = x);
  for (let j = 0; j < cols; j++) {
    const oj = j * rows;
    // Four dot products per pass over column j: each of its entries is loaded once for four (~2× faster).
    let k = 0;
    for (; k + 3 <= j; k += 4) {
      const o0 = k * rows;
      const o1 = o0 + rows;
      const o2 = o1 + rows;
      const o3 = o2 + rows;
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      let a3 = 0;
      for (let i = 0; i < rows; i++) {
        const x = t[oj + i];
        a0 += x * t[o0 + i];
        a1 += x * t[o1 + i];
        a2 += x * t[o2 + i];
        a3 += x * t[o3 + i];
      }
      set(j, k, a0);
      set(j, k + 1, a1);
      set(j, k + 2, a2);
      set(j, k + 3, a3);
    }
    for (; k <= j; k++) {
      const ok = k * rows;
      let acc = 0;
      for (let i = 0; i < rows; i++) acc += t[oj + i] * t[ok + i];
      set(j, k, acc);
    }
  }
  return g;
}
