/*
 * Float32 sum / mean over one contiguous block of axes, read in place from the wasm heap.
 *
 * Why native: tfjs-backend-wasm's Sum and Mean transpose their input whenever the reduced axes
 * are not the innermost ones (a bias gradient sums over axis 0 of [tokens, units]) and then add
 * one element at a time; with this addon loaded the wasm thread pool is off, so that copy and
 * the scalar loop are the whole cost. Viewed as [outer, reduce, inner] no transpose is needed:
 *  - inner > 1: out[o, :] += x[o, r, :] for r = 0, 1, ...: the same additions in the same order
 *    as the stock kernel (so the same rounding), with a unit-stride inner loop that vectorizes;
 *  - inner == 1: each output is one contiguous run, summed with LANES independent partial sums
 *    (vectorizes without -ffast-math, and is more accurate than one running sum).
 * The layout logic and the JS fallback live in src/backend/kernels/reduce.ts.
 */
#include <node_api.h>
#include <stdint.h>
#include <string.h>

#define LANES 16

/* Sum of n contiguous floats: LANES running sums, then a pairwise combine of the lanes. */
static float sum_contiguous(const float *restrict x, int64_t n) {
  float acc[LANES] = {0};
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int j = 0; j < LANES; j++) acc[j] += x[i + j];
  for (int j = 0; i < n; i++, j++) acc[j] += x[i];
  for (int width = LANES / 2; width > 0; width /= 2)
    for (int j = 0; j < width; j++) acc[j] += acc[j + width];
  return acc[0];
}

/* out[0..inner) += row[0..inner); restrict lets -O3 vectorize it. */
static void add_row(float *restrict out, const float *restrict row, int64_t inner) {
  for (int64_t i = 0; i < inner; i++) out[i] += row[i];
}

/*
 * reduceSum(x, out, outer, reduce, inner, divisor): out[o, i] = (sum_r x[o, r, i]) / divisor for
 * x viewed as [outer, reduce, inner] and out as [outer, inner]. divisor is 1 for a sum and the
 * reduce size for a mean (divided at the end, like the stock Mean).
 */
static napi_value reduce_sum(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 6) {
    napi_throw_type_error(env, NULL, "reduceSum: expected (x, out, outer, reduce, inner, divisor)");
    return NULL;
  }
  napi_typedarray_type xType, outType;
  size_t xLen, outLen, offset;
  void *xRaw, *outRaw;
  napi_value buffer;
  if (napi_get_typedarray_info(env, argv[0], &xType, &xLen, &xRaw, &buffer, &offset) != napi_ok ||
      napi_get_typedarray_info(env, argv[1], &outType, &outLen, &outRaw, &buffer, &offset) != napi_ok ||
      xType != napi_float32_array || outType != napi_float32_array) {
    napi_throw_type_error(env, NULL, "reduceSum: x and out must be Float32Arrays");
    return NULL;
  }
  int64_t outer = 0, reduce = 0, inner = 0;
  double divisorD = 1;
  napi_get_value_int64(env, argv[2], &outer);
  napi_get_value_int64(env, argv[3], &reduce);
  napi_get_value_int64(env, argv[4], &inner);
  napi_get_value_double(env, argv[5], &divisorD);
  /* Bounds: a wrong size would read or write outside the arrays, i.e. corrupt the wasm heap. */
  const int inBounds = outer >= 0 && reduce >= 0 && inner >= 0 &&
                       (outer == 0 || reduce == 0 || inner == 0 ||
                        ((uint64_t)outer <= xLen / (uint64_t)reduce / (uint64_t)inner && (uint64_t)(outer * inner) <= outLen));
  if (!inBounds) {
    napi_throw_range_error(env, NULL, "reduceSum: sizes do not match the arrays");
    return NULL;
  }
  const float *x = (const float *)xRaw;
  float *out = (float *)outRaw;
  const float divisor = (float)divisorD;
  for (int64_t o = 0; o < outer; o++) {
    const float *xo = x + o * reduce * inner;
    float *oo = out + o * inner;
    if (inner == 1) {
      oo[0] = sum_contiguous(xo, reduce);
    } else {
      memset(oo, 0, (size_t)inner * sizeof(float));
      for (int64_t r = 0; r < reduce; r++) add_row(oo, xo + r * inner, inner);
    }
    if (divisor != 1.0f)
      for (int64_t i = 0; i < inner; i++) oo[i] /= divisor;
  }
  return NULL;
}

/* Called from blas.c's init: adds this file's functions to the addon's exports. */
napi_status register_reduce(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"reduceSum", NULL, reduce_sum, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
}
