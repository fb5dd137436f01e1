/*
 * factorized-transformer-native: the heavy kernels of a training step on the system BLAS: float32
 * matrix products (batched, broadcast, transposed; bias + activation fused) and the one-pass
 * gradient of softmax cross-entropy over the vocabulary.
 *
 * Why native: the wasm backend's BatchMatMul runs a scalar loop (2-3 GFLOP/s) whenever a batch
 * has more than one matrix or an operand is transposed, which is every attention product and
 * every weight gradient; a tuned sgemm does 100+ GFLOP/s on the same core. The typed arrays
 * handed in are views on the wasm heap, so no data is copied in or out.
 *
 * Plain N-API (node_api.h) so that no C++ toolchain or extra npm dependency is needed.
 */
#include <node_api.h>
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* OpenBLAS extensions; weak so that another CBLAS (e.g. reference BLAS, BLIS) still links. */
extern void openblas_set_num_threads(int) __attribute__((weak));
extern int openblas_get_num_threads(void) __attribute__((weak));
extern char *openblas_get_config(void) __attribute__((weak));

#define CHECK(env, call)                                                   \
  do {                                                                     \
    if ((call) != napi_ok) {                                               \
      napi_throw_error((env), NULL, "native blas: N-API call failed: " #call); \
      return NULL;                                                         \
    }                                                                      \
  } while (0)

static int float_view(napi_env env, napi_value value, float **data, size_t *length) {
  napi_typedarray_type type;
  void *raw;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, value, &type, length, &raw, &buffer, &offset) != napi_ok) return 0;
  if (type != napi_float32_array) return 0;
  *data = (float *)raw;
  return 1;
}

static int int_view(napi_env env, napi_value value, int32_t **data, size_t *length) {
  napi_valuetype vt;
  napi_typeof(env, value, &vt);
  if (vt == napi_null || vt == napi_undefined) {
    *data = NULL;
    *length = 0;
    return 1;
  }
  napi_typedarray_type type;
  void *raw;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, value, &type, length, &raw, &buffer, &offset) != napi_ok) return 0;
  if (type != napi_int32_array) return 0;
  *data = (int32_t *)raw;
  return 1;
}

static int64_t get_int(napi_env env, napi_value v) {
  int64_t out = 0;
  napi_get_value_int64(env, v, &out);
  return out;
}

static double get_double(napi_env env, napi_value v) {
  double out = 0;
  napi_get_value_double(env, v, &out);
  return out;
}

static int get_bool(napi_env env, napi_value v) {
  bool out = false;
  if (napi_get_value_bool(env, v, &out) != napi_ok) return get_int(env, v) != 0;
  return out;
}

/*
 * gemmBatched(a, b, c, aIndex, bIndex, batch, m, n, k, transA, transB, beta)
 *   For i in [0, batch): C_i = op(A_{aIndex[i]}) · op(B_{bIndex[i]}) + beta · C_i, row-major,
 *   where op(A) is [m, k] and op(B) is [k, n]. aIndex/bIndex null means "i" (no broadcasting).
 *   Matrix j of A starts at j*m*k, of B at j*k*n, of C at i*m*n.
 */
static napi_value gemm_batched(napi_env env, napi_callback_info info) {
  size_t argc = 12;
  napi_value argv[12];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 12) {
    napi_throw_type_error(env, NULL, "gemmBatched: expected 12 arguments");
    return NULL;
  }
  float *a, *b, *c;
  size_t aLen, bLen, cLen, aiLen, biLen;
  int32_t *aIndex, *bIndex;
  if (!float_view(env, argv[0], &a, &aLen) || !float_view(env, argv[1], &b, &bLen) ||
      !float_view(env, argv[2], &c, &cLen)) {
    napi_throw_type_error(env, NULL, "gemmBatched: a, b, c must be Float32Arrays");
    return NULL;
  }
  if (!int_view(env, argv[3], &aIndex, &aiLen) || !int_view(env, argv[4], &bIndex, &biLen)) {
    napi_throw_type_error(env, NULL, "gemmBatched: aIndex, bIndex must be Int32Arrays or null");
    return NULL;
  }
  const int64_t batch = get_int(env, argv[5]), m = get_int(env, argv[6]), n = get_int(env, argv[7]),
                k = get_int(env, argv[8]);
  const int transA = get_bool(env, argv[9]), transB = get_bool(env, argv[10]);
  const float beta = (float)get_double(env, argv[11]);
  if (batch < 0 || m < 0 || n < 0 || k < 0 || (aIndex && (int64_t)aiLen < batch) ||
      (bIndex && (int64_t)biLen < batch) || (size_t)(batch * m * n) > cLen) {
    napi_throw_range_error(env, NULL, "gemmBatched: sizes do not match the arrays");
    return NULL;
  }
  const size_t aStride = (size_t)(m * k), bStride = (size_t)(k * n), cStride = (size_t)(m * n);
  /* Bounds: every addressed matrix must lie inside its array (a bad index would corrupt the heap). */
  for (int64_t i = 0; i < batch; i++) {
    const size_t ai = aIndex ? (size_t)aIndex[i] : (size_t)i;
    const size_t bi = bIndex ? (size_t)bIndex[i] : (size_t)i;
    if ((aIndex && aIndex[i] < 0) || (bIndex && bIndex[i] < 0) || (ai + 1) * aStride > aLen ||
        (bi + 1) * bStride > bLen) {
      napi_throw_range_error(env, NULL, "gemmBatched: a batch index points outside its array");
      return NULL;
    }
  }
  if (m == 0 || n == 0) return NULL;
  const int lda = transA ? (int)m : (int)k;
  const int ldb = transB ? (int)k : (int)n;
  for (int64_t i = 0; i < batch; i++) {
    const size_t ai = aIndex ? (size_t)aIndex[i] : (size_t)i;
    const size_t bi = bIndex ? (size_t)bIndex[i] : (size_t)i;
    float *ci = c + (size_t)i * cStride;
    if (k == 0) {
      if (beta == 0.0f) memset(ci, 0, cStride * sizeof(float));
      else for (size_t j = 0; j < cStride; j++) ci[j] *= beta;
      continue;
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, 1.0f, a + ai * aStride, lda, b + bi * bStride, ldb, beta, ci, (int)n);
  }
  return NULL;
}

/* Activation codes, in the order of src/backend/kernels/matMul.ts ACTIVATIONS. */
enum { ACT_LINEAR = 0, ACT_RELU = 1, ACT_RELU6 = 2, ACT_ELU = 3, ACT_LEAKYRELU = 4, ACT_SIGMOID = 5, ACT_PRELU = 6 };

/* applyActivation(x, kind, alpha, preluWeights|null): in place; prelu weights broadcast over the last axis. */
static napi_value apply_activation(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  float *x, *w = NULL;
  size_t n, wLen = 0;
  if (argc != 4 || !float_view(env, argv[0], &x, &n)) {
    napi_throw_type_error(env, NULL, "applyActivation: expected (Float32Array, kind, alpha, weights)");
    return NULL;
  }
  const int kind = (int)get_int(env, argv[1]);
  const float alpha = (float)get_double(env, argv[2]);
  napi_valuetype vt;
  napi_typeof(env, argv[3], &vt);
  if (vt != napi_null && vt != napi_undefined && !float_view(env, argv[3], &w, &wLen)) {
    napi_throw_type_error(env, NULL, "applyActivation: weights must be a Float32Array or null");
    return NULL;
  }
  switch (kind) {
    case ACT_LINEAR: break;
    case ACT_RELU: for (size_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f; break;
    case ACT_RELU6: for (size_t i = 0; i < n; i++) x[i] = fminf(fmaxf(x[i], 0.0f), 6.0f); break;
    case ACT_ELU: for (size_t i = 0; i < n; i++) x[i] = x[i] >= 0.0f ? x[i] : expm1f(x[i]); break;
    case ACT_LEAKYRELU: for (size_t i = 0; i < n; i++) x[i] = x[i] >= 0.0f ? x[i] : alpha * x[i]; break;
    case ACT_SIGMOID: for (size_t i = 0; i < n; i++) x[i] = 1.0f / (1.0f + expf(-x[i])); break;
    case ACT_PRELU:
      if (!w || wLen == 0 || n % wLen != 0) {
        napi_throw_range_error(env, NULL, "applyActivation: prelu weights must divide the output size");
        return NULL;
      }
      for (size_t i = 0; i < n; i++) x[i] = x[i] >= 0.0f ? x[i] : w[i % wLen] * x[i];
      break;
    default: napi_throw_range_error(env, NULL, "applyActivation: unknown activation code"); return NULL;
  }
  return NULL;
}

/*
 * crossEntropyGrad(logits, lse, targets, vocab, smoothing, padId, dyLoss, dyNll, out): the gradient
 * of label-smoothed softmax cross-entropy (src/backend/kernels/crossEntropy.ts has the formula),
 * one pass over the [n, vocab] logits. Pad rows get zeros.
 */
static napi_value cross_entropy_grad(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  float *logits, *lse, *out;
  int32_t *targets;
  size_t nLogits, nLse, nOut, nTargets;
  if (argc != 9 || !float_view(env, argv[0], &logits, &nLogits) || !float_view(env, argv[1], &lse, &nLse) ||
      !int_view(env, argv[2], &targets, &nTargets) || !targets || !float_view(env, argv[8], &out, &nOut)) {
    napi_throw_type_error(env, NULL, "crossEntropyGrad: expected (Float32Array, Float32Array, Int32Array, vocab, smoothing, padId, dyLoss, dyNll, Float32Array)");
    return NULL;
  }
  const int64_t vocab = get_int(env, argv[3]);
  const float smoothing = (float)get_double(env, argv[4]);
  const int32_t padId = (int32_t)get_int(env, argv[5]);
  const float dyLoss = (float)get_double(env, argv[6]), dyNll = (float)get_double(env, argv[7]);
  if (vocab <= 0 || nLse < nTargets || nLogits < nTargets * (size_t)vocab || nOut < nTargets * (size_t)vocab) {
    napi_throw_range_error(env, NULL, "crossEntropyGrad: sizes do not match the arrays");
    return NULL;
  }
  const float scaleP = dyLoss + dyNll, uniform = dyLoss * smoothing / (float)vocab, atTarget = dyLoss * (1.0f - smoothing) + dyNll;
  for (size_t i = 0; i < nTargets; i++) {
    const float *x = logits + i * (size_t)vocab;
    float *g = out + i * (size_t)vocab;
    const int32_t t = targets[i];
    if (t == padId) {
      memset(g, 0, (size_t)vocab * sizeof(float));
      continue;
    }
    const float m = lse[i];
    for (int64_t v = 0; v < vocab; v++) g[v] = scaleP * expf(x[v] - m) - uniform;
    if (t >= 0 && t < vocab) g[t] -= atTarget;
  }
  return NULL;
}

static napi_value set_num_threads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (openblas_set_num_threads && argc == 1) openblas_set_num_threads((int)get_int(env, argv[0]));
  return NULL;
}

static napi_value get_num_threads(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  CHECK(env, napi_create_int32(env, openblas_get_num_threads ? openblas_get_num_threads() : 1, &out));
  return out;
}

static napi_value get_config(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  const char *cfg = openblas_get_config ? openblas_get_config() : "cblas (not OpenBLAS)";
  CHECK(env, napi_create_string_utf8(env, cfg, NAPI_AUTO_LENGTH, &out));
  return out;
}

int register_fused(napi_env env, napi_value exports); /* fused.c */
napi_status register_reduce(napi_env env, napi_value exports); /* reduce.c */
napi_status register_attention(napi_env env, napi_value exports); /* attention.c */

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"gemmBatched", NULL, gemm_batched, NULL, NULL, NULL, napi_enumerable, NULL},
      {"applyActivation", NULL, apply_activation, NULL, NULL, NULL, napi_enumerable, NULL},
      {"crossEntropyGrad", NULL, cross_entropy_grad, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setNumThreads", NULL, set_num_threads, NULL, NULL, NULL, napi_enumerable, NULL},
      {"getNumThreads", NULL, get_num_threads, NULL, NULL, NULL, napi_enumerable, NULL},
      {"config", NULL, get_config, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok) return NULL;
  if (!register_fused(env, exports)) return NULL;
  if (register_reduce(env, exports) != napi_ok) return NULL;
  if (register_attention(env, exports) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
