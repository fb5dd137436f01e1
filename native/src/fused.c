/*
 * Fused elementwise and row kernels of the Transformer block (src/backend/kernels/gelu.ts and
 * layerNorm.ts hold the formulas and the JS fallbacks): exact GELU forward and gradient, and
 * LayerNorm over the last axis (optionally of x + residual) forward and gradient.
 *
 * Why: written as tfjs ops, GELU is ~6 kernels forward and ~10 backward (erf and its exp-based
 * gradient each a full pass), LayerNorm ~20; each kernel call costs 0.02-0.2 ms on top of its
 * work and a full read + write of the tensor. Here each is one pass.
 *
 * Vectorization: the build has no -ffast-math, so GCC will not vectorize calls to expf/erff or
 * reassociate float sums. exp is therefore written as a branchless polynomial (exp_poly) and
 * erfc as a branchless rational-exponential fit (Numerical Recipes' erfcc, fractional error
 * < 1.2e-7), and row sums use 8 explicit partial sums, all of which -O3 vectorizes on SSE2.
 * The selects (clamps, erfc's sign) need -fno-trapping-math (binding.gyp) to become vector blends;
 * FP exception flags are never read here. Check with gcc -O3 -fno-trapping-math -fopt-info-vec.
 */
#include <node_api.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The BLAS thread count (FT_THREADS, set through setNumThreads) also sizes the elementwise loops. */
extern int openblas_get_num_threads(void) __attribute__((weak));

/*
 * The elementwise loops are compiled twice, for AVX2+FMA (8 lanes) and for the baseline x86-64
 * (SSE2, 4 lanes), and the loader picks the clone the CPU runs (GCC/Clang function multi-
 * versioning). -march=native is not an option: the addon may run on another machine than the one
 * that built it (the GPU bundle).
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#endif

/* Elements per thread below which an elementwise loop stays on one thread (thread start-up ~30 µs). */
#define MIN_ELEMENTS_PER_THREAD 65536

typedef void (*range_fn)(void *ctx, size_t begin, size_t end);

typedef struct {
  range_fn fn;
  void *ctx;
  size_t begin, end;
} range_job;

static void *run_range(void *arg) {
  const range_job *job = arg;
  job->fn(job->ctx, job->begin, job->end);
  return NULL;
}

/* fn over [0, n) in contiguous chunks on up to the BLAS thread count (the caller's thread included). */
static void parallel_for(size_t n, range_fn fn, void *ctx) {
  int threads = openblas_get_num_threads ? openblas_get_num_threads() : 1;
  if (threads > 16) threads = 16;
  const size_t most = n / MIN_ELEMENTS_PER_THREAD;
  if ((size_t)threads > most) threads = most > 0 ? (int)most : 1;
  range_job jobs[16];
  pthread_t ids[16];
  const size_t chunk = (n + (size_t)threads - 1) / (size_t)threads;
  int started = 0;
  for (int t = 1; t < threads; t++) {
    const size_t begin = (size_t)t * chunk, end = begin + chunk < n ? begin + chunk : n;
    if (begin >= end) break;
    jobs[t] = (range_job){fn, ctx, begin, end};
    if (pthread_create(&ids[started], NULL, run_range, &jobs[t]) != 0) {
      fn(ctx, begin, end); /* could not start a thread: do its part here */
      continue;
    }
    started++;
  }
  fn(ctx, 0, chunk < n ? chunk : n);
  for (int i = 0; i < started; i++) pthread_join(ids[i], NULL);
}

#define LANES 8

static int f32_arg(napi_env env, napi_value value, float **data, size_t *length, int optional) {
  napi_valuetype vt;
  if (napi_typeof(env, value, &vt) != napi_ok) return 0;
  if (optional && (vt == napi_null || vt == napi_undefined)) {
    *data = NULL;
    *length = 0;
    return 1;
  }
  napi_typedarray_type type;
  void *raw;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, value, &type, length, &raw, &buffer, &offset) != napi_ok) return 0;
  if (type != napi_float32_array) return 0;
  *data = (float *)raw;
  return 1;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, const char *usage) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != want) {
    napi_throw_type_error(env, NULL, usage);
    return 0;
  }
  return 1;
}

/* e^x for x in [-87, 88] (clamped), ~2 ulp: 2^k · p(r), r = x − k·ln2 in [−ln2/2, ln2/2]. */
__attribute__((always_inline)) static inline float exp_poly(float x) {
  /* Ternaries, not fminf/fmaxf: those keep NaN semantics that block vectorization. */
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  /* Round to nearest by the 1.5·2^23 trick (no rintf: SSE2 has no vector round). */
  const float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (x - k * 0.693145751953125f) - k * 1.428606765330187e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = ((int32_t)k + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

/* Φ(x) = erfc(−x/√2) / 2, with erfc(z) for z ≥ 0 from Numerical Recipes' erfcc and 2 − erfc(|z|) below 0. */
__attribute__((always_inline)) static inline float normal_cdf(float x) {
  const float z = -x * 0.70710678118654752f;
  const float az = fabsf(z);
  const float t = 1.0f / (1.0f + 0.5f * az);
  const float poly =
      -1.26551223f +
      t * (1.00002368f +
           t * (0.37409196f +
                t * (0.09678418f +
                     t * (-0.18628806f + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f))))))));
  const float tail = t * exp_poly(-az * az + poly); /* erfc(|z|) */
  const float erfc_z = z >= 0.0f ? tail : 2.0f - tail;
  return 0.5f * erfc_z;
}

typedef struct {
  const float *x, *dy;
  float *out;
} gelu_args;

VECTOR_CLONES static void gelu_forward_range(void *ctx, size_t begin, size_t end) {
  const gelu_args *a = ctx;
  const float *restrict x = a->x;
  float *restrict out = a->out;
  for (size_t i = begin; i < end; i++) out[i] = x[i] * normal_cdf(x[i]);
}

VECTOR_CLONES static void gelu_grad_range(void *ctx, size_t begin, size_t end) {
  const gelu_args *a = ctx;
  const float *restrict x = a->x;
  const float *restrict dy = a->dy;
  float *restrict out = a->out;
  for (size_t i = begin; i < end; i++) {
    const float v = x[i];
    const float pdf = 0.39894228040143268f * exp_poly(-0.5f * v * v);
    out[i] = dy[i] * (normal_cdf(v) + v * pdf);
  }
}

/* geluForward(x, out): out = x · Φ(x). */
static napi_value gelu_forward(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv, "geluForward: expected (x, out)")) return NULL;
  float *x, *out;
  size_t n, nOut;
  if (!f32_arg(env, argv[0], &x, &n, 0) || !f32_arg(env, argv[1], &out, &nOut, 0) || nOut < n) {
    napi_throw_type_error(env, NULL, "geluForward: x and out must be Float32Arrays, out at least as long as x");
    return NULL;
  }
  gelu_args args = {x, NULL, out};
  parallel_for(n, gelu_forward_range, &args);
  return NULL;
}

/* geluGrad(x, dy, out): out = dy · (Φ(x) + x · φ(x)), φ(x) = e^(−x²/2) / √(2π). */
static napi_value gelu_grad(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv, "geluGrad: expected (x, dy, out)")) return NULL;
  float *x, *dy, *out;
  size_t n, nDy, nOut;
  if (!f32_arg(env, argv[0], &x, &n, 0) || !f32_arg(env, argv[1], &dy, &nDy, 0) || !f32_arg(env, argv[2], &out, &nOut, 0) ||
      nDy < n || nOut < n) {
    napi_throw_type_error(env, NULL, "geluGrad: x, dy, out must be Float32Arrays of the same length");
    return NULL;
  }
  gelu_args args = {x, dy, out};
  parallel_for(n, gelu_grad_range, &args);
  return NULL;
}

/* Σ a[j] over j < d, in 8 partial sums so that -O3 vectorizes it without reassociation flags. */
static inline float row_sum(const float *a, size_t d) {
  float acc[LANES] = {0};
  size_t j = 0;
  for (; j + LANES <= d; j += LANES)
    for (int l = 0; l < LANES; l++) acc[l] += a[j + l];
  float s = 0.0f;
  for (; j < d; j++) s += a[j];
  for (int l = 0; l < LANES; l++) s += acc[l];
  return s;
}

/* Σ (a[j] − c)² over j < d, as row_sum. */
static inline float row_centered_squares(const float *a, float c, size_t d) {
  float acc[LANES] = {0};
  size_t j = 0;
  for (; j + LANES <= d; j += LANES)
    for (int l = 0; l < LANES; l++) {
      const float v = a[j + l] - c;
      acc[l] += v * v;
    }
  float s = 0.0f;
  for (; j < d; j++) s += (a[j] - c) * (a[j] - c);
  for (int l = 0; l < LANES; l++) s += acc[l];
  return s;
}

/*
 * layerNormForward(x, residual|null, gamma, beta, epsilon, y, sum|null, mean, rstd):
 *   s = x (+ residual), per row of width d = gamma.length: mean, rstd = 1/√(var + ε) (biased
 *   variance, two passes as the op version), y = (s − mean) · rstd · γ + β; s is written to `sum`
 *   when a residual is given (the pre-norm block carries it on).
 */
static napi_value layer_norm_forward(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  if (!get_args(env, info, 9, argv, "layerNormForward: expected (x, residual, gamma, beta, epsilon, y, sum, mean, rstd)")) return NULL;
  float *x, *res, *gamma, *beta, *y, *sum, *mean, *rstd;
  size_t n, nRes, d, nBeta, nY, nSum, nMean, nRstd;
  if (!f32_arg(env, argv[0], &x, &n, 0) || !f32_arg(env, argv[1], &res, &nRes, 1) || !f32_arg(env, argv[2], &gamma, &d, 0) ||
      !f32_arg(env, argv[3], &beta, &nBeta, 0) || !f32_arg(env, argv[5], &y, &nY, 0) || !f32_arg(env, argv[6], &sum, &nSum, 1) ||
      !f32_arg(env, argv[7], &mean, &nMean, 0) || !f32_arg(env, argv[8], &rstd, &nRstd, 0)) {
    napi_throw_type_error(env, NULL, "layerNormForward: arrays must be Float32Arrays (residual and sum may be null)");
    return NULL;
  }
  double epsD = 0;
  napi_get_value_double(env, argv[4], &epsD);
  const float eps = (float)epsD;
  const size_t rows = d ? n / d : 0;
  if (d == 0 || n % d != 0 || nBeta != d || nY < n || nMean < rows || nRstd < rows || (res && nRes < n) ||
      (res != NULL) != (sum != NULL) || (sum && nSum < n)) {
    napi_throw_range_error(env, NULL, "layerNormForward: sizes do not match the arrays");
    return NULL;
  }
  for (size_t i = 0; i < rows; i++) {
    const float *xi = x + i * d;
    float *yi = y + i * d;
    const float *s = xi;
    if (res) {
      float *si = sum + i * d;
      const float *ri = res + i * d;
      for (size_t j = 0; j < d; j++) si[j] = xi[j] + ri[j];
      s = si;
    }
    const float m = row_sum(s, d) / (float)d;
    const float r = 1.0f / sqrtf(row_centered_squares(s, m, d) / (float)d + eps);
    for (size_t j = 0; j < d; j++) yi[j] = (s[j] - m) * r * gamma[j] + beta[j];
    mean[i] = m;
    rstd[i] = r;
  }
  return NULL;
}

/*
 * layerNormGrad(dy, s, gamma, mean, rstd, dsum|null, dx, dgamma, dbeta): with x̂ = (s − mean)·rstd
 * and g = dy·γ per row, dx = rstd · (g − mean(g) − x̂ · mean(g·x̂)) (+ dsum, the gradient reaching
 * the `sum` output); dγ = Σ_rows dy·x̂, dβ = Σ_rows dy, summed in double.
 */
static napi_value layer_norm_grad(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  if (!get_args(env, info, 9, argv, "layerNormGrad: expected (dy, s, gamma, mean, rstd, dsum, dx, dgamma, dbeta)")) return NULL;
  float *dy, *s, *gamma, *mean, *rstd, *dsum, *dx, *dgamma, *dbeta;
  size_t n, nS, d, nMean, nRstd, nDsum, nDx, nDg, nDb;
  if (!f32_arg(env, argv[0], &dy, &n, 0) || !f32_arg(env, argv[1], &s, &nS, 0) || !f32_arg(env, argv[2], &gamma, &d, 0) ||
      !f32_arg(env, argv[3], &mean, &nMean, 0) || !f32_arg(env, argv[4], &rstd, &nRstd, 0) || !f32_arg(env, argv[5], &dsum, &nDsum, 1) ||
      !f32_arg(env, argv[6], &dx, &nDx, 0) || !f32_arg(env, argv[7], &dgamma, &nDg, 0) || !f32_arg(env, argv[8], &dbeta, &nDb, 0)) {
    napi_throw_type_error(env, NULL, "layerNormGrad: arrays must be Float32Arrays (dsum may be null)");
    return NULL;
  }
  const size_t rows = d ? n / d : 0;
  if (d == 0 || n % d != 0 || nS < n || nMean < rows || nRstd < rows || (dsum && nDsum < n) || nDx < n || nDg < d || nDb < d) {
    napi_throw_range_error(env, NULL, "layerNormGrad: sizes do not match the arrays");
    return NULL;
  }
  /* Scratch: g and x̂ of one row, and the double accumulators of dγ, dβ. */
  float *g = malloc(2 * d * sizeof(float));
  double *acc = calloc(2 * d, sizeof(double));
  if (!g || !acc) {
    free(g);
    free(acc);
    napi_throw_error(env, NULL, "layerNormGrad: out of memory");
    return NULL;
  }
  float *xhat = g + d;
  double *accG = acc, *accB = acc + d;
  for (size_t i = 0; i < rows; i++) {
    const float *dyi = dy + i * d, *si = s + i * d;
    float *dxi = dx + i * d;
    const float m = mean[i], r = rstd[i];
    for (size_t j = 0; j < d; j++) {
      xhat[j] = (si[j] - m) * r;
      g[j] = dyi[j] * gamma[j];
      accG[j] += (double)(dyi[j] * xhat[j]);
      accB[j] += (double)dyi[j];
    }
    float pg[LANES] = {0}, pgx[LANES] = {0};
    size_t j = 0;
    for (; j + LANES <= d; j += LANES)
      for (int l = 0; l < LANES; l++) {
        pg[l] += g[j + l];
        pgx[l] += g[j + l] * xhat[j + l];
      }
    float sg = 0.0f, sgx = 0.0f;
    for (; j < d; j++) {
      sg += g[j];
      sgx += g[j] * xhat[j];
    }
    for (int l = 0; l < LANES; l++) {
      sg += pg[l];
      sgx += pgx[l];
    }
    const float a = sg / (float)d, b = sgx / (float)d;
    if (dsum) {
      const float *dsi = dsum + i * d;
      for (size_t k = 0; k < d; k++) dxi[k] = r * (g[k] - a - xhat[k] * b) + dsi[k];
    } else {
      for (size_t k = 0; k < d; k++) dxi[k] = r * (g[k] - a - xhat[k] * b);
    }
  }
  for (size_t j = 0; j < d; j++) {
    dgamma[j] = (float)accG[j];
    dbeta[j] = (float)accB[j];
  }
  free(g);
  free(acc);
  return NULL;
}

/* Called from blas.c's init: adds this file's functions to the addon's exports. */
int register_fused(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"geluForward", NULL, gelu_forward, NULL, NULL, NULL, napi_enumerable, NULL},
      {"geluGrad", NULL, gelu_grad, NULL, NULL, NULL, napi_enumerable, NULL},
      {"layerNormForward", NULL, layer_norm_forward, NULL, NULL, NULL, napi_enumerable, NULL},
      {"layerNormGrad", NULL, layer_norm_grad, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) == napi_ok;
}
