/* float32 tanh, sigmoid and expm1 (ELU) for the activations: one algorithm each, a scalar
 * and an AVX2 spelling of it, built on cnn_expf (exp_math.h).
 *
 * glibc's tanhf/expf/expm1f are scalar (no vector variant without -ffast-math); a tanh layer
 * of 1024 units spent as long in tanhf as in its GEMM. As in exp_math.h, the scalar and the
 * vector functions perform the same IEEE operations in the same order (the build has
 * -ffp-contract=off), so an element has the same bits in a vector lane, in a scalar tail and
 * on a CPU without AVX2. Accuracy against float64, the maxima over every float32 with
 * |x| < 60: tanh 1.33 ulp, sigmoid 2.40, elu 1.42, gelu 7.30, softplus 3.33.
 *
 *   tanh:    |x| < 0.625: x + x^3 P(x^2) (Cephes tanhf's polynomial); else
 *            1 - 2 / (exp(2|x|) + 1). Sign restored last, so tanh(-0) = -0.
 *   sigmoid: e = exp(-|x|); 1 / (1 + e) for x >= 0, e / (1 + e) below: exp never overflows.
 *   expm1:   |x| < 0.35: its Taylor polynomial to x^8 (no cancellation near 0); else
 *            exp(x) - 1. Sign restored last, so expm1(-0) = -0.
 *   gelu:    z Phi(z), Phi(z) = (1 + erf(z / sqrt 2)) / 2 from erf for |z| / sqrt 2 < 0.75 and
 *            from erfc above: Phi(z) = erfc(|z| / sqrt 2) / 2 for z < 0, so no cancellation
 *            where 1 + erf(z / sqrt 2) is tiny (libm's erff lost every digit there).
 *            exp(-z^2 / 2) is taken as exp(-zh^2 / 2) exp(-zl (z + zh) / 2), z = zh + zl
 *            with zh of 12 bits (zh^2 exact): the rounding of z^2 would cost x^2 ulps.
 *            Its derivative is Phi(z) + z exp(-z^2 / 2) / sqrt(2 pi).
 *   softplus: max(z, 0) + log1p(exp(-|z|)); log1p(t) for t in [0, 1] as log(u) of u = 1 + t
 *            plus the rounding correction (t - (u - 1)) / u, log(u) = k ln2 + 2 atanh(s),
 *            s = f / (2 + f), f = u / 2^k - 1 (k = 0 or 1), atanh by its series to s^9.
 * NaN in gives NaN out; +-inf give +-1 (tanh), 1 / 0 (sigmoid), inf / -1 (expm1). */
#ifndef CNN_ACT_VEC_MATH_H
#define CNN_ACT_VEC_MATH_H
/* Included by activation_math.h after its CNN_ACT_* ids, which the vector loops switch on. */

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
/* GELU: erf(x) = x P(x^2) for x < 0.75, erfc(x) = exp(-x^2) R(1 / (1 + x)) above, both
 * least-squares fits to float64 erf/erfc, highest power first (with the coefficients rounded
 * to float32: relative error 6.7e-8 and 2.4e-8). */
#define CNN_ERF_SMALL 0.75f
static const float cnn_erf_p[8] = {
    -1.1657486538751982e-05f, 0.00011768052354454994f, -0.0008534863009117544f,
    0.005223624408245087f, -0.026866119354963303f, 0.11283791065216064f, -0.37612637877464294f,
    1.128379225730896f};
static const float cnn_erfc_r[11] = {
    -2.477923631668091f, 8.485838890075684f, -11.850489616394043f, 7.9149394035339355f,
    -1.7255584001541138f, -0.4829091429710388f, -0.2938450872898102f, 0.2808383107185364f,
    0.5644460916519165f, 0.5641728043556213f, 4.0335731910090544e-07f};

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

/* log1p(t), 0 <= t <= 1 (the softplus' argument). */
static inline float cnn_log1p01f(float t) {
    const float u = 1.0f + t;
    const float c = (t - (u - 1.0f)) / u;
    const int k = u >= 1.41421356237309504880f;
    const float m = k ? u * 0.5f : u;
    const float kf = k ? 1.0f : 0.0f;
    const float f = m - 1.0f;
    const float s = f / (2.0f + f), s2 = s * s;
    float p = 2.0f / 9.0f;
    p = p * s2 + 2.0f / 7.0f;
    p = p * s2 + 2.0f / 5.0f;
    p = p * s2 + 2.0f / 3.0f;
    const float log_m = (s + s) + s * (s2 * p);
    return kf * CNN_EXP_LN2_HI + (log_m + (c + kf * CNN_EXP_LN2_LO));
}

static inline float cnn_softplusf(float z) {
    uint32_t sign;
    return (z > 0.0f ? z : 0.0f) + cnn_log1p01f(cnn_expf(-cnn_abs_bits_f32(z, &sign)));
}

static inline float cnn_bits_and_f32(float x, uint32_t mask) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    bits &= mask;
    memcpy(&x, &bits, sizeof x);
    return x;
}

/* Phi(z) and exp(-z^2 / 2), the parts of GELU and of its derivative. */
static inline float cnn_gelu_parts_f32(float z, float *gauss) {
    uint32_t sign;
    const float x = cnn_abs_bits_f32(z, &sign) * 0.70710678118654752440f;
    /* exp(-z^2 / 2) underflows to 0 past |z| = 14; clamped there, inf gives 0, not NaN. */
    float zc = 14.0f < z ? 14.0f : z;
    zc = -14.0f > zc ? -14.0f : zc;
    const float zh = cnn_bits_and_f32(zc, 0xfffff000u), zl = zc - zh;
    const float e = cnn_expf(-0.5f * (zh * zh)) * cnn_expf(-0.5f * (zl * (zc + zh)));
    const float s = x * x;
    float p = cnn_erf_p[0];
    for (int i = 1; i < 8; i++) p = p * s + cnn_erf_p[i];
    const float erf_x = p * x;
    const float t = 1.0f / (1.0f + x);
    float r = cnn_erfc_r[0];
    for (int i = 1; i < 11; i++) r = r * t + cnn_erfc_r[i];
    const float erfc_x = e * r;
    const float phi_small = sign ? 0.5f * (1.0f - erf_x) : 0.5f * (1.0f + erf_x);
    const float phi_big = sign ? 0.5f * erfc_x : 1.0f - 0.5f * erfc_x;
    *gauss = e;
    return x < CNN_ERF_SMALL ? phi_small : phi_big;
}

/* NaN in: z + z, so that only z's NaN comes out. The parts are NaN as well, with other
 * sign or payload bits, and an operation on two NaNs returns whichever operand the compiler
 * put first: the vector and the scalar code would differ. */
static inline float cnn_geluf(float z) {
    float gauss;
    const float r = z * cnn_gelu_parts_f32(z, &gauss);
    return z != z ? z + z : r;
}

static inline float cnn_gelu_derivf(float z) {
    float gauss;
    const float phi = cnn_gelu_parts_f32(z, &gauss);
    const float r = phi + (z * gauss) * 0.39894228040143267794f;
    return z != z ? z + z : r;
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

CNN_AVX2 static inline __m256 cnn_gelu_parts8_avx2(__m256 z, __m256 *gauss) {
    const __m256 sign_bit = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    const __m256 half = _mm256_set1_ps(0.5f), minus_half = _mm256_set1_ps(-0.5f);
    const __m256 x = _mm256_mul_ps(_mm256_andnot_ps(sign_bit, z),
                                   _mm256_set1_ps(0.70710678118654752440f));
    const __m256 zc = _mm256_max_ps(_mm256_set1_ps(-14.0f),
                                    _mm256_min_ps(_mm256_set1_ps(14.0f), z));
    const __m256 zh = _mm256_and_ps(zc, _mm256_castsi256_ps(_mm256_set1_epi32((int)0xfffff000u)));
    const __m256 zl = _mm256_sub_ps(zc, zh);
    const __m256 e = _mm256_mul_ps(
        cnn_exp8_avx2(_mm256_mul_ps(minus_half, _mm256_mul_ps(zh, zh))),
        cnn_exp8_avx2(_mm256_mul_ps(minus_half, _mm256_mul_ps(zl, _mm256_add_ps(zc, zh)))));
    const __m256 s = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(cnn_erf_p[0]);
    for (int i = 1; i < 8; i++)
        p = _mm256_add_ps(_mm256_mul_ps(p, s), _mm256_set1_ps(cnn_erf_p[i]));
    const __m256 erf_x = _mm256_mul_ps(p, x);
    const __m256 t = _mm256_div_ps(one, _mm256_add_ps(one, x));
    __m256 r = _mm256_set1_ps(cnn_erfc_r[0]);
    for (int i = 1; i < 11; i++)
        r = _mm256_add_ps(_mm256_mul_ps(r, t), _mm256_set1_ps(cnn_erfc_r[i]));
    const __m256 erfc_x = _mm256_mul_ps(e, r);
    /* sign as in the scalar code: the sign bit, so -0 counts as negative */
    const __m256 negative = _mm256_castsi256_ps(_mm256_srai_epi32(_mm256_castps_si256(z), 31));
    const __m256 phi_small = _mm256_blendv_ps(_mm256_mul_ps(half, _mm256_add_ps(one, erf_x)),
                                              _mm256_mul_ps(half, _mm256_sub_ps(one, erf_x)),
                                              negative);
    const __m256 phi_big = _mm256_blendv_ps(_mm256_sub_ps(one, _mm256_mul_ps(half, erfc_x)),
                                            _mm256_mul_ps(half, erfc_x), negative);
    *gauss = e;
    return _mm256_blendv_ps(phi_big, phi_small,
                            _mm256_cmp_ps(x, _mm256_set1_ps(CNN_ERF_SMALL), _CMP_LT_OQ));
}

CNN_AVX2 static inline __m256 cnn_softplus8_avx2(__m256 z) {
    const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    const __m256 t = cnn_exp8_avx2(_mm256_or_ps(z, _mm256_set1_ps(-0.0f))); /* exp(-|z|) */
    const __m256 u = _mm256_add_ps(one, t);
    const __m256 c = _mm256_div_ps(_mm256_sub_ps(t, _mm256_sub_ps(u, one)), u);
    const __m256 k = _mm256_cmp_ps(u, _mm256_set1_ps(1.41421356237309504880f), _CMP_GE_OQ);
    const __m256 m = _mm256_blendv_ps(u, _mm256_mul_ps(u, half), k);
    const __m256 kf = _mm256_and_ps(k, one);
    const __m256 f = _mm256_sub_ps(m, one);
    const __m256 s = _mm256_div_ps(f, _mm256_add_ps(_mm256_set1_ps(2.0f), f));
    const __m256 s2 = _mm256_mul_ps(s, s);
    __m256 p = _mm256_set1_ps(2.0f / 9.0f);
    p = _mm256_add_ps(_mm256_mul_ps(p, s2), _mm256_set1_ps(2.0f / 7.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, s2), _mm256_set1_ps(2.0f / 5.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, s2), _mm256_set1_ps(2.0f / 3.0f));
    const __m256 log_m = _mm256_add_ps(_mm256_add_ps(s, s), _mm256_mul_ps(s, _mm256_mul_ps(s2, p)));
    const __m256 log1p_t = _mm256_add_ps(
        _mm256_mul_ps(kf, _mm256_set1_ps(CNN_EXP_LN2_HI)),
        _mm256_add_ps(log_m, _mm256_add_ps(c, _mm256_mul_ps(kf, _mm256_set1_ps(CNN_EXP_LN2_LO)))));
    const __m256 positive = _mm256_and_ps(z, _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_GT_OQ));
    return _mm256_add_ps(positive, log1p_t);
}

/* a[i] = f(z[i]) for the leading multiple of 8 of n (z and a may alias); returns how many
 * were done. The piecewise-linear ones are here too: the modules built
 * for the baseline CPU compile their loops as scalar code with a branch per element, which
 * mispredicts on random signs (~5 ns an element). */
CNN_AVX2 static int64_t cnn_act_apply_avx2_f32(int act, const float *z, float *a, int64_t n,
                                               float param) {
    int64_t i = 0;
    const __m256 zero = _mm256_setzero_ps(), alpha = _mm256_set1_ps(param);
    switch (act) {
    case CNN_ACT_RELU: /* z > 0 ? z : 0 */
        for (; i + 8 <= n; i += 8) {
            const __m256 v = _mm256_loadu_ps(z + i);
            _mm256_storeu_ps(a + i, _mm256_and_ps(v, _mm256_cmp_ps(v, zero, _CMP_GT_OQ)));
        }
        break;
    case CNN_ACT_LEAKY_RELU: /* z > 0 ? z : param * z */
        for (; i + 8 <= n; i += 8) {
            const __m256 v = _mm256_loadu_ps(z + i);
            _mm256_storeu_ps(a + i, _mm256_blendv_ps(_mm256_mul_ps(alpha, v), v,
                                                     _mm256_cmp_ps(v, zero, _CMP_GT_OQ)));
        }
        break;
    case CNN_ACT_ELU: /* z > 0 ? z : param * expm1(z) */
        for (; i + 8 <= n; i += 8) {
            const __m256 v = _mm256_loadu_ps(z + i);
            const __m256 neg = _mm256_mul_ps(alpha, cnn_expm18_avx2(v));
            _mm256_storeu_ps(a + i, _mm256_blendv_ps(neg, v, _mm256_cmp_ps(v, zero, _CMP_GT_OQ)));
        }
        break;
    case CNN_ACT_SIGMOID:
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(a + i, cnn_sigmoid8_avx2(_mm256_loadu_ps(z + i)));
        break;
    case CNN_ACT_TANH:
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(a + i, cnn_tanh8_avx2(_mm256_loadu_ps(z + i)));
        break;
    case CNN_ACT_SOFTPLUS:
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(a + i, cnn_softplus8_avx2(_mm256_loadu_ps(z + i)));
        break;
    case CNN_ACT_GELU:
        for (; i + 8 <= n; i += 8) {
            __m256 gauss;
            const __m256 v = _mm256_loadu_ps(z + i);
            const __m256 r = _mm256_mul_ps(v, cnn_gelu_parts8_avx2(v, &gauss));
            _mm256_storeu_ps(a + i, _mm256_blendv_ps(r, _mm256_add_ps(v, v),
                                                     _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
        }
        break;
    default:
        break;
    }
    return i;
}

/* dz[i] = g[i] * f'(z[i]) (a = f(z)) for the leading multiple of 8 of n, each as the scalar
 * loops of activation_math.h compute it; returns how many were done. dz may alias g. */
CNN_AVX2 static int64_t cnn_act_backward_avx2_f32(int act, const float *g, const float *z,
                                                  const float *a, float *dz, int64_t n,
                                                  float param) {
    int64_t i = 0;
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    const __m256 alpha = _mm256_set1_ps(param);
    switch (act) {
    case CNN_ACT_RELU: /* z > 0 ? g : 0 */
        for (; i + 8 <= n; i += 8) {
            const __m256 positive = _mm256_cmp_ps(_mm256_loadu_ps(z + i), zero, _CMP_GT_OQ);
            _mm256_storeu_ps(dz + i, _mm256_and_ps(_mm256_loadu_ps(g + i), positive));
        }
        break;
    case CNN_ACT_LEAKY_RELU: /* z > 0 ? g : param * g */
        for (; i + 8 <= n; i += 8) {
            const __m256 gv = _mm256_loadu_ps(g + i);
            const __m256 positive = _mm256_cmp_ps(_mm256_loadu_ps(z + i), zero, _CMP_GT_OQ);
            _mm256_storeu_ps(dz + i, _mm256_blendv_ps(_mm256_mul_ps(alpha, gv), gv, positive));
        }
        break;
    case CNN_ACT_ELU: /* g * (z > 0 ? 1 : a + param) */
        for (; i + 8 <= n; i += 8) {
            const __m256 positive = _mm256_cmp_ps(_mm256_loadu_ps(z + i), zero, _CMP_GT_OQ);
            const __m256 d = _mm256_blendv_ps(_mm256_add_ps(_mm256_loadu_ps(a + i), alpha), one,
                                              positive);
            _mm256_storeu_ps(dz + i, _mm256_mul_ps(_mm256_loadu_ps(g + i), d));
        }
        break;
    case CNN_ACT_SIGMOID: /* g * a * (1 - a) */
        for (; i + 8 <= n; i += 8) {
            const __m256 av = _mm256_loadu_ps(a + i);
            _mm256_storeu_ps(dz + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(g + i), av),
                                                   _mm256_sub_ps(one, av)));
        }
        break;
    case CNN_ACT_TANH: /* g * (1 - a a) */
        for (; i + 8 <= n; i += 8) {
            const __m256 av = _mm256_loadu_ps(a + i);
            _mm256_storeu_ps(dz + i, _mm256_mul_ps(_mm256_loadu_ps(g + i),
                                                   _mm256_sub_ps(one, _mm256_mul_ps(av, av))));
        }
        break;
    case CNN_ACT_SOFTPLUS: /* f' = sigmoid */
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dz + i, _mm256_mul_ps(_mm256_loadu_ps(g + i),
                                                   cnn_sigmoid8_avx2(_mm256_loadu_ps(z + i))));
        break;
    case CNN_ACT_GELU: {
        const __m256 c = _mm256_set1_ps(0.39894228040143267794f);
        for (; i + 8 <= n; i += 8) {
            __m256 gauss;
            const __m256 v = _mm256_loadu_ps(z + i);
            const __m256 phi = cnn_gelu_parts8_avx2(v, &gauss);
            const __m256 d = _mm256_blendv_ps(
                _mm256_add_ps(phi, _mm256_mul_ps(_mm256_mul_ps(v, gauss), c)),
                _mm256_add_ps(v, v), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
            _mm256_storeu_ps(dz + i, _mm256_mul_ps(_mm256_loadu_ps(g + i), d));
        }
        break;
    }
    default:
        break;
    }
    return i;
}
#undef CNN_AVX2
#endif

/* Set by cnn_act_math_init() when a module that applies activations loads; left at 0 the
 * scalar spellings run, with the same bits (each module reports it: _act_vec_enabled()). */
static int cnn_act_use_avx2 = 0;

static int cnn_act_vec_enabled(void) { return cnn_act_use_avx2; }

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

static inline int64_t cnn_act_backward_vec_f32(int act, const float *g, const float *z,
                                               const float *a, float *dz, int64_t n,
                                               float param) {
#if CNN_EXP_HAVE_AVX2
    if (cnn_act_use_avx2) return cnn_act_backward_avx2_f32(act, g, z, a, dz, n, param);
#endif
    (void)act; (void)g; (void)z; (void)a; (void)dz; (void)n; (void)param;
    return 0;
}

static inline int64_t cnn_act_backward_vec_f64(int act, const double *g, const double *z,
                                               const double *a, double *dz, int64_t n,
                                               double param) {
    (void)act; (void)g; (void)z; (void)a; (void)dz; (void)n; (void)param;
    return 0;
}

static inline int64_t cnn_act_apply_vec_f64(int act, const double *z, double *a, int64_t n,
                                            double param) {
    (void)act; (void)z; (void)a; (void)n; (void)param;
    return 0;
}

#endif
