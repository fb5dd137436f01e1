/**
 * Fused attention for the wasm and cpu backends: the kernels FtAttention (forward) and
 * FtAttentionGrad (its gradient), and `fusedAttention`, the differentiable op the attention layer
 * calls (src/attention/factorized-attention.ts) when the active backend has the kernel.
 *
 * Per (batch, head): probs = softmax(q·kᵀ + mask), optional inverted dropout on probs,
 * out = probs·v, with q [B, H, T, r] already scaled by 1/√r, k [B, H, S, r], v [B, H, S, rv], an
 * optional key-padding mask [B, S] (nonzero = pad) and a causal flag (query row t sees keys
 * s ≤ t + S − T). The mask values are the op path's: −1e9 added once to a masked logit.
 *
 * Why a kernel: as ops, attention is ~8 engine dispatches per layer and the tape holds every
 * [B, H, T, S] intermediate (logits, masked logits, probabilities, dropout mask, dropped
 * probabilities) until the backward pass. The forward saves only per-row softmax statistics
 * [B, H, T, 2] (the row max m and ℓ = log Σ exp(x − m): the logsumexp in two parts, because one
 * float32 cannot hold −1e9 + log S for an all-masked row); the gradient recomputes the
 * probabilities one (b, h) slice at a time (native/src/attention.c has the formulas).
 *
 * Dropout is drawn inside the kernel from a seed attribute (a counter-based hash of the seed and
 * the element's position), not passed as a mask tensor: the gradient redraws the same mask from
 * the same seed, so nothing the size of the probabilities is kept for it. The seed comes from the
 * process-wide stream (random.ts) exactly when the op path would draw one, so a run stays
 * resumable and the other layers' dropout draws are unchanged by the fusion.
 *
 * Implementations: the native addon (C, sgemm per slice, slices split over the BLAS threads) on
 * wasm (heap views, no copy) and on cpu when the addon is present; on cpu without it the same
 * algorithm as plain JS loops (`attentionForwardValues` / `attentionBackwardValues`). wasm without
 * the addon has no kernel: the layer keeps its op path there, whose matrix products run on
 * XNNPACK, several times faster than JS loops.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { NativeBlas } from '../native.ts';
import { hostKernelInput } from './gelu.ts';
import { InternalError } from '../../errors.ts';

export const FUSED_ATTENTION = 'FtAttention';
export const FUSED_ATTENTION_GRAD = 'FtAttentionGrad';

/** Added to masked logits (the op path's value): zeroes a softmax weight in float32, keeps an all-masked row finite. */
export const ATTENTION_MASK_VALUE = -1e9;

export interface FusedAttentionOptions {
  /** [B, S] float32, nonzero = padded key. */
  keyPadding?: tf.Tensor2D;
  causal: boolean;
  /** Dropout rate on the probabilities, in [0, 1); 0 = none. */
  dropout: number;
  /** Seed of the dropout mask (unused when dropout is 0). */
  seed: number;
}

/** Kernel attributes, shared by the forward and the gradient kernel. */
interface AttentionAttrs {
  causal: boolean;
  dropout: number;
  seed: number;
}

/** Sizes and scalars of one call: q [B,H,T,r], k [B,H,S,r], v [B,H,S,rv]. */
export interface AttentionDims {
  B: number;
  H: number;
  T: number;
  S: number;
  r: number;
  rv: number;
  causal: boolean;
  dropout: number;
  seed: number;
}

// ---- the dropout hash (mirrors native/src/attention.c bit for bit) ----

/** murmur3's 32-bit finalizer. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The hash stream of slice bh = b·H + h. */
export function dropoutBase(seed: number, bh: number): number {
  return fmix32((seed + Math.imul(0x9e3779b9, bh + 1)) >>> 0);
}

/** Keep/drop threshold: element kept when its hash ≥ floor(rate · 2³²). */
export function dropoutThreshold(rate: number): number {
  return Math.floor(rate * 4294967296);
}

/** Whether element j = t·S + s of the slice with stream `base` is kept. */
export function dropoutKeep(base: number, j: number, threshold: number): boolean {
  return fmix32((base ^ Math.imul(j, 0x9e3779b9)) >>> 0) >= threshold;
}

/** The multiplier of kept elements, 1 / (1 − rate), in float32 as the kernels use it. */
export function dropoutScale(rate: number): number {
  return Math.fround(1 / (1 - rate));
}

// ---- plain-JS implementation (cpu without the addon; the reference the C follows) ----

/** x[T×S] = q·kᵀ + mask for slice bh. */
function scoresJs(q: Float32Array, k: Float32Array, pad: Float32Array | null, d: AttentionDims, bh: number, x: Float32Array): void {
  const { H, T, S, r } = d;
  const qo = bh * T * r;
  const ko = bh * S * r;
  const po = Math.floor(bh / H) * S;
  for (let t = 0; t < T; t++) {
    const last = d.causal ? t + S - T : S - 1;
    for (let s = 0; s < S; s++) {
      let acc = 0;
      for (let i = 0; i < r; i++) acc += q[qo + t * r + i] * k[ko + s * r + i];
      // Rounded to float32 before the mask is added, as the op path's logits are.
      x[t * S + s] = (pad && pad[po + s] !== 0) || s > last ? Math.fround(acc) + ATTENTION_MASK_VALUE : acc;
    }
  }
}

function dropoutJs(x: Float32Array, d: AttentionDims, bh: number): void {
  const base = dropoutBase(d.seed, bh);
  const threshold = dropoutThreshold(d.dropout);
  const scale = dropoutScale(d.dropout);
  for (let j = 0; j < d.T * d.S; j++) x[j] = dropoutKeep(base, j, threshold) ? x[j] * scale : 0;
}

/** Forward on host arrays: writes out [B,H,T,rv] and stats [B,H,T,2] (row max, log Σ exp(x − max)). */
export function attentionForwardValues(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  pad: Float32Array | null,
  d: AttentionDims,
  out: Float32Array,
  stats: Float32Array,
): void {
  const { B, H, T, S, rv } = d;
  const x = new Float32Array(T * S);
  for (let bh = 0; bh < B * H; bh++) {
    if (S === 0) {
      out.fill(0, bh * T * rv, (bh + 1) * T * rv);
      for (let t = 0; t < T; t++) [stats[2 * (bh * T + t)], stats[2 * (bh * T + t) + 1]] = [-Infinity, 0];
      continue;
    }
    scoresJs(q, k, pad, d, bh, x);
    for (let t = 0; t < T; t++) {
      const row = t * S;
      let m = x[row];
      for (let s = 1; s < S; s++) m = Math.max(m, x[row + s]);
      let sum = 0;
      for (let s = 0; s < S; s++) {
        x[row + s] = Math.exp(x[row + s] - m);
        sum += x[row + s];
      }
      for (let s = 0; s < S; s++) x[row + s] /= sum;
      stats[2 * (bh * T + t)] = m;
      stats[2 * (bh * T + t) + 1] = Math.log(sum);
    }
    if (d.dropout > 0) dropoutJs(x, d, bh);
    const vo = bh * S * rv;
    const oo = bh * T * rv;
    for (let t = 0; t < T; t++) {
      for (let j = 0; j < rv; j++) {
        let acc = 0;
        for (let s = 0; s < S; s++) acc += x[t * S + s] * v[vo + s * rv + j];
        out[oo + t * rv + j] = acc;
      }
    }
  }
}

/** Gradient on host arrays: writes dq, dk, dv given the forward's out and stats and dout = ∂L/∂out. */
export function attentionBackwardValues(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  pad: Float32Array | null,
  out: Float32Array,
  stats: Float32Array,
  dout: Float32Array,
  d: AttentionDims,
  dq: Float32Array,
  dk: Float32Array,
  dv: Float32Array,
): void {
  const { B, T, S, r, rv } = d;
  const a = new Float32Array(T * S); // A, then dL
  const g = new Float32Array(T * S); // D, then dD ⊙ Z
  for (let bh = 0; bh < B * d.H; bh++) {
    const qo = bh * T * r;
    const ko = bh * S * r;
    const vo = bh * S * rv;
    const oo = bh * T * rv;
    scoresJs(q, k, pad, d, bh, a);
    for (let t = 0; t < T; t++) {
      const m = stats[2 * (bh * T + t)];
      const l = stats[2 * (bh * T + t) + 1];
      for (let s = 0; s < S; s++) a[t * S + s] = Math.exp(a[t * S + s] - m - l);
    }
    g.set(a);
    if (d.dropout > 0) dropoutJs(g, d, bh);
    // dV = Dᵀ·dO
    for (let s = 0; s < S; s++) {
      for (let j = 0; j < rv; j++) {
        let acc = 0;
        for (let t = 0; t < T; t++) acc += g[t * S + s] * dout[oo + t * rv + j];
        dv[vo + s * rv + j] = acc;
      }
    }
    // dD = dO·Vᵀ, then ⊙ Z
    for (let t = 0; t < T; t++) {
      for (let s = 0; s < S; s++) {
        let acc = 0;
        for (let j = 0; j < rv; j++) acc += dout[oo + t * rv + j] * v[vo + s * rv + j];
        g[t * S + s] = acc;
      }
    }
    if (d.dropout > 0) dropoutJs(g, d, bh);
    // dL = A ⊙ (dA − δ), δ_t = Σ_j dO_tj · O_tj
    for (let t = 0; t < T; t++) {
      let delta = 0;
      for (let j = 0; j < rv; j++) delta += dout[oo + t * rv + j] * out[oo + t * rv + j];
      for (let s = 0; s < S; s++) a[t * S + s] *= g[t * S + s] - delta;
    }
    // dQ = dL·K, dK = dLᵀ·Q
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < r; i++) {
        let acc = 0;
        for (let s = 0; s < S; s++) acc += a[t * S + s] * k[ko + s * r + i];
        dq[qo + t * r + i] = acc;
      }
    }
    for (let s = 0; s < S; s++) {
      for (let i = 0; i < r; i++) {
        let acc = 0;
        for (let t = 0; t < T; t++) acc += a[t * S + s] * q[qo + t * r + i];
        dk[ko + s * r + i] = acc;
      }
    }
  }
}

// ---- kernels ----

interface ForwardInputs {
  q: tf.TensorInfo;
  k: tf.TensorInfo;
  v: tf.TensorInfo;
  keyPadding?: tf.TensorInfo;
}

interface GradInputs extends ForwardInputs {
  out: tf.TensorInfo;
  stats: tf.TensorInfo;
  dy: tf.TensorInfo;
}

/** Shapes checked (a mismatch here is a bug of the caller, not the user's input). */
function dimsOf(inputs: ForwardInputs, attrs: AttentionAttrs): AttentionDims {
  const { q, k, v, keyPadding } = inputs;
  const [B, H, T, r] = q.shape;
  const [, , S, rv] = v.shape;
  const same = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => x === b[i]);
  if (q.shape.length !== 4 || !same(k.shape, [B, H, S, r]) || !same(v.shape, [B, H, S, rv])) {
    throw new InternalError(`${FUSED_ATTENTION}: expected q [B,H,T,r], k [B,H,S,r], v [B,H,S,rv]; got [${q.shape}], [${k.shape}], [${v.shape}]`);
  }
  if (keyPadding && !same(keyPadding.shape, [B, S])) {
    throw new InternalError(`${FUSED_ATTENTION}: keyPadding must be [${B}, ${S}]; got [${keyPadding.shape}]`);
  }
  for (const t of [q, k, v, ...(keyPadding ? [keyPadding] : [])]) {
    if (t.dtype !== 'float32') throw new InternalError(`${FUSED_ATTENTION}: inputs must be float32; got ${t.dtype}`);
  }
  if (!(attrs.dropout >= 0 && attrs.dropout < 1)) throw new InternalError(`${FUSED_ATTENTION}: dropout must be in [0, 1); got ${attrs.dropout}`);
  return { B, H, T, S, r, rv, causal: attrs.causal, dropout: attrs.dropout, seed: attrs.seed >>> 0 };
}

type Forward = typeof attentionForwardValues;
type Backward = typeof attentionBackwardValues;

/**
 * Below this many multiply-adds (per pass) a call runs on the caller's thread alone: starting
 * threads and switching OpenBLAS to one thread and back costs more than it saves on small problems
 * (a beam step's single query row per slice: 1.7 ms threaded vs 0.2 ms serial, measured).
 */
export const MIN_PARALLEL_MADDS = 4e6;

/** Threads for one call: the BLAS threads, or 1 below MIN_PARALLEL_MADDS. */
function threadsFor(d: { B: number; H: number; T: number; S: number; r: number; rv: number }, native: NativeBlas, backward: boolean): number {
  const madds = d.B * d.H * d.T * d.S * (d.r + d.rv) * (backward ? 2 : 1);
  return madds < MIN_PARALLEL_MADDS ? 1 : native.getNumThreads();
}

function nativeForward(native: NativeBlas): Forward {
  return (q, k, v, pad, d, out, stats) =>
    native.attentionForward(q, k, v, pad, out, stats, d.B, d.H, d.T, d.S, d.r, d.rv, d.causal, d.dropout, d.seed, threadsFor(d, native, false));
}

function nativeBackward(native: NativeBlas): Backward {
  return (q, k, v, pad, out, stats, dout, d, dq, dk, dv) =>
    native.attentionBackward(q, k, v, pad, out, stats, dout, dq, dk, dv, d.B, d.H, d.T, d.S, d.r, d.rv, d.causal, d.dropout, d.seed, threadsFor(d, native, true));
}

/* eslint-disable @typescript-eslint/no-explicit-any */
/** Output buffers, then input views: on wasm every allocation may grow (detach) the heap, so views come last. */
function run(backendName: 'wasm' | 'cpu', backend: any, shapes: number[][], inputs: (tf.TensorInfo | undefined)[], body: (ins: (Float32Array | null)[], outs: Float32Array[]) => void): tf.TensorInfo[] {
  if (backendName === 'wasm') {
    const outs = shapes.map((s) => backend.makeOutput(s, 'float32') as tf.TensorInfo);
    const view = (t: tf.TensorInfo | undefined) => (t ? (backend.typedArrayFromHeap(t) as Float32Array) : null);
    body(inputs.map(view), outs.map((o) => view(o)!));
    return outs;
  }
  const values = shapes.map((s) => new Float32Array(tf.util.sizeFromShape(s)));
  body(
    inputs.map((t) => (t ? hostKernelInput('cpu', backend, t) : null)),
    values,
  );
  return values.map((vals, i) => ({ dataId: backend.write(vals, shapes[i], 'float32'), shape: shapes[i], dtype: 'float32' }));
}
/* eslint-enable @typescript-eslint/no-explicit-any */

/**
 * Registers FtAttention and FtAttentionGrad for `backendName`, on the addon when given, else (cpu
 * only) on the JS loops. Idempotent; replaces earlier registrations.
 */
export function registerFusedAttention(backendName: 'wasm' | 'cpu', native: NativeBlas | undefined): void {
  if (backendName === 'wasm' && !native) throw new InternalError('fused attention on wasm needs the native addon (the layer keeps its op path without it)');
  const forward = native ? nativeForward(native) : attentionForwardValues;
  const backward = native ? nativeBackward(native) : attentionBackwardValues;
  for (const name of [FUSED_ATTENTION, FUSED_ATTENTION_GRAD]) if (tf.getKernel(name, backendName)) tf.unregisterKernel(name, backendName);
  tf.registerKernel({
    kernelName: FUSED_ATTENTION,
    backendName,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const ins = inputs as unknown as ForwardInputs;
      const d = dimsOf(ins, attrs as unknown as AttentionAttrs);
      const shapes = [
        [d.B, d.H, d.T, d.rv],
        [d.B, d.H, d.T, 2],
      ];
      return run(backendName, backend, shapes, [ins.q, ins.k, ins.v, ins.keyPadding], ([q, k, v, pad], [out, stats]) =>
        forward(q!, k!, v!, pad, d, out, stats),
      );
    },
  });
  tf.registerKernel({
    kernelName: FUSED_ATTENTION_GRAD,
    backendName,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const ins = inputs as unknown as GradInputs;
      const d = dimsOf(ins, attrs as unknown as AttentionAttrs);
      const shapes = [ins.q.shape, ins.k.shape, ins.v.shape];
      const given = [ins.q, ins.k, ins.v, ins.keyPadding, ins.out, ins.stats, ins.dy];
      return run(backendName, backend, shapes, given, ([q, k, v, pad, out, stats, dy], [dq, dk, dv]) =>
        backward(q!, k!, v!, pad, out!, stats!, dy!, d, dq, dk, dv),
      );
    },
  });
}

/** Whether the active backend has the fused kernels (the layer's choice between them and its ops). */
export function hasFusedAttention(): boolean {
  const backend = tf.getBackend();
  return tf.getKernel(FUSED_ATTENTION, backend) !== undefined && tf.getKernel(FUSED_ATTENTION_GRAD, backend) !== undefined;
}

/**
 * softmax(q·kᵀ + mask) (with dropout) · v → [B, H, T, rv], differentiable in q, k and v. The tape
 * keeps q, k, v, the output, the row statistics [B, H, T, 2] and the padding mask, nothing [B, H, T, S].
 */
export function fusedAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, options: FusedAttentionOptions): tf.Tensor4D {
  const attrs: AttentionAttrs = { causal: options.causal, dropout: options.dropout, seed: options.seed >>> 0 };
  const keyPadding = options.keyPadding;
  const forward = (qIn: tf.Tensor, kIn: tf.Tensor, vIn: tf.Tensor, save: tf.GradSaveFunc) => {
    const inputs: Record<string, tf.Tensor> = { q: qIn, k: kIn, v: vIn };
    if (keyPadding) inputs.keyPadding = keyPadding;
    const [out, stats] = tf.engine().runKernel(FUSED_ATTENTION, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
    // The mask is saved too: the caller may dispose it (a tensor made inside its tidy) before the backward pass.
    save([qIn, kIn, vIn, out, stats, ...(keyPadding ? [keyPadding] : [])]);
    return {
      value: out,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sq, sk, sv, sOut, sStats, sPad] = saved;
        const gradInputs: Record<string, tf.Tensor> = { q: sq, k: sk, v: sv, out: sOut, stats: sStats, dy };
        if (sPad) gradInputs.keyPadding = sPad;
        return tf.engine().runKernel(FUSED_ATTENTION_GRAD, gradInputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
      },
    };
  };
  return tf.customGrad(forward as unknown as Parameters<typeof tf.customGrad>[0])(q, k, v) as tf.Tensor4D;
}
