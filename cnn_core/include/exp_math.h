/* exp for float32 softmax rows: one algorithm, a scalar and an AVX2 spelling of it.
 *
 * glibc's expf is exact to 0.5 ulp but scalar (without -ffast-math there is no vector
 * variant), and a softmax over 1000 classes spends most of its time in it. This is the
 * Cephes expf: x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite split of ln2), e^r by a degree-7
 * polynomial, 2^n from the exponent bits in two factors so that n = 128 and n = -126 stay
 * representable. Checked over every float in [-87.3, 88.3]: relative error <= 8.2e-8, at most
 * 1 ulp from glibc's expf.
 *
 * The scalar and the vector functions perform the same IEEE operations in the same order
 * (the build has -ffp-contract=off, so no FMA is formed), so an element has the same bits
 * whether it falls in a vector or in the scalar tail, and on an AVX2 or a baseline CPU.
 * x < -87.34 gives 0, x > 88.72 gives +inf, NaN gives NaN. */
#ifndef CNN_EXP_MATH_H
#define CNN_EXP_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define CNN_EXP_LO -87.3365478515625f /* below: exp underflows past FLT_MIN */
#define CNN_EXP_HI 88.72283172607421875f /* largest float whose exp is below FLT_MAX */
#define CNN_EXP_LOG2E 1.44269504088896341f
#define CNN_EXP_ROUND 12582912.0f     /* 1.5 * 2^23: adding it rounds to an integer */
#define CNN_EXP_LN2_HI 0.693359375f
#define CNN_EXP_LN2_LO -2.12194440e-4f
#define CNN_EXP_P0 1.9875691500e-4f
#define CNN_EXP_P1 1.3981999507e-3f
#define CNN_EXP_P2 8.3334519073e-3f
#define CNN_EXP_P3 4.1665795894e-2f
#define CNN_EXP_P4 1.6666665459e-1f
#define CNN_EXP_P5 5.0000001201e-1f

static inline float cnn_pow2i_f32(int32_t n) {
    const int32_t bits = (n + 127) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline float cnn_expf(float x) {
    float xc = CNN_EXP_HI < x ? CNN_EXP_HI : x; /* the operand order of min/max_ps: NaN stays */
    xc = CNN_EXP_LO > xc ? CNN_EXP_LO : xc;
    const float n = (xc * CNN_EXP_LOG2E + CNN_EXP_ROUND) - CNN_EXP_ROUND;
    const float r = (xc - n * CNN_EXP_LN2_HI) - n * CNN_EXP_LN2_LO;
    const float r2 = r * r;
    float p = CNN_EXP_P0;
    p = p * r + CNN_EXP_P1;
    p = p * r + CNN_EXP_P2;
    p = p * r + CNN_EXP_P3;
    p = p * r + CNN_EXP_P4;
    p = p * r + CNN_EXP_P5;
    const float y = (p * r2 + r) + 1.0f;
    const int32_t ni = (int32_t)n, half = ni >> 1;
    const float res = (y * cnn_pow2i_f32(half)) * cnn_pow2i_f32(ni - half);
    return x < CNN_EXP_LO ? 0.0f : (x > CNN_EXP_HI ? INFINITY : res);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CNN_EXP_HAVE_AVX2 1

__attribute__((target("avx2,fma"))) static inline __m256 cnn_pow2i_avx2(__m256i n) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
}

/* Eight cnn_expf at once, operation for operation. */
__attribute__((target("avx2,fma"))) static inline __m256 cnn_exp8_avx2(__m256 x) {
    const __m256 lo = _mm256_set1_ps(CNN_EXP_LO), hi = _mm256_set1_ps(CNN_EXP_HI);
    const __m256 xc = _mm256_max_ps(lo, _mm256_min_ps(hi, x));
    const __m256 round = _mm256_set1_ps(CNN_EXP_ROUND);
    const __m256 n = _mm256_sub_ps(
        _mm256_add_ps(_mm256_mul_ps(xc, _mm256_set1_ps(CNN_EXP_LOG2E)), round), round);
    const __m256 r = _mm256_sub_ps(_mm256_sub_ps(xc, _mm256_mul_ps(n, _mm256_set1_ps(CNN_EXP_LN2_HI))),
                                   _mm256_mul_ps(n, _mm256_set1_ps(CNN_EXP_LN2_LO)));
    const __m256 r2 = _mm256_mul_ps(r, r);
    __m256 p = _mm256_set1_ps(CNN_EXP_P0);
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(CNN_EXP_P1));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(CNN_EXP_P2));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(CNN_EXP_P3));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(CNN_EXP_P4));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(CNN_EXP_P5));
    const __m256 y = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, r2), r), _mm256_set1_ps(1.0f));
    const __m256i ni = _mm256_cvttps_epi32(n), half = _mm256_srai_epi32(ni, 1);
    __m256 res = _mm256_mul_ps(_mm256_mul_ps(y, cnn_pow2i_avx2(half)),
                               cnn_pow2i_avx2(_mm256_sub_epi32(ni, half)));
    res = _mm256_blendv_ps(res, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
    return _mm256_blendv_ps(res, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
}
#else
#define CNN_EXP_HAVE_AVX2 0
#endif

#endif
