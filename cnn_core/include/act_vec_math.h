/* float32 tanh, sigmoid and expm1 (ELU) for the activations: one algorithm each, a scalar
 * and an AVX2 spelling of it, built on cnn_expf (exp_math.h).
 *
 * glibc's tanhf/expf/expm1f are scalar (no vector variant without -ffast-math); a tanh layer
 * of 1024 units spent as long in tanhf as in its GEMM. As in exp_math.h, the scalar and the
 * vector functions perform the same IEEE operations in the same order (the build has
 * -ffp-contract=off), so an element has the same bits in a vector lane, in a scalar tail and
 * on a CPU without AVX2. Accuracy (tests/cnn_core/test_activations.py checks every float of
 * a dense grid against float64): a few ulps.
 *
 *   tanh:    |x| < 0.625: x + x^3 P(x^2) (Cephes tanhf's polynomial); else
 *            1 - 2 / (exp(2|x|) + 1). Sign restored last, so tanh(-0) = -0.
 *   sigmoid: e = exp(-|x|); 1 / (1 + e) for x >= 0, e / (1 + e) below: exp never overflows.
 *   expm1:   |x| < 0.35: its Taylor polynomial to x^8 (no cancellation near 0); else
 *            exp(x) - 1. Sign restored last, so expm1(-0) = -0.
 * NaN in gives NaN out; +-inf give +-1 (tanh), 1 / 0 (sigmoid), inf / -1 (expm1). */
#ifndef CNN_ACT_VEC_MATH_H
#define CNN_ACT_VEC_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include "exp_math.h"
#include "cpu_dispatch.h"

#define CNN_TANH_SMALL 0.625f
#define CNN_TANH_P0 -5.70498872745e-3f
#define CNN_TANH_P1 2.06390887954e-2f
#define CNN_TANH_P2 -5.37397155531e-2f
#define CNN_TANH_P3 1.33314422036e-1f
#define CNN_TANH_P4 -3.33332819422e-1f
#define CNN_EXPM1_SMALL 0.35f

static inline float cnn_abs_bits_f32(float x, uint32_t *sign) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    *sign = bits & 0x80000000u;
    bits &= 0x7fffffffu;
    memcpy(&x, &bits, sizeof x);
    return x;
}

static inline float cnn_or_sign_f32(float x, uint32_t sign) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    bits |= sign;
    memcpy(&x, &bits, sizeof x);
    return x;
}

static inline float cnn_tanhf(float x) {
    uint32_t sign;
    const float ax = cnn_abs_bits_f32(x, &sign);
    const float s = ax * ax;
    float p = CNN_TANH_P0;
    p = p * s + CNN_TANH_P1;
    p = p * s + CNN_TANH_P2;
    p = p * s + CNN_TANH_P3;
    p = p * s + CNN_TANH_P4;
    const float small = (p * s) * ax + ax;
    const float big = 1.0f - 2.0f / (cnn_expf(ax + ax) + 1.0f);
    return cnn_or_sign_f32(ax < CNN_TANH_SMALL ? small : big, sign);
}

static inline float cnn_sigmoidf(float x) {
    uint32_t sign;
    const float e = cnn_expf(-cnn_abs_bits_f32(x, &sign));
    const float d = 1.0f + e;
    return x >= 0.0f ? 1.0f / d : e / d;
}

static inline float cnn_expm1f(float x) {
    uint32_t sign;
    const float ax = cnn_abs_bits_f32(x, &sign);
    float p = 1.0f / 40320.0f;
    p = p * x + 1.0f / 5040.0f;
    p = p * x + 1.0f / 720.0f;
    p = p * x + 1.0f / 120.0f;
    p = p * x + 1.0f / 24.0f;
    p = p * x + 1.0f / 6.0f;
    p = p * x + 0.5f;
    const float small = (p * x) * x + x;
    const float big = cnn_expf(x) - 1.0f;
    return cnn_or_sign_f32(ax < CNN_EXPM1_SMALL ? small : big, sign); /* expm1(-0) = -0 */
}

#if CNN_EXP_HAVE_AVX2
#define CNN_AVX2 __attribute__((target("avx2,fma")))

CNN_AVX2 static inline __m256 cnn_tanh8_avx2(__m256 x) {
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    const __m256 sign = _mm256_and_ps(x, sign_bit), ax = _mm256_andnot_ps(sign_bit, x);
    const __m256 s = _mm256_mul_ps(ax, ax);
    __m256 p = _mm256_set1_ps(CNN_TANH_P0);
    p = _mm256_add_ps(_mm256_mul_ps(p, s), _mm256_set1_ps(CNN_TANH_P1));
    p = _mm256_add_ps(_mm256_mul_ps(p, s), _mm256_set1_ps(CNN_TANH_P2));
    p = _mm256_add_ps(_mm256_mul_ps(p, s), _mm256_set1_ps(CNN_TANH_P3));
    p = _mm256_add_ps(_mm256_mul_ps(p, s), _mm256_set1_ps(CNN_TANH_P4));
    const __m256 small = _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(p, s), ax), ax);
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 big = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f),
        _mm256_add_ps(cnn_exp8_avx2(_mm256_add_ps(ax, ax)), one)));
    const __m256 is_small = _mm256_cmp_ps(ax, _mm256_set1_ps(CNN_TANH_SMALL), _CMP_LT_OQ);
    return _mm256_or_ps(_mm256_blendv_ps(big, small, is_small), sign);
}

CNN_AVX2 static inline __m256 cnn_sigmoid8_avx2(__m256 x) {
    const __m256 e = cnn_exp8_avx2(_mm256_or_ps(x, _mm256_set1_ps(-0.0f))); /* exp(-|x|) */
    const __m256 d = _mm256_add_ps(_mm256_set1_ps(1.0f), e);
    const __m256 non_negative = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ);
    return _mm256_blendv_ps(_mm256_div_ps(e, d), _mm256_div_ps(_mm256_set1_ps(1.0f), d),
                            non_negative);
}

CNN_AVX2 static inline __m256 cnn_expm18_avx2(__m256 x) {
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    const __m256 sign = _mm256_and_ps(x, sign_bit), ax = _mm256_andnot_ps(sign_bit, x);
    __m256 p = _mm256_set1_ps(1.0f / 40320.0f);
    p = _mm256_add_ps(_mm256_mul_ps(p, x), _mm256_set1_ps(1.0f / 5040.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, x), _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, x), _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, x), _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, x), _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, x), _mm256_set1_ps(0.5f));
    const __m256 small = _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(p, x), x), x);
    const __m256 big = _mm256_sub_ps(cnn_exp8_avx2(x), _mm256_set1_ps(1.0f));
    const __m256 is_small = _mm256_cmp_ps(ax, _mm256_set1_ps(CNN_EXPM1_SMALL), _CMP_LT_OQ);
    return _mm256_or_ps(_mm256_blendv_ps(big, small, is_small), sign);
}

/* a[i] = f(z[i]) for the leading multiple of 8 of n (z and a may alias); returns how many
 * were done: 0 for an activation without a vector spelling here. act: CNN_ACT_* ids. */
CNN_AVX2 static int64_t cnn_act_apply_avx2_f32(int act, const float *z, float *a, int64_t n,
                                               float param) {
    int64_t i = 0;
    if (act == 5) { /* CNN_ACT_TANH */
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(a + i, cnn_tanh8_avx2(_mm256_loadu_ps(z + i)));
    } else if (act == 4) { /* CNN_ACT_SIGMOID */
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(a + i, cnn_sigmoid8_avx2(_mm256_loadu_ps(z + i)));
    } else if (act == 3) { /* CNN_ACT_ELU: z > 0 ? z : param * expm1(z) */
        const __m256 alpha = _mm256_set1_ps(param), zero = _mm256_setzero_ps();
        for (; i + 8 <= n; i += 8) {
            const __m256 v = _mm256_loadu_ps(z + i);
            const __m256 neg = _mm256_mul_ps(alpha, cnn_expm18_avx2(v));
            _mm256_storeu_ps(a + i, _mm256_blendv_ps(neg, v, _mm256_cmp_ps(v, zero, _CMP_GT_OQ)));
        }
    }
    return i;
}
#undef CNN_AVX2
#endif

/* Set by cnn_act_math_init() when a module that applies activations loads; left at 0 the
 * scalar spellings run, with the same bits. */
static int cnn_act_use_avx2 = 0;

static void cnn_act_math_init(void) {
    cnn_act_use_avx2 = CNN_EXP_HAVE_AVX2 && cnn_cpu_best_kernel() >= CNN_KERNEL_AVX2;
}

/* The vectorised prefix of an activation pass (see cnn_act_apply_avx2_f32). */
static inline int64_t cnn_act_apply_vec_f32(int act, const float *z, float *a, int64_t n,
                                            float param) {
#if CNN_EXP_HAVE_AVX2
    if (cnn_act_use_avx2) return cnn_act_apply_avx2_f32(act, z, a, n, param);
#endif
    (void)act; (void)z; (void)a; (void)n; (void)param;
    return 0;
}

static inline int64_t cnn_act_apply_vec_f64(int act, const double *z, double *a, int64_t n,
                                            double param) {
    (void)act; (void)z; (void)a; (void)n; (void)param;
    return 0;
}

#endif
