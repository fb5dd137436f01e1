/**
 * The optional native BLAS addon (`native/`, built by this package's own install script).
 *
 * It is an optional dependency built at install time; a machine without a compiler or BLAS still
 * installs, and then this module says why the addon is unavailable instead of failing.
 */
import { packagePath, packageRequire } from '../package-root.ts';
import { existsSync, readFileSync } from 'node:fs';

/** The functions the addon exports (native/src/blas.c). Arrays may be views on the wasm heap. */
export interface NativeBlas {
  /**
   * For i in [0, batch): C_i = op(A_{aIndex[i]}) · op(B_{bIndex[i]}) + beta · C_i (row-major),
   * op(A) is [m, k], op(B) is [k, n]; null index arrays mean "matrix i".
   */
  gemmBatched(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    aIndex: Int32Array | null,
    bIndex: Int32Array | null,
    batch: number,
    m: number,
    n: number,
    k: number,
    transposeA: boolean,
    transposeB: boolean,
    beta: number,
  ): void;
  /** In place; codes as in kernels/matMul.ts ACTIVATION_CODES; prelu weights broadcast over the last axis. */
  applyActivation(x: Float32Array, code: number, alpha: number, preluWeights: Float32Array | null): void;
  /** Cross-entropy gradient, one pass (see kernels/crossEntropy.ts crossEntropyGradValues). */
  crossEntropyGrad(
    logits: Float32Array,
    lse: Float32Array,
    targets: Int32Array,
    vocab: number,
    smoothing: number,
    padId: number,
    dyLoss: number,
    dyNll: number,
    out: Float32Array,
  ): void;
  /** out = x·Φ(x), exact GELU (native/src/fused.c; kernels/gelu.ts has the JS twin). */
  geluForward(x: Float32Array, out: Float32Array): void;
  /** out = dy·(Φ(x) + x·φ(x)). */
  geluGrad(x: Float32Array, dy: Float32Array, out: Float32Array): void;
  /** LayerNorm rows of width gamma.length of x (+ residual, then written to sum); see kernels/layerNorm.ts. */
  layerNormForward(
    x: Float32Array,
    residual: Float32Array | null,
    gamma: Float32Array,
    beta: Float32Array,
    epsilon: number,
    y: Float32Array,
    sum: Float32Array | null,
    mean: Float32Array,
    rstd: Float32Array,
  ): void;
  /** LayerNorm gradient in one pass: dx (+ dsum), dgamma, dbeta; see kernels/layerNorm.ts. */
  layerNormGrad(
    dy: Float32Array,
    s: Float32Array,
    gamma: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    dsum: Float32Array | null,
    dx: Float32Array,
    dgamma: Float32Array,
    dbeta: Float32Array,
  ): void;
  /**
   * out[o, i] = (Σ_r x[o, r, i]) / divisor, x viewed as [outer, reduce, inner], out as [outer, inner]
   * (native/src/reduce.c; kernels/reduce.ts). divisor: 1 for a sum, the reduce size for a mean.
   */
  reduceSum(x: Float32Array, out: Float32Array, outer: number, reduce: number, inner: number, divisor: number): void;
  /**
   * Fused attention forward (native/src/attention.c; kernels/attention.ts has the semantics):
   * q [B,H,T,r], k [B,H,S,r], v [B,H,S,rv], pad [B,S] or null → out [B,H,T,rv] and the row
   * statistics [B,H,T,2] (max logit m, log Σ exp(x − m));
   * the (b, h) slices split over `threads` threads.
   */
  attentionForward(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    pad: Float32Array | null,
    out: Float32Array,
    stats: Float32Array,
    B: number,
    H: number,
    T: number,
    S: number,
    r: number,
    rv: number,
    causal: boolean,
    dropout: number,
    seed: number,
    threads: number,
  ): void;
  /** Its gradient: given the forward's out, stats and dout = ∂L/∂out, writes dq, dk, dv. */
  attentionBackward(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    pad: Float32Array | null,
    out: Float32Array,
    stats: Float32Array,
    dout: Float32Array,
    dq: Float32Array,
    dk: Float32Array,
    dv: Float32Array,
    B: number,
    H: number,
    T: number,
    S: number,
    r: number,
    rv: number,
    causal: boolean,
    dropout: number,
    seed: number,
    threads: number,
  ): void;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  /** e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH ... SkylakeX MAX_THREADS=64". */
  config(): string;
}

export interface NativeBlasStatus {
  blas: NativeBlas | undefined;
  /** Why it is unavailable (or "disabled by FT_NATIVE_BLAS=0"); undefined when loaded. */
  reason: string | undefined;
  /** The OPENBLAS_CORETYPE this process chose, when it had to choose one (see chooseCoreType). */
  coreTypeChosen: string | undefined;
}

let status: NativeBlasStatus | undefined;

/**
 * OpenBLAS (DYNAMIC_ARCH) picks its kernels from the CPU model; releases older than the CPU
 * (Debian 12's 0.3.21 on Sapphire Rapids / Zen 5) fall back to the generic "Prescott" SSE3
 * kernels, 8-15x slower (measured: 1024³ sgemm 26 vs 205-255 GFLOP/s on 2 cores). The core type
 * can only be chosen before the library loads, so when the user has not set OPENBLAS_CORETYPE
 * we choose from the CPU's flags: AVX-512 (F+BW+VL+DQ) -> SkylakeX, AVX2+FMA -> Haswell.
 * Returns the chosen name, or undefined when left to OpenBLAS.
 */
export function chooseCoreType(cpuFlags: Set<string>): string | undefined {
  if (['avx512f', 'avx512bw', 'avx512vl', 'avx512dq'].every((f) => cpuFlags.has(f))) return 'SkylakeX';
  if (cpuFlags.has('avx2') && cpuFlags.has('fma')) return 'Haswell';
  return undefined;
}

function cpuFlags(): Set<string> {
  try {
    if (!existsSync('/proc/cpuinfo')) return new Set();
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('flags'));
    return new Set((line ?? '').split(':')[1]?.trim().split(/\s+/) ?? []);
  } catch {
    return new Set();
  }
}

/**
 * Loads the addon once. Never throws: a missing or broken addon gives `{ blas: undefined, reason }`.
 * Env: FT_NATIVE_BLAS=0 disables it (to measure or test the pure-wasm path).
 */
export function loadNativeBlas(): NativeBlasStatus {
  if (status) return status;
  if (process.env.FT_NATIVE_BLAS === '0') {
    status = { blas: undefined, reason: 'disabled by FT_NATIVE_BLAS=0', coreTypeChosen: undefined };
    return status;
  }
  let coreTypeChosen: string | undefined;
  if (!process.env.OPENBLAS_CORETYPE && process.platform === 'linux') {
    coreTypeChosen = chooseCoreType(cpuFlags());
    // process.env writes go through to the C environment, which OpenBLAS reads when it loads.
    if (coreTypeChosen) process.env.OPENBLAS_CORETYPE = coreTypeChosen;
  }
  try {
    const blas = packageRequire(packagePath('native', 'index.cjs')) as NativeBlas;
    status = { blas, reason: undefined, coreTypeChosen };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const reason =
      e.code === 'MODULE_NOT_FOUND'
        ? 'not built (native/build/Release/blas.node is missing: needs a C compiler and libopenblas-dev at install time, then `npm rebuild factorized-transformer` or `node native/build.cjs`)'
        : `failed to load: ${String(e.message).split('\n')[0]}`;
    if (coreTypeChosen && process.env.OPENBLAS_CORETYPE === coreTypeChosen) delete process.env.OPENBLAS_CORETYPE;
    status = { blas: undefined, reason, coreTypeChosen: undefined };
  }
  return status;
}
