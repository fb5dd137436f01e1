/*
 * Fused attention (kernels FtAttention / FtAttentionGrad, src/backend/kernels/attention.ts): per
 * (batch, head) slice, probs = softmax(q·kᵀ + mask), optional inverted dropout on probs,
 * out = probs·v; and its gradient, flash-attention style.
 *
 * Why: written as tfjs ops, the tape keeps every [B, H, T, S] intermediate (logits, masked
 * logits, probabilities, dropout mask, dropped probabilities) alive until the backward pass, and
 * each op costs an engine dispatch. Here the forward keeps only per-row softmax statistics
 * [B, H, T, 2]: the row's max logit m and ℓ = log Σ_s exp(x_s − m), i.e. the logsumexp m + ℓ in two
 * parts (as FlashAttention-1 keeps them: one float32 lse cannot represent an all-masked row, whose
 * −1e9 + log S rounds to −1e9). The backward recomputes the probabilities exp(x − m − ℓ) from q, k
 * and them, one (b, h) slice at a time, so the scratch is two T×S matrices per thread instead of
 * B·H of them held for the whole step.
 *
 * Backward, with A = softmax(L), Z the dropout multipliers (0 or 1/(1−rate)), D = A ⊙ Z, O = D·V:
 *   dV = Dᵀ·dO,  dD = dO·Vᵀ,  dL = A ⊙ (dD ⊙ Z − δ),  δ_t = Σ_s (dD ⊙ D)_ts = Σ_j (dO ⊙ O)_tj,
 *   dQ = dL·K,  dK = dLᵀ·Q.
 * The queries arrive already scaled by 1/√r (the layer folds it into the query weights).
 *
 * Masks, as the op path builds them (src/attention/factorized-attention.ts additiveMask): −1e9 is
 * added (once) to the logit of a padded key (pad[b, s] ≠ 0) and, when causal, of a key after the
 * query (s > t + S − T); an all-masked row stays finite and comes out uniform, as there.
 *
 * Dropout: the keep/drop decision of element (b, h, t, s) is a hash of (seed, b·H + h, t·S + s),
 * so the backward redraws exactly the forward's mask from the same seed and nothing the size of
 * the probabilities is stored. The hash is mirrored bit for bit in attention.ts (dropoutKeep).
 *
 * Threads: the (b, h) slices are split over `threads` pthreads, each calling single-threaded
 * sgemm (OpenBLAS is set to 1 thread for the duration); per-head products are too small for
 * OpenBLAS' own threading to pay. threads = 1 runs serially on the caller's thread and leaves
 * OpenBLAS' threading as it is.
 */
#define _POSIX_C_SOURCE 200809L
#include <node_api.h>
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern void openblas_set_num_threads(int) __attribute__((weak));
extern int openblas_get_num_threads(void) __attribute__((weak));

/* Added to masked logits; the op path's MASK_VALUE. */
#define MASK_VALUE (-1e9f)

/*
 * exp(x) for the softmax, where x ≤ ~0 (the row max is subtracted first): Cephes' expf (2ⁿ·p(r),
 * |r| ≤ ln2/2, degree-6 polynomial, ~1 ulp) written without calls or branches so that the
 * compiler vectorizes the loops over a row; libm's expf is a call per element (measured: the
 * forward on bert_small's shapes was slower than the op path's XNNPACK softmax with it).
 * Below −87 (where float32 underflows) it returns 0, as expf does to within a denormal; NaN
 * gives NaN.
 */
/* cond ? a : b on the bits: gcc compiles a plain float select here into a branch, which keeps the
 * loop around it scalar; integer masks vectorize. */
static inline float select_float(int cond, float a, float b) {
  union { float f; int32_t i; } ua = { .f = a }, ub = { .f = b };
  const int32_t m = -(int32_t)(cond != 0);
  ua.i = (ua.i & m) | (ub.i & ~m);
  return ua.f;
}

static inline float exp_nonpositive(float x) {
  const int under = x < -87.0f; /* false for NaN, which stays NaN */
  const float xc = select_float(under, -87.0f, x);
  const float n = (float)(int32_t)(xc * 1.44269504088896341f - 0.5f); /* round(x / ln2) for x ≤ ~0 */
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;       /* Cody-Waite: ln2 = 0.693359375 − 2.12194440e-4 */
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  union { int32_t i; float f; } scale = { .i = ((int32_t)n + 127) << 23 }; /* 2ⁿ */
  return select_float(under, 0.0f, p * scale.f);
}

/* murmur3's 32-bit finalizer: a bijection with full avalanche. */
static inline uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

/* The hash stream of slice bh (= b·H + h) for a dropout seed. */
static inline uint32_t dropout_base(uint32_t seed, uint32_t bh) { return fmix32(seed + 0x9e3779b9u * (bh + 1u)); }

/* Element j (= t·S + s) of a slice is kept when its hash is >= threshold = floor(rate · 2³²). */
static inline int dropout_keep(uint32_t base, uint32_t j, uint32_t threshold) {
  return fmix32(base ^ (j * 0x9e3779b9u)) >= threshold;
}

typedef struct {
  /* inputs, row-major: q [B,H,T,r], k [B,H,S,r], v [B,H,S,rv], pad [B,S] or NULL */
  const float *q, *k, *v, *pad;
  /* forward outputs (backward inputs): out [B,H,T,rv], stats [B,H,T,2] = (row max m, ℓ = log Σ exp(x − m)) */
  float *out, *stats;
  /* backward only: dout [B,H,T,rv] in; dq, dk, dv out */
  const float *dout;
  float *dq, *dk, *dv;
  int64_t B, H, T, S, r, rv;
  int causal, backward;
  uint32_t seed, threshold; /* threshold 0: no dropout */
  float keep_scale;         /* 1 / (1 − rate) */
  int64_t next;             /* next slice to take (atomic) */
  int failed;               /* a thread could not allocate its scratch */
} job_t;

/* Row t of slice (b, ·): logits x[S] += the mask, −1e9 once for a padded or a future key. */
static void mask_row(const job_t *job, const float *pad_b, int64_t t, float *x) {
  const int64_t S = job->S;
  int64_t last = job->causal ? t + S - job->T : S - 1; /* keys s > last are in the future */
  if (last > S - 1) last = S - 1;
  if (last < -1) last = -1;
  if (pad_b) {
    for (int64_t s = 0; s <= last; s++) x[s] += pad_b[s] != 0.0f ? MASK_VALUE : 0.0f;
  }
  for (int64_t s = last + 1; s < S; s++) x[s] += MASK_VALUE;
}

/* x[T×S] = q·kᵀ + mask for slice bh. */
static void scores(const job_t *job, int64_t bh, float *x) {
  const int64_t T = job->T, S = job->S, r = job->r;
  const float *q = job->q + bh * T * r, *k = job->k + bh * S * r;
  if (r > 0) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)S, (int)r, 1.0f, q, (int)r, k, (int)r, 0.0f, x, (int)S);
  else memset(x, 0, (size_t)(T * S) * sizeof(float));
  const float *pad_b = job->pad ? job->pad + (bh / job->H) * S : NULL;
  for (int64_t t = 0; t < T; t++) mask_row(job, pad_b, t, x + t * S);
}

/* x *= the dropout multipliers of slice bh (0 or 1/(1 − rate)). */
static void apply_dropout(const job_t *job, int64_t bh, float *x) {
  const uint32_t base = dropout_base(job->seed, (uint32_t)bh);
  const int64_t n = job->T * job->S;
  for (int64_t j = 0; j < n; j++) x[j] = dropout_keep(base, (uint32_t)j, job->threshold) ? x[j] * job->keep_scale : 0.0f;
}

static void forward_slice(const job_t *job, int64_t bh, float *x) {
  const int64_t T = job->T, S = job->S, rv = job->rv;
  float *out = job->out + bh * T * rv, *stats = job->stats + bh * T * 2;
  if (S == 0) {
    /* softmax over no keys: no weights, a zero output (the op path's empty product). */
    memset(out, 0, (size_t)(T * rv) * sizeof(float));
    for (int64_t t = 0; t < T; t++) stats[2 * t] = -INFINITY, stats[2 * t + 1] = 0.0f;
    return;
  }
  scores(job, bh, x);
  for (int64_t t = 0; t < T; t++) {
    float *row = x + t * S;
    float m = row[0];
    for (int64_t s = 1; s < S; s++) m = row[s] > m ? row[s] : m;
    for (int64_t s = 0; s < S; s++) row[s] = exp_nonpositive(row[s] - m);
    float sum = 0.0f;
    for (int64_t s = 0; s < S; s++) sum += row[s];
    const float inv = 1.0f / sum;
    for (int64_t s = 0; s < S; s++) row[s] *= inv;
    stats[2 * t] = m;
    stats[2 * t + 1] = logf(sum);
  }
  if (job->threshold) apply_dropout(job, bh, x);
  if (rv > 0) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)rv, (int)S, 1.0f, x, (int)S, job->v + bh * S * rv, (int)rv, 0.0f, out, (int)rv);
}

/* x, y: T×S scratch; delta: T. */
static void backward_slice(const job_t *job, int64_t bh, float *x, float *y, float *delta) {
  const int64_t T = job->T, S = job->S, r = job->r, rv = job->rv;
  const float *q = job->q + bh * T * r, *k = job->k + bh * S * r, *v = job->v + bh * S * rv;
  const float *o = job->out + bh * T * rv, *dout = job->dout + bh * T * rv, *stats = job->stats + bh * T * 2;
  float *dq = job->dq + bh * T * r, *dk = job->dk + bh * S * r, *dv = job->dv + bh * S * rv;
  if (S == 0 || T == 0) {
    memset(dq, 0, (size_t)(T * r) * sizeof(float));
    memset(dk, 0, (size_t)(S * r) * sizeof(float));
    memset(dv, 0, (size_t)(S * rv) * sizeof(float));
    return;
  }
  /* x = A, recomputed from the saved row statistics. */
  scores(job, bh, x);
  for (int64_t t = 0; t < T; t++) {
    float *row = x + t * S;
    const float m = stats[2 * t], l = stats[2 * t + 1];
    for (int64_t s = 0; s < S; s++) row[s] = exp_nonpositive((row[s] - m) - l);
  }
  /* dV = Dᵀ·dO, with D = A ⊙ Z (in y while needed) or A itself. */
  const float *d = x;
  if (job->threshold) {
    memcpy(y, x, (size_t)(T * S) * sizeof(float));
    apply_dropout(job, bh, y);
    d = y;
  }
  if (rv > 0) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)S, (int)rv, (int)T, 1.0f, d, (int)S, dout, (int)rv, 0.0f, dv, (int)rv);
    /* y = dD = dO·Vᵀ */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)S, (int)rv, 1.0f, dout, (int)rv, v, (int)rv, 0.0f, y, (int)S);
  } else {
    memset(y, 0, (size_t)(T * S) * sizeof(float));
  }
  for (int64_t t = 0; t < T; t++) {
    float acc = 0.0f;
    for (int64_t j = 0; j < rv; j++) acc += dout[t * rv + j] * o[t * rv + j];
    delta[t] = acc;
  }
  if (job->threshold) apply_dropout(job, bh, y); /* dA = dD ⊙ Z */
  /* x = dL = A ⊙ (dA − δ) */
  for (int64_t t = 0; t < T; t++) {
    float *a = x + t * S;
    const float *g = y + t * S;
    const float dt = delta[t];
    for (int64_t s = 0; s < S; s++) a[s] *= g[s] - dt;
  }
  if (r > 0) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)r, (int)S, 1.0f, x, (int)S, k, (int)r, 0.0f, dq, (int)r);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)S, (int)r, (int)T, 1.0f, x, (int)S, q, (int)r, 0.0f, dk, (int)r);
  }
}

static void *worker(void *arg) {
  job_t *job = (job_t *)arg;
  const size_t ts = (size_t)(job->T * job->S);
  /* +1: malloc(0) may return NULL. */
  float *x = malloc((ts + 1) * sizeof(float));
  float *y = job->backward ? malloc((ts + 1) * sizeof(float)) : NULL;
  float *delta = job->backward ? malloc(((size_t)job->T + 1) * sizeof(float)) : NULL;
  if (!x || (job->backward && (!y || !delta))) {
    __atomic_store_n(&job->failed, 1, __ATOMIC_SEQ_CST);
  } else {
    const int64_t slices = job->B * job->H;
    for (;;) {
      const int64_t bh = __atomic_fetch_add(&job->next, 1, __ATOMIC_SEQ_CST);
      if (bh >= slices) break;
      if (job->backward) backward_slice(job, bh, x, y, delta);
      else forward_slice(job, bh, x);
    }
  }
  free(x);
  free(y);
  free(delta);
  return NULL;
}

/* Runs the job on up to `threads` threads (the caller's included); 0 on success, -1 on failure. */
static int run_job(job_t *job, int threads) {
  const int64_t slices = job->B * job->H;
  if (threads > slices) threads = (int)(slices > 0 ? slices : 1);
  if (threads < 1) threads = 1;
  pthread_t ids[64];
  if (threads > 64) threads = 64;
  const int restore = threads > 1 && openblas_set_num_threads && openblas_get_num_threads ? openblas_get_num_threads() : 0;
  if (restore) openblas_set_num_threads(1);
  int started = 0;
  for (int i = 1; i < threads; i++) {
    if (pthread_create(&ids[started], NULL, worker, job) != 0) break; /* fewer threads still finish the job */
    started++;
  }
  worker(job);
  for (int i = 0; i < started; i++) pthread_join(ids[i], NULL);
  if (restore) openblas_set_num_threads(restore);
  return job->failed ? -1 : 0;
}

/* ---- N-API ---- */

#define ARGS(n)                                                                   \
  size_t argc = (n);                                                              \
  napi_value argv[(n)];                                                           \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != (n)) { \
    napi_throw_type_error(env, NULL, "attention: expected " #n " arguments");     \
    return NULL;                                                                  \
  }

/* A Float32Array of at least `need` elements (or null when `optional`); 0 and a thrown error otherwise. */
static int floats(napi_env env, napi_value value, size_t need, int optional, const char *name, float **out) {
  napi_valuetype vt;
  napi_typeof(env, value, &vt);
  if (optional && (vt == napi_null || vt == napi_undefined)) {
    *out = NULL;
    return 1;
  }
  napi_typedarray_type type;
  size_t length, offset;
  void *raw;
  napi_value buffer;
  char msg[160];
  if (napi_get_typedarray_info(env, value, &type, &length, &raw, &buffer, &offset) != napi_ok || type != napi_float32_array) {
    snprintf(msg, sizeof msg, "attention: %s must be a Float32Array", name);
    napi_throw_type_error(env, NULL, msg);
    return 0;
  }
  if (length < need) {
    snprintf(msg, sizeof msg, "attention: %s has %zu elements, needs %zu", name, length, need);
    napi_throw_range_error(env, NULL, msg);
    return 0;
  }
  *out = (float *)raw;
  return 1;
}

/* A JS number, or a boolean as 0/1. */
static double number(napi_env env, napi_value v) {
  double out = 0;
  napi_value n;
  if (napi_coerce_to_number(env, v, &n) == napi_ok) napi_get_value_double(env, n, &out);
  return out;
}

/* The trailing scalars shared by both entry points: B, H, T, S, r, rv, causal, rate, seed, threads. */
static int read_dims(napi_env env, napi_value *argv, job_t *job, int *threads) {
  int64_t dims[6];
  for (int i = 0; i < 6; i++) {
    const double d = number(env, argv[i]);
    if (!(d >= 0 && d < 2147483648.0) || d != floor(d)) {
      napi_throw_range_error(env, NULL, "attention: B, H, T, S, r, rv must be non-negative integers");
      return 0;
    }
    dims[i] = (int64_t)d;
  }
  job->B = dims[0], job->H = dims[1], job->T = dims[2], job->S = dims[3], job->r = dims[4], job->rv = dims[5];
  if (job->T * job->S > 2147483647) {
    napi_throw_range_error(env, NULL, "attention: T·S must be below 2³¹");
    return 0;
  }
  job->causal = number(env, argv[6]) != 0;
  const double rate = number(env, argv[7]);
  if (!(rate >= 0 && rate < 1)) {
    napi_throw_range_error(env, NULL, "attention: dropout rate must be in [0, 1)");
    return 0;
  }
  job->threshold = (uint32_t)floor(rate * 4294967296.0);
  job->keep_scale = (float)(1.0 / (1.0 - rate));
  job->seed = (uint32_t)(int64_t)number(env, argv[8]);
  *threads = (int)number(env, argv[9]);
  return 1;
}

/* attentionForward(q, k, v, pad|null, out, stats, B, H, T, S, r, rv, causal, rate, seed, threads) */
static napi_value attention_forward(napi_env env, napi_callback_info info) {
  ARGS(16);
  job_t job;
  memset(&job, 0, sizeof job);
  int threads;
  if (!read_dims(env, argv + 6, &job, &threads)) return NULL;
  const size_t BH = (size_t)(job.B * job.H);
  float *q, *k, *v, *pad;
  if (!floats(env, argv[0], BH * job.T * job.r, 0, "q", &q) || !floats(env, argv[1], BH * job.S * job.r, 0, "k", &k) ||
      !floats(env, argv[2], BH * job.S * job.rv, 0, "v", &v) || !floats(env, argv[3], (size_t)(job.B * job.S), 1, "pad", &pad) ||
      !floats(env, argv[4], BH * job.T * job.rv, 0, "out", &job.out) || !floats(env, argv[5], BH * job.T * 2, 0, "stats", &job.stats)) {
    return NULL;
  }
  job.q = q, job.k = k, job.v = v, job.pad = pad;
  if (run_job(&job, threads) != 0) napi_throw_error(env, NULL, "attention: out of memory for the scratch rows");
  return NULL;
}

/* attentionBackward(q, k, v, pad|null, out, stats, dout, dq, dk, dv, B, H, T, S, r, rv, causal, rate, seed, threads) */
static napi_value attention_backward(napi_env env, napi_callback_info info) {
  ARGS(20);
  job_t job;
  memset(&job, 0, sizeof job);
  job.backward = 1;
  int threads;
  if (!read_dims(env, argv + 10, &job, &threads)) return NULL;
  const size_t BH = (size_t)(job.B * job.H);
  float *q, *k, *v, *pad, *dout;
  if (!floats(env, argv[0], BH * job.T * job.r, 0, "q", &q) || !floats(env, argv[1], BH * job.S * job.r, 0, "k", &k) ||
      !floats(env, argv[2], BH * job.S * job.rv, 0, "v", &v) || !floats(env, argv[3], (size_t)(job.B * job.S), 1, "pad", &pad) ||
      !floats(env, argv[4], BH * job.T * job.rv, 0, "out", &job.out) || !floats(env, argv[5], BH * job.T * 2, 0, "stats", &job.stats) ||
      !floats(env, argv[6], BH * job.T * job.rv, 0, "dout", &dout) || !floats(env, argv[7], BH * job.T * job.r, 0, "dq", &job.dq) ||
      !floats(env, argv[8], BH * job.S * job.r, 0, "dk", &job.dk) || !floats(env, argv[9], BH * job.S * job.rv, 0, "dv", &job.dv)) {
    return NULL;
  }
  job.q = q, job.k = k, job.v = v, job.pad = pad, job.dout = dout;
  if (run_job(&job, threads) != 0) napi_throw_error(env, NULL, "attention: out of memory for the scratch rows");
  return NULL;
}

/* Called from blas.c's init: adds attentionForward and attentionBackward to the exports. */
napi_status register_attention(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"attentionForward", NULL, attention_forward, NULL, NULL, NULL, napi_enumerable, NULL},
      {"attentionBackward", NULL, attention_backward, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
}
